"""Auth abuse: failed logins are rate-limited per source address, without revealing targets,
and the per-identity session cap and connection cap hold."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.bastion import RunningBastion, start_bastion, target_block, write_config

from bastion.app import Runtime
from bastion.config import Config
from bastion.hooks import AllowAllGate
from bastion.ops.limits import Limits
from bastion.testing.certs import Agent, CertificateAuthority, keygen
from bastion.testing.sshd import SshdTarget


@pytest.fixture
def limited(tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority) -> Iterator[RunningBastion]:
    def runtime(config: Config) -> Runtime:
        limits = Limits(auth_failures_per_minute=3, auth_lockout=60, max_sessions_per_identity=2)
        return Runtime(config=config, gate=AllowAllGate(), limits=limits)

    running = start_bastion(write_config(tmp_path, ca, target_block(sshd)), runtime)
    yield running
    running.stop()


def test_failed_logins_lock_out_the_source_address(
    limited: RunningBastion, agent: Agent, tmp_path: Path
) -> None:
    """After a burst of failed logins from one address, even a valid certificate from it is
    refused for a while with a clear reason; another address is unaffected."""
    plain = Agent(keygen(tmp_path / "plain"), None)
    for _ in range(6):
        assert limited.ssh(plain, "web-01", "true").returncode == 255
    locked = limited.ssh(agent, "web-01", "echo in")
    assert locked.returncode == 255
    assert b"too many failed logins from this address" in locked.stderr
    other = subprocess.run(
        [*limited.ssh_args(agent, "web-01", "-b", "127.0.0.2"), "echo in"],
        capture_output=True,
        timeout=30,
    )
    assert other.stdout == b"in\n", other.stderr


def test_probing_target_names_reveals_nothing(limited: RunningBastion, make_agent) -> None:  # type: ignore[no-untyped-def]
    """A certificate without grants gets the same answer for a real and an invented target."""
    outsider = make_agent(principals="strangers")
    real = limited.ssh(outsider, "web-01", "true").stderr.replace(b"web-01", b"X")
    fake = limited.ssh(outsider, "web-77", "true").stderr.replace(b"web-77", b"X")
    assert real == fake


def test_sessions_per_identity_are_capped(limited: RunningBastion, agent: Agent) -> None:
    """With two sessions of one identity open, a third login is refused with the reason."""
    holders = [
        subprocess.Popen(
            [*limited.ssh_args(agent, "web-01"), "echo up; sleep 20"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    try:
        for proc in holders:
            assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
        third = limited.ssh(agent, "web-01", "echo third")
        assert third.returncode == 255
        assert b"too many concurrent sessions for this identity" in third.stderr
    finally:
        for proc in holders:
            proc.kill()
            proc.wait()
