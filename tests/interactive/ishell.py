"""A terminal client for line-gated shells through the bastion (asyncssh with a PTY)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import asyncssh
from support.bastion import RunningBastion

from bastion.testing.certs import Agent

PROMPT = re.compile(rb"\$ (?:\x1b\[K)?$")


class Term:
    """An agent's PTY shell through the bastion (asyncssh), with a running output transcript."""

    def __init__(self, conn: asyncssh.SSHClientConnection, proc: Any) -> None:
        self.conn = conn
        self.proc = proc
        self.out = b""

    async def read_until(
        self, pattern: bytes | re.Pattern[bytes], limit: float = 15, start: int = 0
    ) -> bytes:
        async def loop() -> bytes:
            while True:
                seen = self.out[start:]
                if pattern.search(seen) if isinstance(pattern, re.Pattern) else pattern in seen:
                    return seen
                chunk = await self.proc.stdout.read(65536)
                if not chunk:
                    raise EOFError(f"channel closed; output so far: {self.out[-800:]!r}")
                self.out += chunk

        try:
            return await asyncio.wait_for(loop(), limit)
        except TimeoutError:
            raise AssertionError(f"timed out: {pattern!r}; got {self.out[-800:]!r}") from None

    async def ready(self) -> None:
        await self.read_until(PROMPT)

    def type(self, data: bytes) -> int:
        mark = len(self.out)
        self.proc.stdin.write(data)
        return mark

    async def run(self, line: str, limit: float = 15) -> bytes:
        """Type a line and Enter; return the output up to the next prompt."""
        mark = self.type(line.encode() + b"\r")
        return await self.read_until(PROMPT, limit, start=mark + len(line))

    async def rest(self, limit: float = 10) -> bytes:
        """Everything until the channel closes."""

        async def drain() -> None:
            while chunk := await self.proc.stdout.read(65536):
                self.out += chunk

        await asyncio.wait_for(drain(), limit)
        return self.out


async def open_term(
    bastion: RunningBastion, agent: Agent, size: tuple[int, int] = (200, 50)
) -> Term:
    key = asyncssh.read_private_key(str(agent.key))
    cert = asyncssh.read_certificate(str(agent.cert))
    conn = await asyncssh.connect(
        "127.0.0.1",
        bastion.port,
        username="web-01",
        client_keys=[(key, cert)],
        known_hosts=str(bastion.known_hosts),
        config=[],
        agent_path=None,
    )
    proc = await conn.create_process(term_type="xterm", term_size=size, encoding=None)
    term = Term(conn, proc)
    await term.ready()
    return term
