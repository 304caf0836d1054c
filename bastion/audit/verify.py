"""Walk the audit chain and name the first row that was edited, deleted or moved."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

import orjson

from bastion.audit.chain import GENESIS, row_hash
from bastion.audit.db import Database

_BATCH = 2000


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    rows: int
    head_id: int
    head_hash: str
    problem: str | None = None
    bad_id: int | None = None


def _check_row(r: sqlite3.Row, expected_id: int, prev: str) -> tuple[str | None, str]:
    """Return (problem, this row's hash); problem is None when the row links and matches."""
    row_id = int(r[0])
    if row_id != expected_id:
        missing = str(expected_id) if row_id == expected_id + 1 else f"{expected_id}-{row_id - 1}"
        return f"row {row_id}: row(s) {missing} before it are missing (deleted)", ""
    try:
        fields: Any = orjson.loads(r[7])
    except orjson.JSONDecodeError:
        return f"row {row_id}: fields are not valid JSON (edited)", ""
    if r[8] != prev:
        return (
            f"row {row_id}: prev_hash does not link to row {row_id - 1} "
            "(a row was deleted, inserted or reordered)"
        ), ""
    digest = row_hash(
        id=row_id,
        ts=r[1],
        kind=r[2],
        session_id=r[3],
        identity=r[4],
        target=r[5],
        login=r[6],
        fields=fields,
        prev_hash=r[8],
    )
    if digest != r[9]:
        return f"row {row_id}: content does not match its hash (edited)", ""
    return None, digest


async def verify_chain(db: Database) -> ChainReport:
    """Ids run from 1 without gaps, each prev_hash links to the row before, each hash matches."""
    expected_id = 1
    prev = GENESIS
    while True:
        rows = await db.fetchall(
            "SELECT id, ts, kind, session_id, identity, target, login, fields, prev_hash, hash "
            "FROM audit_log WHERE id >= ? ORDER BY id LIMIT ?",
            (expected_id, _BATCH),
        )
        for r in rows:
            problem, digest = _check_row(r, expected_id, prev)
            if problem:
                return ChainReport(False, expected_id - 1, expected_id - 1, prev, problem, r[0])
            prev = digest
            expected_id += 1
        if len(rows) < _BATCH:
            break
    # The store never writes ids below 1; any such row was inserted by hand.
    stray = await db.fetchall("SELECT MIN(id) FROM audit_log WHERE id < 1")
    if stray and stray[0][0] is not None:
        return ChainReport(
            False,
            expected_id - 1,
            expected_id - 1,
            prev,
            "rows with ids below 1 were inserted",
            int(stray[0][0]),
        )
    return ChainReport(True, expected_id - 1, expected_id - 1, prev)
