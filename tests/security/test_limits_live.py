"""The relay's own limits, through the real ssh client: command length and idle timeout."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

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
