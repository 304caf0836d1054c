"""The shared SQLite database: WAL, busy timeout, per-component schema versions.

Every component that keeps state here (audit, approvals, identity, ...) registers its own ordered
list of migrations with ``db.migrate(component, [v1_sql, v2_sql, ...])``; the version applied is
kept per component in ``schema_version`` and each step runs in one ``BEGIN IMMEDIATE``
transaction, so several bastion processes starting at once apply it exactly once.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from bastion.audit.errors import AuditError

_BUSY = ("SQLITE_BUSY", "SQLITE_BUSY_SNAPSHOT")

_SCHEMA_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    component TEXT PRIMARY KEY,
    version INTEGER NOT NULL
)
"""


def split_statements(script: str) -> list[str]:
    """Split a migration script into complete statements (triggers with ';' inside stay whole)."""
    statements: list[str] = []
    current = ""
    for piece in script.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \t\r\n;"):
                statements.append(current.strip())
            current = ""
    if current.strip(" \t\r\n;"):
        raise AuditError(f"migration has an incomplete statement: {current.strip()[:60]!r}")
    return statements


def create_private(path: Path) -> None:
    """Create the database file owner-only (0600) before SQLite opens it, if it is missing.

    It holds operators' TOTP secrets. SQLite gives its ``-wal`` and ``-shm`` files the mode of
    the database file, so they are born 0600 too; nothing is chmod-ed afterwards. An existing
    file is left as it is (``check-config`` reports a loose mode).
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.close(fd)


class Database:
    """One aiosqlite connection; ``transaction()`` serialises writers within this process."""

    def __init__(self, conn: aiosqlite.Connection, path: Path, busy_timeout: float = 15.0) -> None:
        self.conn = conn
        self.path = path
        self.busy_timeout = busy_timeout
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, *, busy_timeout: float = 15.0, create: bool = True) -> Database:
        path = Path(path)
        if not create and not path.exists():
            raise AuditError(f"no database at {path}")
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            create_private(path)
            conn = await aiosqlite.connect(path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise AuditError(f"cannot open database {path}: {exc}") from None
        try:
            await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            await conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a commit is on disk when it returns, so an audit row is durable when recorded.
            await conn.execute("PRAGMA synchronous = FULL")
            await conn.execute("PRAGMA foreign_keys = ON")
            await conn.execute(_SCHEMA_TABLE)
        except sqlite3.Error as exc:
            await conn.close()
            raise AuditError(f"cannot open database {path}: {exc}") from None
        return cls(conn, path, busy_timeout)

    async def close(self) -> None:
        await self.conn.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error); takes the write lock first."""
        async with self._lock:
            await self._begin()
            try:
                yield self.conn
            except BaseException:
                await self.conn.execute("ROLLBACK")
                raise
            await self.conn.execute("COMMIT")

    async def _begin(self) -> None:
        """``BEGIN IMMEDIATE``, waiting out a stale read snapshot of this connection.

        Another task of this process may be part-way through a SELECT on the shared connection;
        its statement keeps a read transaction open. While it is open SQLite does not busy-wait
        for the write lock (that could deadlock): it answers SQLITE_BUSY at once if another
        process (a worker, the CLI) holds the lock, or SQLITE_BUSY_SNAPSHOT if one has
        committed past the snapshot. Under load with several workers that failed audit writes
        ("database is locked"). The SELECT ends within a few loop turns: retry until then,
        within the busy timeout (a genuine busy wait uses it up, so that is not retried).
        """
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.002
        while True:
            try:
                await self.conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                busy = getattr(exc, "sqlite_errorname", "") in _BUSY
                if not busy or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            async with self.conn.execute(sql, params) as cur:
                return list(await cur.fetchall())
        except sqlite3.Error as exc:
            raise AuditError(f"database query failed: {exc}") from None

    async def version(self, component: str) -> int:
        rows = await self.fetchall(
            "SELECT version FROM schema_version WHERE component = ?", (component,)
        )
        return int(rows[0][0]) if rows else 0

    async def migrate(self, component: str, migrations: Iterable[str]) -> int:
        """Apply the missing migrations of ``component``; returns its schema version."""
        steps = list(migrations)
        try:
            async with self.transaction() as conn:
                async with conn.execute(
                    "SELECT version FROM schema_version WHERE component = ?", (component,)
                ) as cur:
                    row = await cur.fetchone()
                current = int(row[0]) if row else 0
                if current > len(steps):
                    raise AuditError(
                        f"database schema of {component} is v{current}, newer than this "
                        f"bastion knows (v{len(steps)}); refusing to run an old version on it"
                    )
                for version in range(current + 1, len(steps) + 1):
                    for statement in split_statements(steps[version - 1]):
                        await conn.execute(statement)
                if len(steps) > current:
                    await conn.execute(
                        "INSERT INTO schema_version (component, version) VALUES (?, ?) "
                        "ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                        (component, len(steps)),
                    )
        except sqlite3.Error as exc:
            raise AuditError(f"migrating {component} failed: {exc}") from None
        return len(steps)
