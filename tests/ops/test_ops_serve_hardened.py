"""`bastion serve` as a real process under MemoryDenyWriteExecute, and what its logs contain."""

from __future__ import annotations

import ctypes
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from support.bastion import target_block, write_config

from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget, free_port, wait_port

POLICY = Path(__file__).resolve().parents[2] / "config" / "policy.toml"
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1


def _mdwe_supported() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", "pass"], preexec_fn=_deny_write_execute, capture_output=True
    )
    return probe.returncode == 0


def _deny_write_execute() -> None:
    """What systemd's MemoryDenyWriteExecute=yes does, via the kernel's prctl (Linux >= 6.3)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        os._exit(97)


@dataclass
class Run:
    stdout: bytes
    status: int
    logs: list[dict[str, object]]
    raw_logs: str
    command: str
    output_marker: str
    agent: Agent


@pytest.fixture(scope="module")
def hardened_run(
    tmp_path_factory: pytest.TempPathFactory,
    sshd: SshdTarget,
    ca: CertificateAuthority,
    agent: Agent,
) -> Iterator[Run]:
    """Serve under W^X, run one command through it, stop with SIGTERM, keep the JSON logs."""
    if not _mdwe_supported():
        pytest.skip("this kernel has no PR_SET_MDWE (Linux >= 6.3)")
    tmp = tmp_path_factory.mktemp("hardened")
    port = free_port()
    config = write_config(tmp, ca, target_block(sshd), extra=f'[policy]\nfile = "{POLICY}"\n')
    config.write_text(config.read_text().replace('"127.0.0.1:0"', f'"127.0.0.1:{port}"'))
    server = subprocess.Popen(
        [sys.executable, "-m", "bastion.cli", "serve", "--config", str(config)],
        stderr=subprocess.PIPE,
        preexec_fn=_deny_write_execute,
    )
    left, right = secrets.token_hex(4), secrets.token_hex(4)
    command = f"printf %s%s {left} {right}"
    try:
        try:
            wait_port(port, 30)
        except TimeoutError:
            server.kill()
            raise AssertionError(server.communicate(timeout=10)[1].decode()[-3000:]) from None
        host_pub = (tmp / "ssh_host_ed25519_key.pub").read_text().strip()
        known = tmp / "known"
        known.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
        done = subprocess.run(
            [
                "ssh", "-F", "/dev/null", "-p", str(port), "-i", str(agent.key),
                "-o", f"CertificateFile={agent.cert}", "-o", f"UserKnownHostsFile={known}",
                "-o", "BatchMode=yes", "web-01@127.0.0.1", command,
            ],
            capture_output=True,
            timeout=30,
        )  # fmt: skip
        server.terminate()
        server.wait(20)
    finally:
        if server.poll() is None:
            server.kill()
        _, err = server.communicate(timeout=10)
    raw = err.decode()
    logs = [orjson.loads(line) for line in raw.splitlines() if line.strip()]
    yield Run(done.stdout, done.returncode, logs, raw, command, left + right, agent)


def test_serve_works_without_writable_executable_memory(hardened_run: Run) -> None:
    """The whole data path (TLS-free SSH, policy, masking, recording, SQLite) runs under W^X."""
    assert hardened_run.status == 0
    assert hardened_run.stdout.decode() == hardened_run.output_marker
    assert any(doc["event"] == "shutdown.done" for doc in hardened_run.logs)


def test_logs_are_json_lines_with_context_and_no_payload(hardened_run: Run) -> None:
    """Off a TTY every line is JSON; session events carry session/identity/target; the command
    line and its output never appear in the logs."""
    events = {str(doc["event"]): doc for doc in hardened_run.logs}
    for name in ("auth.ok", "command.decided", "channel.end", "connection.close"):
        doc = events[name]
        assert doc["target"] == "web-01", doc
        assert doc["identity"] == "ci-agent-1", doc
        assert doc["session"], doc
        assert {"ts", "level", "logger"} <= set(doc), doc
    assert events["command.decided"]["decision"] == "allow"
    assert hardened_run.output_marker not in hardened_run.raw_logs
    assert hardened_run.command not in hardened_run.raw_logs
    assert str(hardened_run.agent.cert) not in hardened_run.raw_logs
