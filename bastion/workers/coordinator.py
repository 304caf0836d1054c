"""What the supervisor keeps for all its workers, and the worker-side stand-ins that report to it.

Limits that must hold for the whole bastion live here once: sessions per certificate identity and
failed logins per source address and identity (a worker asks before it admits a login; the kernel
spreads one agent's connections over every worker, so per-worker counts would multiply the caps).
Metrics and approval events arrive as fire-and-forget events: ``/metrics`` and the notifiers are
served by the supervisor. When a worker dies, what it held is released and its waiting approval
requests are abandoned (their agents were disconnected with it).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from bastion.ops.limits import ConnectionLimiter, Limits, LoginLockout
from bastion.ops.metrics import Metrics
from bastion.workers.ipc import Link

log = logging.getLogger("bastion.workers")

# The Metrics methods a worker may call remotely (all take plain str/int arguments).
METRIC_CALLS = frozenset(
    {
        "session_opened",
        "session_closed",
        "auth_failed",
        "decision",
        "masked",
        "bytes_relayed",
        "recorder_error",
    }
)
MAX_KEY = 4096  # longest key id / address accepted from a worker (certificate key ids are short)
# Requests remembered per worker for abandoning at its death. A request decided in another
# process may never be reported back, so the memory is bounded; the oldest are forgotten
# first (by then long decided or expired; a forgotten one still pending expires at its deadline).
MAX_WAITING = 10_000

ApprovalListener = Callable[[str, str], Awaitable[None]]


class Coordinator:
    """Answers workers' calls; one instance per supervisor."""

    def __init__(
        self,
        limits: Limits,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Connections are capped per worker (each takes a share); sessions per identity here.
        self.sessions = ConnectionLimiter(limits.max_connections, limits.max_sessions_per_identity)
        self.auth = LoginLockout.from_limits(limits)
        self.metrics = metrics
        self.clock = clock
        self.on_approval: ApprovalListener | None = None
        self._held: dict[int, Counter[str]] = {}
        self._waiting: dict[int, OrderedDict[str, None]] = {}

    def handler(self, worker: int) -> Callable[[str, list[Any]], Awaitable[Any]]:
        async def handle(op: str, args: list[Any]) -> Any:
            return await self.handle(worker, op, args)

        return handle

    async def handle(self, worker: int, op: str, args: list[Any]) -> Any:
        if op == "admit_session":
            return self.admit_session(worker, _text(args, 0))
        if op == "release_session":
            self.release_session(worker, _text(args, 0))
        elif op == "auth_allowed":  # [address] or [address, identity]
            return self.auth.allow(_text(args, 0), _identity(args), self.clock())
        elif op == "auth_failed":  # [address] or [address, identity ("" when none)]
            self.auth.failed(_text(args, 0), _identity(args), self.clock())
        elif op == "metric":
            self._metric(_text(args, 0), args[1:])
        elif op == "approval":
            await self._approval(worker, _text(args, 0), _text(args, 1))
        else:
            raise ValueError(f"unknown operation {op!r}")
        return None

    def admit_session(self, worker: int, key_id: str) -> bool:
        if not self.sessions.open_session(key_id):
            return False
        self._held.setdefault(worker, Counter())[key_id] += 1
        return True

    def release_session(self, worker: int, key_id: str) -> None:
        held = self._held.get(worker)
        if held is None or held[key_id] <= 0:
            return  # never admitted through this worker: nothing to give back
        held[key_id] -= 1
        if held[key_id] == 0:
            del held[key_id]
        self.sessions.close_session(key_id)

    def worker_gone(self, worker: int) -> set[str]:
        """Release a dead worker's sessions; return the approval requests its agents waited on."""
        for key_id, count in self._held.pop(worker, Counter()).items():
            for _ in range(count):
                self.sessions.close_session(key_id)
        return set(self._waiting.pop(worker, ()))

    def _metric(self, name: str, args: list[Any]) -> None:
        if name not in METRIC_CALLS or not all(isinstance(a, str | int) for a in args):
            raise ValueError(f"unknown metric call {name!r}")
        getattr(self.metrics, name)(*args)

    async def _approval(self, worker: int, event: str, request_id: str) -> None:
        waiting = self._waiting.setdefault(worker, OrderedDict())
        if event == "submitted":
            waiting[request_id] = None
            while len(waiting) > MAX_WAITING:
                waiting.popitem(last=False)
        elif event in ("approved", "denied", "expired", "abandoned", "used"):
            waiting.pop(request_id, None)
        if self.on_approval is not None:
            await self.on_approval(event, request_id)


def _text(args: list[Any], index: int) -> str:
    if len(args) <= index or not isinstance(args[index], str) or len(args[index]) > MAX_KEY:
        raise ValueError("expected a string argument")
    return str(args[index])


def _identity(args: list[Any]) -> str | None:
    """The optional certificate identity after the address ("" or absent: none)."""
    return (_text(args, 1) or None) if len(args) > 1 else None


class RemoteMetrics(Metrics):
    """A worker's metrics: every recording call goes to the supervisor, which serves /metrics."""

    def __init__(self, link: Link) -> None:
        super().__init__()
        self._link = link

    def _send(self, name: str, *args: object) -> None:
        self._link.event("metric", name, *args)

    def session_opened(self, target: str) -> None:
        self._send("session_opened", target)

    def session_closed(self, target: str) -> None:
        self._send("session_closed", target)

    def auth_failed(self, reason: str) -> None:
        self._send("auth_failed", reason)

    def decision(self, action: str, rule: str | None) -> None:
        self._send("decision", action, rule or "")

    def masked(self, rule: str, n: int = 1) -> None:
        self._send("masked", rule, n)

    def bytes_relayed(self, direction: str, n: int) -> None:
        self._send("bytes_relayed", direction, n)

    def recorder_error(self) -> None:
        self._send("recorder_error")
