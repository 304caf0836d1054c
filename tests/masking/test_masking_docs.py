"""docs/masking.md stays in step with the rule catalog."""

from __future__ import annotations

import re
from pathlib import Path

from bastion.masking.catalog import all_rule_ids, rule_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "masking.md"


def test_doc_carries_the_generated_rule_table() -> None:
    """The rule table in the doc is exactly what the code generates (no drift)."""
    assert rule_table() in DOC.read_text()


def test_every_rule_id_is_documented_and_every_documented_id_exists() -> None:
    """Each rule id appears in the doc, and each id in the doc's table is a real rule."""
    text = DOC.read_text()
    ids = set(all_rule_ids())
    assert {i for i in ids if f"`{i}`" not in text} == set()
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", text, re.M))
    assert documented == ids
    assert len(ids) >= 60
