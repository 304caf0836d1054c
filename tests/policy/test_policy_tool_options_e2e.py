"""Option-level declarations on the data path: the real ssh client, the bastion, a real sshd.

The held lines would only `touch` a marker if they ran; the test proves they do not.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.bastion import RunningBastion, start_shipped_policy

from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget


@pytest.fixture(scope="module")
def gated(
    tmp_path_factory: pytest.TempPathFactory, sshd: SshdTarget, ca: CertificateAuthority
) -> Iterator[RunningBastion]:
    running = start_shipped_policy(tmp_path_factory.mktemp("gated-tools"), sshd, ca)
    yield running
    running.stop()


@pytest.fixture
def trace_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="bastion-test-tools-"))
    path.chmod(0o777)
    (path / "in.txt").write_text("b\na\nb\n", encoding="utf-8")
    (path / "in.txt").chmod(0o666)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def test_declared_near_misses_run(gated: RunningBastion, agent: Agent, trace_dir: Path) -> None:
    """Everyday sed/awk/sort lines pass the option-level gate and run on the target."""
    src = trace_dir / "in.txt"
    result = gated.ssh(agent, "web-01", f"sed -n '1,2p' {src} | sort -u | awk '{{print $1}}'")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"a\nb\n"


@pytest.mark.parametrize(
    ("template", "rule"),
    [
        ("sed '1e touch {m}' {src}", b"tool-runs"),
        ("awk 'BEGIN{{system(\"touch {m}\")}}'", b"tool-runs"),
        ("sort --compress-prog='touch {m}' {src}", b"tool-runs"),
        ("sort --frobnicate {src}; touch {m}", b"tool-unknown"),
    ],
)
def test_tool_features_that_run_code_are_held(
    gated: RunningBastion, agent: Agent, trace_dir: Path, template: str, rule: bytes
) -> None:
    """A sed `e`, an awk system(), sort's compress program and an undeclared option are held
    for review before the target sees the line: the marker is never created."""
    marker = trace_dir / "ran"
    line = template.format(m=marker, src=trace_dir / "in.txt")
    proc = subprocess.Popen([*gated.ssh_args(agent, "web-01"), line],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert first.startswith(b"bastion: held for review as "), first
        assert rule in first
        time.sleep(0.3)
        assert proc.poll() is None
        assert not marker.exists()
    finally:
        proc.kill()
        proc.wait()
