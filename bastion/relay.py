"""Relay of one session channel between an agent and its target.

``AgentSession`` (asyncssh server callbacks) and ``UpstreamSession`` (asyncssh client callbacks)
are thin: they forward every event to ``ChannelRelay`` (``UpstreamSession`` merges bulk output
per event-loop turn first), and ``ChannelRelay`` owns the order of operations:

1. the channel is held (agent input paused, so nothing is lost and nothing is buffered without
   bound) while the gate decides, the sinks open and the upstream channel is created;
2. target output goes through the output filter (masking) before the agent or any sink sees it;
3. flow control is end to end: when one side's send buffer is full, reading from the other side
   pauses, so a slow agent never makes the bastion buffer without bound;
4. EOF, exit-status and exit-signal travel back; a failing required sink ends the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

import asyncssh

from bastion.approval import EXIT_DEFERRED, EXIT_DENIED_BY_OPERATOR, EXIT_EXPIRED, ApprovalRefused
from bastion.audit import AuditError
from bastion.hooks import (
    EXIT_BASTION_ERROR,
    EXIT_DENIED,
    EXIT_REVIEW_REFUSED,
    ChannelSink,
    GateVerdict,
    OutputFilter,
    ShellController,
    SinkError,
)
from bastion.interactive.execguard import guarded_command
from bastion.masking.profiles import profile_for_command
from bastion.model import ChannelKind, ChannelRequest, SessionInfo
from bastion.ssh.upstream import UpstreamError
from bastion.tasks import spawn

if TYPE_CHECKING:
    from bastion.ssh.server import AgentServer

log = logging.getLogger("bastion.relay")

# Only these client environment variables reach the target (LC_* by prefix).
_ENV_ALLOWED = {"LANG", "TERM"}
_MAX_TERM = 10_000  # columns/rows beyond this are nonsense and refused
_PTY_REFUSAL_DELAY = 0.1  # seconds between the permit-pty refusal line and the failure reply
# Output arriving in chunks this large is streaming (a bulk transfer): a pause after one is
# most likely the target or the machine being busy, not the end of the output, so the held
# tail waits STREAMING_HOLD before the idle release masks a cut-off token in it. Under CPU
# load, gaps of 5-20 ms between a target's packets are common; with the 5 ms hold alone, bulk
# data (base64, hashes, logs) was altered at random packet boundaries.
STREAMING_CHUNK = 4096
STREAMING_HOLD = 0.1
# Target output chunks this large are bulk: merged per event-loop turn (UpstreamSession).
COALESCE_FROM = 8192
EXIT_SUBSYSTEM_REFUSED = 1


@dataclass(frozen=True)
class HoldResult:
    """How a hold ended: approved (``message`` is the recording marker) or not (``message`` is
    the one line the agent sees, ``status`` the exec exit status)."""

    approved: bool
    message: str
    status: int = 0
    outcome: str = ""  # the request's final state when it is not named by ``status``


_DEADLINE_SLACK = 2.0  # seconds past the deadline before the monotonic bound steps in


def _hold_outcome(status: int) -> str:
    """A hold that did not end in an approval, named by the exit status the agent got."""
    return {
        EXIT_DENIED_BY_OPERATOR: "denied",
        EXIT_EXPIRED: "expired",
        EXIT_DEFERRED: "deferred",
    }.get(status, "refused")


def _minutes(seconds: float) -> str:
    return f"{max(1, round(seconds / 60))} min" if seconds >= 90 else f"{max(0, int(seconds))} s"


def filter_env(env: dict[str, str]) -> dict[str, str]:
    return {
        k: v
        for k, v in env.items()
        if (k in _ENV_ALLOWED or k.startswith("LC_")) and len(v) <= 256 and "\0" not in v
    }


class AgentSession(asyncssh.SSHServerSession[bytes]):
    """asyncssh callbacks for the agent's side of one session channel."""

    def __init__(self, server: AgentServer, channel_no: int) -> None:
        self.server = server
        self.channel_no = channel_no
        self.chan: asyncssh.SSHServerChannel[bytes] | None = None
        self.kind: ChannelKind | None = None
        self.command: str | None = None
        self.subsystem: str | None = None
        self.term: tuple[str, tuple[int, int, int, int], dict[int, int]] | None = None
        self.relay: ChannelRelay | None = None

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self.chan = chan

    def pty_requested(
        self, term_type: str, term_size: tuple[int, int, int, int], term_modes: Mapping[int, int]
    ) -> bool:
        width, height = term_size[0], term_size[1]
        if not (0 <= width <= _MAX_TERM and 0 <= height <= _MAX_TERM) or len(term_type) > 64:
            return False
        session = self.server.session
        if session is None or not session.identity.permits("permit-pty"):
            # As sshd does for a certificate without permit-pty: the pty-req fails and the
            # exec or shell request that follows runs (or is refused) without a terminal.
            self.server.runtime.refused(self.server, "pty", "certificate lacks permit-pty")
            return self._refuse_pty()
        self.term = (term_type, term_size, dict(term_modes))
        return True

    def _refuse_pty(self) -> bool:
        """Refuse the pty-req as sshd does for a certificate without permit-pty, after one
        line saying why. OpenSSH's client, asked for a terminal with -t, closes the channel as
        soon as the failure arrives and drops stderr it has not written yet, so the failure
        is sent a moment after the line (asyncssh defers a reply when the handler returns
        None; ``_report_response`` sends it). Without that hook, the failure goes at once."""
        chan = self.chan
        report = getattr(chan, "_report_response", None)
        if chan is None or report is None:
            return False
        chan.write_stderr(
            b"bastion: your certificate does not permit a terminal (no permit-pty); run"
            b" without -t or ask for a certificate with permit-pty\r\n"
        )

        def send_failure() -> None:
            # The channel may have closed meanwhile: then there is nothing left to answer.
            with contextlib.suppress(IndexError, OSError, asyncssh.Error):
                report(False)

        asyncio.get_running_loop().call_later(_PTY_REFUSAL_DELAY, send_failure)
        return cast(bool, None)

    def exec_requested(self, command: str) -> bool:
        self.kind, self.command = "exec", command
        return True

    def shell_requested(self) -> bool:
        self.kind = "shell"
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        # Accepted only so the refusal can be explained on stderr (see ChannelRelay.start).
        self.kind, self.subsystem = "subsystem", subsystem
        return True

    def session_started(self) -> None:
        assert self.chan is not None and self.server.session is not None and self.kind
        self.relay = ChannelRelay(self.server, self, self.chan, self._request())
        self.server.channels.add(self)
        self.relay.begin()

    def _request(self) -> ChannelRequest:
        assert self.chan is not None and self.server.session is not None and self.kind
        kind, command = self.kind, self.command
        forced = self.server.session.identity.force_command
        if forced is not None:  # a certificate force-command replaces whatever was asked
            kind, command = "exec", forced
        term_type, term_size, term_modes = self.term or (None, (0, 0, 0, 0), {})
        return ChannelRequest(
            kind=kind,
            command=command,
            term_type=term_type,
            term_size=term_size,
            term_modes=term_modes,
            env=filter_env(dict(self.chan.get_environment())),
            subsystem=self.subsystem if forced is None else None,
        )

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self.relay is not None:
            self.relay.agent_data(data)

    def eof_received(self) -> bool:
        if self.relay is not None:
            self.relay.agent_eof()
        return True  # keep our side open: output and exit status still have to flow back

    def signal_received(self, signal: str) -> None:
        if self.relay is not None:
            self.relay.agent_signal(signal)

    def break_received(self, msec: int) -> bool:
        if self.relay is not None:
            self.relay.agent_break(msec)
        return True

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        if self.relay is not None and 0 < width <= _MAX_TERM and 0 < height <= _MAX_TERM:
            self.relay.agent_resize(width, height, pixwidth, pixheight)

    def pause_writing(self) -> None:
        if self.relay is not None:
            self.relay.set_agent_writable(False)

    def resume_writing(self) -> None:
        if self.relay is not None:
            self.relay.set_agent_writable(True)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.channels.discard(self)
        if self.relay is not None:
            self.relay.agent_closed()


class UpstreamSession(asyncssh.SSHClientSession[bytes]):
    """asyncssh callbacks for the target's side of one session channel.

    Bulk output is merged per event-loop turn: asyncssh delivers every SSH packet on its own
    (a target's sshd sends its reads as they come, 32 KiB each), and each delivery would cost
    one pass of the masker, one recording event and one write to the agent. Chunks of
    ``COALESCE_FROM`` bytes or more, and anything arriving while some are waiting, are
    collected until the packets of the current read are parsed (``call_soon``) and then go
    through the relay as one. Short output (a prompt, an echo) is relayed at once; order is
    kept, and EOF or the end of the channel first releases what is waiting.
    """

    def __init__(self, relay: ChannelRelay) -> None:
        self.relay = relay
        self._pending: list[bytes] = []
        self._pending_stderr = False
        self._flush_scheduled = False

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        stderr = datatype == asyncssh.EXTENDED_DATA_STDERR
        if not self._pending:
            if len(data) < COALESCE_FROM:
                self.relay.upstream_data(data, stderr=stderr)
                return
        elif stderr != self._pending_stderr:
            self.flush()
        self._pending.append(data)
        self._pending_stderr = stderr
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        try:
            self.flush()
        except Exception:
            # Called from the event loop, not from asyncssh's parser (which would close the
            # connection on an error): end the channel here rather than drop the output.
            log.exception("relay.output_failed", extra={"ctx": self.relay.server.log_context()})
            self.relay.abort("internal error while relaying output; the session was ended")

    def flush(self) -> None:
        """Relay the collected output now (before anything that must come after it)."""
        pending = self._pending
        if pending:
            self._pending = []
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            self.relay.upstream_data(data, stderr=self._pending_stderr)

    def eof_received(self) -> bool:
        self.flush()
        self.relay.upstream_eof()
        return True

    def exit_status_received(self, status: int) -> None:
        self.relay.exit_status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self.relay.exit_signal = (signal, core_dumped, msg, lang)

    def pause_writing(self) -> None:
        self.relay.set_upstream_writable(False)

    def resume_writing(self) -> None:
        self.relay.set_upstream_writable(True)

    def connection_lost(self, exc: Exception | None) -> None:
        self.flush()
        self.relay.upstream_closed(exc)


class ChannelRelay:
    """Order of operations and flow control for one channel; see the module docstring."""

    def __init__(
        self,
        server: AgentServer,
        agent: AgentSession,
        chan: asyncssh.SSHServerChannel[bytes],
        request: ChannelRequest,
    ) -> None:
        assert server.session is not None
        self.server = server
        self.runtime = server.runtime
        self.session: SessionInfo = server.session
        self.agent = agent
        self.chan = chan
        self.request = request
        self.upstream: asyncssh.SSHClientChannel[bytes] | None = None
        self.sink: ChannelSink | None = None
        pty = request.has_pty
        self.out_filter: OutputFilter = self.runtime.output_filter_factory(pty=pty)
        self.err_filter: OutputFilter = self.runtime.output_filter_factory(pty=pty)
        self.exit_status: int | None = None
        self.exit_signal: tuple[str, bool, str, str] | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self._ready = False
        self._upstream_writable = True
        self._agent_writable = True
        self._agent_eof_pending = False
        self._early_input: list[bytes] = []
        self._early_size: tuple[int, int, int, int] | None = None
        self._finished = False
        self._idle_timer: asyncio.TimerHandle | None = None
        self._idle_due = 0.0  # loop time at which held output is released
        self._hold_timeout = max(self.out_filter.hold_timeout, self.err_filter.hold_timeout)
        self._setup: asyncio.Task[None] | None = None
        self.controller: ShellController | None = None  # owns the line of a gated PTY shell
        self.pending_approval: str | None = None  # request id while the command waits
        self._hold_request: str | None = None  # the request of the hold under way, for its row
        # Why a hold cancelled from here is abandoned (a shell line's Ctrl-C sets its own).
        self.abandon_reason = "the agent went away"
        self.last_activity = time.monotonic()
        self._idle_check: asyncio.TimerHandle | None = None
        self._hold_marker = ""

    # -- set-up -------------------------------------------------------------------------------
    def begin(self) -> None:
        self.chan.pause_reading()  # hold agent input until the gate has decided
        self._setup = spawn(self._start(), name=f"relay-{self.session.session_id}")

    async def _start(self) -> None:
        try:
            await self._open()
        except SinkError as exc:
            self.runtime.metrics.recorder_error()
            self.refuse(str(exc), EXIT_BASTION_ERROR)
        except UpstreamError as exc:
            self.refuse(str(exc), EXIT_BASTION_ERROR)
        except asyncssh.ChannelOpenError as exc:
            self.refuse(f"the target refused the channel: {exc.reason}", EXIT_BASTION_ERROR)
        except (OSError, asyncssh.Error) as exc:
            self.refuse(f"lost the connection to the target: {exc}", EXIT_BASTION_ERROR)
        except asyncio.CancelledError:
            raise
        except Exception:  # fail closed: never leave a channel half set up
            log.exception("relay.setup_failed", extra={"ctx": self.server.log_context()})
            self.refuse("internal error; the command was not run", EXIT_BASTION_ERROR)

    async def _open(self) -> None:
        req = self.request
        await asyncio.sleep(0)  # let forwarding refusals sent just before the request land
        while self.server.notices:
            self.chan.write_stderr(f"bastion: {self.server.notices.pop(0)}\r\n".encode())
        if req.kind == "subsystem":
            self.runtime.refused(self.server, "subsystem", req.subsystem or "")
            self.refuse(
                f"the {req.subsystem!r} subsystem is not allowed: scp and sftp would bypass"
                " command inspection",
                EXIT_SUBSYSTEM_REFUSED,
            )
            return
        limit = self.runtime.limits.max_command_length
        if req.command is not None and len(req.command.encode()) > limit:
            self.refuse(f"the command is longer than {limit} bytes; refusing", EXIT_DENIED)
            return
        verdict = await self.runtime.gate.check(self.session, req)
        try:
            await self.runtime.command_decided(self.server, self.agent.channel_no, req, verdict)
        except AuditError as exc:
            self.refuse(f"cannot write the audit log ({exc}); refusing", EXIT_BASTION_ERROR)
            return
        if verdict.action == "deny":
            self.refuse(verdict.message or "command denied by policy", EXIT_DENIED)
            return
        if verdict.action == "review" and not await self._hold(verdict):
            return
        command = verdict.command if verdict.command is not None else req.command
        set_profile = getattr(self.out_filter, "set_profile", None)  # command-aware masking
        if set_profile is not None and req.kind == "exec":
            set_profile(profile_for_command(verdict.units, command))
        self.sink = await self.runtime.sinks.open(self.session, self.agent.channel_no, req)
        rules = ",".join(verdict.rules) or "-"
        if not self._record(lambda s: s.marker(f"gate: {verdict.action} rules={rules}")):
            return
        if self._hold_marker and not self._record(lambda s: s.marker(self._hold_marker or "")):
            return
        if self._finished:  # the agent went away while the gate or an operator decided
            return
        if req.kind == "exec" and command is not None:
            # Pagers and editors off, in front of the command (bastion.interactive.execguard).
            command = guarded_command(command)
        chan = await self.server.open_upstream_session(
            lambda: UpstreamSession(self),
            command,
            term_type=req.term_type,
            term_size=req.term_size if req.term_type else None,
            term_modes=req.term_modes if req.term_type else (),
            env=cast(Any, req.env),
            encoding=None,
        )
        self.upstream = chan
        if self._finished:
            chan.close()
            return
        factory = self.runtime.shell_controller_factory
        if req.kind == "shell" and req.has_pty and factory is not None:
            self.controller = factory(self, req)
            self.controller.start()
        self._ready = True
        self._arm_idle_timeout()
        if self._early_size is not None:
            self.agent_resize(*self._early_size)
        early, self._early_input = self._early_input, []
        for data in early:
            self.agent_data(data)
        if self._agent_eof_pending:
            self.agent_eof()
        self._update_agent_reading()

    async def _hold(self, verdict: GateVerdict) -> bool:
        """Hold a reviewed exec command for an operator; True once approved (it may run now)."""
        result = await self._hold_for_approval(
            verdict,
            self.request.command or "",
            lambda line: self.chan.write_stderr(f"bastion: {line}\r\n".encode()),
        )
        if result.approved:
            self._hold_marker = result.message
            return True
        self.refuse(result.message, result.status)
        return False

    async def _hold_for_approval(
        self, verdict: GateVerdict, command: str, tell: Callable[[str], None]
    ) -> HoldResult:
        """``_wait_for_operator`` plus the ``hold_outcome`` audit row saying how the hold ended
        (approved, denied, expired, abandoned, refused or deferred)."""
        self._hold_request = None
        if not self._finished:  # a reason left by an earlier Ctrl-C does not carry over
            self.abandon_reason = "the agent went away"
        try:
            result = await self._wait_for_operator(verdict, command, tell)
        except asyncio.CancelledError:
            self._hold_row("abandoned", None, self.abandon_reason)
            raise
        if result.approved:
            self._hold_row("approved", None, result.message)
        else:
            outcome = result.outcome or _hold_outcome(result.status)
            self._hold_row(outcome, result.status, result.message)
        return result

    def _hold_row(self, outcome: str, status: int | None, reason: str) -> None:
        shell_line = self.request.kind == "shell" and self.controller is not None
        self.runtime.audit_later(
            "hold_outcome",
            self.server,
            channel=self.agent.channel_no,
            request=self._hold_request,
            outcome=outcome,
            exit_status=None if shell_line else status,
            reason=self.runtime.masked_line(reason),  # it quotes the command line
        )

    async def _wait_for_operator(
        self, verdict: GateVerdict, command: str, tell: Callable[[str], None]
    ) -> HoldResult:
        """Submit ``command`` for approval and wait (or, in defer mode, return at once).

        ``tell`` shows the agent one line naming the request id, the rule, how long it may
        wait and where operators approve. An approval binds to the exact units, identity,
        target and login; the broker refuses to reuse it for anything else.
        """
        broker = self.runtime.approvals
        rules = ", ".join(verdict.rules) or "-"
        if broker is None:
            return HoldResult(
                False,
                f"held for review ({rules}): {verdict.message}; approvals are not enabled on"
                " this bastion, so the command was not run",
                EXIT_REVIEW_REFUSED,
            )
        ident = self.session.identity
        mode = verdict.hold_mode or broker.config.mode
        if mode == "defer":
            used = await broker.consume_deferred(
                requester_key_id=ident.key_id,
                target=self.session.target,
                login=self.session.login,
                units=verdict.units,
            )
            if used is not None:
                return HoldResult(True, f"approval: {used} (deferred, used once)")
        submitting = asyncio.ensure_future(
            broker.submit(
                session_id=self.session.session_id,
                requester_key_id=ident.key_id,
                requester_serial=ident.serial,
                principals=ident.principals,
                target=self.session.target,
                login=self.session.login,
                channel_kind=self.request.kind,
                command=command,
                units=verdict.units,
                rules=verdict.rules,
                approvers=verdict.approvers,
                approvals_required=verdict.approvals_required,
                timeout=verdict.hold_timeout,
                mode=mode,
                explanation=verdict.message,
            )
        )
        try:
            # Shielded: a submit cut short could store a request without its audit row.
            request = await asyncio.shield(submitting)
        except ApprovalRefused as exc:  # limits.max_pending_approvals_per_identity
            return HoldResult(False, str(exc), EXIT_REVIEW_REFUSED)
        except asyncio.CancelledError:  # interrupted while submitting: nobody will wait for it
            with contextlib.suppress(Exception):
                held = await submitting
                self._hold_request = held.id
                if held.mode == "wait":
                    await broker.abandon(held.id, self.abandon_reason)
            raise
        self._hold_request = request.id
        where = (
            request.approve_url
            if self.runtime.serves_approval_page
            else f"the bastion host: bastion approvals approve {request.id}"
        )
        if mode == "defer":
            valid = _minutes(broker.config.defer_validity)
            return HoldResult(
                False,
                f"held for review as {request.id} ({rules}): {verdict.message}; an operator"
                f" approves at {where}; then run the same command again within {valid}",
                EXIT_DEFERRED,
            )
        wait = _minutes(request.expires_at - time.time())
        tell(
            f"held for review as {request.id} ({rules}): {verdict.message};"
            f" waiting up to {wait} for an operator at {where}"
        )
        self.pending_approval = request.id
        # The deadline is wall-clock time (shared with other processes); bound the wait by the
        # monotonic clock too, so a wall clock set back cannot stretch it.
        budget = max(request.expires_at - time.time(), 0.0) + _DEADLINE_SLACK
        expired = HoldResult(
            False, f"request {request.id} expired without a decision", EXIT_EXPIRED
        )
        try:
            outcome = await asyncio.wait_for(
                broker.wait(request.id, abandon_reason=lambda: self.abandon_reason), budget
            )
        except TimeoutError:  # wait() was cancelled, which abandons the request
            return expired
        finally:
            self.pending_approval = None
        who = ", ".join(outcome.decided_by) or "an operator"
        if outcome.state == "approved":
            return HoldResult(True, f"approval: {request.id} approved by {who}")
        if outcome.state == "expired":
            return expired
        why = f": {outcome.reason}" if outcome.reason else ""
        return HoldResult(
            False,
            f"request {request.id} was {outcome.state} by {who}{why}",
            EXIT_DENIED_BY_OPERATOR,
            outcome.state,
        )

    def refuse(self, message: str, status: int) -> None:
        """Explain on stderr in one line and end the channel; the target never saw anything."""
        if self._finished:
            return
        try:
            self.chan.write_stderr(f"bastion: {message}\r\n".encode())
            self.chan.exit(status)
        except (OSError, asyncssh.Error):
            self.chan.close()
        self._finish(status, message)

    def _arm_idle_timeout(self) -> None:
        timeout = self.runtime.limits.idle_timeout
        if timeout > 0 and not self._finished:
            loop = asyncio.get_running_loop()
            self._idle_check = loop.call_later(timeout, self._check_idle, timeout)

    def _check_idle(self, timeout: float) -> None:
        """End a channel with no bytes either way for ``timeout`` (never while on hold)."""
        idle = time.monotonic() - self.last_activity
        if idle >= timeout and self.pending_approval is None:
            self.abort(f"no activity for {int(timeout)} s; the session was closed")
            return
        loop = asyncio.get_running_loop()
        self._idle_check = loop.call_later(max(timeout - idle, 1.0), self._check_idle, timeout)

    # -- agent -> target ----------------------------------------------------------------------
    def agent_data(self, data: bytes) -> None:
        if self.upstream is None or not self._ready:
            # Input that raced the pause: keep it for after the gate (bounded by the window).
            self._early_input.append(data)
            return
        self.bytes_in += len(data)
        self.last_activity = time.monotonic()
        if self.controller is not None:
            self.controller.agent_input(data)
            return
        if not self._record(lambda s: s.input(data)):
            return
        # Typed after the target's side closed (the command just ended): sshd drops such
        # input too. Raised here it would end the agent's channel without its exit status.
        with contextlib.suppress(OSError, asyncssh.Error):
            self.upstream.write(data)

    def agent_eof(self) -> None:
        if self.controller is not None:
            # On a terminal, end of input is Ctrl-D, typed after everything before it; the
            # controller delivers it in order (a raw EOF would overtake lines still being gated).
            self.controller.agent_input(b"\x04")
            return
        if self.upstream is not None and self._ready:
            with contextlib.suppress(OSError, asyncssh.Error):  # the target's side closed
                self.upstream.write_eof()
        else:
            self._agent_eof_pending = True

    # Requests racing the end of the target's side are dropped, as sshd drops them (raised
    # inside an asyncssh callback they would end the agent's channel without its status).
    def agent_signal(self, signal: str) -> None:
        if self.upstream is not None:
            with contextlib.suppress(OSError, asyncssh.Error):
                self.upstream.send_signal(signal)

    def agent_break(self, msec: int) -> None:
        if self.upstream is not None:
            with contextlib.suppress(OSError, asyncssh.Error):
                self.upstream.send_break(msec)

    def agent_resize(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        if self.upstream is None or not self._ready:
            self._early_size = (width, height, pixwidth, pixheight)  # applied once ready
            return
        if self._record(lambda s: s.resize(width, height)):
            with contextlib.suppress(OSError, asyncssh.Error):
                self.upstream.change_terminal_size(width, height, pixwidth, pixheight)
            if self.controller is not None:
                self.controller.resize(width, height)

    def set_agent_writable(self, writable: bool) -> None:
        self._agent_writable = writable
        if self.upstream is None:
            return
        if writable:
            # resume_reading() delivers buffered output at once, which may fill the agent's
            # buffer again: arm the idle release only if the agent is still writable after it.
            self.upstream.resume_reading()
            if self._agent_writable and (self.out_filter.pending or self.err_filter.pending):
                self._arm_idle_release()
        else:
            self.upstream.pause_reading()
            # A gap caused by a slow agent is not idle output: releasing a held tail early
            # (which masks any cut-off token, fail closed) would only alter bulk data.
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None

    def set_upstream_writable(self, writable: bool) -> None:
        self._upstream_writable = writable
        self._update_agent_reading()

    def _update_agent_reading(self) -> None:
        if self._finished:
            return
        if self._ready and self._upstream_writable:
            self.chan.resume_reading()
        else:
            self.chan.pause_reading()

    # -- target -> agent ----------------------------------------------------------------------
    def upstream_data(self, data: bytes, *, stderr: bool) -> None:
        if self.controller is not None and not stderr:
            self.controller.target_output(data)  # strips shell markers, then output_to_agent
            return
        self.output_to_agent(data, stderr=stderr)

    def output_to_agent(self, data: bytes, *, stderr: bool = False) -> None:
        """Target output on its way to the agent: mask, record, send."""
        filt = self.err_filter if stderr else self.out_filter
        self._emit(filt.feed(data), stderr)
        if filt.pending and self._agent_writable:
            self._arm_idle_release(len(data) >= STREAMING_CHUNK)

    def _emit(self, data: bytes, stderr: bool) -> None:
        if not data or self._finished:
            return
        self.bytes_out += len(data)
        self.last_activity = time.monotonic()
        if not self._record(lambda s: s.output(data, stderr)):
            return
        if stderr:
            self.chan.write_stderr(data)
        else:
            self.chan.write(data)

    def _arm_idle_release(self, streaming: bool = False) -> None:
        """Extend the quiet period after which held output is released (never shorten it: a
        small chunk right after a streaming one is still part of the stream). Called per
        chunk, so it only moves a deadline; the timer re-arms itself when it fires early."""
        delay = max(self._hold_timeout, STREAMING_HOLD) if streaming else self._hold_timeout
        loop = asyncio.get_running_loop()
        self._idle_due = max(self._idle_due, loop.time() + delay)
        if self._idle_timer is None:
            self._idle_timer = loop.call_at(self._idle_due, self._release_idle)

    def _release_idle(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() < self._idle_due:  # output arrived since the timer was armed
            self._idle_timer = loop.call_at(self._idle_due, self._release_idle)
            return
        self._idle_timer = None
        self._emit(self.out_filter.release_idle(), False)
        self._emit(self.err_filter.release_idle(), True)

    def _flush_filters(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._emit(self.out_filter.flush(), False)
        self._emit(self.err_filter.flush(), True)

    def masking_counts(self) -> dict[str, int]:
        """Hits per masking rule on this channel's output (rule ids only, never the secret)."""
        totals: dict[str, int] = {}
        for filt in (self.out_filter, self.err_filter):
            for rule, n in getattr(filt, "counts", {}).items():
                totals[rule] = totals.get(rule, 0) + n
        return totals

    def upstream_eof(self) -> None:
        self._flush_filters()
        if not self._finished:
            self.chan.write_eof()

    def upstream_closed(self, exc: Exception | None) -> None:
        self._flush_filters()
        if self._finished:
            return
        if self.exit_signal is not None:
            signal, core, msg, lang = self.exit_signal
            self.chan.exit_with_signal(signal, core, msg, lang)
            self._finish(None, f"signal {signal}")
        elif self.exit_status is not None:
            self.chan.exit(self.exit_status)
            self._finish(self.exit_status, "exited")
        else:
            reason = "the connection to the target was lost"
            self.chan.write_stderr(f"bastion: {reason}\r\n".encode())
            self.chan.exit(EXIT_BASTION_ERROR)
            self._finish(EXIT_BASTION_ERROR, reason)

    # -- sinks and the end --------------------------------------------------------------------
    def _record(self, action: object) -> bool:
        """Feed the required sink; on failure end the channel (never relay unrecorded)."""
        if self.sink is None:
            return True
        try:
            action(self.sink)  # type: ignore[operator]
        except SinkError as exc:
            self.runtime.metrics.recorder_error()
            self.abort(str(exc))
            return False
        return True

    def abort(self, message: str) -> None:
        """End the channel from the bastion's side (sink failure, shutdown)."""
        if self._finished:
            return
        if self.upstream is not None:
            self.upstream.close()
        self.refuse(message, EXIT_BASTION_ERROR)

    # -- ShellHost: what a shell controller may do ----------------------------------------------
    def send_to_target(self, data: bytes) -> None:
        if self.upstream is None or self._finished:
            return
        try:
            self.upstream.write(data)
        except (BrokenPipeError, asyncssh.Error):
            self.abort("the connection to the target was lost")

    def record_input(self, data: bytes) -> None:
        self._record(lambda s: s.input(data))

    def marker(self, text: str) -> None:
        self._record(lambda s: s.marker(text))

    async def decide(self, line: str) -> GateVerdict:
        request = ChannelRequest(
            kind="shell", command=line, term_type=self.request.term_type, env=self.request.env
        )
        verdict = await self.runtime.gate.check(self.session, request)
        # Shielded: a Ctrl-C must not cut the command's audit row short.
        await asyncio.shield(
            self.runtime.command_decided(self.server, self.agent.channel_no, request, verdict)
        )
        if verdict.action != "review" or verdict.hold_mode == "refuse":
            return verdict  # the controller shows the refusal and restores the prompt
        # A held shell line waits like an exec command; the terminal shows the request line.
        result = await self._hold_for_approval(
            verdict, line, lambda text: self.output_to_agent(f"\r\nbastion: {text}\r\n".encode())
        )
        if result.approved:
            self.marker(result.message)
            return replace(verdict, action="allow")
        return replace(verdict, action="deny", message=result.message)

    def interrupt_decision(self, reason: str) -> None:
        """The controller is about to cancel ``decide``: a hold it waits on is abandoned with
        ``reason`` (the cancellation reaches ``broker.wait``, which abandons the request)."""
        self.abandon_reason = reason

    def end(self, message: str) -> None:
        self.abort(message)

    def audit(self, kind: str, **fields: object) -> None:
        self.runtime.audit_later(kind, self.server, channel=self.agent.channel_no, **fields)

    def agent_closed(self) -> None:
        self.abandon_reason = "the agent closed the channel"
        if self.upstream is not None:
            self.upstream.close()
        if self._setup is not None and not self._setup.done():
            self._setup.cancel()
        self._finish(self.exit_status, "agent closed the channel")

    def _finish(self, status: int | None, reason: str) -> None:
        if self._finished:
            return
        self._finished = True
        if self._idle_check is not None:
            self._idle_check.cancel()
        if self.controller is not None:
            self.controller.close()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self.runtime.channel_finished(self, status, reason)
        if self.sink is not None:
            sink, self.sink = self.sink, None
            spawn(sink.close(status, reason), name="sink-close")
