"""`bastion demo` as a real process: cleanup on failure, the folders it may delete, the banner."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


def _demo(*args: str, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli", "demo", *args],
        capture_output=True, text=True, cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL,
    )


def test_a_failed_demo_stops_its_sshd(tmp_path: Path) -> None:
    """The bastion's port is taken: the demo fails with one line and leaves no sshd behind."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _demo("--dir", str(tmp_path / "d"), "--port", str(port), cwd=tmp_path)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("bastion: ") and str(port) in last, result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "d" / "target" / "sshd_config").exists()  # sshd was started ...
    assert _processes_mentioning(str(tmp_path / "d" / "target")) == []  # ... and stopped


def test_a_demo_without_its_policy_stops_its_sshd(tmp_path: Path) -> None:
    """A config the demo cannot load (here: the shipped policy missing, as from a broken
    install) fails after sshd started: one line, and sshd is stopped."""
    missing = tmp_path / "nowhere" / "policy.toml"
    code = (
        "import pathlib, sys, bastion.shipped as s\n"
        f"s.policy_path = lambda: pathlib.Path({str(missing)!r})\n"
        "from bastion.cli import main\n"
        f"sys.exit(main(['demo', '--dir', {str(tmp_path / 'd')!r}, '--port', '0']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, timeout=90, stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("bastion: "), result.stderr
    assert str(missing) in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "d" / "target" / "sshd_config").exists()
    assert _processes_mentioning(str(tmp_path / "d" / "target")) == []
