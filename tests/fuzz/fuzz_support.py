"""Budget and timing helpers shared by the fuzz tests.

CI runs each property with a small example count so the whole folder stays under a minute on a
2-core machine; ``BASTION_FUZZ_EXAMPLES=N`` runs every property with N examples instead (long
local runs). Time bounds are measured in thread CPU time, not wall time, so a loaded machine
(other test runs, other engineers) does not make them flaky while a real hang still fails.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

T = TypeVar("T")

_OVERRIDE = os.environ.get("BASTION_FUZZ_EXAMPLES", "").strip()


def examples(ci_default: int) -> int:
    """The example count for one property: the CI default, or BASTION_FUZZ_EXAMPLES when set."""
    if _OVERRIDE.isdigit() and int(_OVERRIDE) > 0:
        return int(_OVERRIDE)
    return ci_default


def fuzz_settings(ci_default: int, **extra: Any) -> settings:
    """Hypothesis settings for a fuzz property: no wall-clock deadline (see ``cpu_bounded``)."""
    return settings(
        max_examples=examples(ci_default),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.large_base_example],
        **extra,
    )


class TooSlow(AssertionError):
    """One call used more CPU time than its bound."""


def cpu_bounded(limit: float, fn: Callable[[], T], what: str = "") -> T:
    """Run ``fn`` and fail when it used more than ``limit`` seconds of this thread's CPU time."""
    start = time.thread_time()
    result = fn()
    used = time.thread_time() - start
    if used > limit:
        raise TooSlow(f"{what or 'call'} took {used:.3f}s CPU (bound {limit}s)")
    return result
