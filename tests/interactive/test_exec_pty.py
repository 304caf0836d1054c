"""Exec channels with a PTY (``ssh -tt bastion 'less FILE'``) get a shell's protection.

Issue 17, item 1: the real ``ssh -tt`` client through the bastion (shipped policy) to the real
sshd. The payload is always ``touch MARKER`` in a throwaway folder; the control runs (the same
keystrokes straight to the sshd, without the bastion) show that the payload would run there.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from interactive.gated import start_line_gated
from support.bastion import RunningBastion

from bastion.approval import EXIT_DEFERRED
from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget

# A held exec command returns at once (the hold itself is tested in tests/approval).
# Every held test line stays pending (deferred): more than the default per-identity cap of 5.
_DEFER = (
    '[approvals]\nmode = "defer"\n[http]\nlisten = "127.0.0.1:0"\n'
    "[limits]\nmax_pending_approvals_per_identity = 1000\n"
)


@pytest.fixture(scope="module")
def exec_gated(
    tmp_path_factory: pytest.TempPathFactory, sshd: SshdTarget, ca: CertificateAuthority
) -> Iterator[RunningBastion]:
    running = start_line_gated(tmp_path_factory.mktemp("execpty"), sshd, ca, _DEFER)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def less_passthrough(
    tmp_path_factory: pytest.TempPathFactory, sshd: SshdTarget, ca: CertificateAuthority
) -> Iterator[RunningBastion]:
    """less configured to run with input passed through: only the pager guard stands."""
    extra = _DEFER + '[interactive]\npassthrough = ["less"]\n'
    running = start_line_gated(tmp_path_factory.mktemp("execpty-less"), sshd, ca, extra)
    yield running
    running.stop()


@pytest.fixture
def work(sshd: SshdTarget) -> Iterator[Path]:
    """A throwaway folder the target login can write: the payload would leave a file here."""
    path = Path(tempfile.mkdtemp(prefix="bastion-execpty-"))
    path.chmod(0o777)
    (path / "notes.txt").write_text("".join(f"line {i} of the notes\n" for i in range(200)))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _chown_to_login(path: Path, sshd: SshdTarget) -> None:
    if os.geteuid() != 0:
        return
    import pwd

    pw = pwd.getpwnam(sshd.login)
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.chown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)
    os.chown(path, pw.pw_uid, pw.pw_gid)


@pytest.fixture
def repo(work: Path, sshd: SshdTarget) -> Path:
    """A git repository with more commits than a terminal has rows, owned by the login."""
    path = work / "repo"
    env = dict(os.environ, GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_SYSTEM="/dev/null")
    subprocess.run(["git", "init", "-q", str(path)], check=True, env=env)
    for key, value in (("user.name", "Test"), ("user.email", "t@example.invalid")):
        subprocess.run(["git", "-C", str(path), "config", key, value], check=True, env=env)
    for i in range(120):
        subprocess.run(["git", "-C", str(path), "commit", "-q", "--allow-empty", "-m",
                        f"commit number {i}"], check=True, env=env)
    _chown_to_login(work, sshd)
    return path


def direct_args(sshd: SshdTarget, tmp: Path, *options: str) -> list[str]:
    """The real client straight to the sshd with the bastion's upstream key (control runs)."""
    known = tmp / "known_hosts_sshd"
    known.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_public_key}\n")
    return ["ssh", "-F", "/dev/null", "-p", str(sshd.port), "-i", str(sshd.client_key),
            "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={known}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", *options,
            f"{sshd.login}@127.0.0.1"]


def interact(
    args: Sequence[str], steps: Sequence[tuple[bytes, bytes]], timeout: float = 20
) -> tuple[int | None, bytes, bytes]:
    """Run ``args``; for each (expect, keys): wait until stdout shows ``expect``, then type
    ``keys``. Returns (exit status or None if it had to be killed, stdout, stderr)."""
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    out, err = b"", b""
    deadline = time.monotonic() + timeout
    pending = list(steps)

    def pump(wait: float) -> bool:
        nonlocal out, err
        ready, _, _ = select.select([proc.stdout, proc.stderr], [], [], wait)
        got = False
        for stream in ready:
            chunk = os.read(stream.fileno(), 65536)
            if chunk:
                got = True
                if stream is proc.stdout:
                    out += chunk
                else:
                    err += chunk
        return got

    try:
        while time.monotonic() < deadline:
            if pending and pending[0][0] in out:
                proc.stdin.write(pending.pop(0)[1])
                proc.stdin.flush()
                continue
            if not pump(0.1) and proc.poll() is not None:
                break
        while pump(0.05):
            pass
    finally:
        status = proc.poll()
        if status is None:
            proc.kill()
        proc.wait()
        with_rest = proc.stdout.read() + b""
        out += with_rest
        err += proc.stderr.read()
    return status, out, err


# -- the floor: a program that takes over the terminal is review ---------------------------
@pytest.mark.parametrize(
    "command",
    ["less {f}", "man -l {f}", "git log | less", "sudo less {f}", "command less {f}"],
)
def test_pty_exec_of_interactive_program_is_held(
    exec_gated: RunningBastion, agent: Agent, work: Path, command: str
) -> None:
    marker = work / "MARKER"
    args = [*exec_gated.ssh_args(agent, "web-01", "-tt"), command.format(f=work / "notes.txt")]
    status, out, err = interact(args, [(b"", f"!touch {marker}\r".encode()), (b"", b"q")], 10)
    assert status == EXIT_DEFERRED, (status, out, err)
    assert b"interactive program" in err, err
    assert b"line 1 of the notes" not in out  # less never started
    assert not marker.exists()


def test_same_program_without_pty_is_not_held(
    exec_gated: RunningBastion, agent: Agent, work: Path
) -> None:
    """No PTY, no keystrokes: ``less FILE`` only copies the file, as today."""
    result = exec_gated.ssh(agent, "web-01", f"less {work / 'notes.txt'}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"line 0 of the notes\n")


# -- the guard: pagers and editors are off for every exec command --------------------------
def test_less_shell_escape_does_not_run_even_when_less_is_passthrough(
    less_passthrough: RunningBastion, agent: Agent, work: Path, sshd: SshdTarget
) -> None:
    marker = work / "MARKER"
    notes = work / "notes.txt"
    keys = [(b"line 1 of the notes", f"!touch {marker}\r".encode()), (b"not available", b"\rqqq")]
    args = [*less_passthrough.ssh_args(agent, "web-01", "-tt"), f"less {notes}"]
    status, out, err = interact(args, keys)
    assert b"line 1 of the notes" in out, (out, err)  # less did run, on the terminal
    assert b"Command not available" in out, out  # LESSSECURE=1: less refused the escape
    assert status == 0, (status, err)
    assert not marker.exists(), out
    # Control: the same keystrokes straight to the sshd do run the payload.
    control = [*direct_args(sshd, work, "-tt"), f"less {notes}"]
    interact(control, [keys[0], (b"done", b"\rq")])
    assert marker.exists(), "the control run should have run the shell escape"


def test_git_log_on_a_pty_does_not_page(
    exec_gated: RunningBastion, agent: Agent, repo: Path, sshd: SshdTarget, work: Path
) -> None:
    marker = work / "MARKER"
    keys = [(b"commit number 110", f"!touch {marker}\rq".encode())]
    args = [*exec_gated.ssh_args(agent, "web-01", "-tt"), f"cd {repo} && git log"]
    status, out, err = interact(args, keys)
    assert status == 0, (status, out[-500:], err)
    assert b"commit number 0" in out  # the whole log, printed without a pager
    assert not marker.exists()
    # Control: straight to the sshd, git pages the same log with less and waits for keys.
    control = [*direct_args(sshd, work, "-tt"), f"cd {repo} && git log"]
    c_status, c_out, _ = interact(control, [], timeout=4)
    assert c_status is None and b"commit number 0" not in c_out


def test_git_on_a_pty_cannot_open_an_editor(
    exec_gated: RunningBastion, agent: Agent, repo: Path, work: Path
) -> None:
    marker = work / "MARKER"
    keys = [(b"", f":!touch {marker}\r:q!\r".encode())]
    # `git tag -a` without -m opens the editor on a terminal (the gate holds `git commit`
    # without a message already: its declaration says it runs an editor)
    args = [*exec_gated.ssh_args(agent, "web-01", "-tt"), f"cd {repo} && git tag -a v-exec"]
    status, out, err = interact(args, keys, timeout=15)
    assert status not in (0, None), (status, out, err)
    assert b"problem with the editor 'false'" in out + err, (out, err)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("command", "rule"),
    [
        ("PAGER=less git log", "changes PAGER"),
        ("env -u GIT_PAGER git log", "changes GIT_PAGER"),
        ("env -i git log", "clears the environment"),
        ("sudo git log", "sudo resets the environment"),
        ("export LESSSECURE=0; less {f}", "changes LESSSECURE"),
    ],
)
def test_undoing_the_guard_is_held(
    exec_gated: RunningBastion, agent: Agent, work: Path, command: str, rule: str
) -> None:
    args = [*exec_gated.ssh_args(agent, "web-01", "-tt"), command.format(f=work / "notes.txt")]
    status, out, err = interact(args, [], 10)
    assert status == EXIT_DEFERRED, (status, out, err)
    assert rule.encode() in err, err


# -- no PTY: exactly as today -------------------------------------------------------------
@pytest.mark.parametrize(
    "command",
    [
        "echo hi",
        "printf 'a\\nb\\n'",
        "ls /nonexistent-bastion-path",
        "cat",
        "sh -c 'echo out; echo err >&2; exit 3'",
        "cd {repo} && git log --format=%s -3",
    ],
)
def test_no_pty_exec_matches_the_target_directly(
    exec_gated: RunningBastion, agent: Agent, sshd: SshdTarget, repo: Path, work: Path,
    command: str
) -> None:
    line = command.format(repo=repo)
    through = exec_gated.ssh(agent, "web-01", line, input=b"typed input\n")
    direct = subprocess.run([*direct_args(sshd, work), line], input=b"typed input\n",
                            capture_output=True, timeout=30)
    assert (through.returncode, through.stdout, through.stderr) == (
        direct.returncode, direct.stdout, direct.stderr)


# -- the same guard in a line-gated shell --------------------------------------------------
async def test_gated_shell_has_the_same_guard(
    gated_shell: RunningBastion, agent: Agent, repo: Path
) -> None:
    """The shell integration exports the exec guard's list: ``git tag -a`` (no message) in a
    gated shell fails at once instead of starting vi on the terminal, and ``git log`` does not
    page."""
    from interactive.ishell import open_term

    term = await open_term(gated_shell, agent)
    out = await term.run(f"cd {repo} && git tag -a v-shell; echo status=$?")
    assert b"problem with the editor 'false'" in out, out
    assert b"status=128" in out or b"status=1" in out, out
    out = await term.run("git log")  # a pager would keep the prompt from coming back
    assert b"commit number 0" in out
    term.conn.close()


def test_readline_in_read_e_cannot_expand_a_command_substitution(
    exec_gated: RunningBastion, agent: Agent, work: Path, sshd: SshdTarget
) -> None:
    """``read -e`` reads the terminal with bash's readline, whose shell-expand-line (Esc
    Ctrl-E) performs command substitution on the typed text: held on a terminal."""
    marker = work / "MARKER"
    keys = [(b"", f"$(touch {marker})".encode() + b"\x1b\x05\r")]
    line = "read -e x; echo got"
    args = [*exec_gated.ssh_args(agent, "web-01", "-tt"), line]
    status, _, err = interact(args, keys, 10)
    assert status == EXIT_DEFERRED, (status, err)
    assert b"reads the terminal with readline" in err, err
    assert not marker.exists()
    # Control: straight to the sshd the same keys run the substitution.
    interact([*direct_args(sshd, work, "-tt"), line], keys, 8)
    assert marker.exists(), "the control run should have expanded the substitution"


def test_typing_while_the_command_ends_keeps_its_exit_status(
    exec_gated: RunningBastion, agent: Agent
) -> None:
    """Keys still arriving as the target's side closes are dropped (as sshd drops them); they
    used to tear the whole agent connection down (exit 255 instead of the command's 3)."""
    # Much output: the agent's side is still draining it when the target's side closes.
    args = [*exec_gated.ssh_args(agent, "web-01", "-tt"), "seq 1 50000; exit 3"]
    for _ in range(8):  # a race: without the fix most runs of 8 failed at least once
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        assert proc.stdin is not None
        deadline = time.monotonic() + 15
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                proc.stdin.write(b"x" * 64)
                proc.stdin.flush()
            except BrokenPipeError:
                break
            time.sleep(0.002)
        proc.wait(15)
        assert proc.returncode == 3, proc.stderr.read() if proc.stderr else b""
