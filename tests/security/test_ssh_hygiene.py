"""SSH hygiene: ssh-audit finds nothing to fail; the version string names no library."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
from support.bastion import RunningBastion, bare_runtime, start_bastion, target_block, write_config

from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget

SSH_AUDIT = shutil.which("ssh-audit") or str(Path(sys.executable).parent / "ssh-audit")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run_ssh_audit(port: int) -> tuple[int, list[str]]:
    done = subprocess.run(
        [SSH_AUDIT, "-p", str(port), "127.0.0.1"], capture_output=True, text=True, timeout=60
    )
    return done.returncode, ANSI.sub("", done.stdout).splitlines()


@pytest.fixture(params=["default", "post-quantum-only"])
def audited(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sshd: SshdTarget,
    ca: CertificateAuthority,
) -> Iterator[RunningBastion]:
    config = write_config(tmp_path, ca, target_block(sshd))
    text = config.read_text().replace("[server]\n", f'[server]\nkex = "{request.param}"\n', 1)
    config.write_text(text)
    running = start_bastion(config, bare_runtime)
    yield running
    running.stop()


def test_ssh_audit_reports_no_failures(audited: RunningBastion) -> None:
    """No algorithm the bastion offers is rated [fail]; in post-quantum-only mode nothing is
    even [warn]; by default the only warnings are curve25519's lack of post-quantum protection
    (kept for OpenSSH clients older than 9.9)."""
    _, lines = run_ssh_audit(audited.port)
    assert lines, "ssh-audit printed nothing"
    failures = [line for line in lines if "[fail]" in line]
    warnings = [line for line in lines if "[warn]" in line]
    assert failures == []
    if audited.runtime.config.server.kex == "post-quantum-only":
        assert warnings == []
    else:
        assert warnings, "expected the documented curve25519 warnings"
        assert all("curve25519" in w and "post-quantum" in w for w in warnings), warnings


def test_version_string_names_no_library(audited: RunningBastion) -> None:
    """The banner is `SSH-2.0-bastion`: no asyncssh name or version for scanners."""
    _, lines = run_ssh_audit(audited.port)
    banner = next(line for line in lines if "(gen) banner:" in line)
    assert banner.split("banner:")[1].strip() == "SSH-2.0-bastion"


async def test_post_quantum_kex_is_negotiated(audited: RunningBastion, agent: Agent) -> None:
    """A client that offers only ML-KEM connects: the hybrid post-quantum exchange is offered."""
    async with asyncssh.connect(
        "127.0.0.1",
        audited.port,
        username="web-01",
        client_keys=[
            (asyncssh.read_private_key(str(agent.key)), asyncssh.read_certificate(str(agent.cert)))
        ],
        known_hosts=str(audited.known_hosts),
        config=[],
        agent_path=None,
        kex_algs=["mlkem768x25519-sha256"],
    ) as conn:
        result = await conn.run("echo pq")
    assert result.stdout == "pq\n"
