"""Hostile traffic against the real listener: nothing crashes it, nothing escapes the state dir,
and every other agent keeps being served."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import subprocess
from collections.abc import Iterator

import asyncssh
import pytest
from support.bastion import (
    RunningBastion,
    recorded_runtime,
    start_bastion,
    target_block,
    write_config,
)

from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget


@pytest.fixture(scope="module")
def hostile(
    tmp_path_factory: pytest.TempPathFactory, sshd: SshdTarget, ca: CertificateAuthority
) -> Iterator[RunningBastion]:
    directory = tmp_path_factory.mktemp("hostile")
    config = write_config(directory, ca, target_block(sshd))
    text = config.read_text().replace("[server]\n", '[server]\nlogin_timeout = "2s"\n', 1)
    config.write_text(text)
    running = start_bastion(config, recorded_runtime)
    yield running
    running.stop()


def still_serving(bastion: RunningBastion, agent: Agent) -> None:
    assert bastion.thread.is_alive()
    result = bastion.ssh(agent, "web-01", "echo alive")
    assert result.stdout == b"alive\n", result.stderr


def raw_exchange(port: int, payload: bytes, read_for: float = 3.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=read_for) as sock:
        banner = sock.recv(256)
        sock.sendall(payload)
        got = banner
        try:
            while chunk := sock.recv(65536):
                got += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return got


@pytest.mark.parametrize(
    "payload",
    [
        b"SSH-2.0-x\r\n" + struct.pack(">I", 0xFFFFFFFF) + b"\x00" * 64,  # huge packet length
        b"SSH-2.0-x\r\n" + struct.pack(">I", 12) + b"\x04",  # truncated packet, then silence
        b"SSH-2.0-x\r\n" + os.urandom(4096),  # garbage after the version line
        b"NOT-SSH\r\n" * 100,  # no version line at all
        b"SSH-2.0-" + b"A" * 100_000 + b"\r\n",  # an absurd version line
    ],
    ids=["huge-length", "truncated", "garbage", "not-ssh", "long-version"],
)
def test_malformed_traffic_is_dropped(
    hostile: RunningBastion, agent: Agent, payload: bytes
) -> None:
    """Malformed SSH traffic gets the connection closed, and the bastion serves the next agent."""
    reply = raw_exchange(hostile.port, payload)
    assert reply.startswith(b"SSH-2.0-bastion")
    still_serving(hostile, agent)


def test_slow_client_is_cut_at_login_timeout(hostile: RunningBastion, agent: Agent) -> None:
    """A client that connects and never authenticates is disconnected after login_timeout."""
    with socket.create_connection(("127.0.0.1", hostile.port), timeout=10) as sock:
        sock.recv(256)
        sock.sendall(b"SSH-2.0-slow\r\n")
        sock.settimeout(10)
        data = b"x"
        while data:
            data = sock.recv(65536)  # returns b"" once the bastion closes
    still_serving(hostile, agent)


@pytest.mark.parametrize(
    "user",
    [
        "w" * 5000 + "@web-01",
        "../../etc/passwd@web-01",
        "web-01\x1b[31m",
        "azure\nuser@web-01",
        "web-01/../../x",
        "%s%n@web-01",
        "\u202eweb-01",
    ],
    ids=["oversized", "traversal", "ansi", "newline", "slash", "format", "bidi"],
)
def test_hostile_user_names_are_refused(hostile: RunningBastion, agent: Agent, user: str) -> None:
    """User names with traversal, control or bidi characters, or absurd length, are refused with
    the expected-form message; nothing is created outside the state dir."""
    state = hostile.config.state_dir
    before = {p for p in state.parent.rglob("*")}
    args = hostile.ssh_args(agent, "PLACEHOLDER")
    args[-1] = f"{user}@127.0.0.1"
    result = subprocess.run([*args, "true"], capture_output=True, timeout=30)
    assert result.returncode == 255
    after = {p for p in state.parent.rglob("*")}
    assert all(str(p).startswith(str(state)) for p in after - before)
    still_serving(hostile, agent)


async def _connect(bastion: RunningBastion, agent: Agent) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(
        "127.0.0.1", bastion.port, username="web-01",
        client_keys=[(asyncssh.read_private_key(str(agent.key)),
                      asyncssh.read_certificate(str(agent.cert)))],
        known_hosts=str(bastion.known_hosts), config=[], agent_path=None,
    )  # fmt: skip


async def test_extreme_pty_and_env_requests(hostile: RunningBastion, agent: Agent) -> None:
    """An absurd PTY size is refused and huge/odd env values are dropped; the bastion lives."""
    async with await _connect(hostile, agent) as conn:
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.create_process(term_type="xterm", term_size=(10**6, 10**6))
        env = {"LANG": "x" * 100_000, "LC_ALL": "C\x00evil", "TERM": "xterm"}
        result = await conn.run('echo "${#LANG}|$LC_ALL|$TERM"', env=env)
        assert result.stdout == "0||xterm\n"
    await asyncio.to_thread(still_serving, hostile, agent)


async def test_tiny_window_client_does_not_hurt_others(
    hostile: RunningBastion, agent: Agent
) -> None:
    """A client that advertises a 1-byte window gets its data slowly; others are unaffected."""
    async with await _connect(hostile, agent) as conn:
        chan, _ = await conn.create_session(
            asyncssh.SSHClientSession, "head -c 100000 /dev/zero", window=1, encoding=None
        )
        await asyncio.to_thread(still_serving, hostile, agent)
        chan.close()
