"""The docs index reaches every guide, and relative links in the ops docs point at real files."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
_LINK = re.compile(r"\]\(([^)#\s]+\.md)(#[^)]*)?\)")


def test_index_links_every_guide() -> None:
    """Every docs/*.md page is reachable from docs/index.md."""
    linked = set(_LINK.findall((DOCS / "index.md").read_text()))
    pages = {p.name for p in DOCS.glob("*.md")} - {"index.md"}
    assert pages <= {target for target, _ in linked}, pages - {t for t, _ in linked}


def test_relative_links_resolve() -> None:
    """No link in the ops-owned docs points at a missing page."""
    for page in ("index.md", "operations.md", "configuration.md", "threat-model.md"):
        for target, _ in _LINK.findall((DOCS / page).read_text()):
            assert (DOCS / target).is_file(), f"{page} -> {target}"
