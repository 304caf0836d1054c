"""The hub: hears the broker, fans events out to notifiers, retries, records delivery status.

Never blocks a session: the broker's listener only does ``put_nowait`` on a bounded queue (a
full queue drops the event, logged and recorded as ``dropped``). Masking and delivery happen in
background tasks; each notifier has its own queue and worker, so one that hangs (every attempt
is bounded by its ``timeout``) delays only itself. Failed attempts are retried with exponential
backoff; the last state of each (request, notifier, event) is stored for
``bastion approvals show``.

Decisions made in another process (``bastion approvals approve``) do not reach this process's
listener, so the hub also re-reads the requests it announced every ``sweep_interval`` and
announces their outcome; it expires overdue ones too (deferred requests have no waiter).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from bastion.approval.broker import ApprovalBroker
from bastion.approval.model import FINAL_STATES, ApprovalRequest
from bastion.audit.errors import AuditError
from bastion.notify.base import DeliveryError, Notifier
from bastion.notify.event import EventKind, NotifyEvent
from bastion.notify.store import NotifyStore

log = logging.getLogger("bastion.notify")

QUEUE_SIZE = 256
MAX_TRACKED = 10_000


class NotifierHub:
    def __init__(
        self,
        notifiers: Sequence[Notifier],
        *,
        queue_size: int = QUEUE_SIZE,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        sweep_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.notifiers = list(notifiers)
        self.queue_size = queue_size
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sweep_interval = sweep_interval
        self.clock = clock
        self.broker: ApprovalBroker | None = None
        self.store: NotifyStore | None = None
        self._intake: asyncio.Queue[tuple[EventKind, ApprovalRequest]] = asyncio.Queue(queue_size)
        self._queues: dict[str, asyncio.Queue[NotifyEvent]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._open: OrderedDict[str, None] = OrderedDict()  # announced, not yet resolved
        self._resolved: OrderedDict[str, None] = OrderedDict()

    def __bool__(self) -> bool:
        return bool(self.notifiers)

    def slack_notifiers(self) -> list[Any]:
        from bastion.notify.slack import SlackNotifier

        return [n for n in self.notifiers if isinstance(n, SlackNotifier)]

    async def start(self, broker: ApprovalBroker) -> None:
        """Attach to ``broker`` and start the workers (nothing at all without notifiers)."""
        if not self.notifiers or self.broker is not None:
            return
        self.broker = broker
        self.store = await NotifyStore.open(broker.db)
        for slack in self.slack_notifiers():
            await slack.start(broker, self.store)
        for n in self.notifiers:
            queue: asyncio.Queue[NotifyEvent] = asyncio.Queue(self.queue_size)
            self._queues[n.name] = queue
            self._tasks.append(asyncio.create_task(self._worker(n, queue), name=f"notify-{n.name}"))
        self._tasks.append(asyncio.create_task(self._dispatch(), name="notify-dispatch"))
        self._tasks.append(asyncio.create_task(self._sweep(), name="notify-sweep"))
        broker.add_listener(self.on_change)
        log.info("notify.started", extra={"ctx": {"notifiers": ",".join(self._queues)}})

    async def stop(self) -> None:
        """Stop the workers (undelivered events are dropped) and close the notifiers."""
        tasks, self._tasks = self._tasks, []
        for _ in range(3):  # bounded: a task that ignores cancellation is left behind, logged
            pending = [t for t in tasks if not t.done()]
            if not pending:
                break
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=2.0)
        if left := [t for t in tasks if not t.done()]:
            log.error("notify.stop_incomplete", extra={"ctx": {"tasks": len(left)}})
        for n in self.notifiers:
            with contextlib.suppress(Exception):
                await n.close()

    # -- the broker's side (synchronous, never blocks) --------------------------------------------

    def on_change(self, event: str, request: ApprovalRequest) -> None:
        kind: EventKind
        if event == "submitted":
            kind = "approval.requested"
        elif event in FINAL_STATES:
            kind = "approval.resolved"
        else:
            return  # approval_added, used: nothing to announce
        try:
            self._intake.put_nowait((kind, request))
        except asyncio.QueueFull:
            log.error("notify.dropped", extra={"ctx": {"request": request.id, "why": "queue full"}})

    # -- background ---------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        while True:
            kind, request = await self._intake.get()
            if kind == "approval.requested":
                _remember(self._open, request.id)
            else:
                if request.id in self._resolved or request.id not in self._open:
                    continue  # already announced, or never announced by this process
                self._open.pop(request.id, None)
                _remember(self._resolved, request.id)
            event = NotifyEvent.from_request(kind, request)  # masking, off the submit path
            for n in self.notifiers:
                if not n.scope.matches(event.rules, event.target, event.approvers):
                    continue
                try:
                    self._queues[n.name].put_nowait(event)
                except asyncio.QueueFull:
                    log.error(
                        "notify.dropped",
                        extra={"ctx": {"notifier": n.name, "request": event.request_id}},
                    )
                    await self._record(event, n.name, "dropped", 0, "queue full")

    async def _worker(self, n: Notifier, queue: asyncio.Queue[NotifyEvent]) -> None:
        while True:
            event = await queue.get()
            await self._deliver(n, event)

    async def _deliver(self, n: Notifier, event: NotifyEvent) -> None:
        attempts = n.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                # that races with completion, and stop() would wait forever.
                async with asyncio.timeout(n.timeout):
                    await n.deliver(event)
            except TimeoutError:
                error = f"no answer within {n.timeout:g}s"
            except DeliveryError as exc:
                error = str(exc)
            except Exception as exc:  # a notifier bug must not stop its worker
                error = f"internal error: {type(exc).__name__}"
            else:
                await self._record(event, n.name, "delivered", attempt, "")
                return
            ctx = {"notifier": n.name, "request": event.request_id, "attempt": attempt}
            if attempt < attempts:
                log.warning("notify.retry", extra={"ctx": {**ctx, "error": error}})
                await self._record(event, n.name, "retrying", attempt, error)
                await asyncio.sleep(min(self.backoff * 2 ** (attempt - 1), self.max_backoff))
            else:
                log.error("notify.failed", extra={"ctx": {**ctx, "error": error}})
                await self._record(event, n.name, "failed", attempt, error)

    async def _record(
        self, event: NotifyEvent, notifier: str, state: str, attempts: int, error: str
    ) -> None:
        if self.store is None:
            return
        try:
            await self.store.set_state(
                event.request_id, notifier, event.kind, state, attempts, error, self.clock()
            )
        except (AuditError, sqlite3.Error) as exc:
            log.error("notify.status_failed", extra={"ctx": {"error": str(exc)}})

    async def _sweep(self) -> None:
        """Announce outcomes decided by other processes; expire overdue announced requests."""
        assert self.broker is not None
        broker = self.broker
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                overdue = False
                for request_id in list(self._open):
                    request = await broker.get(request_id)
                    if request is None:
                        self._open.pop(request_id, None)
                    elif request.state != "pending":
                        self.on_change(request.state, request)
                    elif request.expires_at <= self.clock():
                        overdue = True
                if overdue:
                    await broker.expire_due()  # the broker's listener announces them
            except (AuditError, sqlite3.Error) as exc:
                log.error("notify.sweep_failed", extra={"ctx": {"error": str(exc)}})


def _remember(seen: OrderedDict[str, None], key: str) -> None:
    seen[key] = None
    seen.move_to_end(key)
    while len(seen) > MAX_TRACKED:
        seen.popitem(last=False)
