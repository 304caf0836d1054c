"""Typed seams where features plug into the data path.

The relay calls these at fixed points:
- ``CommandGate.check`` before a command reaches the target (exec: before the upstream channel
  is opened, so the target never sees a refused command);
- ``OutputFilter`` on every byte the target sends, before the agent or any sink sees it
  (masking: from that point on only filtered bytes exist);
- ``ChannelSink`` for recording and audit: required sinks fail closed, so an exception from a
  sink ends the channel rather than relaying unrecorded data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from bastion.model import ChannelRequest, SessionInfo

GateAction = Literal["allow", "review", "deny"]

# Exit statuses the agent sees for refusals; documented in docs/architecture.md.
EXIT_DENIED = 126
EXIT_REVIEW_REFUSED = 77
EXIT_DEFERRED = 75
EXIT_BASTION_ERROR = 255


@dataclass(frozen=True)
class GateVerdict:
    action: GateAction
    message: str = ""
    rules: tuple[str, ...] = ()
    exit_status: int = 0
    # The command that may run (None: unchanged). Lets a gate pin exactly what was approved.
    command: str | None = None
    details: dict[str, object] = field(default_factory=dict)
    # For review: what an approval binds to, and what it requires.
    units: tuple[tuple[str, ...], ...] = ()
    approvers: tuple[str, ...] = ()
    approvals_required: int = 1
    hold_timeout: float | None = None
    hold_mode: str | None = None


class CommandGate(Protocol):
    """Decides whether a channel's command may reach the target. Must not raise."""

    async def check(self, session: SessionInfo, request: ChannelRequest) -> GateVerdict: ...


class OutputFilter(Protocol):
    """A streaming transform of target output (the secret masker).

    ``feed`` returns what may be released now; ``flush`` the rest at end of stream. While
    ``pending`` is true, the driver calls ``release_idle`` after ``hold_timeout`` seconds of no
    new data, so a held partial line is never delayed for long.
    """

    def feed(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...

    @property
    def pending(self) -> bool: ...

    @property
    def hold_timeout(self) -> float: ...

    def release_idle(self) -> bytes: ...


class OutputFilterFactory(Protocol):
    def __call__(self, *, pty: bool) -> OutputFilter: ...


def filter_text(filt: OutputFilter, text: str) -> str:
    """``text`` through a fresh filter as one whole stream (a command line kept in the audit
    log or a recording header: an agent can type a token into it)."""
    data = text.encode("utf-8", "surrogateescape")
    return (filt.feed(data) + filt.flush()).decode("utf-8", "replace")


class SinkError(Exception):
    """A required sink cannot record; the channel must not go on. str() is shown to the agent."""


class ChannelSink(Protocol):
    """Observes one channel (recorder, audit). Methods raise SinkError when they cannot record."""

    def input(self, data: bytes) -> None: ...

    def output(self, data: bytes, stderr: bool) -> None: ...

    def resize(self, width: int, height: int) -> None: ...

    def marker(self, text: str) -> None: ...

    async def close(self, exit_status: int | None, reason: str) -> None: ...


class ChannelSinkFactory(Protocol):
    async def open(
        self, session: SessionInfo, channel_no: int, request: ChannelRequest
    ) -> ChannelSink: ...


class PassThroughFilter:
    """Output filter that changes nothing (used only where masking is switched off)."""

    pending = False
    hold_timeout = 0.0

    def feed(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""

    def release_idle(self) -> bytes:
        return b""


def pass_through_factory(*, pty: bool) -> OutputFilter:
    return PassThroughFilter()


class AllowAllGate:
    """Gate that allows everything. Only for tests of the bare relay; never the default."""

    async def check(self, session: SessionInfo, request: ChannelRequest) -> GateVerdict:
        return GateVerdict("allow")


class ShellHost(Protocol):
    """What the relay offers a controller of an interactive PTY shell (``ChannelRelay``).

    Target output handed to ``output_to_agent`` goes through masking and recording like any
    other output; ``send_to_target`` writes to the remote PTY unrecorded (call ``record_input``
    for what the agent typed). ``decide`` runs the command gate on one complete unit.
    """

    @property
    def session(self) -> SessionInfo: ...

    def send_to_target(self, data: bytes) -> None: ...

    def output_to_agent(self, data: bytes) -> None: ...

    def record_input(self, data: bytes) -> None: ...

    def marker(self, text: str) -> None: ...

    async def decide(self, line: str) -> GateVerdict: ...

    def interrupt_decision(self, reason: str) -> None:
        """Called before the controller cancels a ``decide`` (the agent pressed Ctrl-C): an
        approval request the line waits on is abandoned, and ``reason`` is recorded as why."""

    def end(self, message: str) -> None: ...

    def audit(self, kind: str, **fields: object) -> None: ...


class ShellController(Protocol):
    """Owns the input line of one PTY shell (see docs/interactive.md)."""

    def start(self) -> None: ...

    def agent_input(self, data: bytes) -> None: ...

    def target_output(self, data: bytes) -> None: ...

    def resize(self, width: int, height: int) -> None: ...

    def close(self) -> None: ...


class ShellControllerFactory(Protocol):
    def __call__(self, host: ShellHost, request: ChannelRequest) -> ShellController: ...
