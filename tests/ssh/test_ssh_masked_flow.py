"""Masked output through the bastion under flow control: bulk data arrives unaltered."""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
from support.bastion import recorded_runtime, start_bastion, target_block, write_config

from bastion import relay
from bastion.masking import StreamMasker
from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget


def token_lines(count: int, seed: int) -> bytes:
    """Lines of mixed-case tokens: no secret when whole, but a token cut at a packet boundary
    looks like the start of a key, so an idle release of it is masked (fail closed)."""
    rnd = random.Random(seed)
    alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    lines = []
    for i in range(count):
        tokens = " ".join("".join(rnd.choice(alphabet) for _ in range(32)) for _ in range(2))
        lines.append(f"step {i} built {tokens}\n")
    return "".join(lines).encode()


class _Reader(asyncssh.SSHClientSession[bytes]):
    def __init__(self) -> None:
        self.data = bytearray()
        self.done = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


@pytest.fixture
def token_file() -> Iterator[tuple[Path, bytes]]:
    """A file of token lines the target's login can read, and its bytes."""
    data = token_lines(100_000, seed=7)
    shared = Path(tempfile.mkdtemp(prefix="bastion-test-flow-"))
    shared.chmod(0o755)
    source = shared / "tokens.txt"
    source.write_bytes(data)
    source.chmod(0o644)
    yield source, data
    shutil.rmtree(shared)


async def test_slow_agent_gets_bulk_output_unaltered(
    tmp_path: Path,
    sshd: SshdTarget,
    ca: CertificateAuthority,
    agent: Agent,
    token_file: tuple[Path, bytes],
) -> None:
    """An agent that keeps pausing its reads gets masked bulk output byte for byte: a pause in
    the agent's reading is not idle output, so no held token is released (and masked) early."""
    source, data = token_file
    whole = StreamMasker()
    assert whole.feed(data) + whole.flush() == data  # nothing here is a secret
    config = write_config(tmp_path, ca, target_block(sshd))
    running = start_bastion(config, recorded_runtime)
    try:
        key = asyncssh.read_private_key(str(agent.key))
        cert = asyncssh.read_certificate(str(agent.cert))
        async with asyncssh.connect(
            "127.0.0.1",
            running.port,
            username="web-01",
            client_keys=[(key, cert)],
            known_hosts=str(running.known_hosts),
            config=[],
            agent_path=None,
        ) as conn:
            # a small window: the bastion's sends to the agent block at every pause
            chan, reader = await conn.create_session(
                _Reader, f"cat {source}", encoding=None, window=256 * 1024
            )
            while not reader.done.done():
                chan.pause_reading()  # longer than the masker's hold timeout (5 ms)
                await asyncio.sleep(0.01)
                chan.resume_reading()
                await asyncio.sleep(0.001)
            await reader.done
    finally:
        running.stop()
    assert len(reader.data) == len(data)
    assert bytes(reader.data) == data


def test_streaming_output_is_held_longer_than_a_prompt(
    tmp_path: Path,
    sshd: SshdTarget,
    ca: CertificateAuthority,
    agent: Agent,
    token_file: tuple[Path, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pause right after a large chunk (a busy target mid-transfer) does not release the
    cut-off token at its end, so bulk data stays intact; after a small chunk the short hold
    still applies and the cut-off token is released masked (fail closed)."""
    monkeypatch.setattr(relay, "STREAMING_HOLD", 2.0)  # far beyond the pause below
    source, data = token_file
    cut = data.index(b" ", 64 * 1024) + 12  # inside a 32-character token after 64 KiB
    assert data[cut - 11 : cut].isalnum()
    config = write_config(tmp_path, ca, target_block(sshd))
    running = start_bastion(config, recorded_runtime)
    try:
        bulk = running.ssh(
            agent, "web-01", f"head -c {cut} {source}; sleep 0.3; tail -c +{cut + 1} {source}"
        )
        token = data[cut - 11 : cut + 21].decode()
        small = running.ssh(
            agent, "web-01", f"printf 'id {token[:11]}'; sleep 0.3; printf '{token[11:]}\\n'"
        )
    finally:
        running.stop()
    assert bulk.returncode == 0, bulk.stderr
    assert bulk.stdout == data
    assert small.returncode == 0, small.stderr
    assert small.stdout.startswith(b"id [MASKED:held-fragment]"), small.stdout
