"""A write transaction while another task of the same process is part-way through a SELECT and
another process has committed meanwhile (found by the load script with two workers: SQLite
answers SQLITE_BUSY_SNAPSHOT at once, and audit writes failed with "database is locked")."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bastion.audit.db import Database


async def _open_with_rows(path: Path, busy_timeout: float = 15.0) -> Database:
    db = await Database.open(path, busy_timeout=busy_timeout)
    await db.conn.execute("CREATE TABLE t (x INTEGER)")
    for i in range(5):
        await db.conn.execute("INSERT INTO t VALUES (?)", (i,))
    return db


async def test_write_waits_for_a_stale_read_snapshot_to_end(tmp_path: Path) -> None:
    db = await _open_with_rows(tmp_path / "bastion.db")
    other = sqlite3.connect(tmp_path / "bastion.db", isolation_level=None)  # "another process"
    try:
        reading = await db.conn.execute("SELECT x FROM t")
        assert await reading.fetchone() == (0,)  # the statement is open: so is its snapshot
        other.execute("INSERT INTO t VALUES (99)")  # committed past that snapshot

        async def write() -> None:
            async with db.transaction() as conn:
                await conn.execute("INSERT INTO t VALUES (7)")

        writing = asyncio.create_task(write())
        await asyncio.sleep(0.05)
        assert not writing.done()  # waiting, not failed
        await reading.close()  # the SELECT ends
        await writing
        rows = await db.fetchall("SELECT x FROM t ORDER BY rowid")
        assert [r[0] for r in rows] == [0, 1, 2, 3, 4, 99, 7]
    finally:
        other.close()
        await db.close()


async def test_write_waits_while_reading_and_another_process_holds_the_lock(
    tmp_path: Path,
) -> None:
    """With a read open, SQLite does not busy-wait for another process's write lock (it answers
    SQLITE_BUSY at once); the transaction waits for both to end instead."""
    db = await _open_with_rows(tmp_path / "bastion.db")
    other = sqlite3.connect(tmp_path / "bastion.db", isolation_level=None, check_same_thread=False)
    try:
        reading = await db.conn.execute("SELECT x FROM t")
        await reading.fetchone()
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t VALUES (99)")

        async def write() -> None:
            async with db.transaction() as conn:
                await conn.execute("INSERT INTO t VALUES (7)")

        writing = asyncio.create_task(write())
        await asyncio.sleep(0.05)
        assert not writing.done()
        other.execute("COMMIT")
        await reading.close()
        await writing
        rows = await db.fetchall("SELECT x FROM t ORDER BY rowid")
        assert [r[0] for r in rows] == [0, 1, 2, 3, 4, 99, 7]
    finally:
        other.close()
        await db.close()


async def test_a_snapshot_that_never_ends_still_fails_within_the_busy_timeout(
    tmp_path: Path,
) -> None:
    db = await _open_with_rows(tmp_path / "bastion.db", busy_timeout=0.3)
    other = sqlite3.connect(tmp_path / "bastion.db", isolation_level=None)
    try:
        reading = await db.conn.execute("SELECT x FROM t")
        await reading.fetchone()
        other.execute("INSERT INTO t VALUES (99)")
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            async with db.transaction() as conn:
                await conn.execute("INSERT INTO t VALUES (7)")
        await reading.close()
    finally:
        other.close()
        await db.close()
