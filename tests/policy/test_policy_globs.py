"""Wildcards cannot hide a secret path from the gate: glob arguments are judged by intersection."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.policy import Context, load_policy
from bastion.policy.paths import may_intersect

POLICY = load_policy(Path(__file__).resolve().parents[2] / "config" / "policy.toml")
CTX = Context(
    principals=("agents",), target="web-01", target_labels={}, login="azureuser", channel="exec"
)


@pytest.mark.parametrize(
    ("line", "action"),
    [
        ("cat ~/.ssh/*", "deny"),
        ("cat ~/.ssh/id_*", "deny"),
        ("cat /etc/shad*", "deny"),
        ("cat ~/.ss?/id_rsa", "deny"),
        ("cat ~/.*/id_rsa", "deny"),
        ("cat */.env", "deny"),
        ("grep -r key ~/.ssh", "review"),
        ("tar czf k.tgz /home/azureuser/.ssh", "review"),
        ("cat ~/.ssh/*.pub", "allow"),
        ("ls ~/.ssh", "allow"),
        ("cat src/*.ts", "allow"),
        ("grep -r TODO .", "allow"),
    ],
)
def test_glob_and_folder_reads_of_secrets(line: str, action: str) -> None:
    """Globs that can expand to a secret, and recursive reads of secret folders, are caught;
    ordinary workspace globs are not."""
    assert POLICY.decide(line, CTX).action == action


def _glob_regex(glob: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(glob):
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append({"*": "[^/]*", "?": "[^/]"}.get(glob[i], re.escape(glob[i])))
        i += 1
    return re.compile("".join(out) + r"\Z")


_atoms = st.sampled_from(["a", "b", ".", "/", "*", "?", "**"])
_globs = st.lists(_atoms, min_size=0, max_size=7).map("".join)
_paths = st.lists(st.sampled_from(["a", "b", ".", "/"]), min_size=0, max_size=8).map("".join)


@settings(max_examples=400, deadline=None)
@given(_globs, _globs, _paths)
def test_may_intersect_is_sound(a: str, b: str, path: str) -> None:
    """If some path matches both globs, may_intersect says so (it never under-reports)."""
    if _glob_regex(a).match(path) and _glob_regex(b).match(path):
        assert may_intersect(a, b)
        assert may_intersect(b, a)
