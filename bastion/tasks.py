"""The one way to start background tasks: named, referenced until done, failures logged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("bastion.tasks")
_running: set[asyncio.Task[Any]] = set()
# Tasks that live as long as the process (a link reader): shutdown does not wait for them.
_background: set[asyncio.Task[Any]] = set()


def _done(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    _background.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("task.failed", extra={"ctx": {"task": task.get_name(), "error": repr(exc)}})


def spawn(
    coro: Coroutine[Any, Any, T], *, name: str, background: bool = False
) -> asyncio.Task[T]:
    """Start ``coro`` as a task that stays referenced (asyncio keeps only weak references).

    ``background``: the task runs until the process ends (it is not work to finish), so
    ``drain_tasks`` does not wait for it.
    """
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _running.add(task)
    if background:
        _background.add(task)
    task.add_done_callback(_done)
    return task


async def drain_tasks(grace: float) -> None:
    """Wait (bounded) for background tasks such as sealing and audit writes to finish."""
    current = asyncio.current_task()
    pending = [
        t for t in _running if t is not current and not t.done() and t not in _background
    ]
    if pending:
        await asyncio.wait(pending, timeout=grace)
