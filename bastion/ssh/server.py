"""The agent-facing SSH server: certificate-only authentication, deny by default.

asyncssh hands ``validate_ca_key`` only the CA key and checks certificate principals against the
SSH user name. Here the user name names a *target*, so ``BastionConnection`` routes certificate
authentication to ``AgentServer.validate_certificate``, which sees the whole certificate and
records who the agent is. Everything not explicitly supported (passwords, keyboard-interactive,
plain keys, port/agent/X11 forwarding, subsystems) is refused with a log line.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import asyncssh
from asyncssh.packet import String
from asyncssh.public_key import decode_ssh_certificate

from bastion.approval.render import escape_visible
from bastion.model import Identity, SessionInfo
from bastion.ssh import wire
from bastion.ssh.certcheck import (
    SECURE_SIGNATURE_ALGORITHMS,
    CertificateRefused,
    check_certificate,
    check_sk_flags,
    decode_certificate,
    refused_algorithm,
    userauth_signature_algorithm,
)
from bastion.ssh.upstream import UpstreamError
from bastion.tasks import spawn

if TYPE_CHECKING:
    from bastion.app import Runtime
    from bastion.relay import AgentSession

log = logging.getLogger("bastion.ssh")

_CERT_SUFFIX = b"-cert-v01@openssh.com"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_LOGIN = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")


def parse_username(username: str) -> tuple[str | None, str] | None:
    """Split the SSH user name ``TARGET`` or ``LOGIN@TARGET``; None when malformed."""
    login, sep, target = username.rpartition("@")
    if not _NAME.match(target):
        return None
    if sep and not _LOGIN.match(login):
        return None
    return (login if sep else None), target


class BastionConnection(asyncssh.SSHServerConnection):
    """asyncssh's server connection with the certificate callback asyncssh lacks.

    This is the only place that touches asyncssh internals (the owner and the session id used
    to verify the userauth signature); both are covered by the end-to-end tests.
    """

    async def validate_public_key(
        self, username: str, key_data: bytes, msg: bytes, signature: bytes
    ) -> bool:
        owner = cast("AgentServer", self._owner)
        owner._offer = {}
        if not await owner.runtime.auth_allowed(owner):
            owner.refuse_auth("too many failed logins from this address; try later")
            return False
        identity = owner.check_userauth_key(username, key_data)
        if identity is None:
            return False
        if not await owner.runtime.auth_allowed(owner, identity.key_id):
            owner.refuse_auth(
                "too many failed logins for this identity from this address; try later"
            )
            return False
        if not msg:  # the client only asks whether this key would be accepted
            return True
        alg = userauth_signature_algorithm(signature)
        if alg is None or alg not in owner.signature_algorithms:
            owner.refuse_auth(refused_algorithm("the client signed", alg or "an unreadable"
                                                " algorithm"))
            return False
        try:
            cert = decode_ssh_certificate(key_data)
            ok = bool(cert.key.verify(String(self._session_id) + msg, signature))
        except (asyncssh.KeyImportError, ValueError):
            ok = False
        if not ok:
            owner.refuse_auth("signature does not match the certificate key")
            return False
        sk_refusal = check_sk_flags(identity, cert.key.algorithm, signature)
        if sk_refusal is not None:
            owner.refuse_auth(sk_refusal)
            return False
        return await owner.authenticated(identity)

    # asyncssh routes agent and X11 forwarding requests through these two connection methods.
    async def create_agent_listener(self) -> bool:
        owner = cast("AgentServer", self._owner)
        owner.forwarding_refused("agent forwarding", owner.forwarding_refusal("agent"))
        return False

    async def attach_x11_listener(
        self, chan: object, auth_proto: bytes, auth_data: bytes, screen: int
    ) -> str | None:
        owner = cast("AgentServer", self._owner)
        owner.forwarding_refused("X11 forwarding", owner.forwarding_refusal("X11"))
        return None


# What each kind of forwarding needs: the certificate extension (as in OpenSSH) and the
# bastion's own switch. Both must allow it; the bastion's switches are all off today.
FORWARDING_EXTENSIONS = {
    "port": "permit-port-forwarding",
    "agent": "permit-agent-forwarding",
    "X11": "permit-X11-forwarding",
}
BASTION_FORWARDING: dict[str, bool] = {"port": False, "agent": False, "X11": False}


class AgentServer(asyncssh.SSHServer):
    """Per-connection callbacks for one agent."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.conn: asyncssh.SSHServerConnection | None = None
        self.peer_ip = ""
        self.session_id = secrets.token_hex(8)
        self.requested: tuple[str | None, str] | None = None
        self.session: SessionInfo | None = None
        self._banner_sent: set[str] = set()
        self.channels: set[AgentSession] = set()
        self.next_channel_no = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.last_exit_status: int | None = None
        self.notices: list[str] = []
        self.counted = False  # holds a slot in the connection limiter
        self.refusals = 0  # told to the agent on stderr when its next channel starts
        # The failed-login lockout's keys: the trusted certificate's key id once one passed the
        # checks, and whether the only refusal was the session cap (not a failed login).
        self.auth_key_id: str | None = None
        self.cap_refused = False
        # What this connection offered and was refused, for its one auth_failure row (a client
        # offers a certificate and then its plain key: one refused login, not two).
        self.auth_refusals: list[dict[str, object]] = []
        self._offer: dict[str, object] = {}
        # Upstream connections to the target with the number of channels each carries: a new
        # one is opened only when every open one holds the target's max_sessions.
        self._upstreams: dict[asyncssh.SSHClientConnection, int] = {}
        self._upstream_lock = asyncio.Lock()
        auth = runtime.config.auth
        self.signature_algorithms = auth.signature_algorithms or SECURE_SIGNATURE_ALGORITHMS

    # -- connection lifecycle -------------------------------------------------------------
    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        wire.tune(conn)
        peer = conn.get_extra_info("peername")
        self.peer_ip = str(peer[0]) if peer else ""
        self.runtime.connection_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.runtime.connection_closed(self, exc)

    # -- authentication: certificates only ------------------------------------------------
    def begin_auth(self, username: str) -> bool:
        self.requested = parse_username(username)
        return True  # authentication is always required

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return False  # plain keys never log in; certificates go through check_userauth_key

    def check_userauth_key(self, username: str, key_data: bytes) -> Identity | None:
        """Decide on the key offered in userauth; log and explain every refusal.

        The caller has already asked ``runtime.auth_allowed`` (the source is not locked out)."""
        self._offer = {"key": "plain key"}
        try:
            alg_len = int.from_bytes(key_data[:4], "big")
            alg = key_data[4 : 4 + alg_len]
            if not alg.endswith(_CERT_SUFFIX):
                raise CertificateRefused(
                    "plain public keys are not accepted; log in with a CA-signed certificate"
                )
            self._offer = {"key": "certificate"}
            cert = decode_certificate(alg, key_data)
            key_id = cert.key_id.decode("utf-8", "replace")
            self._offer.update(key_id=escape_visible(key_id)[:200], serial=cert.serial)
            identity = check_certificate(
                cert,
                trusted=self.runtime.trusted_cas,
                now=time.time(),
                clock_skew=self.runtime.config.auth.clock_skew,
                max_validity=self.runtime.config.auth.max_cert_validity,
                peer_ip=self.peer_ip,
                is_revoked=self.runtime.is_revoked,
                blob=key_data,
                signature_algorithms=self.signature_algorithms,
            )
            self.auth_key_id = identity.key_id
            self._check_access(identity)
        except CertificateRefused as exc:
            self.refuse_auth(str(exc))
            return None
        return identity

    def _check_access(self, identity: Identity) -> None:
        if self.requested is None:
            raise CertificateRefused(
                "the user name must be TARGET or LOGIN@TARGET (e.g. azureuser@web-01)"
            )
        asked_login, target_name = self.requested
        target = self.runtime.config.targets.get(target_name)
        login = asked_login or (target.login if target else "")
        # One message for "no such target" and "not granted" so names cannot be enumerated:
        # it names only what the agent itself sent (never a target's default login).
        if target is None or not self.runtime.config.is_granted(
            identity.principals, target_name, login
        ):
            for_login = f" for login {asked_login!r}" if asked_login else ""
            raise CertificateRefused(
                f"target {target_name!r} does not exist or is not granted to your principals"
                + for_login
            )

    async def authenticated(self, identity: Identity) -> bool:
        assert self.requested is not None
        if not await self.runtime.admit_session(self, identity.key_id):
            self.cap_refused = True
            self.refuse_auth("too many concurrent sessions for this identity")
            return False
        if not self.counted:  # the connection closed while its session was being admitted
            self.runtime.release_session(identity.key_id)
            return False
        login, target_name = self.requested
        target = self.runtime.config.targets[target_name]
        self.session = SessionInfo(
            session_id=self.session_id,
            identity=identity,
            target=target_name,
            login=login or target.login,
            source_address=self.peer_ip,
        )
        self.runtime.auth_succeeded(self)
        return True

    def refuse_auth(self, reason: str) -> None:
        self.refusals += 1
        refusal = {**self._offer, "reason": reason}
        if refusal not in self.auth_refusals and len(self.auth_refusals) < 8:
            self.auth_refusals.append(refusal)  # the client offering one key twice is one entry
        self.runtime.auth_failed(self, reason)
        if reason not in self._banner_sent and self.conn is not None:
            self._banner_sent.add(reason)
            self.conn.send_auth_banner(f"bastion: {reason}\r\n")

    # -- what an authenticated agent may open ----------------------------------------------
    def session_requested(self) -> AgentSession | bool:
        from bastion.relay import AgentSession

        if self.session is None:
            return False
        cap = self.runtime.limits.max_channels_per_connection
        if len(self.channels) >= cap:  # channels open now on this connection (multiplexing)
            self.runtime.refused(self, "channel-cap", str(cap))
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                f"too many channels open on this connection (limits.max_channels_per_connection"
                f" = {cap}); close one first",
            )
        self.next_channel_no += 1
        agent = AgentSession(self, self.next_channel_no)
        self.channels.add(agent)  # counted from the open; AgentSession.connection_lost discards
        return agent

    def forwarding_refusal(self, kind: str, label: str | None = None) -> str | None:
        """Why ``kind`` forwarding ("port", "agent", "X11") is refused, or None if allowed.

        The certificate's ``permit-*`` extension is checked first and on its own, so turning
        the bastion's switch on later can never let a certificate without it forward. Unix
        socket forwarding needs ``permit-port-forwarding``, as in OpenSSH."""
        what = label or f"{kind} forwarding"
        extension = FORWARDING_EXTENSIONS[kind]
        identity = self.session.identity if self.session is not None else None
        if identity is None or not identity.permits(extension):
            return f"your certificate does not permit {what} (no {extension})"
        if not BASTION_FORWARDING[kind]:
            return f"{what} is not allowed through this bastion"
        return None

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> bool:
        reason = self.forwarding_refusal("port")
        self.runtime.refused(self, "port-forwarding", f"{dest_host}:{dest_port}")
        raise asyncssh.ChannelOpenError(
            asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
            reason or "port forwarding is not implemented by this bastion",
        )

    def forwarding_refused(self, what: str, reason: str | None) -> None:
        self.runtime.refused(self, what.replace(" ", "-").lower(), "")
        self.notices.append(f"{reason or what + ' is not implemented'}; continuing without it")

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        reason = self.forwarding_refusal("port", "remote port forwarding")
        self.runtime.refused(self, "remote-forwarding", f"{listen_host}:{listen_port}: {reason}")
        return False

    def unix_connection_requested(self, dest_path: str) -> bool:
        reason = self.forwarding_refusal("port", "socket forwarding")
        self.runtime.refused(self, "unix-forwarding", "")
        raise asyncssh.ChannelOpenError(
            asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
            reason or "socket forwarding is not implemented by this bastion",
        )

    def unix_server_requested(self, listen_path: str) -> bool:
        reason = self.forwarding_refusal("port", "remote socket forwarding")
        self.runtime.refused(self, "unix-forwarding", reason or "")
        return False

    def log_context(self) -> dict[str, Any]:
        ctx: dict[str, Any] = {"session": self.session_id, "peer": self.peer_ip}
        if self.session is not None:
            ctx.update(
                identity=self.session.identity.key_id,
                serial=self.session.identity.serial,
                target=self.session.target,
                login=self.session.login,
            )
        elif self.requested is not None:
            ctx["requested"] = self.requested[1]
        return ctx

    # -- the upstream connections shared by this agent connection's channels ----------------
    async def open_upstream_session(
        self, factory: Callable[[], asyncssh.SSHClientSession[bytes]], command: str | None,
        **options: Any,
    ) -> asyncssh.SSHClientChannel[bytes]:
        """Open a channel to the target on a connection with room for it (the target's
        ``max_sessions``); a target that refuses the channel as over its MaxSessions gets it on
        a new connection, once."""
        full: asyncssh.SSHClientConnection | None = None
        for attempt in (1, 2):
            conn = await self._reserve_upstream(full)  # counts the channel before it opens
            try:
                chan, _ = await conn.create_session(factory, command, **options)
            except BaseException as exc:
                self._release(conn)
                if (
                    attempt == 1
                    and isinstance(exc, asyncssh.ChannelOpenError)
                    and exc.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED
                ):
                    full = conn
                    continue
                raise
            spawn(self._release_on_close(conn, chan), name=f"upstream-release-{self.session_id}")
            return chan
        raise AssertionError("unreachable")

    async def _reserve_upstream(
        self, full: asyncssh.SSHClientConnection | None
    ) -> asyncssh.SSHClientConnection:
        assert self.session is not None
        async with self._upstream_lock:
            target = self.runtime.config.targets.get(self.session.target)
            if target is None:  # removed by a reload since this agent logged in
                raise UpstreamError(f"target {self.session.target!r} is no longer configured")
            if full is not None and full in self._upstreams:
                # The target counts sessions its own way (e.g. a lower MaxSessions): take this
                # connection's count as its limit so it gets no more channels.
                self._upstreams[full] = max(self._upstreams[full], target.max_sessions)
            for conn, channels in self._upstreams.items():
                if channels < target.max_sessions and not conn.is_closed():
                    self._upstreams[conn] = channels + 1
                    return conn
            conn = await self.runtime.connector.connect(target, self.session.login)
            self._upstreams[conn] = 1
            return conn

    async def _release_on_close(
        self, conn: asyncssh.SSHClientConnection, chan: asyncssh.SSHClientChannel[bytes]
    ) -> None:
        await chan.wait_closed()
        self._release(conn)

    def _release(self, conn: asyncssh.SSHClientConnection) -> None:
        left = self._upstreams.get(conn)
        if left is None:
            return
        if left <= 1 and (len(self._upstreams) > 1 or conn.is_closed()):
            del self._upstreams[conn]  # keep one idle, open connection for the next channel
            conn.close()
        else:
            self._upstreams[conn] = left - 1

    def close_upstream(self) -> None:
        upstreams, self._upstreams = self._upstreams, {}
        for conn in upstreams:
            conn.close()
