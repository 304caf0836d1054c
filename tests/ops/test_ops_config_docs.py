"""docs/configuration.md cannot drift from the code or from the example config."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from ops_config_probe import FREE_FORM, keys_read, write_full_config

from bastion.ops.checkconfig import KNOWN_SECTIONS

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "configuration.md"
_HEADING = re.compile(r"^#{2,3} `\[{1,2}([a-z_.]+)\]{1,2}`")
_ROW = re.compile(r"^\| `([a-z_]+)` \|")


def documented() -> tuple[set[str], set[str]]:
    """(sections, dotted keys) as listed in docs/configuration.md."""
    sections: set[str] = set()
    keys: set[str] = set()
    section = ""
    for line in DOC.read_text().splitlines():
        if m := _HEADING.match(line):
            section = m.group(1)
            sections.add(section)
        elif (m := _ROW.match(line)) and section:
            keys.add(f"{section}.{m.group(1)}")
    return sections, keys


def flatten(table: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else key
        out.add(name)
        if name in FREE_FORM:
            continue
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict):
                out |= flatten(item, name)
    return out


@pytest.fixture(scope="module")
def code_keys(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    mp = pytest.MonkeyPatch()
    try:
        directory = tmp_path_factory.mktemp("fullconfig")
        config = write_full_config(directory, REPO / "config" / "policy.toml")
        seen, failed = keys_read(config, mp)
    finally:
        mp.undo()
    assert not failed, failed  # every branch ran, so every key it reads was seen
    return seen


def test_every_key_the_code_reads_is_documented(code_keys: set[str]) -> None:
    """A key a parser reads but configuration.md does not list fails the build."""
    sections, keys = documented()
    missing = sorted(
        k for k in code_keys if ("." in k and k not in keys) or k not in sections | keys
    )
    assert not missing, f"add to docs/configuration.md: {missing}"


def test_every_documented_key_is_read_by_the_code(code_keys: set[str]) -> None:
    """A key configuration.md lists but no parser reads (renamed, removed) fails the build."""
    _, keys = documented()
    stale = sorted(keys - code_keys)
    assert not stale, f"documented but never read: {stale}"


def test_every_example_config_key_is_documented() -> None:
    """Every key in config/bastion.example.toml appears in configuration.md."""
    sections, keys = documented()
    example = tomllib.loads((REPO / "config" / "bastion.example.toml").read_text())
    undocumented = sorted(k for k in flatten(example) if k not in sections | keys)
    undocumented = [k for k in undocumented if k.rsplit(".", 1)[0] not in FREE_FORM]
    assert not undocumented, undocumented


def test_check_config_knows_exactly_the_documented_sections() -> None:
    """check-config's list of known sections is the documented top-level sections."""
    sections, _ = documented()
    assert {s for s in sections if "." not in s} == KNOWN_SECTIONS


def test_the_schema_is_the_documented_and_the_read_keys(code_keys: set[str]) -> None:
    """bastion/schema.py lists exactly the documented sections, and for a section whose keys it
    lists, exactly the keys configuration.md documents and the parsers read."""
    from bastion.schema import SCHEMA

    sections, keys = documented()
    assert {s for s in sections if "." not in s} == {s.name for s in SCHEMA}
    for section in SCHEMA:
        if section.keys is None:
            continue
        declared = {f"{section.name}.{k}" for k in section.keys}
        doc = {k for k in keys if k.rsplit(".", 1)[0] == section.name}
        read = {k for k in code_keys if "." in k and k.rsplit(".", 1)[0] == section.name}
        assert declared == doc, (section.name, declared ^ doc)
        assert declared >= read, (section.name, read - declared)  # never read an unlisted key
