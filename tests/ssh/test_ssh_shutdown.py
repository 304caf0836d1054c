"""Graceful stop: open sessions get a notice and are closed cleanly."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from support.bastion import bare_runtime, start_bastion, target_block, write_config

from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget


def test_stop_tells_open_sessions_and_closes_them(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent
) -> None:
    """Stopping the bastion ends a running command with a one-line notice and exit 255."""
    running = start_bastion(write_config(tmp_path, ca, target_block(sshd)), bare_runtime)
    proc = subprocess.Popen(
        [*running.ssh_args(agent, "web-01"), "echo started; sleep 60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"started\n"
    began = time.monotonic()
    running.stop()
    _, err = proc.communicate(timeout=20)
    assert time.monotonic() - began < 10
    assert not running.thread.is_alive()
    assert b"bastion: the bastion is shutting down; this session was closed" in err
    assert proc.returncode == 255
