"""A CPU-time budget for one decision, checked by the engine's slow loops.

A hostile line (thousands of glob characters) can make the glob intersection in ``paths`` run
for a second. The gate gives each decision a budget; the engine and the path classifier call
``check()`` in their loops, which raises ``BudgetExceeded`` once the deciding thread has used
more CPU time than allowed, and the engine turns that into ``review`` (rule ``decision-budget``).
CPU time of the deciding thread is measured, not wall time, so a worker busy with other
sessions does not turn ordinary lines into reviews; the decision itself is bounded either way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

RULE = "decision-budget"
_LOCAL = threading.local()


class BudgetExceeded(Exception):
    """The decision used up its CPU-time budget."""


def _deadline() -> float | None:
    deadline: float | None = getattr(_LOCAL, "deadline", None)
    return deadline


@contextmanager
def bounded(seconds: float | None) -> Iterator[None]:
    """Run the body with a CPU-time budget for this thread (None: no budget)."""
    previous = _deadline()
    _LOCAL.deadline = None if seconds is None else time.thread_time() + seconds
    try:
        yield
    finally:
        _LOCAL.deadline = previous


def check() -> None:
    """Raise ``BudgetExceeded`` when this thread's decision is over its budget."""
    deadline = _deadline()
    if deadline is not None and time.thread_time() > deadline:
        raise BudgetExceeded


def active() -> bool:
    return _deadline() is not None
