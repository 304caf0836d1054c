"""Build the bastion from its config, serve, and stop gracefully.

``Runtime`` holds what every connection shares (config, gate, output filter, sinks, upstream
connector) and receives the connection/channel events that become logs and audit rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import asyncssh
from aiohttp import web

from bastion.approval import ApprovalBroker, parse_approvals_config
from bastion.approval.web import add_routes as add_approval_routes
from bastion.audit import AuditError, AuditStore
from bastion.config import Config, load_config
from bastion.errors import BastionError
from bastion.hooks import (
    ChannelSink,
    ChannelSinkFactory,
    CommandGate,
    GateVerdict,
    OutputFilter,
    OutputFilterFactory,
    ShellControllerFactory,
    filter_text,
    pass_through_factory,
)
from bastion.http import HttpServer, http_settings, http_wanted
from bastion.identity.config import parse_identity_config
from bastion.identity.http import add_routes as add_certificate_routes
from bastion.identity.issuer import CertificateIssuer, granted_targets, host_key_lines
from bastion.identity.revocation import RevocationList
from bastion.identity.store import StoreError
from bastion.interactive import controller_factory
from bastion.logs import ctx
from bastion.masking import MaskingConfig, load_masking_config
from bastion.model import ChannelRequest, SessionInfo
from bastion.notify import NotifierHub, build_notifiers
from bastion.notify import add_routes as add_notify_routes
from bastion.ops.health import add_routes as add_health_routes
from bastion.ops.health import standard_readiness
from bastion.ops.limits import ConnectionLimiter, Limits, LoginLockout, parse_limits
from bastion.ops.metrics import Metrics
from bastion.ops.sdnotify import Notifier, watchdog_loop
from bastion.recording import RecordingStore, parse_recording_config
from bastion.sinks import RecordingSinkFactory
from bastion.ssh.certcheck import TrustedCA
from bastion.ssh.listen import Listener, start_listener
from bastion.ssh.server import AgentServer
from bastion.ssh.upstream import UpstreamConnector
from bastion.tasks import drain_tasks, spawn
from bastion.workers.ipc import Link, LinkClosed

if TYPE_CHECKING:
    from bastion.relay import ChannelRelay

log = logging.getLogger("bastion")

SHUTDOWN_GRACE = 5.0

Role = Literal["single", "supervisor", "worker"]


class NullSink:
    """A sink that records nothing (only for the bare relay in tests and benchmarks)."""

    def input(self, data: bytes) -> None:
        pass

    def output(self, data: bytes, stderr: bool) -> None:
        pass

    def resize(self, width: int, height: int) -> None:
        pass

    def marker(self, text: str) -> None:
        pass

    async def close(self, exit_status: int | None, reason: str) -> None:
        pass


class NullSinkFactory:
    async def open(
        self, session: SessionInfo, channel_no: int, request: ChannelRequest
    ) -> ChannelSink:
        return NullSink()


@dataclass
class Runtime:
    config: Config
    gate: CommandGate
    sinks: ChannelSinkFactory = field(default_factory=NullSinkFactory)
    output_filter_factory: OutputFilterFactory = pass_through_factory
    connector: UpstreamConnector = field(default_factory=UpstreamConnector)
    is_revoked: Callable[[int, str], bool] | None = None
    servers: set[AgentServer] = field(default_factory=set)
    drained: asyncio.Event | None = None  # set once every connection has closed (shutdown)
    audit: AuditStore | None = None
    recordings: RecordingStore | None = None
    audit_path: Path | None = None
    shell_controller_factory: ShellControllerFactory | None = None  # line-gated PTY shells
    input_masking: MaskingConfig | None = None  # masks agent input before it is recorded
    revocations: RevocationList | None = None
    http: HttpServer | None = None
    issuer: CertificateIssuer | None = None
    approvals: ApprovalBroker | None = None
    notify: NotifierHub | None = None
    limits: Limits = field(default_factory=Limits)
    metrics: Metrics = field(default_factory=Metrics)
    notifier: Notifier = field(default_factory=Notifier)
    listening: bool = False
    # "single": one process does everything; "supervisor": HTTP, notifiers and the shared limits
    # for its workers (bastion/workers); "worker": SSH sessions, asking the supervisor via ``link``.
    role: Role = "single"
    link: Link | None = None
    # A worker's approval page lives on the supervisor's HTTP server: its public URL (the port
    # actually bound), passed by the supervisor; None when the supervisor serves no page.
    page_url: str | None = None

    @property
    def serves_approval_page(self) -> bool:
        """Whether held commands can name a page (this process's or the supervisor's)."""
        if self.role == "worker":
            return self.page_url is not None and self.approvals is not None
        return self.http is not None and self.approvals is not None

    def __post_init__(self) -> None:
        self.metrics.set_targets(self.config.targets)
        self.connections = ConnectionLimiter.from_limits(self.limits)
        self.auth_limiter = LoginLockout.from_limits(self.limits)

    async def start(self) -> None:
        """Open the required sinks; the bastion does not listen without them."""
        if self.audit_path is not None and self.audit is None:
            try:
                self.audit = await AuditStore.open(self.audit_path)
            except AuditError as exc:
                raise BastionError(f"cannot open the audit database: {exc}") from None
        if self.recordings is not None:
            if self.audit is None:
                raise BastionError("recordings need the audit database")
            try:
                self.recordings.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise BastionError(
                    f"cannot create the recordings folder {self.recordings.root}: {exc.strerror}"
                ) from None
            if self.role != "supervisor":  # a supervisor relays no channel
                await self.recordings.start()
                self.sinks = RecordingSinkFactory(self.recordings, self.audit, self.input_masking)
        if self.audit_path is not None:  # the full bastion, not a bare relay under test
            assert self.audit is not None
            approvals_config = replace(
                parse_approvals_config(self.config.raw, self.config.base_dir),
                max_pending_per_identity=self.limits.max_pending_approvals_per_identity,
            )
            self.approvals = await ApprovalBroker.open(self.audit.db, self.audit, approvals_config)
            # Held commands are stored masked by the same masker as audit rows.
            self.approvals.mask = lambda text: filter_text(
                self.output_filter_factory(pty=False), text
            )
            if self.role == "worker":
                # The supervisor notifies operators and abandons what a dead worker held.
                link = self.link
                if link is not None:
                    self.approvals.add_listener(
                        lambda event, req: link.event("approval", event, req.id)
                    )
                if self.page_url is not None:  # links name the supervisor's bound port
                    self.approvals.config = replace(self.approvals.config, public_url=self.page_url)
            else:
                await self.approvals.abandon_orphans()  # their sessions died with the last process
                self.notify = build_notifiers(self.config)
                await self.notify.start(self.approvals)
            await self._start_identity_and_http()

    async def _start_identity_and_http(self) -> None:
        config = self.config
        try:
            self.revocations = RevocationList.open(config.state_dir / "identity.db")
        except StoreError as exc:
            raise BastionError(f"cannot open the revocation list: {exc}") from None
        self.is_revoked = self.revocations.is_revoked
        if self.role == "worker" or not http_wanted(config):
            return
        app = web.Application()
        if "oidc" in config.raw:
            assert self.audit is not None
            identity = parse_identity_config(
                config.raw.get("ca", {}), config.raw["oidc"], config.base_dir
            )
            self.issuer = await CertificateIssuer.create(
                identity, config.state_dir, self.audit, targets=granted_targets(config),
                host_keys=host_key_lines(
                    config.server.host_key.with_name(config.server.host_key.name + ".pub")
                ),
            )
            add_certificate_routes(app, self.issuer)
        if self.approvals is not None:
            add_approval_routes(app, self.approvals, metrics=self.metrics)
        if self.notify:
            add_notify_routes(app, self.notify)
        recordings_dir = self.recordings.root if self.recordings else config.state_dir
        add_health_routes(
            app,
            self.metrics,
            standard_readiness(
                lambda: self.listening, config.state_dir / "bastion.db", recordings_dir
            ),
        )
        settings = http_settings(config)
        self.http = HttpServer(app, settings)
        await self.http.start()
        if self.approvals is not None and not settings.public_url_configured:
            # Links must name the port actually bound (``listen = "...:0"``).
            host, port = self.http.address
            scheme = "https" if settings.tls_cert else "http"
            self.approvals.config = replace(
                self.approvals.config, public_url=f"{scheme}://{host}:{port}"
            )
        log.info(
            "http.listening", extra=ctx(address=f"{self.http.address[0]}:{self.http.address[1]}")
        )

    async def reload(self) -> bool:
        """Re-read the config file (SIGHUP). A broken file is refused and the old config stays."""
        path = self.config.path
        self.notifier.reloading()
        try:
            parts = await asyncio.to_thread(build_reloadable, load_config(path))
        except BastionError as exc:
            log.error("config.reload_failed", extra=ctx(path=str(path), reason=str(exc)))
            if self.role != "worker":  # the supervisor writes the one row for the whole bastion
                self.audit_later("config_reload", None, ok=False, reason=str(exc))
            self.notifier.ready(f"reload refused: {exc}")
            return False
        stale = [k for k in _RESTART_ONLY if parts.config.raw.get(k) != self.config.raw.get(k)]
        self.config = parts.config
        self.gate = parts.gate
        self.output_filter_factory = parts.output_filter_factory
        self.input_masking = parts.input_masking
        self.shell_controller_factory = parts.shell_controller_factory
        if isinstance(self.sinks, RecordingSinkFactory):
            self.sinks.input_masking = parts.input_masking
        log.info(
            "config.reloaded",
            extra=ctx(path=str(path), needs_restart=",".join(stale) or "-"),
        )
        self.metrics.set_targets(parts.config.targets)
        if self.role != "worker":
            self.audit_later("config_reload", None, ok=True, needs_restart=stale)
        self.notifier.ready("configuration reloaded")
        return True

    async def stop(self) -> None:
        if self.notify is not None:
            await self.notify.stop()
        if self.http is not None:
            await self.http.stop()
        if self.issuer is not None:
            await self.issuer.close()
        if self.revocations is not None:
            self.revocations.close()
        if self.recordings is not None:
            await self.recordings.stop()
        if self.audit is not None:
            await self.audit.close()

    # -- audit rows ---------------------------------------------------------------------------
    async def audit_row(self, kind: str, server: AgentServer | None, **fields: object) -> None:
        """Write one audit row; raises AuditError (callers fail closed)."""
        if self.audit is None:
            return
        session = server.session if server is not None else None
        await self.audit.record(
            kind,
            session_id=server.session_id if server is not None else None,
            identity=session.identity.key_id if session else None,
            target=session.target if session else None,
            login=session.login if session else None,
            **fields,
        )

    def audit_later(self, kind: str, server: AgentServer | None, **fields: object) -> None:
        """Audit from a synchronous callback; if the row cannot be written, end the connection."""
        if self.audit is None:
            return

        async def write() -> None:
            try:
                await self.audit_row(kind, server, **fields)
            except AuditError as exc:
                log.error("audit.failed", extra=ctx(kind=kind, error=str(exc)))
                if server is not None and server.conn is not None:
                    server.conn.close()

        spawn(write(), name=f"audit-{kind}")

    @property
    def trusted_cas(self) -> list[TrustedCA]:
        return [TrustedCA.from_key(k) for k in self.config.auth.trusted_user_ca_keys]

    # -- events from connections and channels (logs now; audit rows once the store exists) --
    def connection_opened(self, server: AgentServer) -> None:
        if not self.connections.open_connection():
            log.warning("connection.refused", extra=ctx(**server.log_context(), reason="max"))
            if server.conn is not None:
                server.conn.close()
            return
        server.counted = True
        self.servers.add(server)
        log.info("connection.open", extra=ctx(**server.log_context()))

    def connection_closed(self, server: AgentServer, exc: Exception | None) -> None:
        if not server.counted:
            return
        server.counted = False
        self.connections.close_connection()
        self.servers.discard(server)
        server.close_upstream()
        if server.session is None and server.refusals and not server.cap_refused:
            # One failed login per connection that never authenticated: an agent whose client
            # offers a plain key before its certificate is not punished for it, and one refused
            # only for max_sessions_per_identity (a good certificate) is not a failed login.
            self.login_failed(server.peer_ip, server.auth_key_id)
        if server.session is None and server.auth_refusals:
            self._login_refused(server)
        if server.session is not None:
            self.release_session(server.session.identity.key_id)
            self.metrics.session_closed(server.session.target)
        if server.session is not None:
            self.audit_later(
                "session_end",
                server,
                bytes_in=server.bytes_in,
                bytes_out=server.bytes_out,
                channels=server.next_channel_no,
                exit_status=server.last_exit_status,
            )
        if not self.servers and self.drained is not None:
            self.drained.set()
        log.info("connection.close", extra=ctx(**server.log_context()))

    # Sessions per identity and failed logins per address are counted for the whole bastion: a
    # worker asks its supervisor, which holds the one count (and the refusal, if it cannot ask).
    async def admit_session(self, server: AgentServer, key_id: str) -> bool:
        """Per-identity session cap, checked when a signed login would succeed."""
        if self.link is None:
            return self.connections.open_session(key_id)
        return await self._ask("admit_session", key_id)

    def release_session(self, key_id: str) -> None:
        if self.link is None:
            self.connections.close_session(key_id)
        else:
            self.link.event("release_session", key_id)

    async def auth_allowed(self, server: AgentServer, identity: str | None = None) -> bool:
        """False while this source address (or, with ``identity``, this certificate identity
        from it) is locked out after too many failed logins."""
        if self.link is None:
            return self.auth_limiter.allow(server.peer_ip, identity, time.monotonic())
        if identity is None:
            return await self._ask("auth_allowed", server.peer_ip)
        return await self._ask("auth_allowed", server.peer_ip, identity)

    def login_failed(self, source: str, identity: str | None = None) -> None:
        if self.link is None:
            self.auth_limiter.failed(source, identity, time.monotonic())
        else:
            self.link.event("auth_failed", source, identity or "")

    async def _ask(self, op: str, *args: object) -> bool:
        assert self.link is not None
        try:
            return bool(await self.link.call(op, *args))
        except LinkClosed as exc:
            log.error("workers.supervisor_unreachable", extra=ctx(op=op, error=str(exc)))
            return False  # fail closed: no login the supervisor did not count

    def auth_succeeded(self, server: AgentServer) -> None:
        assert server.session is not None
        ident = server.session.identity
        self.metrics.session_opened(server.session.target)
        log.info(
            "auth.ok", extra=ctx(**server.log_context(), principals=",".join(ident.principals))
        )
        self.audit_later(
            "session_start",
            server,
            serial=ident.serial,
            principals=list(ident.principals),
            ca=ident.ca_fingerprint,
            valid_before=ident.valid_before,
            source=server.peer_ip,
        )

    def auth_failed(self, server: AgentServer, reason: str) -> None:
        """One key refused (logged; counted once per connection, at its first refusal); the
        connection's audit row is written when it closes."""
        log.warning("auth.refused", extra=ctx(**server.log_context(), reason=reason))
        if server.refusals == 1:
            self.metrics.auth_failed(reason)

    def _login_refused(self, server: AgentServer) -> None:
        """One ``auth_failure`` row per connection that never logged in: a client offering its
        certificate and then the plain key behind it made one refused login, not two. ``reason``
        is the certificate's refusal when one was offered (the plain key's is only a fallback)."""
        refused = server.auth_refusals
        main = next((r for r in refused if r.get("key") == "certificate"), refused[0])
        reason = str(main["reason"])
        login, target = server.requested if server.requested else (None, None)
        self.audit_later(
            "auth_failure",
            None,
            reason=reason,
            key_id=main.get("key_id"),
            serial=main.get("serial"),
            source=server.peer_ip,
            requested_target=target,
            requested_login=login,
            connection=server.session_id,
            refused=refused,
        )

    def refused(self, server: AgentServer, what: str, detail: str) -> None:
        log.warning("refused", extra=ctx(**server.log_context(), what=what, detail=detail))
        self.audit_later("refusal", server, what=what, detail=detail)

    def masked_line(self, line: str | None) -> str | None:
        """A command line as the audit log keeps it: an agent can type a token into a command,
        so it passes the same masker as target output (the gate saw the line unmasked)."""
        if line is None:
            return None
        return filter_text(self.output_filter_factory(pty=False), line)

    async def command_decided(
        self, server: AgentServer, channel_no: int, request: ChannelRequest, verdict: GateVerdict
    ) -> None:
        """Log and durably audit a decision before anything reaches the target."""
        self.metrics.decision(verdict.action, verdict.rules[0] if verdict.rules else None)
        await self.audit_row(
            "command",
            server,
            channel=channel_no,
            channel_kind=request.kind,
            command=self.masked_line(request.command),
            decision=verdict.action,
            rules=list(verdict.rules),
            # A deny ends here with its status; a review's outcome is not known yet (its
            # hold_outcome row, then command_exit if it ran, say how it ended).
            exit_status=verdict.exit_status if verdict.action == "deny" else None,
        )
        log.info(
            "command.decided",
            extra=ctx(
                **server.log_context(),
                kind=request.kind,
                decision=verdict.action,
                rules=",".join(verdict.rules),
            ),
        )

    def channel_finished(self, relay: ChannelRelay, status: int | None, reason: str) -> None:
        server = relay.server
        server.bytes_in += relay.bytes_in
        server.bytes_out += relay.bytes_out
        self.metrics.bytes_relayed("in", relay.bytes_in)
        self.metrics.bytes_relayed("out", relay.bytes_out)
        for rule, hits in relay.masking_counts().items():
            self.metrics.masked(rule, hits)
        server.last_exit_status = status
        if relay.upstream is not None:  # the command ran: record how it ended
            self.audit_later(
                "command_exit",
                server,
                channel=relay.agent.channel_no,
                exit_status=status,
                reason=reason,
                bytes_in=relay.bytes_in,
                bytes_out=relay.bytes_out,
                masked=relay.masking_counts(),
            )
        log.info(
            "channel.end",
            extra=ctx(
                **relay.server.log_context(),
                channel=relay.agent.channel_no,
                exit_status=status,
                reason=reason,
                bytes_in=relay.bytes_in,
                bytes_out=relay.bytes_out,
            ),
        )


def ensure_host_key(path: Path) -> asyncssh.SSHKey:
    """Load the bastion's host key, creating an Ed25519 key (0600) on first start."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = asyncssh.generate_private_key("ssh-ed25519")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.export_private_key())
        path.with_name(path.name + ".pub").write_bytes(key.export_public_key())
        log.info("host_key.created", extra=ctx(path=str(path)))
    try:
        return asyncssh.read_private_key(str(path))
    except (OSError, asyncssh.KeyImportError) as exc:
        raise BastionError(f"cannot read host key {path}: {exc}") from None


@dataclass(frozen=True)
class Reloadable:
    """What a SIGHUP may replace: it applies to new commands; running sessions continue."""

    config: Config
    gate: CommandGate
    output_filter_factory: OutputFilterFactory
    input_masking: MaskingConfig | None
    shell_controller_factory: ShellControllerFactory | None


def build_reloadable(config: Config) -> Reloadable:
    """Everything that depends on the config file alone; raises BastionError if any part is bad."""
    from bastion.gate import build_gate

    masking = load_masking_config(config.raw.get("masking", {}), config.base_dir)

    def output_filter(*, pty: bool) -> OutputFilter:
        return masking.new_masker(pty)

    # Built together with the gate: the gate lets PTY shells through only for a config whose
    # line-owning controller exists, so both must come from the same (re)load.
    shells = controller_factory(config)
    return Reloadable(
        config=config,
        gate=build_gate(config),
        output_filter_factory=output_filter,
        input_masking=masking if masking.mask_input else None,
        shell_controller_factory=shells,
    )


# Settings bound at start (sockets, keys, files); a reload that changes them says so in the log.
_RESTART_ONLY = ("server", "http", "recording", "ca", "notify")


def build_runtime(config: Config, role: Role = "single") -> Runtime:
    """Wire the components the config asks for. Gate, recording and audit are mandatory."""
    parts = build_reloadable(config)
    rec_section = config.raw.get("recording", {})
    rec_config = parse_recording_config(rec_section, config.base_dir, config.state_dir)
    return Runtime(
        role=role,
        config=config,
        gate=parts.gate,
        output_filter_factory=parts.output_filter_factory,
        recordings=RecordingStore.from_config(rec_config),
        audit_path=config.state_dir / "bastion.db",
        input_masking=parts.input_masking,
        limits=parse_limits(config.raw.get("limits", {}), f"{config.path}: limits"),
        shell_controller_factory=parts.shell_controller_factory,
        # Worker processes share each target's handshake bound (max_handshakes) equally.
        connector=UpstreamConnector(shares=config.server.workers if role == "worker" else 1),
    )


async def serve(
    runtime: Runtime,
    *,
    ready: Callable[[tuple[str, int]], None] | None = None,
    stop: asyncio.Event | None = None,
    reuse_port: bool = False,
) -> None:
    """Listen until SIGTERM/SIGINT (or ``stop``), then close sessions with a notice."""
    config = runtime.config
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    host_key = ensure_host_key(config.server.host_key)
    try:  # a failed start (e.g. the HTTP port taken) stops what did start, or nothing exits
        await runtime.start()
        listener = await start_listener(runtime, host_key, reuse_port=reuse_port)
    except BaseException:
        await runtime.stop()
        raise
    stop = stop or asyncio.Event()
    with handle_signals(stop, lambda: spawn(runtime.reload(), name="reload")):
        address = listener.address
        runtime.listening = True
        log.info("listening", extra=ctx(address=f"{address[0]}:{address[1]}"))
        runtime.notifier.ready(f"listening on {address[0]}:{address[1]}")
        watchdog = spawn(watchdog_loop(runtime.notifier), name="watchdog")
        if ready is not None:
            ready(address)
        try:
            await stop.wait()
        finally:
            await _shut_down(runtime, listener, watchdog)


async def _shut_down(runtime: Runtime, listener: Listener, watchdog: asyncio.Task[None]) -> None:
    log.info("shutdown.begin", extra=ctx(sessions=len(runtime.servers)))
    runtime.notifier.stopping()
    runtime.listening = False
    watchdog.cancel()
    listener.close()
    await shutdown_sessions(runtime)
    await asyncio.sleep(0)  # let channel-close tasks (sealing, audit) start
    await drain_tasks(SHUTDOWN_GRACE)
    await runtime.stop()
    log.info("shutdown.done")


@contextlib.contextmanager
def handle_signals(stop: asyncio.Event, reload: Callable[[], object]) -> Iterator[None]:
    """SIGTERM/SIGINT set ``stop``, SIGHUP calls ``reload``, while the block runs."""
    loop = asyncio.get_running_loop()
    installed = []
    handlers: dict[signal.Signals, Callable[[], object]] = {
        signal.SIGTERM: stop.set,
        signal.SIGINT: stop.set,
        signal.SIGHUP: reload,
    }
    for sig, handler in handlers.items():
        try:
            loop.add_signal_handler(sig, handler)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread (tests) or no signals on this platform
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def shutdown_sessions(runtime: Runtime) -> None:
    """Tell every open channel, let those notices reach the agents, then close connections."""
    closing = []
    for server in list(runtime.servers):
        for agent in list(server.channels):
            if agent.relay is not None and agent.chan is not None:
                agent.relay.abort("the bastion is shutting down; this session was closed")
                closing.append(spawn(agent.chan.wait_closed(), name="channel-close"))
    if closing:
        await asyncio.wait(closing, timeout=2.0)
    for server in list(runtime.servers):
        if server.conn is not None:
            server.conn.close()
    if runtime.servers:
        runtime.drained = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(runtime.drained.wait(), SHUTDOWN_GRACE)
