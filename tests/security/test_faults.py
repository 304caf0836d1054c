"""Faults: the bastion fails closed for the affected session, keeps serving the others, and
loses no audit row or recorded event it acknowledged."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
from support.bastion import recorded_runtime, start_bastion, target_block, write_config

from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget, free_port, start_sshd, wait_port

FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli", *args], capture_output=True, text=True, timeout=60
    )


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    frontier = [pid]
    while frontier:
        out = subprocess.run(
            ["pgrep", "-P", str(frontier.pop())], capture_output=True, text=True
        ).stdout.split()
        found += [int(child) for child in out]
        frontier += [int(child) for child in out]
    return found


def test_target_drops_mid_transfer(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent
) -> None:
    """The target's side vanishing mid-transfer ends that session with one line and exit 255;
    the recording is sealed, the audit chain intact, and other targets keep working."""
    flaky = start_sshd(tmp_path / "flaky")
    config = write_config(
        tmp_path, ca, target_block(flaky, "web-flaky") + target_block(sshd, "web-01")
    )
    running = start_bastion(config, recorded_runtime)
    try:
        proc = subprocess.Popen(
            [*running.ssh_args(agent, "web-flaky"), "while head -c 65536 /dev/zero; do :; done"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        proc.stdout.read(1 << 20)  # a megabyte is flowing
        session = descendants(flaky.process.pid)
        assert session
        for pid in session:  # the whole session tree dies (sshd's privsep child holds the socket)
            os.kill(pid, signal.SIGKILL)
        proc.stdout.read()
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 255
        assert b"bastion: the connection to the target was lost" in err
        other = running.ssh(agent, "web-01", "echo still-here")
        assert other.stdout == b"still-here\n"
    finally:
        running.stop()
        flaky.stop()
    for cast in (tmp_path / "state" / "recordings").rglob("*.cast"):
        verify = cli("recordings", "verify", "--config", str(config), str(cast))
        assert verify.returncode == 0, verify.stdout + verify.stderr
    assert cli("audit", "verify", "--config", str(config)).returncode == 0


def test_database_locked_by_another_process(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent
) -> None:
    """While another process holds the database's write lock, a command waits for its audit
    row rather than running unaudited; when the lock goes, it runs and the row is there."""
    config = write_config(tmp_path, ca, target_block(sshd))
    running = start_bastion(config, recorded_runtime)
    try:
        assert running.ssh(agent, "web-01", "true").returncode == 0  # database exists
        locker = sqlite3.connect(
            tmp_path / "state" / "bastion.db", isolation_level=None, check_same_thread=False
        )
        locker.execute("BEGIN EXCLUSIVE")
        release = threading.Timer(2.0, locker.rollback)
        release.start()
        began = time.monotonic()
        result = running.ssh(agent, "web-01", "echo after-lock")
        waited = time.monotonic() - began
        release.join()
        locker.close()
        assert result.stdout == b"after-lock\n", result.stderr
        assert waited >= 1.5  # it did wait for the audit row
    finally:
        running.stop()
    rows = [
        orjson.loads(line)
        for line in cli(
            "audit", "export", "--config", str(config), "--format", "jsonl"
        ).stdout.splitlines()
    ]
    commands = [r["fields"]["command"] for r in rows if r["kind"] == "command"]
    assert "echo after-lock" in commands
    assert cli("audit", "verify", "--config", str(config)).returncode == 0


@pytest.mark.skipif(not FAKETIME.exists(), reason="libfaketime is not installed")
def test_clock_jumps(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent
) -> None:
    """A wall clock set back cannot stretch a held command's wait (it still expires on time);
    a clock set forward makes certificates expire (fail closed), never the reverse."""
    (tmp_path / "policy.toml").write_text(
        '[policy]\nversion = 1\ndefault = "review"\n'
        '[[rules]]\nid = "quick"\naction = "review"\nreason = "quick expiry"\n'
        'program = ["sleep"]\ntimeout = "3s"\n'
        '[[rules]]\nid = "ok"\naction = "allow"\nreason = "harmless"\nprogram = ["echo"]\n'
    )
    port = free_port()
    config = write_config(
        tmp_path, ca, target_block(sshd), extra='[policy]\nfile = "policy.toml"\n'
    )
    config.write_text(config.read_text().replace('"127.0.0.1:0"', f'"127.0.0.1:{port}"', 1))
    clock = tmp_path / "clock"
    clock.write_text("+0\n")
    env = dict(
        os.environ,
        LD_PRELOAD=str(FAKETIME),
        FAKETIME_TIMESTAMP_FILE=str(clock),
        FAKETIME_NO_CACHE="1",
        DONT_FAKE_MONOTONIC="1",
    )
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "bastion.cli", "serve", "--config", str(config)],
        env=env,
        stderr=log,
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
        held = subprocess.Popen(
            [*base, "sleep 1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        assert held.stderr is not None
        assert held.stderr.readline().startswith(b"bastion: held for review as ")
        clock.write_text("-1h\n")  # the wall clock jumps an hour back
        began = time.monotonic()
        try:
            _, err = held.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError((tmp_path / "serve.log").read_text()[-3000:]) from None
        assert held.returncode == 78, (err, (tmp_path / "serve.log").read_text()[-3000:])
        assert time.monotonic() - began < 15

        clock.write_text("+2d\n")  # now two days ahead: every certificate is expired
        late = subprocess.run([*base, "echo hi"], capture_output=True, timeout=30)
        assert late.returncode == 255
        assert b"certificate has expired" in late.stderr
    finally:
        server.kill()
        server.wait()
