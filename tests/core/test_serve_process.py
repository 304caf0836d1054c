"""`bastion serve` and `bastion demo` as real processes, the way an operator runs them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.bastion import target_block, write_config

from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget, free_port, wait_port

POLICY = Path(__file__).resolve().parents[2] / "config" / "policy.toml"


def test_serve_runs_commands_and_stops_gracefully_on_sigterm(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent
) -> None:
    """`bastion serve` relays a command, and on SIGTERM tells the open session and exits 0."""
    port = free_port()
    config = write_config(tmp_path, ca, target_block(sshd), extra=f'[policy]\nfile = "{POLICY}"\n')
    config.write_text(config.read_text().replace('"127.0.0.1:0"', f'"127.0.0.1:{port}"'))
    server = subprocess.Popen(
        [sys.executable, "-m", "bastion.cli", "serve", "--config", str(config)],
        stderr=subprocess.PIPE,
    )
    try:
        try:
            wait_port(port, 30)
        except TimeoutError:
            server.kill()
            raise AssertionError(server.communicate(timeout=10)[1].decode()[-3000:]) from None
        host_pub = (tmp_path / "ssh_host_ed25519_key.pub").read_text().strip()
        known = tmp_path / "known"
        known.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
        base = [
            "ssh",
            "-F",
            "/dev/null",
            "-p",
            str(port),
            "-i",
            str(agent.key),
            "-o",
            f"CertificateFile={agent.cert}",
            "-o",
            f"UserKnownHostsFile={known}",
            "-o",
            "BatchMode=yes",
            "web-01@127.0.0.1",
        ]
        done = subprocess.run([*base, "echo hi; exit 3"], capture_output=True, timeout=30)
        assert (done.stdout, done.returncode) == (b"hi\n", 3), done.stderr
        held = subprocess.Popen(
            [*base, "echo started; sleep 60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert held.stdout is not None and held.stdout.readline() == b"started\n"
        server.send_signal(signal.SIGTERM)
        _, err = held.communicate(timeout=20)
        assert b"the bastion is shutting down" in err
        assert server.wait(20) == 0
    finally:
        if server.poll() is None:
            server.kill()
        _, logs = server.communicate(timeout=10)
    events = [line for line in logs.decode().splitlines() if '"event":"shutdown.done"' in line]
    assert events, logs[-2000:]


def test_demo_prints_a_working_ssh_command(tmp_path: Path) -> None:
    """`bastion demo` starts a bastion and target and prints an ssh command that works."""
    port = free_port()
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bastion.cli",
            "demo",
            "--dir",
            str(tmp_path / "demo"),
            "--port",
            str(port),
            "--http-port",
            "0",
        ],
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        assert demo.stderr is not None
        command = None
        deadline = time.monotonic() + 60
        while command is None and time.monotonic() < deadline:
            line = demo.stderr.readline().decode()
            if line.strip().startswith("ssh -p"):
                command = line.strip()
        assert command is not None
        argv = re.findall(r"'[^']*'|\S+", command)
        argv = [a.strip("'") for a in argv]
        result = subprocess.run(
            argv, capture_output=True, timeout=30, cwd=tmp_path, env=dict(os.environ)
        )
        assert result.stdout == b"hi\n", result.stderr
        assert result.returncode == 3
        held = subprocess.Popen(
            [*argv[:-1], "az group delete -n rg --yes"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
        )
        assert held.stderr is not None
        assert held.stderr.readline().startswith(b"bastion: held for review as ")
        held.kill()
        held.wait()
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(20)
