"""The relay's own limits, through the real ssh client: command length, idle timeout, and
channels per connection."""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
from support.bastion import RunningBastion, start_bastion, target_block, write_config

from bastion.app import Runtime
from bastion.config import Config
from bastion.hooks import AllowAllGate
from bastion.ops.limits import Limits
from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget


@pytest.fixture
def strict(tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority) -> Iterator[RunningBastion]:
    def runtime(config: Config) -> Runtime:
        limits = Limits(max_command_length=300, idle_timeout=1.0, auth_failures_per_minute=1000)
        return Runtime(config=config, gate=AllowAllGate(), limits=limits)

    running = start_bastion(write_config(tmp_path, ca, target_block(sshd)), runtime)
    yield running
    running.stop()


def test_overlong_command_is_refused(strict: RunningBastion, agent: Agent) -> None:
    """A command over max_command_length never reaches the gate or the target."""
    result = strict.ssh(agent, "web-01", "echo " + "x" * 400)
    assert result.returncode == 126
    assert b"the command is longer than 300 bytes" in result.stderr
    assert strict.ssh(agent, "web-01", "echo short").stdout == b"short\n"


def test_idle_session_is_closed(strict: RunningBastion, agent: Agent) -> None:
    """A channel with no bytes either way for idle_timeout is closed with one line."""
    began = time.monotonic()
    result = strict.ssh(agent, "web-01", "sleep 20")
    assert time.monotonic() - began < 10
    assert result.returncode == 255
    assert b"no activity for 1 s; the session was closed" in result.stderr


@pytest.fixture
def channel_capped(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority
) -> Iterator[RunningBastion]:
    def runtime(config: Config) -> Runtime:
        limits = Limits(max_channels_per_connection=2, auth_failures_per_minute=1000)
        return Runtime(config=config, gate=AllowAllGate(), limits=limits)

    running = start_bastion(write_config(tmp_path, ca, target_block(sshd)), runtime)
    yield running
    running.stop()


def test_channels_per_connection_are_capped(
    channel_capped: RunningBastion, agent: Agent, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 20 finding 6: OpenSSH multiplexing (ControlMaster) opens channels on one connection;
    past max_channels_per_connection open at once the next is refused with the reason, and once
    one closes a new channel opens again."""
    caplog.set_level(logging.INFO, logger="bastion")
    control = Path(tempfile.mkdtemp(prefix="mux-", dir="/tmp")) / "c"  # sun_path is short
    mux = ("-o", f"ControlPath={control}")
    master = subprocess.Popen(
        [*channel_capped.ssh_args(agent, "web-01", "-M", "-N", *mux)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    holders: list[subprocess.Popen[bytes]] = []
    try:
        deadline = time.monotonic() + 20
        while not control.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert control.exists(), "the ssh master did not start"
        for _ in range(2):
            proc = subprocess.Popen(
                [*channel_capped.ssh_args(agent, "web-01", *mux), "echo up; sleep 30"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
            holders.append(proc)
        third = channel_capped.ssh(agent, "web-01", "echo third", *mux, timeout=30)
        # The master refused the third channel; ssh then falls back to a connection of its own,
        # where the cap (per connection) lets it through.
        assert b"Session open refused by peer" in third.stderr, third.stderr
        assert third.stdout == b"third\n"
        refusals = [
            (r.ctx["what"], r.ctx["detail"])  # type: ignore[attr-defined]
            for r in caplog.records
            if r.getMessage() == "refused"
        ]
        assert refusals == [("channel-cap", "2")]
        holders.pop().kill()
        deadline = time.monotonic() + 10
        again = channel_capped.ssh(agent, "web-01", "echo again", *mux, timeout=30)
        while again.stdout != b"again\n" and time.monotonic() < deadline:
            time.sleep(0.1)  # the closed channel is released asynchronously
            again = channel_capped.ssh(agent, "web-01", "echo again", *mux, timeout=30)
        assert again.stdout == b"again\n", again.stderr
    finally:
        for proc in holders:
            proc.kill()
            proc.wait()
        master.terminate()
        master.wait(10)
        shutil.rmtree(control.parent, ignore_errors=True)


async def test_channel_cap_reason_reaches_the_client(
    channel_capped: RunningBastion, agent: Agent
) -> None:
    """An SSH client that shows the open-failure text (asyncssh here) gets the one-line reason."""
    assert agent.cert is not None
    key = asyncssh.read_private_key(str(agent.key))
    cert = asyncssh.read_certificate(str(agent.cert))
    async with asyncssh.connect(
        "127.0.0.1", channel_capped.port, username="web-01",
        client_keys=[(key, cert)], known_hosts=str(channel_capped.known_hosts),
    ) as conn:  # fmt: skip
        held = [await conn.create_session(asyncssh.SSHClientSession, "sleep 20") for _ in range(2)]
        with pytest.raises(asyncssh.ChannelOpenError) as refused:
            await conn.create_session(asyncssh.SSHClientSession, "echo third")
        assert refused.value.reason == (
            "too many channels open on this connection "
            "(limits.max_channels_per_connection = 2); close one first"
        )
        for chan, _ in held:
            chan.close()
