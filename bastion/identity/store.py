"""SQLite state shared by every bastion process on a host: ``<state_dir>/identity.db``.

It holds the serial counter (``AUTOINCREMENT`` under SQLite's write lock, so serials are unique
across processes and never reused, even after rows are pruned), the issued certificates, the
revocations and the token replay cache. WAL mode lets the login path read while others write.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 5000

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS certificates (
    serial INTEGER PRIMARY KEY AUTOINCREMENT,
    state TEXT NOT NULL,              -- 'reserved' until signed, then 'issued'
    created_at REAL NOT NULL,
    key_id TEXT, principals TEXT, issuer TEXT, subject TEXT, key_fingerprint TEXT,
    valid_after INTEGER, valid_before INTEGER
);
CREATE INDEX IF NOT EXISTS certificates_key_id ON certificates (key_id);
CREATE TABLE IF NOT EXISTS revocations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    serial INTEGER, key_id TEXT,
    reason TEXT NOT NULL, revoked_at REAL NOT NULL,
    CHECK ((serial IS NULL) <> (key_id IS NULL))
);
CREATE TABLE IF NOT EXISTS seen_tokens (token_key TEXT PRIMARY KEY, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS seen_tokens_expiry ON seen_tokens (expires_at);
"""


class StoreError(Exception):
    """The identity database cannot be used; issuance and revocation must stop."""


def create_schema(conn: sqlite3.Connection) -> None:
    """Create tables (idempotent) in a synchronous connection; check the schema version."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(SCHEMA)
    conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
    )
    conn.commit()
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None or int(row[0]) != SCHEMA_VERSION:
        raise StoreError(
            f"identity database has schema {row and row[0]}, expected {SCHEMA_VERSION}"
        )


def ensure_database(path: Path) -> None:
    """Create the database file with its schema (0600) if it does not exist yet."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        path.touch(mode=0o600)
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            create_schema(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open identity database {path}: {exc}") from None


@dataclass(frozen=True)
class IssuedCertificate:
    serial: int
    state: str
    created_at: float
    key_id: str | None
    principals: tuple[str, ...]
    issuer: str | None
    subject: str | None
    valid_after: int | None
    valid_before: int | None


@dataclass(frozen=True)
class Revocation:
    serial: int | None
    key_id: str | None
    reason: str
    revoked_at: float


class IdentityStore:
    """Async access for the issuer and the CLI. Every method raises StoreError on failure."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path

    @classmethod
    async def open(cls, path: Path) -> IdentityStore:
        ensure_database(path)
        try:
            # Autocommit: each write is its own transaction unless a method opens one.
            db = await aiosqlite.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open identity database {path}: {exc}") from None
        return cls(db, path)

    async def close(self) -> None:
        await self._db.close()

    async def _write(self, sql: str, params: tuple[object, ...]) -> int:
        try:
            cursor = await self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"identity database write failed: {exc}") from None
        return cursor.lastrowid or 0

    async def reserve_serial(self, now: float) -> int:
        """A fresh serial, unique across processes and never reused."""
        return await self._write(
            "INSERT INTO certificates (state, created_at) VALUES ('reserved', ?)", (now,)
        )

    async def record_issued(
        self,
        serial: int,
        *,
        key_id: str,
        principals: tuple[str, ...],
        issuer: str,
        subject: str,
        key_fingerprint: str,
        valid_after: int,
        valid_before: int,
    ) -> None:
        await self._write(
            "UPDATE certificates SET state = 'issued', key_id = ?, principals = ?, issuer = ?,"
            " subject = ?, key_fingerprint = ?, valid_after = ?, valid_before = ?"
            " WHERE serial = ?",
            (
                key_id,
                json.dumps(list(principals)),
                issuer,
                subject,
                key_fingerprint,
                valid_after,
                valid_before,
                serial,
            ),
        )

    async def remember_token(self, token_key: str, expires_at: float, now: float) -> bool:
        """Record a token as used; False when it was already used and has not expired yet.

        Two single-statement writes, each atomic on its own: no transaction spans an await, so
        concurrent requests on this connection cannot interleave inside one.
        """
        try:
            await self._db.execute("DELETE FROM seen_tokens WHERE expires_at < ?", (now,))
            cursor = await self._db.execute(
                "INSERT OR IGNORE INTO seen_tokens (token_key, expires_at) VALUES (?, ?)",
                (token_key, expires_at),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"identity database write failed: {exc}") from None
        return cursor.rowcount == 1

    async def revoke(
        self, *, serial: int | None = None, key_id: str | None = None, reason: str, now: float
    ) -> int:
        if (serial is None) == (key_id is None):
            raise ValueError("revoke takes exactly one of serial and key_id")
        return await self._write(
            "INSERT INTO revocations (serial, key_id, reason, revoked_at) VALUES (?, ?, ?, ?)",
            (serial, key_id, reason, now),
        )

    async def certificate(self, serial: int) -> IssuedCertificate | None:
        rows = await self._read("SELECT * FROM certificates WHERE serial = ?", (serial,))
        return _certificate(rows[0]) if rows else None

    async def certificates(self, limit: int = 50) -> list[IssuedCertificate]:
        rows = await self._read(
            "SELECT * FROM certificates WHERE state = 'issued' ORDER BY serial DESC LIMIT ?",
            (limit,),
        )
        return [_certificate(r) for r in rows]

    async def revocations(self) -> list[Revocation]:
        rows = await self._read(
            "SELECT serial, key_id, reason, revoked_at FROM revocations ORDER BY id", ()
        )
        return [Revocation(r[0], r[1], r[2], r[3]) for r in rows]

    async def _read(self, sql: str, params: tuple[object, ...]) -> list[sqlite3.Row]:
        try:
            self._db.row_factory = sqlite3.Row
            async with self._db.execute(sql, params) as cursor:
                return list(await cursor.fetchall())
        except sqlite3.Error as exc:
            raise StoreError(f"identity database read failed: {exc}") from None


def _certificate(row: sqlite3.Row) -> IssuedCertificate:
    principals = tuple(json.loads(row["principals"])) if row["principals"] else ()
    return IssuedCertificate(
        serial=row["serial"],
        state=row["state"],
        created_at=row["created_at"],
        key_id=row["key_id"],
        principals=principals,
        issuer=row["issuer"],
        subject=row["subject"],
        valid_after=row["valid_after"],
        valid_before=row["valid_before"],
    )
