"""Property tests: quoting, wrapping or nesting a destructive command never lowers its verdict."""

from __future__ import annotations

from functools import lru_cache

from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.policy import Context, Policy, load_policy
from bastion.policy.model import SEVERITY

CTX = Context(principals=("agents",), target="web-01", login="azureuser")
PAYLOADS = ["rm -rf /", "mkfs.ext4 /dev/sda1", "cat /etc/shadow", "dd if=/dev/zero of=/dev/sda",
            "az group delete -n rg --yes", "git push -f origin main", "chmod -R 777 /etc"]


@lru_cache(maxsize=1)
def _policy() -> Policy:
    return load_policy(Policy.default_path())


def _quote_word(word: str, style: int) -> str:
    if style == 0:
        return word
    if style == 1:
        return f"'{word}'"
    if style == 2:
        return f'"{word}"'
    if style == 3:
        return "$'" + "".join(f"\\x{ord(c):02x}" for c in word) + "'"
    if style == 4 and len(word) > 1:
        return word[0] + "''" + word[1:]
    if style == 5 and word[0].isalpha():
        return "\\" + word
    return word


WRAPPERS = ["sudo ", "env ", "timeout 5 ", "nice -n 1 ", "nohup ", "command ", "time ",
            "sudo -u root ", "env FOO=1 ", "stdbuf -oL ", "setsid "]
CONTAINERS = ["{}", "bash -c '{}'", "sh -c \"{}\"", "eval '{}'", "ls && {}", "true; {}",
              "echo \"$({})\"", "if true; then {}; fi", "for i in 1; do {}; done", "( {} )",
              "{{ {}; }}", "echo ok | {}", "false || {}"]


@settings(max_examples=300, deadline=None)
@given(
    payload=st.sampled_from(PAYLOADS),
    styles=st.lists(st.integers(min_value=0, max_value=5), min_size=8, max_size=8),
    wrappers=st.lists(st.sampled_from(WRAPPERS), max_size=3),
    container=st.sampled_from(CONTAINERS),
)
def test_obfuscation_never_lowers(
    payload: str, styles: list[int], wrappers: list[str], container: str
) -> None:
    """A quoted/wrapped/nested form of a command is at least as severe as the plain command."""
    policy = _policy()
    base = policy.decide(payload, CTX).action
    words = payload.split()
    quoted = " ".join(_quote_word(w, styles[i % len(styles)]) for i, w in enumerate(words))
    inner = "".join(wrappers) + quoted
    if "'" in container and "'" in inner:
        inner = quoted.replace("'", "")  # keep the container's quoting valid
        inner = "".join(wrappers) + " ".join(words)
    line = container.format(inner)
    got = policy.decide(line, CTX).action
    assert SEVERITY[got] >= SEVERITY[base], (line, got, base)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_decide_never_raises_and_is_total(line: str) -> None:
    """Arbitrary text always yields a decision with at least one rule when something runs."""
    d = _policy().decide(line, CTX)
    assert d.action in ("allow", "review", "deny")
    if d.action != "allow":
        assert d.rules
