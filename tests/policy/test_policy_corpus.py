"""The labelled corpus stays green with the shipped policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.policy import Context, Policy, load_policy
from bastion.policy.model import SEVERITY

# corpus.jsonl plus one corpus_<mechanism>.jsonl per class of bypass, so that lines written from
# different tools' manuals live apart.
CORPORA = sorted(Path(__file__).parent.glob("corpus*.jsonl"))
CTX = Context(principals=("agents",), target="web-01", login="azureuser")


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(Policy.default_path())


def _entries() -> list[dict[str, str]]:
    return [
        json.loads(line)
        for corpus in CORPORA
        for line in corpus.read_text(encoding="utf-8").splitlines()
        if line
    ]


def test_corpus_is_large_and_labelled() -> None:
    """The corpus has at least 400 lines with both benign and must-hold entries."""
    entries = _entries()
    assert len(entries) >= 400
    assert {e["class"] for e in entries} == {"benign", "must-hold"}


def test_every_must_hold_line_is_held(policy: Policy) -> None:
    """Every destructive or obfuscated line gets at least its expected severity."""
    misses = []
    for e in _entries():
        if e["class"] != "must-hold":
            continue
        got = policy.decide(e["cmd"], CTX).action
        if SEVERITY[got] < SEVERITY[e["expect"]]:
            misses.append((e["cmd"], e["expect"], got))
    assert misses == []


def test_benign_lines_flow(policy: Policy) -> None:
    """At least 95% of the benign lines a coding agent runs are allowed."""
    benign = [e for e in _entries() if e["class"] == "benign"]
    allowed = sum(1 for e in benign if policy.decide(e["cmd"], CTX).action == "allow")
    assert allowed / len(benign) >= 0.95
