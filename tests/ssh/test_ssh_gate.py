"""The command gate on the data path, with the shipped policy and every guardrail on."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.bastion import RunningBastion, shared_folder, start_shipped_policy

from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget


@pytest.fixture(scope="module")
def gated(
    tmp_path_factory: pytest.TempPathFactory, sshd: SshdTarget, ca: CertificateAuthority
) -> Iterator[RunningBastion]:
    running = start_shipped_policy(tmp_path_factory.mktemp("gated"), sshd, ca)
    yield running
    running.stop()


@pytest.fixture
def trace_dir() -> Iterator[Path]:
    """A folder the target's login can write to, to prove whether a command ran there."""
    with shared_folder("bastion-test-trace-") as path:
        yield path


def test_destructive_az_is_held_before_the_target_sees_it(
    gated: RunningBastion, agent: Agent, trace_dir: Path
) -> None:
    """`az group delete` is held for review: one stderr line with the request id, nothing runs
    on the target while it waits (approval itself: tests/approval)."""
    marker = trace_dir / "ran"
    proc = subprocess.Popen(
        [*gated.ssh_args(agent, "web-01"), f"az group delete -n rg --yes; touch {marker}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith(b"bastion: held for review as ")
        assert b"az-group-delete" in line
        assert b"waiting up to 15 min" in line
        time.sleep(0.5)
        assert proc.poll() is None
        assert not marker.exists()
    finally:
        proc.kill()
        proc.wait()


def test_readonly_az_passes_to_the_target(gated: RunningBastion, agent: Agent) -> None:
    """`az vm list` is allowed: it reaches the target (which has no az, so the shell says so)."""
    result = gated.ssh(agent, "web-01", "az vm list")
    assert b"bastion:" not in result.stderr
    assert result.returncode == 127  # the target's bash: az: command not found
    assert b"az" in result.stderr


def test_catastrophic_command_is_denied(
    gated: RunningBastion, agent: Agent, trace_dir: Path
) -> None:
    """A denied command gets exit 126 and the rule's reason; the target never sees it."""
    marker = trace_dir / "ran"
    result = gated.ssh(agent, "web-01", f"touch {marker}; bash -c 'rm -rf /'")
    assert result.returncode == 126
    assert b"bastion: denied by policy" in result.stderr
    assert b"rm-catastrophic" in result.stderr
    assert not marker.exists()


def test_allowed_command_with_stdin(gated: RunningBastion, agent: Agent) -> None:
    """Stdin sent while the gate decides is buffered and reaches an allowed command."""
    result = gated.ssh(agent, "web-01", "cat", input=b"line one\nline two\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"line one\nline two\n"


def test_interactive_shell_refused_when_configured(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent
) -> None:
    """With `[gate] shells = "refuse"`, a shell is refused with a clear line."""
    gated = start_shipped_policy(tmp_path, sshd, ca, '[gate]\nshells = "refuse"\n')
    try:
        _refused_shell(gated, agent)
    finally:
        gated.stop()


def test_interactive_shell_is_line_gated_by_default(gated: RunningBastion, agent: Agent) -> None:
    """By default a PTY shell runs with the bastion owning the line: allowed lines run, a
    denied one never reaches the target (details: tests/interactive)."""
    result = gated.ssh(agent, "web-01", None, "-tt", input=b"echo $((20+22))\nexit\n")
    assert b"42" in result.stdout, result.stderr


def _refused_shell(gated: RunningBastion, agent: Agent) -> None:
    result = gated.ssh(agent, "web-01", None, "-tt", input=b"echo should-not-run\nexit\n")
    assert result.returncode == 126
    assert b"interactive shells are not allowed on this bastion" in result.stderr
    assert b"should-not-run\r\n" not in result.stdout.replace(b"echo should-not-run", b"")
