"""Recording faults at the bastion level: a SIGKILL mid-session, a full recordings disk."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.bastion import recorded_runtime, start_bastion, target_block, write_config

from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget, free_port, wait_port

POLICY = Path(__file__).resolve().parents[2] / "config" / "policy.toml"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_sigkill_mid_session_leaves_a_verifiable_unsealed_recording(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent
) -> None:
    """After `kill -9` of the bastion (every process: supervisor and workers, as the OOM killer or
    systemd's final SIGKILL of the unit), the recording verifies up to the cut, flagged unsealed."""
    port = free_port()
    extra = f'[policy]\nfile = "{POLICY}"\n[recording]\nfsync_interval = "200ms"\n'
    config = write_config(tmp_path, ca, target_block(sshd), extra=extra)
    config.write_text(config.read_text().replace('"127.0.0.1:0"', f'"127.0.0.1:{port}"'))
    server = subprocess.Popen(
        [sys.executable, "-m", "bastion.cli", "serve", "--config", str(config)],
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, so one signal reaches every worker
    )
    try:
        wait_port(port, 30)
        known = tmp_path / "known"
        host_pub = (tmp_path / "ssh_host_ed25519_key.pub").read_text().strip()
        known.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
        session = subprocess.Popen(
            [
                "ssh", "-F", "/dev/null", "-p", str(port), "-i", str(agent.key),
                "-o", f"CertificateFile={agent.cert}", "-o", f"UserKnownHostsFile={known}",
                "-o", "BatchMode=yes", "web-01@127.0.0.1",
                "for i in $(seq 1 100); do echo line-$i; sleep 0.05; done",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert session.stdout is not None
        for _ in range(20):
            session.stdout.readline()
        time.sleep(0.6)  # a few periodic syncs (checkpoints) happen
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)
        session.wait(10)
    finally:
        if server.poll() is None:
            server.kill()
    cast = next((tmp_path / "state" / "recordings").rglob("*.cast"))
    verify = cli("recordings", "verify", "--config", str(config), str(cast))
    assert verify.returncode != 0
    assert "unsealed" in (verify.stdout + verify.stderr).lower()
    rendered = subprocess.run(
        [str(Path(sys.executable).parent / "asciinema"), "cat", str(cast)],
        capture_output=True,
        timeout=30,
    )
    assert b"line-1\r\n" in rendered.stdout or b"line-1\n" in rendered.stdout


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mount_point)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {done.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_full_recordings_disk_ends_running_session_and_refuses_new_ones(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent, tiny_disk: Path
) -> None:
    """When the recordings filesystem fills up, the running session ends with a clear line and
    new sessions are refused: nothing is relayed unrecorded."""
    extra = f'[recording]\ndir = "{tiny_disk}/recordings"\nfsync_interval = "100ms"\n'
    config = write_config(tmp_path, ca, target_block(sshd), extra=extra)
    running = start_bastion(config, recorded_runtime)
    try:
        flood = running.ssh(agent, "web-01", "head -c 3000000 /dev/zero | od -v", timeout=60)
        assert flood.returncode == 255
        assert b"bastion: recording failed" in flood.stderr
        assert len(flood.stdout) < 3_000_000  # it did not all get through unrecorded
        later = running.ssh(agent, "web-01", "echo should-not-run")
        assert later.returncode == 255
        assert b"should-not-run" not in later.stdout
        assert b"bastion:" in later.stderr
    finally:
        running.stop()
