"""Connections from the bastion to target VMs, with pinned host keys.

The channels of one agent connection share its upstream connections (the agent's user name fixes
target and login), up to the target's ``max_sessions`` channels each (``AgentServer``). Stock
sshd drops unauthenticated connections past ``MaxStartups`` (10:30:100), so handshakes to one
target are bounded (``max_handshakes``, split across worker processes) and a connection the
target dropped before authentication is retried with jittered backoff until the target's
``connect_timeout``; a refused or silent target still fails at once or at the timeout. Every
failure becomes ``UpstreamError`` with a one-line, user-safe message.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Protocol

import asyncssh

from bastion.config import TargetConfig
from bastion.errors import BastionError
from bastion.ssh import wire


class UpstreamError(BastionError):
    """The target could not be reached or could not be trusted."""


class UpstreamCredentials(Protocol):
    """Seam for how the bastion authenticates to targets (a per-target key today; an upstream
    certificate authority later)."""

    def client_keys(self, target: TargetConfig, login: str) -> list[asyncssh.SSHKey]: ...


class IdentityFileCredentials:
    """Authenticate with the target's configured ``identity_file``; keys are read once."""

    def __init__(self) -> None:
        self._cache: dict[str, asyncssh.SSHKey] = {}

    def client_keys(self, target: TargetConfig, login: str) -> list[asyncssh.SSHKey]:
        path = str(target.identity_file)
        key = self._cache.get(path)
        if key is None:
            try:
                key = asyncssh.read_private_key(path)
            except (OSError, asyncssh.KeyImportError) as exc:
                raise UpstreamError(
                    f"cannot read the key for target {target.name!r}: {exc}"
                ) from None
            self._cache[path] = key
        return [key]


def _known_hosts(
    target: TargetConfig,
) -> (
    asyncssh.SSHKnownHosts
    | tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]]
    | str
):
    if target.host_keys:
        return (list(target.host_keys), [], [])
    assert target.known_hosts is not None  # config guarantees one of the two
    return str(target.known_hosts)


UPSTREAM_CIPHERS = [
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
]
# Only used with the CTR ciphers (AEAD ciphers carry their own tag): SHA-2, encrypt-then-MAC.
UPSTREAM_MACS = [
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "umac-128-etm@openssh.com",
]
# The window OpenSSH's own client offers (2 MiB). A larger one lets the target's sshd read
# further ahead of a slower bastion into its own buffer, which it then compacts with memmove:
# with 8 MiB, 50 concurrent streams cost the target's sshd 26-39 CPU s/GB instead of ~4
# (bench/, docs/performance.md), CPU taken from the customer's VM.
UPSTREAM_WINDOW = 2 * 1024 * 1024
# Packets up to 256 KiB: sshd sends what it has read, up to this, in one packet.
UPSTREAM_PACKET = 256 * 1024

Connector = Callable[[TargetConfig, str], Awaitable[asyncssh.SSHClientConnection]]

# Retry pacing after a drop before authentication: full jitter over an exponential step.
RETRY_FIRST = 0.05
RETRY_CAP = 1.0


class _Dropped(Exception):
    """The target closed or reset the connection before authentication (MaxStartups)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UpstreamConnector:
    """Opens SSH client connections to targets, refusing any host key that is not pinned.

    ``shares`` is the number of processes that connect to the same targets (worker processes):
    each takes an equal share of a target's ``max_handshakes``.
    """

    def __init__(self, credentials: UpstreamCredentials | None = None, shares: int = 1) -> None:
        self._credentials = credentials or IdentityFileCredentials()
        self.shares = max(1, shares)
        self._slots: dict[tuple[str, int], tuple[int, asyncio.Semaphore]] = {}
        self.retries = 0  # connections retried after a drop before authentication

    def _slot(self, target: TargetConfig) -> asyncio.Semaphore:
        limit = max(1, target.max_handshakes // self.shares)
        key = (target.host, target.port)
        held = self._slots.get(key)
        if held is None or held[0] != limit:  # new target, or max_handshakes changed by reload
            held = (limit, asyncio.Semaphore(limit))
            self._slots[key] = held
        return held[1]

    async def connect(self, target: TargetConfig, login: str) -> asyncssh.SSHClientConnection:
        keys = self._credentials.client_keys(target, login)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + target.connect_timeout
        step = RETRY_FIRST
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise _timed_out(target)
            try:
                async with asyncio.timeout(remaining):
                    async with self._slot(target):
                        return await self._connect_once(target, login, keys, remaining)
            except TimeoutError:
                raise _timed_out(target) from None
            except _Dropped as dropped:
                pause = random.uniform(0, step)  # noqa: S311 - jitter, not a secret
                step = min(step * 2, RETRY_CAP)
                if loop.time() + pause >= deadline:
                    raise UpstreamError(
                        f"target {target.name!r} is unreachable: {dropped.reason} (dropped before"
                        f" authentication for {target.connect_timeout:g}s; is its sshd's"
                        " MaxStartups below the bastion's max_handshakes?)"
                    ) from None
                self.retries += 1
                await asyncio.sleep(pause)

    async def _connect_once(
        self, target: TargetConfig, login: str, keys: list[asyncssh.SSHKey], within: float
    ) -> asyncssh.SSHClientConnection:
        try:
            conn = await asyncssh.connect(
                target.host,
                target.port,
                username=login,
                client_keys=keys,
                known_hosts=_known_hosts(target),
                connect_timeout=within,
                config=[],
                agent_path=None,
                preferred_auth=["publickey"],
                keepalive_interval=30,
                x509_trusted_certs=None,
                # AES-GCM first: hardware-accelerated, cheaper per byte than asyncssh's default
                # chacha20-poly1305 on the bastion's busiest hop (measured in bench/).
                encryption_algs=UPSTREAM_CIPHERS,
                mac_algs=UPSTREAM_MACS,
                window=UPSTREAM_WINDOW,
                max_pktsize=UPSTREAM_PACKET,
            )
        except asyncssh.HostKeyNotVerifiable:
            raise UpstreamError(
                f"the host key of target {target.name!r} does not match the pinned key; refusing"
            ) from None
        except asyncssh.PermissionDenied:
            raise UpstreamError(
                f"target {target.name!r} refused the bastion's credentials for login {login!r}"
            ) from None
        except TimeoutError:
            raise _timed_out(target) from None
        except (ConnectionResetError, BrokenPipeError, asyncssh.ConnectionLost) as exc:
            # sshd past MaxStartups accepts, then closes or resets before its banner: the
            # target is up, only busy. Nothing was sent yet, so another attempt is safe.
            raise _Dropped(getattr(exc, "strerror", None) or str(exc) or "connection lost"
                           ) from None
        except (OSError, asyncssh.Error) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
            raise UpstreamError(f"target {target.name!r} is unreachable: {reason}") from None
        wire.tune(conn)
        return conn


def _timed_out(target: TargetConfig) -> UpstreamError:
    return UpstreamError(
        f"target {target.name!r} did not answer within {target.connect_timeout:g}s"
    )
