"""`bastion demo` as a real process: cleanup on failure, the folders it may delete, the banner."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bastion.testing.sshd import free_port


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


def _taken_port_demo(directory: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A demo that sets its folder up, then fails fast (its SSH port is taken)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        return _demo("--dir", str(directory), "--port", str(taken.getsockname()[1]),
                     "--http-port", "0", cwd=cwd)


def test_the_demo_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious\n")
    result = _demo("--dir", str(mine), "--port", "0", "--http-port", "0", cwd=tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"bastion: demo: {mine} exists and was not made by bastion demo; refusing to delete it"
        " (choose another --dir, or remove it yourself)"
    ]
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert (mine / "notes.txt").read_text() == "precious\n"
    file = tmp_path / "file"
    file.write_text("x")
    result = _demo("--dir", str(file), "--port", "0", cwd=tmp_path)
    assert result.returncode != 0 and file.read_text() == "x"


def test_the_demo_remakes_only_its_own_folder(tmp_path: Path) -> None:
    """A folder an earlier demo made (the marker) is remade, even after a failed run; an empty
    folder is used; the marker is what makes the difference."""
    made = tmp_path / "made"
    first = _taken_port_demo(made, tmp_path)
    assert first.returncode != 0 and (made / ".bastion-demo").is_file()
    (made / "left-over").write_text("old run")
    second = _taken_port_demo(made, tmp_path)
    assert second.returncode != 0, second.stderr
    assert not (made / "left-over").exists()  # remade
    assert (made / "agent-cert.pub").is_file() and (made / ".bastion-demo").is_file()
    (made / ".bastion-demo").unlink()  # without the marker it is someone else's folder
    third = _taken_port_demo(made, tmp_path)
    assert "was not made by bastion demo" in third.stderr
    assert (made / "agent-cert.pub").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _taken_port_demo(empty, tmp_path).stderr.count("was not made") == 0
    assert (empty / ".bastion-demo").is_file()


def test_the_demo_shows_the_operators_side(tmp_path: Path) -> None:
    """Run as the console script: the banner names that script, and the HTTP server it names
    answers (health, metrics, and the approval page a held command links to)."""
    script = Path(sys.executable).parent / "bastion"
    assert script.is_file()
    demo = subprocess.Popen(
        [str(script), "demo", "--dir", "d", "--port", str(free_port()), "--http-port", "0"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, cwd=tmp_path,
    )
    try:
        assert demo.stderr is not None
        banner: list[str] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any("Ctrl-C" in b for b in banner):
            line = demo.stderr.readline().decode()
            if not line and demo.poll() is not None:
                break
            if not line.startswith("{"):
                banner.append(line)
        text = "".join(banner)
        assert "Ctrl-C stops." in text, text
        assert f"{script} operators add alice --group sre --config d/bastion.toml" in text
        assert f"{script} approvals approve ID --operator alice" in text
        web = re.search(r"health: (http://127\.0\.0\.1:(\d+))/healthz", text)
        assert web is not None, text
        base, http_port = web.group(1), web.group(2)
        assert f"metrics: {base}/metrics" in text
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as r:
            assert r.status == 200
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
            assert "bastion_sessions_total" in r.read().decode()
        ssh = next(b.strip() for b in banner if b.strip().startswith("ssh -p"))
        argv = [a.strip("'") for a in re.findall(r"'[^']*'|\S+", ssh)]
        held = subprocess.Popen([*argv[:-1], "az group delete -n rg --yes"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
        try:
            assert held.stderr is not None
            line = held.stderr.readline().decode()
            link = re.search(r"(http://127\.0\.0\.1:(\d+)/approvals/([\w-]+))", line)
            assert link is not None, line
            assert link.group(2) == http_port
            with urllib.request.urlopen(link.group(1), timeout=10) as r:
                assert r.status == 200 and link.group(3) in r.read().decode()
        finally:
            held.kill()
            held.wait()
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(30)


def test_command_path_names_what_ran(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bastion.demo import command_path

    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "bastion").write_text("#!/bin/sh\n")
    (venv_bin / "bastion").chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr(sys, "argv", [str(venv_bin / "bastion"), "demo"])
    assert command_path() == ".venv/bin/bastion"
    monkeypatch.setenv("PATH", f"{venv_bin}:/usr/bin:/bin")
    assert command_path() == "bastion"
    monkeypatch.setattr(sys, "argv", ["/somewhere/bastion/cli.py", "demo"])
    assert command_path().endswith(" -m bastion.cli")
