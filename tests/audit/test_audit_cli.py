"""``bastion audit`` commands against a real database file."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from bastion.audit import AuditStore
from bastion.cli import main


async def _seed(config_file: Path) -> Path:
    db = config_file.parent / "state" / "bastion.db"
    store = await AuditStore.open(db)
    try:
        await store.record("session_start", session_id="s1", identity="agent-a", target="vm1")
        await store.record("command", session_id="s1", command="ls", decision="allow")
        await store.record("command", session_id="s2", command="rm -rf /", decision="deny")
        await store.record("session_end", session_id="s1", exit_status=0)
    finally:
        await store.close()
    return db


async def _cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_verify_ok_then_tampered(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """audit verify exits 0 on an intact chain and 1 naming the edited row."""
    db = await _seed(config_file)
    assert await _cli("audit", "verify", "--config", str(config_file)) == 0
    assert "intact: 4 rows" in capsys.readouterr().out
    with sqlite3.connect(db) as conn:
        conn.execute('UPDATE audit_log SET fields = \'{"decision":"allow"}\' WHERE id = 3')
    assert await _cli("audit", "verify", "--config", str(config_file)) == 1
    assert "row 3: content does not match its hash (edited)" in capsys.readouterr().out


async def test_query_filters_by_kind_and_session(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """query --json --kind --session returns only matching rows."""
    await _seed(config_file)
    cfg = ["--config", str(config_file)]
    assert await _cli("audit", "query", "--json", "--kind", "command", "--session", "s2", *cfg) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(r["id"], r["fields"]["decision"]) for r in rows] == [(3, "deny")]


async def test_tail_shows_newest_rows_in_order(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tail -n 2 prints the last two rows, oldest of them first."""
    await _seed(config_file)
    assert await _cli("audit", "tail", "-n", "2", "--config", str(config_file)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "command" in lines[0] and "session_end" in lines[1]


async def test_export_jsonl_to_file_with_since(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """export --since writes one JSON object per row; a future --since exports nothing."""
    await _seed(config_file)
    out = tmp_path / "audit.jsonl"
    cfg = ["--config", str(config_file)]
    assert (
        await _cli("audit", "export", "--since", "1h", "--format", "jsonl", "-o", str(out), *cfg)
        == 0
    )
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["kind"] for r in rows] == ["session_start", "command", "command", "session_end"]
    assert await _cli("audit", "export", "--since", "2999-01-01", "-o", str(out), *cfg) == 0
    assert out.read_text() == ""
    assert await _cli("audit", "export", "--since", "yesterday-ish", *cfg) == 3
    assert "cannot read time" in capsys.readouterr().err


async def test_missing_database_is_a_clear_error(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Reading commands do not create an empty database; they say it is missing."""
    assert await _cli("audit", "verify", "--config", str(config_file)) == 3
    assert "no database at" in capsys.readouterr().err
    assert not (config_file.parent / "state" / "bastion.db").exists()
