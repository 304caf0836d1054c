"""A secret the agent types into a command line reaches the target (that is the agent's doing),
but never the bastion's own record: the audit row and the recording header keep it masked.
(Found by the load script: both kept the line as typed.)"""

from __future__ import annotations

import secrets
import string
import subprocess
import sys
from pathlib import Path

import orjson
from support.bastion import recorded_runtime, start_bastion, target_block, write_config

from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget


def fake_github_token() -> str:
    """A generated value shaped like a GitHub token (not a credential)."""
    alphabet = string.ascii_letters + string.digits
    return "ghp_" + "".join(secrets.choice(alphabet) for _ in range(36))


def test_secret_in_command_line_is_masked_in_audit_and_recording(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent
) -> None:
    token = fake_github_token()
    config = write_config(tmp_path, ca, target_block(sshd))
    running = start_bastion(config, recorded_runtime)
    try:
        result = running.ssh(agent, "web-01", f"echo {token} tagged-line")
    finally:
        running.stop()
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"[MASKED:github-token] tagged-line\n"
    exported = subprocess.run(
        [sys.executable, "-m", "bastion.cli", "audit", "export", "--format", "jsonl",
         "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    rows = [orjson.loads(line) for line in exported.stdout.splitlines()]
    (row,) = [r for r in rows if r["kind"] == "command"]
    assert row["fields"]["command"] == "echo [MASKED:github-token] tagged-line"
    (cast,) = (tmp_path / "state" / "recordings").rglob("*.cast")
    header = orjson.loads(cast.read_text().splitlines()[0])
    assert header["command"] == "echo [MASKED:github-token] tagged-line"
    for path in (tmp_path / "state").rglob("*"):  # database, WAL, recordings, seals
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
