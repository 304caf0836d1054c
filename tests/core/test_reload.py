"""SIGHUP reload: a new policy applies to new commands, open sessions continue, a broken config
is refused (the old one stays) with a clear log line."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from support.bastion import target_block, write_config

from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget, free_port, wait_port

ALLOW_ECHO = """
[policy]
version = 1
default = "review"

[[rules]]
id = "everyday"
action = "allow"
reason = "harmless"
program = ["echo", "sleep", "true"]
"""
DENY_ECHO = ALLOW_ECHO.replace(
    '[[rules]]\nid = "everyday"',
    '[[rules]]\nid = "no-echo"\naction = "deny"\nreason = "echo is off"\nprogram = ["echo"]\n\n'
    '[[rules]]\nid = "everyday"',
)


def wait_for_log(log: Path, needle: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if needle in text:
            return text
        time.sleep(0.1)
    raise AssertionError(f"{needle!r} never logged:\n{log.read_text()[-2000:]}")


def test_sighup_reload(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent
) -> None:
    """Reload swaps the policy for new commands only; a broken file keeps the old config."""
    port = free_port()
    policy = tmp_path / "policy.toml"
    policy.write_text(ALLOW_ECHO)
    config = write_config(
        tmp_path, ca, target_block(sshd), extra='[policy]\nfile = "policy.toml"\n'
    )
    config.write_text(config.read_text().replace('"127.0.0.1:0"', f'"127.0.0.1:{port}"'))
    log = tmp_path / "bastion.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "bastion.cli", "serve", "--config", str(config)], stderr=sink
        )
    try:
        wait_port(port, 30)
        known = tmp_path / "known"
        known.write_text(
            f"[127.0.0.1]:{port} {(tmp_path / 'ssh_host_ed25519_key.pub').read_text()}"
        )
        base = [
            "ssh", "-F", "/dev/null", "-p", str(port), "-i", str(agent.key),
            "-o", f"CertificateFile={agent.cert}", "-o", f"UserKnownHostsFile={known}",
            "-o", "BatchMode=yes", "web-01@127.0.0.1",
        ]  # fmt: skip
        assert subprocess.run([*base, "echo one"], capture_output=True, timeout=30).returncode == 0
        running = subprocess.Popen(
            [*base, "echo started; sleep 2; echo finished"], stdout=subprocess.PIPE
        )
        assert running.stdout is not None and running.stdout.readline() == b"started\n"

        policy.write_text(DENY_ECHO)
        server.send_signal(signal.SIGHUP)
        wait_for_log(log, "config.reloaded")
        denied = subprocess.run([*base, "echo two"], capture_output=True, timeout=30)
        assert denied.returncode == 126 and b"no-echo" in denied.stderr
        assert running.stdout.readline() == b"finished\n"  # the open session went on
        assert running.wait(10) == 0

        config.write_text(config.read_text() + "\n[[targets]\nbroken")
        server.send_signal(signal.SIGHUP)
        text = wait_for_log(log, "config.reload_failed")
        assert "not valid TOML" in text
        again = subprocess.run([*base, "echo three"], capture_output=True, timeout=30)
        assert again.returncode == 126  # still the last good policy
        assert server.poll() is None
    finally:
        server.terminate()
        server.wait(20)
