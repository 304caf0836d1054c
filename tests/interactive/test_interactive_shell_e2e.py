"""Line-gated PTY shells end to end: agent (asyncssh) -> bastion -> real sshd running bash."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from interactive.gated import start_line_gated
from interactive.ishell import PROMPT, Term, open_term
from support.bastion import RunningBastion

from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget


async def test_allowed_command_runs_and_output_is_clean(
    gated_shell: RunningBastion, agent: Agent
) -> None:
    """An allowed line runs on the target; its output arrives without shell-integration markers."""
    term: Term = await open_term(gated_shell, agent)
    out = await term.run("echo hello-$((40+2))")
    assert b"hello-42" in out
    assert b"\x1b]133" not in term.out
    term.conn.close()


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def term_for(bastion: RunningBastion, agent: Agent) -> Term:
    return await open_term(bastion, agent)


async def test_denied_line_prints_one_line_and_prompt_comes_back(
    gated_shell: RunningBastion, agent: Agent, trace_dir: Path
) -> None:
    """A denied line never reaches the target; one line explains, and the next line works."""
    term = await term_for(gated_shell, agent)
    out = await term.run(f"touch {trace_dir}/denied; rm -rf /")
    assert b"bastion: denied by policy" in out
    assert not (trace_dir / "denied").exists()
    out = await term.run(f"touch {trace_dir}/after && echo done-$((1+1))")
    assert b"done-2" in out
    assert (trace_dir / "after").exists()
    term.conn.close()


async def test_review_line_is_held_then_denied(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent, trace_dir: Path
) -> None:
    """A review line is held with its request id in the terminal; once an operator denies it,
    one line says so, the prompt returns and the shell's $? is unchanged."""
    import pyotp

    gated_shell = await asyncio.to_thread(start_line_gated, tmp_path, sshd, ca)
    config = str(gated_shell.config.path)

    def bastion(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bastion.cli", *args, "--config", config],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    term = await term_for(gated_shell, agent)
    await term.run("false")
    mark = term.type(f"az group delete -n rg --yes; touch {trace_dir}/held\r".encode())
    held = await term.read_until(re.compile(rb"held for review as (\S+) "), start=mark)
    request_id = re.search(rb"held for review as (\S+) ", held).group(1).decode()  # type: ignore[union-attr]
    enrolled = await asyncio.to_thread(bastion, "operators", "add", "ishell-op", "--group", "sre")
    code = pyotp.parse_uri(enrolled.stdout.splitlines()[0]).now()
    denied = await asyncio.to_thread(
        bastion, "approvals", "deny", request_id, "--operator", "ishell-op", "--totp", code
    )
    assert denied.returncode == 0, denied.stderr
    out = await term.read_until(PROMPT, start=mark + len(held) - 1)
    assert f"request {request_id} was denied by ishell-op".encode() in out
    out = await term.run("echo status=$?")
    assert b"status=1" in out
    assert not (trace_dir / "held").exists()
    term.conn.close()
    await asyncio.to_thread(gated_shell.stop)


async def test_refused_review_line_keeps_status(
    gated_shell: RunningBastion, agent: Agent, trace_dir: Path
) -> None:
    """With shell_reviews = "refuse", a review line is refused at once and $? is unchanged."""
    term = await term_for(gated_shell, agent)
    await term.run("false")
    out = await term.run(f"az group delete -n rg --yes; touch {trace_dir}/held")
    assert b"bastion: held for review" in out
    out = await term.run("echo status=$?")
    assert b"status=1" in out
    assert not (trace_dir / "held").exists()
    term.conn.close()


async def test_multi_line_units_for_loop_and_heredoc(
    gated_shell: RunningBastion, agent: Agent, trace_dir: Path
) -> None:
    """Open `for` and here-docs continue to the next line; the whole unit runs once decided."""
    term = await term_for(gated_shell, agent)
    term.type(b"for i in 1 2 3; do\r")
    await term.read_until(b"> ")
    term.type(b"echo item-$i\r")
    out = await term.run("done")
    assert b"item-1" in out and b"item-3" in out
    term.type(f"cat > {trace_dir}/doc <<'EOF'\r".encode())
    term.type(b"line one $HOME\r")
    await term.run("EOF")
    assert (trace_dir / "doc").read_text() == "line one $HOME\n"
    term.conn.close()


async def test_here_string_runs_at_once(gated_shell: RunningBastion, agent: Agent) -> None:
    """A here-string is one complete line (issue 20 item 8): it runs at Enter, with no `> `
    continuation prompt, and the next line runs too."""
    term = await term_for(gated_shell, agent)
    mark = term.type(b"tr a-z A-Z <<< here-string-ok\r")
    out = await term.read_until(PROMPT, start=mark + 10)
    assert b"HERE-STRING-OK" in out
    assert b"\r\n> " not in out
    out = await term.run("cat <<<'second one'")
    assert b"second one" in out
    term.conn.close()


async def test_ctrl_c_clears_the_line_and_interrupts_a_command(
    gated_shell: RunningBastion, agent: Agent, trace_dir: Path
) -> None:
    """Ctrl-C drops a half-typed line (it never runs) and interrupts a running command."""
    term = await term_for(gated_shell, agent)
    mark = term.type(f"touch {trace_dir}/half".encode() + b"\x03")
    await term.read_until(b"$ ", start=mark + 10)
    out = await term.run("echo after-ctrl-c")
    assert b"after-ctrl-c" in out
    assert not (trace_dir / "half").exists()
    mark = term.type(b"sleep 20\r")
    await term.read_until(b"sleep 20\r\n", start=mark)
    await asyncio.sleep(0.5)
    mark = term.type(b"\x03")
    await term.read_until(b"$ ", start=mark)
    out = await term.run("echo back-$((2+3))")
    assert b"back-5" in out
    term.conn.close()


async def test_editing_keys_apply_to_the_bastions_buffer(
    gated_shell: RunningBastion, agent: Agent, trace_dir: Path
) -> None:
    """Backspace, Ctrl-W and Ctrl-U edit the buffer exactly; only the edited line runs."""
    term = await term_for(gated_shell, agent)
    # Ctrl-W removes the whole word back to the space, Ctrl-U the line; then the real line.
    line = f"touch {trace_dir}/wrong\x17\x7f/right-xx\x7f\x7f\x15touch {trace_dir}/fin\x7fnal"
    out = await term.run(line)
    assert b"bastion:" not in out
    assert files(trace_dir) == ["final"]
    term.conn.close()


async def test_input_tricks_never_run_an_ungated_line(
    gated_shell: RunningBastion, agent: Agent, trace_dir: Path
) -> None:
    """Tab, Up, Ctrl-R, Ctrl-V Ctrl-J and Alt keys are dropped; nothing unexpected runs."""
    term = await term_for(gated_shell, agent)
    # Put a forbidden-looking line in the remote history? It can only get there by being run.
    await term.run(f"echo {trace_dir}/fromhistory")
    # Up arrow + Enter: history recall would re-run the last line with a new meaning.
    out = await term.run("\x1b[A")
    assert b"Up is not forwarded" in out
    # Ctrl-R search and Alt-. (yank-last-arg) and Tab completion.
    out = await term.run(f"touch {trace_dir}/tab\x12fromhist\x1b.\t")
    # Only the text typed, as the bastion saw it: the search text is ordinary input.
    assert files(trace_dir) == ["tabfromhist"]
    # Ctrl-V Ctrl-J: the newline is a plain Enter, so each line is gated on its own.
    mark = term.type(f"echo ok\x16\nrm -rf / ; touch {trace_dir}/cv\r".encode())
    out = await term.read_until(b"bastion: denied by policy", start=mark)
    assert b"ok\r\n" in out
    assert not (trace_dir / "cv").exists()
    term.conn.close()


async def test_bracketed_paste_with_a_destructive_second_line(
    gated_shell: RunningBastion, agent: Agent, trace_dir: Path
) -> None:
    """Every line of a paste is its own unit: the destructive second line is denied alone."""
    term = await term_for(gated_shell, agent)
    mark = term.type(
        b"\x1b[200~"
        + f"touch {trace_dir}/first\nrm -rf ~; touch {trace_dir}/second\n".encode()
        + b"\x1b[201~"
    )
    await term.read_until(b"denied by policy", start=mark)
    out = await term.run("echo pasted-$((3*3))")
    assert b"pasted-9" in out
    assert (trace_dir / "first").exists()
    assert not (trace_dir / "second").exists()
    term.conn.close()


async def test_session_state_changes_are_held(
    gated_shell: RunningBastion, agent: Agent, trace_dir: Path
) -> None:
    """bind -x, vi mode, aliases, functions and prompt changes are held, never applied."""
    term = await term_for(gated_shell, agent)
    for line in (
        f"bind -x '\"\\C-t\": touch {trace_dir}/bind'",
        "set -o vi",
        f"alias ls='touch {trace_dir}/alias'",
        f"ls() {{ touch {trace_dir}/func; }}",
        f"PROMPT_COMMAND='touch {trace_dir}/pc'",
        "unset HISTFILE",
        "echo $__bst_n",
    ):
        out = await term.run(line)
        assert b"bastion: held for review" in out, line
    term.type(b"\x14")  # Ctrl-T: would fire a bind -x macro if one existed
    await term.run("ls >/dev/null")
    assert files(trace_dir) == []
    term.conn.close()


async def test_spoofed_markers_from_a_program_are_stripped(
    gated_shell: RunningBastion, agent: Agent, trace_dir: Path
) -> None:
    """A program printing OSC 133 markers cannot start a command or reach the agent's view."""
    term = await term_for(gated_shell, agent)
    out = await term.run(
        "printf 'x\\033]133;D;0\\007\\033]133;A;fake\\007\\033]133;B;fake\\007"
        "\\033]133;C;fake;rm -rf ~\\007y\\n'"
    )
    assert b"xy" in out
    assert b"\x1b]133" not in term.out
    out = await term.run(f"touch {trace_dir}/still-works")
    assert (trace_dir / "still-works").exists()
    term.conn.close()


async def test_input_is_frozen_while_a_program_reads(
    gated_shell: RunningBastion, agent: Agent, trace_dir: Path
) -> None:
    """Typing while `cat` or `read` runs reaches neither the program nor, later, the shell."""
    term = await term_for(gated_shell, agent)
    mark = term.type(b"cat\r")
    await term.read_until(b"cat\r\n", start=mark)
    await asyncio.sleep(0.5)
    term.type(f"touch {trace_dir}/typeahead\r".encode())
    await term.read_until(b"input ignored while a command runs", start=mark)
    term.type(b"\x04")  # Ctrl-D passes: cat sees end of input
    await term.read_until(b"$ ", start=mark + 10)
    mark = term.type(b"read x\r")
    await asyncio.sleep(0.5)
    term.type(b"\x03")
    await term.run("echo frozen-ok")
    assert files(trace_dir) == []
    term.conn.close()


async def test_full_screen_programs_are_held(gated_shell: RunningBastion, agent: Agent) -> None:
    """A pager or editor would own the terminal: held for review in a PTY shell."""
    term = await term_for(gated_shell, agent)
    for line in ("less /etc/hostname", "vim x", "top", "python3"):
        out = await term.run(line)
        assert b"bastion: held for review" in out, line
    term.conn.close()


async def test_resize_mid_line_and_a_10k_line(gated_shell: RunningBastion, agent: Agent) -> None:
    """A window change while typing keeps the line intact; a 10 KiB line runs exactly once."""
    term = await term_for(gated_shell, agent)
    term.type(b"echo part")
    term.proc.change_terminal_size(100, 30)
    await term.read_until(b"echo part", start=len(term.out))  # readline redrew: line shown again
    out = await term.run("-one; tput lines; tput cols")
    assert b"part-one" in out and b"30\r\n100" in out
    word = "y" * 10240
    out = await term.run(f"echo {word} | wc -c")
    assert b"10241" in out
    term.conn.close()


def test_real_openssh_client_under_a_pty(
    gated_shell: RunningBastion, agent: Agent, trace_dir: Path
) -> None:
    """The real ssh client (-tt, driven through a pseudo-terminal) gets a working gated shell."""
    import os
    import pty
    import select
    import time

    args = gated_shell.ssh_args(agent, "web-01", "-tt")
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execvp(args[0], args)
    out = b""

    def read_until(token: bytes, limit: float = 20) -> None:
        nonlocal out
        end = time.monotonic() + limit
        while token not in out and time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    out += os.read(fd, 65536)
                except OSError:
                    break
        assert token in out, out[-600:]

    try:
        read_until(b"$ ")
        os.write(fd, f"touch {trace_dir}/ok; echo real-$((6*7))\r".encode())
        read_until(b"real-42")
        out = out[out.index(b"real-42") :]
        read_until(b"$ ")
        os.write(fd, f"rm -rf ~; touch {trace_dir}/bad\r".encode())
        read_until(b"denied by policy")
        os.write(fd, b"\t\x1b[A\x12exit\r")
        read_until(b"logout")
    finally:
        os.close(fd)
        os.waitpid(pid, 0)
    assert (trace_dir / "ok").exists()
    assert not (trace_dir / "bad").exists()
    assert b"\x1b]133" not in out


def test_shell_without_a_terminal_is_refused(
    gated_shell: RunningBastion, agent: Agent, trace_dir: Path
) -> None:
    """No PTY means no controller: the shell is refused and piped lines never run."""
    result = gated_shell.ssh(
        agent, "web-01", None, "-T", input=f"touch {trace_dir}/nopty\n".encode()
    )
    assert result.returncode == 126
    assert b"not allowed without a terminal" in result.stderr
    assert not (trace_dir / "nopty").exists()


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A folder the target's login can enter and read (pytest's tmp_path is private)."""
    path = Path(tempfile.mkdtemp(prefix="bastion-ishell-pub-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


async def test_variables_are_tracked_across_lines(
    gated_shell: RunningBastion, agent: Agent, trace_dir: Path, public_dir: Path
) -> None:
    """A number set on one line may be used in arithmetic on the next; once `read` replaces it
    with a file's content (an array subscript holding a substitution), arithmetic on it is held
    and the substitution never runs."""
    payload = public_dir / "payload"
    payload.write_text(f"a[$(touch {trace_dir}/ran)]\n")
    payload.chmod(0o644)
    term = await term_for(gated_shell, agent)
    await term.run("n=20")
    out = await term.run("echo sum-$((n+22))")
    assert b"sum-42" in out
    out = await term.run(f"read -r n < {payload}")
    assert b"bastion:" not in out
    # Ctrl-C stops `sleep; n=7` before n=7 runs: n still holds the file's text
    mark = term.type(b"sleep 30; n=7\r")
    await asyncio.sleep(1.0)
    term.type(b"\x03")
    await term.read_until(PROMPT, start=mark + 20)
    for line in ("echo $((n))", "(( n )) && echo yes", "[[ $n -eq 0 ]]", "echo ${s:n}"):
        out = await term.run(line)
        assert b"bastion: held for review" in out, line
    assert files(trace_dir) == []
    term.conn.close()


async def test_working_directory_is_tracked_across_lines(
    gated_shell: RunningBastion, agent: Agent, public_dir: Path
) -> None:
    """After `cd` into a .ssh folder on one line, a relative key name on the next is judged as
    that folder's key: denied, never run; plain work elsewhere still runs."""
    keys = public_dir / "home" / ".ssh"
    keys.mkdir(parents=True)
    for p in (public_dir / "home", keys):
        p.chmod(0o755)
    term = await term_for(gated_shell, agent)
    await term.run(f"cd {keys}")
    out = await term.run("cat id_ed25519")
    assert b"bastion: denied by policy" in out
    out = await term.run(f"cd {public_dir} && echo moved-$((2*3))")
    assert b"moved-6" in out
    out = await term.run("cat ./home/.ssh/id_ed25519")
    assert b"bastion: denied by policy" in out
    term.conn.close()


async def test_ctrl_c_during_a_hold_abandons_the_request(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent, trace_dir: Path
) -> None:
    """Ctrl-C on a held line abandons its request: the page shows it abandoned without a form,
    an operator's approval afterwards is refused, nothing runs and the prompt is back."""
    import json
    import sqlite3
    import urllib.request

    import pyotp

    extra = '[http]\nlisten = "127.0.0.1:0"\n'
    gated_shell = await asyncio.to_thread(start_line_gated, tmp_path, sshd, ca, extra)
    config = str(gated_shell.config.path)

    def bastion(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bastion.cli", *args, "--config", config],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    try:
        enrolled = await asyncio.to_thread(
            bastion, "operators", "add", "ctrlc-op", "--group", "sre"
        )
        totp = pyotp.parse_uri(enrolled.stdout.splitlines()[0])
        term = await term_for(gated_shell, agent)
        mark = term.type(f"az group delete -n rg --yes; touch {trace_dir}/held\r".encode())
        line = re.compile(rb"held for review as (\S+) .* at (\S+)\r")
        found = line.search(await term.read_until(line, start=mark))
        assert found is not None
        request_id, url = found.group(1).decode(), found.group(2).decode()
        mark = term.type(b"\x03")
        await term.read_until(PROMPT, start=mark)

        async def state() -> dict[str, object]:
            shown = await asyncio.to_thread(bastion, "approvals", "show", request_id, "--json")
            return dict(json.loads(shown.stdout))

        for _ in range(50):  # the abandonment is written right after the key; bounded wait
            request = await state()
            if request["state"] != "pending":
                break
            await asyncio.sleep(0.1)
        assert request["state"] == "abandoned"
        assert request["reason"] == "the agent interrupted the held line (Ctrl-C)"
        approved = await asyncio.to_thread(
            bastion, "approvals", "approve", request_id, "--operator", "ctrlc-op",
            "--totp", totp.now(),
        )  # fmt: skip
        assert approved.returncode != 0
        assert f"request {request_id} is already abandoned" in approved.stderr
        operator_url = url + "?op=" + str(request["operator_url"]).split("?op=", 1)[1]
        with await asyncio.to_thread(urllib.request.urlopen, operator_url, timeout=10) as resp:
            page = resp.read()
        assert b"<span class='state abandoned'>abandoned</span>" in page
        assert b"<form" not in page
        assert b"interrupted the held line" in page
        out = await term.run("echo after-$((2+3))")
        assert b"after-5" in out
        assert not (trace_dir / "held").exists()
        term.conn.close()
        db = sqlite3.connect(tmp_path / "state" / "bastion.db")
        try:
            rows = [json.loads(f) for (f,) in db.execute(
                "SELECT fields FROM audit_log WHERE kind = 'hold_outcome'"
            )]  # fmt: skip
        finally:
            db.close()
        assert rows == [{
            "channel": rows[0]["channel"], "request": request_id, "outcome": "abandoned",
            "exit_status": None, "reason": "the agent interrupted the held line (Ctrl-C)",
        }]  # fmt: skip
    finally:
        await asyncio.to_thread(gated_shell.stop)
