"""asyncssh clients for the three paths (echo round trips, commands/s, idle sessions).

One Python client process can hold a thousand connections, which a thousand ``ssh`` processes
could not do cheaply; the client's own cost is the same on every path.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

import asyncssh

from bench.harness.env import CIPHERS, KEX, BenchEnv


@dataclass
class Opened:
    """A connection and what has to be closed with it (the jump hop, for ``jump``)."""

    conn: asyncssh.SSHClientConnection
    stack: AsyncExitStack

    async def close(self) -> None:
        await self.stack.aclose()


class Clients:
    """Opens asyncssh client connections over ``direct``, ``jump`` or ``bastion``."""

    def __init__(self, env: BenchEnv, cipher: str = CIPHERS[0]) -> None:
        self.env = env
        self.cipher = cipher
        self._client_key = asyncssh.read_private_key(str(env.client_key))
        agent_key = asyncssh.read_private_key(str(env.agent.key))
        assert env.agent.cert is not None
        self._agent_keys = [(agent_key, asyncssh.read_certificate(str(env.agent.cert)))]

    def _options(self) -> dict[str, object]:
        return {
            "known_hosts": str(self.env.known_hosts),
            "encryption_algs": [self.cipher],
            "kex_algs": [KEX],
            "config": [],
            "agent_path": None,
            "connect_timeout": 30,
            "preferred_auth": ["publickey"],
        }

    async def open(self, path: str) -> Opened:
        stack = AsyncExitStack()
        env = self.env
        try:
            if path == "bastion":
                conn = await asyncssh.connect(
                    "127.0.0.1", env.bastion.port, username="web-01",
                    client_keys=self._agent_keys, **self._options(),
                )  # fmt: skip
            elif path in ("direct", "jump"):
                tunnel = None
                if path == "jump":
                    tunnel = await asyncssh.connect(
                        "127.0.0.1", env.jump.port, username=env.jump.login,
                        client_keys=[self._client_key], **self._options(),
                    )  # fmt: skip
                    stack.push_async_callback(_close, tunnel)
                conn = await asyncssh.connect(
                    "127.0.0.1", env.target.port, username=env.target.login, tunnel=tunnel,
                    client_keys=[self._client_key], **self._options(),
                )  # fmt: skip
            else:
                raise ValueError(f"unknown path {path!r}")
        except BaseException:
            await stack.aclose()
            raise
        stack.push_async_callback(_close, conn)
        return Opened(conn, stack)


async def _close(conn: asyncssh.SSHClientConnection) -> None:
    conn.close()
    await conn.wait_closed()
