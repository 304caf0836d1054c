"""Units of the exec guard (bastion.interactive.execguard): what counts as undoing it."""

from __future__ import annotations

import subprocess

import pytest

from bastion.interactive.execguard import (
    GUARD_ENV,
    ExecContext,
    clears_environment,
    exec_floor,
    guard_override,
    guarded_command,
)
from bastion.policy import Context, load_policy
from bastion.policy.engine import DEFAULT_POLICY_PATH

POLICY = load_policy(DEFAULT_POLICY_PATH)
CTX = Context(principals=("agents",), target="web-01", login="azureuser", channel="exec")


def floor(line: str, pty: bool) -> str | None:
    decision = POLICY.decide(line, CTX)
    found = exec_floor(line, [u.argv for u in decision.units], ExecContext(pty=pty))
    return found.rule if found else None


@pytest.mark.parametrize(
    "line",
    [
        "PAGER=cat git log",
        "GIT_PAGER= git log",
        "GIT_EDITOR=true git rebase --continue",
        "export PAGER='cat' GIT_PAGER=\"cat\"",
        "SYSTEMD_PAGER=cat journalctl -u nginx",
        "echo $PAGER ${EDITOR}",
        "LESSSECURE=1 less notes.txt",
        "git log --no-pager",  # a lookalike word, not the variable
        "MY_PAGER=less true",
    ],
)
def test_harmless_mentions_pass(line: str) -> None:
    assert guard_override([line]) is None


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("PAGER=less git log", "PAGER"),
        ("GIT_PAGER='less -R' git log", "GIT_PAGER"),
        ("EDITOR=vim git commit", "EDITOR"),
        ("export VISUAL=nano", "VISUAL"),
        ("unset GIT_EDITOR; git commit", "GIT_EDITOR"),
        ("env -u MANPAGER man ls", "MANPAGER"),
        ("env --unset=PAGER git log", "PAGER"),
        ("LESSSECURE=0 less f", "LESSSECURE"),
        ("LESSSECURE= less f", "LESSSECURE"),
        ("LESSSECURE_ALLOW=shell less f", "LESSSECURE_ALLOW"),
        (": ${SYSTEMD_PAGER:=less}; journalctl", "SYSTEMD_PAGER"),
        ("PAGER=\"$X\" git log", "PAGER"),
        ("PAGER=cat\\ x git log", "PAGER"),
        ("PAGER=c'at' git log", "PAGER"),
        ("declare -n r=GIT_PAGER; r=less; git log", "GIT_PAGER"),
        ("printf -v GIT_SEQUENCE_EDITOR %s vi", "GIT_SEQUENCE_EDITOR"),
        ("read -r KUBE_EDITOR", "KUBE_EDITOR"),
    ],
)
def test_changes_to_guarded_names_are_found(line: str, name: str) -> None:
    assert guard_override([line]) == name


@pytest.mark.parametrize(
    ("line", "clears"),
    [
        ("env -i git log", True),
        ("env - git log", True),
        ("env --ignore-environment git log", True),
        ("env --ign git log", True),  # GNU long-option abbreviation
        ("env -vi git log", True),
        ("/usr/bin/env -i git log", True),
        ("env \"-i\" git log", True),
        ("env -C /tmp git log", False),
        ("env FOO=1 git log", False),
        ("env git log -i", False),
        ("printenv -i", False),
    ],
)
def test_environment_clearing(line: str, clears: bool) -> None:
    assert clears_environment([line]) is clears


def test_quoted_nested_assignment_is_seen_through_the_parser() -> None:
    # ANSI-C quoting hides the name from the raw line; the parsed unit of `bash -c` shows it.
    assert floor("bash -c $'PA\\x47ER=less git log'", pty=False) == "exec-guard-override"


@pytest.mark.parametrize(
    ("line", "pty", "rule"),
    [
        ("less notes.txt", True, "interactive-program"),
        ("less notes.txt", False, None),
        ("git log | less", True, "interactive-program"),
        ("python3", True, "interactive-program"),
        ("python3 -m pytest --pdb", True, "interactive-program"),
        ("psql -c 'select 1'", True, "interactive-program"),
        ("openssl", True, "interactive-program"),
        ("openssl", False, None),
        ("openssl x509 -in c.pem -noout -text", True, None),
        ("nslookup", True, "interactive-program"),
        ("nslookup -type=mx", True, "interactive-program"),
        ("nslookup example.com", True, None),
        ("terraform console", True, "interactive-program"),
        ("terraform plan", True, None),
        ("htop", True, "interactive-program"),
        ("sensible-pager notes.txt", True, "interactive-program"),
        ("read -e x", True, "interactive-program"),
        ("read -rep 'name: ' x", True, "interactive-program"),
        ("read -r x", True, None),
        ("read -e x", False, None),
        ("mailx -s hi root", True, "interactive-program"),
        ("tail -f /var/log/syslog", True, None),
        ("bash -c 'ls'", True, None),
        ("git log", True, None),
        ("ls -la", True, None),
        ("sudo git log", True, "exec-privileged-guard"),
        ("sudo apt-get update", True, "exec-privileged-guard"),
        ("sudo apt-get update", False, None),
        ("sudo git commit", False, "exec-privileged-guard"),
        ("sudo -u root git log", False, "exec-privileged-guard"),
        ("doas vi /etc/hosts", False, "exec-privileged-guard"),
        ("sudo cat /etc/hostname", False, None),
        ("s\\udo git log", True, "exec-privileged-guard"),
        ("\"su\"do git commit", False, "exec-privileged-guard"),
        ("$'\\x73udo' git log", True, "exec-privileged-guard"),
        ("/usr/bin/sudo -u root git log", True, "exec-privileged-guard"),
        ("git commit -m msg", False, None),
        ("printenv PAGER GIT_EDITOR", False, None),  # printing a guarded name reads it
        ("PAGER=cat printenv PAGER", False, None),
        ("printenv PAGER; PAGER=sh git log", False, "exec-guard-override"),
        ("echo $(PAGER=sh git log)", False, "exec-guard-override"),
        ("unset echo PAGER", False, "exec-guard-override"),
    ],
)
def test_exec_floors(line: str, pty: bool, rule: str | None) -> None:
    assert floor(line, pty) == rule


def test_passthrough_lets_a_configured_program_run() -> None:
    decision = POLICY.decide("less notes.txt", CTX)
    argvs = [u.argv for u in decision.units]
    assert exec_floor("less notes.txt", argvs, ExecContext(pty=True, passthrough=("less",))) \
        is None


def test_guard_prefix_sets_every_name_in_sh_and_bash(tmp_path: object) -> None:
    """The prefix really sets the values, in the shells a login may have; the command after
    it runs on the same line with its own exit status."""
    probe = "; ".join(f'printf "%s=[%s]\\n" {n} "${n}"' for n, _ in GUARD_ENV) + "; exit 7"
    expected = "".join(f"{n}=[{v}]\n" for n, v in GUARD_ENV)
    for shell in ("bash", "dash"):
        env = {"PATH": "/usr/bin:/bin", "PAGER": "less", "EDITOR": "vim"}
        run = subprocess.run([shell, "-c", guarded_command(probe)], capture_output=True,
                             text=True, env=env)
        assert (run.returncode, run.stdout) == (7, expected), (shell, run.stderr)


def test_long_lines_are_bounded() -> None:
    """No second parse of a huge line: one that may run sudo with git is held at once, and
    one that cannot name sudo is checked by the cheap scans alone."""
    import time

    files = " ".join(f"src/file{i}.py" for i in range(3000))
    assert floor(f"sudo git add {files}", pty=False) == "exec-privileged-guard"
    start = time.perf_counter()
    assert floor(f"git add {files}", pty=True) is None
    decided = time.perf_counter() - start
    line = f"git add {files}"
    argvs = [u.argv for u in POLICY.decide(line, CTX).units]
    start = time.perf_counter()
    exec_floor(line, argvs, ExecContext(pty=True))
    assert time.perf_counter() - start < max(0.05, decided)  # generous: a shared CI machine
