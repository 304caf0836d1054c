"""Taken ports fail `bastion serve` at start with one line, as real processes (issue 22, item 5).

- a taken HTTP port: the process exits naming the port, and nothing is left listening;
- a taken SSH port: with worker processes the port is shared through SO_REUSEPORT, which the
  kernel grants any process of the same user; a second bastion (its own state, its own audit
  chain) and a foreign SO_REUSEPORT listener are both refused, and the first keeps serving.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.bastion import target_block, write_config
from support.bastion_process import ServeProcess, alive

from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget, free_port

POLICY = Path(__file__).resolve().parents[2] / "config" / "policy.toml"


def _config(
    directory: Path, ca: CertificateAuthority, sshd: SshdTarget, *, ssh: int, http: int,
    workers: int,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    extra = f'[policy]\nfile = "{POLICY}"\n[http]\nlisten = "127.0.0.1:{http}"\n'
    config = write_config(directory, ca, target_block(sshd), extra=extra, workers=workers)
    config.write_text(config.read_text().replace('"127.0.0.1:0"', f'"127.0.0.1:{ssh}"', 1))
    return config


def _serve_expecting_failure(config: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "bastion.cli", "serve", "--config", str(config),
             "--log-format", "text"],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"serve hung instead of failing:\n{exc.stderr!r}") from None


def _nothing_listens(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def taken() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as a worker would
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_taken_http_port_fails_at_start(
    tmp_path: Path, ca: CertificateAuthority, sshd: SshdTarget, taken: socket.socket,
    workers: int,
) -> None:
    http = taken.getsockname()[1]
    ssh = free_port()
    result = _serve_expecting_failure(
        _config(tmp_path, ca, sshd, ssh=ssh, http=http, workers=workers)
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"bastion: cannot listen for HTTP on 127.0.0.1:{http}: Address already in use"
    assert "Traceback" not in result.stderr
    assert _nothing_listens(ssh)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_foreign_listener_on_the_ssh_port_is_refused(
    tmp_path: Path, ca: CertificateAuthority, sshd: SshdTarget, taken: socket.socket,
    workers: int,
) -> None:
    ssh = taken.getsockname()[1]
    result = _serve_expecting_failure(
        _config(tmp_path, ca, sshd, ssh=ssh, http=free_port(), workers=workers)
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"bastion: cannot listen on 127.0.0.1:{ssh}: address already in use")
    assert "worker.started" not in result.stderr  # refused before any worker joined the port


def test_a_second_bastion_on_the_same_ssh_port_is_refused(
    tmp_path: Path, ca: CertificateAuthority, sshd: SshdTarget, agent: Agent
) -> None:
    ssh = free_port()
    first = ServeProcess.start(_config(tmp_path / "a", ca, sshd, ssh=ssh, http=0, workers=2))
    try:
        for workers in (2, 1):
            result = _serve_expecting_failure(
                _config(tmp_path / f"b{workers}", ca, sshd, ssh=ssh, http=0, workers=workers)
            )
            assert result.returncode != 0
            assert result.stderr.strip().splitlines()[-1] == (
                f"bastion: cannot listen on 127.0.0.1:{ssh}: another bastion already serves"
                " this port"
            )
            assert not (tmp_path / f"b{workers}" / "state" / "bastion.db").exists()
        for _ in range(6):  # every connection still reaches the first bastion's workers
            done = first.ssh(agent, "echo still-mine")
            assert done.stdout == b"still-mine\n", done.stderr
        assert all(alive(pid) for pid in first.worker_pids().values())
    finally:
        first.stop()
