"""The listening socket: asyncssh options (modern algorithms only) and our connection class."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import asyncssh

from bastion.errors import BastionError
from bastion.ssh.server import AgentServer, BastionConnection

if TYPE_CHECKING:
    from bastion.app import Runtime

# Only modern algorithms: no SHA-1, no CBC, no DSA, no NIST-curve key exchange.
# ML-KEM hybrid first (post-quantum); curve25519 stays in the default so that OpenSSH clients
# older than 9.9 (Debian 12 ships 9.2) can connect. `[server] kex = "post-quantum-only"` offers
# ML-KEM alone, which ssh-audit rates with no warnings.
PQ_KEX_ALGS = ["mlkem768x25519-sha256"]
KEX_ALGS = [*PQ_KEX_ALGS, "curve25519-sha256", "curve25519-sha256@libssh.org"]
ENCRYPTION_ALGS = [
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
]
MAC_ALGS = [
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "umac-128-etm@openssh.com",
]
SIG_ALGS = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
]


class Listener:
    def __init__(self, server: asyncio.Server) -> None:
        self._server = server

    @property
    def address(self) -> tuple[str, int]:
        sock = self._server.sockets[0].getsockname()
        return str(sock[0]), int(sock[1])

    def close(self) -> None:
        self._server.close()


def server_options(
    runtime: Runtime, host_key: asyncssh.SSHKey
) -> asyncssh.SSHServerConnectionOptions:
    return asyncssh.SSHServerConnectionOptions(
        server_factory=lambda: AgentServer(runtime),
        server_host_keys=[host_key],
        server_version="bastion",  # no library name or version on the wire
        kex_algs=PQ_KEX_ALGS if runtime.config.server.kex == "post-quantum-only" else KEX_ALGS,
        encryption_algs=ENCRYPTION_ALGS,
        mac_algs=MAC_ALGS,
        signature_algs=SIG_ALGS,
        compression_algs=["none"],
        allow_pty=True,
        line_editor=False,
        encoding=None,
        agent_forwarding=False,
        x11_forwarding=False,
        password_auth=False,
        kbdint_auth=False,
        gss_host=None,
        login_timeout=runtime.config.server.login_timeout,
        keepalive_interval=30,
        keepalive_count_max=4,
    )


async def start_listener(
    runtime: Runtime, host_key: asyncssh.SSHKey, *, reuse_port: bool = False
) -> Listener:
    """Listen on ``[server] listen``; workers share the port with ``reuse_port`` (SO_REUSEPORT:
    the kernel spreads new connections over the workers' sockets)."""
    options = server_options(runtime, host_key)
    loop = asyncio.get_running_loop()
    cfg = runtime.config.server
    try:
        server = await loop.create_server(
            lambda: BastionConnection(loop, options, None, None, None),
            cfg.host,
            cfg.port,
            reuse_address=True,
            reuse_port=reuse_port or None,
        )
    except OSError as exc:
        raise BastionError(f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror}") from None
    return Listener(server)
