"""Auth abuse: failed logins are rate-limited per source address and identity, without revealing
targets, and the per-identity session cap and connection cap hold. Issue 20 finding 7: a
session-cap refusal is not a failed login, and one identity failing locks out only itself."""

from __future__ import annotations

import subprocess
import time
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
        limits = Limits(
            auth_failures_per_minute=3,
            auth_failures_per_address_per_minute=6,
            auth_lockout=60,
            max_sessions_per_identity=2,
        )
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


def _hold_sessions(limited: RunningBastion, agent: Agent, n: int) -> list[subprocess.Popen[bytes]]:
    holders = [
        subprocess.Popen(
            [*limited.ssh_args(agent, "web-01"), "echo up; sleep 30"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]
    for proc in holders:
        assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
    return holders


def test_session_cap_refusals_do_not_lock_out_the_address(
    limited: RunningBastion,
    agent: Agent,
    make_agent,  # type: ignore[no-untyped-def]
) -> None:
    """Eight logins refused by max_sessions_per_identity (more than both failure bars) leave
    the address and the identity unlocked: once a session ends the same identity gets in, and
    another identity behind the address was never refused."""
    holders = _hold_sessions(limited, agent, 2)
    try:
        for _ in range(8):
            refused = limited.ssh(agent, "web-01", "echo third")
            assert refused.returncode == 255
            assert b"too many concurrent sessions for this identity" in refused.stderr
        other = make_agent(key_id="ci-agent-2")
        assert limited.ssh(other, "web-01", "echo other").stdout == b"other\n"
    finally:
        for proc in holders:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 10
    while limited.call(lambda: limited.runtime.connections.sessions("ci-agent-1")) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    back = limited.ssh(agent, "web-01", "echo back")
    assert back.stdout == b"back\n", back.stderr


def test_one_identity_failing_locks_only_itself_behind_a_shared_address(
    limited: RunningBastion,
    agent: Agent,
    make_agent,  # type: ignore[no-untyped-def]
) -> None:
    """A valid certificate asking again and again for a target it is not granted fails more
    than auth_failures_per_minute times: that identity is locked at this address with its own
    reason, while another identity from the same address still logs in."""
    noisy = make_agent(key_id="noisy-agent")
    for _ in range(4):
        assert limited.ssh(noisy, "db-01", "true").returncode == 255
    locked = limited.ssh(noisy, "web-01", "echo in")
    assert locked.returncode == 255
    assert b"too many failed logins for this identity from this address" in locked.stderr
    assert limited.ssh(agent, "web-01", "echo in").stdout == b"in\n"
