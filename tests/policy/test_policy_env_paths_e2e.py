"""Environment grammar, secret reads and canonical paths on the data path: the real ssh client
through the bastion (shipped policy) to a real sshd."""

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
    running = start_shipped_policy(tmp_path_factory.mktemp("gated-env"), sshd, ca)
    yield running
    running.stop()


@pytest.fixture
def marker() -> Iterator[Path]:
    """A path the target's login could create, to prove whether a command ran there."""
    with shared_folder("bastion-test-env-") as folder:
        yield folder / "ran"


def test_everyday_assignments_reach_the_target(gated: RunningBastion, agent: Agent) -> None:
    """Prefix and exported assignments that only look risky run as typed."""
    line = ('export PATH="$HOME/.local/bin:$PATH"; PAGER=cat GIT_EDITOR=true '
            "PYTHONPATH=src printenv PAGER GIT_EDITOR PYTHONPATH")
    result = gated.ssh(agent, "web-01", line)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"cat\ntrue\nsrc\n"


def test_printing_a_secret_variable_is_denied(
    gated: RunningBastion, agent: Agent, marker: Path
) -> None:
    """`echo $AZURE_CLIENT_SECRET` is refused with its rule; nothing of the line runs."""
    result = gated.ssh(agent, "web-01", f"touch {marker}; echo $AZURE_CLIENT_SECRET")
    assert result.returncode == 126
    assert b"secret-variable-print" in result.stderr
    assert not marker.exists()


def test_canonical_secret_path_is_denied(
    gated: RunningBastion, agent: Agent, marker: Path
) -> None:
    """/proc/self/root/etc/shadow is /etc/shadow."""
    result = gated.ssh(agent, "web-01", f"touch {marker}; cat /proc/self/root/etc/shadow")
    assert result.returncode == 126
    assert b"secret-read" in result.stderr
    assert not marker.exists()


def test_pager_with_a_command_is_held(
    gated: RunningBastion, agent: Agent, marker: Path
) -> None:
    """A pager that is a command is held for review; the target sees nothing meanwhile."""
    proc = subprocess.Popen(
        [*gated.ssh_args(agent, "web-01"), f"GIT_PAGER='touch {marker}' git log"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith(b"bastion: held for review as "), line
        assert b"exec-env" in line
        time.sleep(0.5)
        assert proc.poll() is None
        assert not marker.exists()
    finally:
        proc.kill()
        proc.wait()
