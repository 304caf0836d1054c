"""Recall and false positives of the default rules on the generated labelled corpora
(masking_corpus.py by format, masking_corpus_structure.py by mechanism)."""

from __future__ import annotations

from functools import cache

from masking_corpus import Record, build_corpus, leaked
from masking_corpus_structure import build_structure_corpus

from bastion.masking import DEFAULT_RULES, StreamMasker
from bastion.masking.catalog import STRUCTURAL_RULES


@cache
def corpus() -> tuple[Record, ...]:
    return (*build_corpus(1234), *build_structure_corpus(4321))


def _mask(text: bytes, engine: str, pty: bool) -> tuple[bytes, dict[str, int]]:
    m = StreamMasker(pty=pty, engine=engine)
    out = m.feed(text) + m.flush()
    return out, dict(m.counts)


def test_corpus_shape() -> None:
    """The format corpus has >= 500 records and >= 200 negatives; the mechanism corpus >= 400
    records, each mechanism family with positives, >= 250 look-alike negatives."""
    recs = build_corpus(1234)
    assert len(recs) >= 500
    assert sum(r.kind == "neg" for r in recs) >= 200
    structure = build_structure_corpus(4321)
    assert len(structure) >= 400
    assert sum(r.kind == "neg" for r in structure) >= 250
    assert len({r.rule for r in structure if r.kind == "pos"}) >= 40


def test_recall_is_complete(engine: str) -> None:
    """No run of 8+ characters of any positive's secret survives, in label and PTY mode."""
    leaks = []
    for rec in corpus():
        if rec.kind != "pos":
            continue
        for pty in (False, True):
            out, _ = _mask(rec.text, engine, pty)
            leaks += [(rec.rule, pty) for s in rec.secrets if leaked(s, out)]
    assert leaks == []


def test_every_rule_fires_on_its_positives(engine: str) -> None:
    """Each rule names at least one mask on the positives (so no rule is dead code): format
    records on their own rule, mechanism records on whichever rules they need."""
    fired: set[str] = set()
    for rec in corpus():
        if rec.kind == "pos" and rec.rule not in fired:
            _, counts = _mask(rec.text, engine, False)
            if rec.rule in counts:
                fired.add(rec.rule)
            elif rec.rule not in DEFAULT_RULES_IDS:
                fired.update(counts)
    wanted = {r.id for r in DEFAULT_RULES} | set(STRUCTURAL_RULES)
    assert wanted - fired == set()


DEFAULT_RULES_IDS = {r.id for r in DEFAULT_RULES} | set(STRUCTURAL_RULES)


def test_negatives_pass_unchanged(engine: str) -> None:
    """At most 1% of look-alike records (SHAs, GUIDs, hashes, keys, placeholders) are altered."""
    negs = [r for r in corpus() if r.kind == "neg"]
    altered = [r.rule for r in negs if _mask(r.text, engine, False)[0] != r.text]
    assert len(altered) <= 0.01 * len(negs), altered
