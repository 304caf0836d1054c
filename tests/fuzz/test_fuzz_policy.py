"""Fuzz the command gate: hostile lines never crash, hang or waver; wrapping never lowers it."""

from __future__ import annotations

import json
import re
import shlex
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

from fuzz_support import cpu_bounded, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from bastion.policy import Context, Decision, Policy, is_incomplete, load_policy
from bastion.policy.model import ACTIONS, SEVERITY

CTX = Context(principals=("agents",), target="web-01", login="azureuser")
CORPUS = Path(__file__).resolve().parents[1] / "policy" / "corpus.jsonl"
# Per-call CPU bound for lines up to ~10 KiB (the brief's "< 1 s even for adversarial lines").
BOUND = 1.0


@lru_cache(maxsize=1)
def _policy() -> Policy:
    return load_policy(Policy.default_path())


# -- hostile line generators -----------------------------------------------------------------

TOKENS = [
    " ", "  ", "\t", "\n", ";", "&&", "||", "|", "|&", "&", "(", ")", "{", "}", "$(", "`",
    "$((", "))", "${", "${x:-", ":-$(id)}", "[[", "]]", "[", "]", "<<", "<<-", "<<<", ">", ">>",
    "<", "2>&1", ">&", "<(", ">(", "'", '"', "$'", "\\", "\\\n", "#", "!", "*", "?", "=", "+=",
    "EOF", "if", "then", "else", "fi", "for", "in", "do", "done", "while", "case", "esac", ";;",
    "function", "f()", "rm -rf /", "bash -c", "sh -c", "eval", "exec", "sudo", "env", "xargs",
    "$x", "$HOME", "$IFS", "$@", "$0", "a[$(id)]", "declare", "export", "alias", "coproc",
    "\x00", "\x1b", "\x7f", "\r", "\x0b", "\u202e", "\u2066", "\u200b", "\u200d", "\ufeff",
    "\u00a0", "\udc80", "\udcff", "\ud800", "é", "ｒｍ", "ѕudo", "\U0010ffff", "\U0001f600",
    "'\\''", "%s", "\\x72\\x6d", "$'\\x72\\x6d'", "--", "-", "/dev/sda", "/etc/shadow",
]


def _heredoc(body: str, quoted: bool, dash: bool) -> str:
    start = "<<-" if dash else "<<"
    word = "'EOF'" if quoted else "EOF"
    return f"cat {start}{word} | sh\n{body}\nEOF"


SHAPES: list[Callable[[int], str]] = [
    lambda n: "echo " + "$(echo " * n + "x" + ")" * n,
    lambda n: "echo " + "$(echo " * n,  # unclosed
    lambda n: "(" * n + "ls" + ")" * n,
    lambda n: "{ " * n + "ls; " + "}; " * n,
    lambda n: "echo $((" + "(" * n + "1" + ")" * n + "))",
    lambda n: "echo " + "`echo " * min(n, 40) + "x" + "`" * min(n, 40),
    lambda n: "if true; then " * n + "ls; " + "fi; " * n,
    lambda n: " | ".join(["cat"] * (n * 10)),
    lambda n: "; ".join(["ls"] * (n * 10)),
    lambda n: "echo " + "a " * (n * 10),
    lambda n: "echo " + "'a' " * (n * 5),
    lambda n: 'echo "' + "$x" * (n * 10) + '"',
    lambda n: "x=" + "${x:-" * n + "y" + "}" * n,
    lambda n: "cat " + " ".join(f"<<E{i}" for i in range(n)) + "\n"
    + "".join(f"x\nE{i}\n" for i in range(n)),
    lambda n: _heredoc("rm -rf /\n" * n, quoted=True, dash=False),
    lambda n: _heredoc("$(id)\n" * n, quoted=False, dash=True),
    lambda n: "bash -c '" * min(n, 12) + "rm -rf /" + "'" * min(n, 12),
    lambda n: "[[ " + " && ".join(["-f a[$(id)]"] * n) + " ]]",
    lambda n: "case x in " + " ".join(f"p{i}) rm -rf /;;" for i in range(n)) + " esac",
    lambda n: "f() { " * n + "ls; " + "}; " * n,
]


@st.composite
def hostile_lines(draw: st.DrawFn) -> str:
    """A mix of token soup, arbitrary Unicode, undecodable bytes and big adversarial shapes."""
    kind = draw(st.integers(0, 4))
    if kind == 0:
        parts = draw(st.lists(st.sampled_from(TOKENS) | st.text(max_size=6), max_size=60))
        return "".join(parts)
    if kind == 1:
        return draw(st.text(max_size=300))
    if kind == 2:  # bytes from the wire decoded the way the bastion decodes channel data
        return draw(st.binary(max_size=300)).decode("utf-8", "surrogateescape")
    if kind == 3:
        shape = draw(st.sampled_from(SHAPES))
        n = draw(st.integers(1, 1200))
        return shape(n)[:12 * 1024]
    head = draw(st.sampled_from(SHAPES))(draw(st.integers(1, 50)))
    noise = "".join(draw(st.lists(st.sampled_from(TOKENS), max_size=20)))
    cut = draw(st.integers(0, len(head)))
    return head[:cut] + noise + head[cut:]


def _check_line(line: str) -> Decision:
    policy = _policy()
    decision = cpu_bounded(BOUND, lambda: policy.decide(line, CTX), f"decide({line[:60]!r}…)")
    assert decision.action in ACTIONS
    assert "engine-error" not in decision.rules, (line[:200], decision.reason)
    if decision.action != "allow":
        assert decision.rules
    again = policy.decide(line, CTX)
    assert again == decision, "decide is not deterministic"
    if "\x00" in line or any(0xD800 <= ord(c) <= 0xDFFF for c in line):
        assert decision.action != "allow", line[:200]
    done = cpu_bounded(BOUND, lambda: is_incomplete(line), f"is_incomplete({line[:60]!r}…)")
    assert isinstance(done, bool)
    return decision


@fuzz_settings(400)
@given(hostile_lines())
def test_fuzz_decide_never_raises_hangs_or_wavers(line: str) -> None:
    """Any line gets a valid, repeatable verdict within 1 s CPU, and is_incomplete answers too."""
    _check_line(line)


@fuzz_settings(10)
@given(st.lists(hostile_lines(), min_size=8, max_size=24))
def test_fuzz_decide_from_threads_matches_sequential(lines: list[str]) -> None:
    """Four threads deciding at once give exactly the verdicts of one thread (no shared state)."""
    policy = _policy()
    expected = [policy.decide(line, CTX) for line in lines]
    barrier = threading.Barrier(4)

    def worker(offset: int) -> list[Decision]:
        barrier.wait()
        order = lines[offset:] + lines[:offset]
        got = [policy.decide(line, CTX) for line in order]
        return got[len(lines) - offset:] + got[:len(lines) - offset]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(worker, range(4)))
    for got in results:
        assert got == expected


# -- wrapping never lowers a must-hold command ------------------------------------------------

_NOT_FOR_SUDO = frozenset({
    "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac",
    "function", "select", "time", "coproc", "{", "}", "[[", "!", "cd", "export", "eval", "exec",
    "source", ".", "alias", "unset", "set", "declare", "typeset", "local", "readonly", "trap",
    "builtin", "command", "enable", "let", "shopt", "ulimit", "umask", "read", "mapfile",
    "readarray", "hash", "type", "history", "fc", "jobs", "fg", "bg", "kill", "wait", "disown",
    "suspend", "return", "exit", "break", "continue", "shift", "getopts", "printf", "echo",
    "test", "[", "true", "false", ":", "pushd", "popd", "dirs", "compgen", "complete",
})


@lru_cache(maxsize=1)
def _must_hold() -> tuple[tuple[str, str], ...]:
    """Corpus lines the shipped policy holds or denies, with their verdict."""
    policy = _policy()
    out = []
    for raw in CORPUS.read_text(encoding="utf-8").splitlines():
        cmd = json.loads(raw)["cmd"]
        action = policy.decide(cmd, CTX).action
        if action != "allow":
            out.append((cmd, action))
    return tuple(out)


def _sudo_ok(cmd: str) -> bool:
    """sudo runs programs only: skip builtins, keywords, assignments and compound commands."""
    try:
        words = shlex.split(cmd)
    except ValueError:
        return False
    return bool(words) and words[0] not in _NOT_FOR_SUDO and "=" not in words[0] and bool(
        re.match(r"[A-Za-z0-9_./\\-]", cmd)
    )


def _close(cmd: str, closer: str) -> str:
    # a here-document ends at a line holding only its delimiter: close on a new line
    return cmd + ("\n" + closer if "\n" in cmd else " " + closer)


WRAPS: dict[str, Callable[[str], str]] = {
    "prefix": lambda c: "true; " + c,
    "suffix": lambda c: c + ("\ntrue" if "\n" in c else "; true"),
    "and": lambda c: "true && " + c,
    "or": lambda c: "false || " + c,
    "pipe-in": lambda c: "echo | " + c,
    "bash-c": lambda c: "bash -c " + shlex.quote(c),
    "sh-c-args": lambda c: "sh -c " + shlex.quote(c) + " sh x",
    "subst": lambda c: "$( " + _close(c, ")"),
    "quoted-subst": lambda c: 'echo "$( ' + _close(c, ')"'),
    "backticks": lambda c: "echo `" + c.replace("\\", "\\\\").replace("`", "\\`") + "`",
    "subshell": lambda c: "( " + _close(c, ")"),
    "group": lambda c: "{ " + c + "\n}",
    "if": lambda c: "if true; then " + c + "\nfi",
    "background": lambda c: c + ("\n" if "\n" in c else " ") + "& wait",
}


@fuzz_settings(300)
@given(
    index=st.integers(min_value=0),
    sudo=st.booleans(),
    wraps=st.lists(st.sampled_from(sorted(WRAPS)), min_size=1, max_size=3),
)
def test_fuzz_wrapping_never_lowers_a_held_command(
    index: int, sudo: bool, wraps: list[str]
) -> None:
    """`true; X`, `X; true`, `bash -c 'X'`, `$(X)`, `sudo X` and their nestings are never
    judged lower than X itself, for every review/deny line of the labelled corpus."""
    cmd, base = _must_hold()[index % len(_must_hold())]
    line = cmd
    if sudo and _sudo_ok(cmd):
        line = "sudo " + line
    for name in wraps:
        line = WRAPS[name](line)
    got = _policy().decide(line, CTX)
    assert SEVERITY[got.action] >= SEVERITY[base], (cmd, line, base, got.action, got.rules)


# -- regressions for the findings of this fuzzing ---------------------------------------------


def test_many_words_decide_in_linear_time() -> None:
    """A 40,000-word command is judged well within a second of CPU (was quadratic: ~12 s)."""
    line = "echo " + "a " * 40_000
    decision = cpu_bounded(3.0, lambda: _policy().decide(line, CTX), "40k words")
    assert decision.action == "review" and "too-long" in decision.rules


def test_deep_nesting_is_held_as_too_complex_not_an_engine_error() -> None:
    """1,000 nested substitutions/subshells/arithmetic are held as too-complex, never crash."""
    for line in ("echo " + "$(echo " * 1000 + "x" + ")" * 1000,
                 "(" * 1000 + "ls" + ")" * 1000,
                 "echo $((" + "(" * 1000 + "1" + ")" * 1000 + "))",
                 "x=" + "${x:-" * 1000 + "y" + "}" * 1000):
        decision = _policy().decide(line, CTX)
        assert decision.action == "review"
        assert "too-complex" in decision.rules and "engine-error" not in decision.rules


def test_oversized_line_is_held_without_parsing() -> None:
    """A 1 MiB line is held for review at once (not parsed) and is_incomplete says complete."""
    line = "echo " + "a " * 500_000
    decision = cpu_bounded(1.0, lambda: _policy().decide(line, CTX), "1 MiB line")
    assert decision.action == "review" and decision.rules == ("too-long",)
    assert cpu_bounded(1.0, lambda: is_incomplete(line + "'"), "is_incomplete 1 MiB") is False


def test_heredoc_after_list_or_pipeline_still_feeds_the_shell() -> None:
    """`true && cat <<EOF | bash` and `echo | cat <<EOF | bash` deny like the bare form."""
    body = "\nrm -rf /\nEOF"
    for prefix in ("", "true && ", "false || ", "echo | ", "true && echo | "):
        decision = _policy().decide(prefix + "cat <<'EOF' | bash" + body, CTX)
        assert decision.action == "deny", (prefix, decision.rules)
    assert _policy().decide("echo | bash <<EOF\nrm -rf ~\nEOF", CTX).action == "deny"
    line = "true && sudo cat <<'EOF' | bash" + body  # sudo before the producer, too
    assert _policy().decide(line, CTX).action == "deny"


def test_backticks_with_escaped_inner_backticks_are_walked() -> None:
    """`echo \\`rm -rf /\\`` inside backticks runs rm in bash: it is denied (it was allowed)."""
    for line in ("echo `echo \\`rm -rf /\\``", 'echo "`echo \\`rm -rf /\\``"',
                 "x=`echo \\`rm -rf /\\``"):
        assert _policy().decide(line, CTX).action == "deny", line


_SWEEP = """
import sys
from bastion.policy import Context, Policy, is_incomplete, load_policy
policy = load_policy(Policy.default_path())
ctx = Context(principals=("agents",), target="web-01", login="azureuser")
for cp in range(0x10000, 0x110000, 0x1000):
    for line in ("{" + chr(cp), "echo {" + chr(cp), "bash -c $'{\\\\U%08x'" % cp):
        assert policy.decide(line, ctx).action == "review", line
        assert is_incomplete(line) is False
print("ok")
"""


def test_code_points_above_bmp_never_reach_tree_sitter() -> None:
    """`{` + U+80000..U+10FFFF segfaulted tree-sitter-bash (isdigit() on a code point, ~60% of
    processes); such lines, also when built by $'\\U…' escapes, are held without parsing."""
    import subprocess
    import sys

    for _ in range(3):  # the crash depends on the address layout: use fresh processes
        done = subprocess.run([sys.executable, "-c", _SWEEP], capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
