"""AuditStore: append hash-chained rows through one writer task; query them back.

``record()`` returns only after the row is committed (``synchronous=FULL``), so a row that was
recorded survives a crash. Rows queued at the same moment are written in one transaction. The
chain head is read inside ``BEGIN IMMEDIATE``, so several bastion processes sharing the database
still build one valid chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bastion.audit.chain import GENESIS, canonical, row_hash
from bastion.audit.db import Database
from bastion.audit.errors import AuditError

COMPONENT = "audit"
MIGRATIONS = [
    """
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        kind TEXT NOT NULL,
        session_id TEXT,
        identity TEXT,
        target TEXT,
        login TEXT,
        fields TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX audit_log_ts ON audit_log (ts);
    CREATE INDEX audit_log_kind ON audit_log (kind, id);
    CREATE INDEX audit_log_session ON audit_log (session_id, id);
    """,
]

# The documented kinds (docs/audit.md); other components may add kinds with the same shape.
KINDS = frozenset(
    {
        "session_start",
        "session_end",
        "command",
        "auth_failure",
        "refusal",
        "approval",
        "config_reload",
        "recording_sealed",
        "recording_pruned",
        "cert_issued",
        "cert_refused",
        "cert_revoked",
        "hold_outcome",
        "command_exit",
        "notify",
        "shell_integration",
        "shell_command_finished",
        "shell_interactive",
        "shell_line_held",
        "shell_marker_foreign",
        "shell_verification_failed",
    }
)
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_MAX_BATCH = 256
_COLUMNS = "id, ts, kind, session_id, identity, target, login, fields, prev_hash, hash"


@dataclass(frozen=True)
class AuditRow:
    id: int
    ts: str
    kind: str
    session_id: str | None
    identity: str | None
    target: str | None
    login: str | None
    fields: dict[str, Any]
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        """The export/SIEM shape (stable field names, see docs/audit.md)."""
        return {
            "id": self.id,
            "ts": self.ts,
            "kind": self.kind,
            "session_id": self.session_id,
            "identity": self.identity,
            "target": self.target,
            "login": self.login,
            "fields": self.fields,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass
class _Pending:
    kind: str
    columns: tuple[str | None, str | None, str | None, str | None]
    fields: dict[str, Any]
    done: asyncio.Future[int]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _opt_str(name: str, value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise AuditError(f"audit field {name} must be a string, got {type(value).__name__}")


class AuditStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def open(cls, path: Path, *, create: bool = True) -> AuditStore:
        db = await Database.open(path, create=create)
        try:
            await db.migrate(COMPONENT, MIGRATIONS)
        except BaseException:
            await db.close()
            raise
        return cls(db)

    async def close(self) -> None:
        """Write what is queued, stop the writer, close the database."""
        self._closed = True
        if self._writer is not None:
            await self._queue.put(None)
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        await self.db.close()

    async def record(
        self,
        kind: str,
        *,
        session_id: str | None = None,
        identity: str | None = None,
        target: str | None = None,
        login: str | None = None,
        **fields: Any,
    ) -> int:
        """Append one row; returns its id once committed. Raises AuditError on any failure."""
        if self._closed:
            raise AuditError("audit store is closed")
        if not isinstance(kind, str) or not _KIND.match(kind):
            raise AuditError(f"invalid audit kind {kind!r}")
        columns = (
            _opt_str("session_id", session_id),
            _opt_str("identity", identity),
            _opt_str("target", target),
            _opt_str("login", login),
        )
        try:
            # round-trip now: unserialisable values fail here, for this caller only
            clean = orjson.loads(canonical(fields))
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise AuditError(f"audit fields of {kind} are not JSON-serialisable: {exc}") from None
        if self._writer is None or self._writer.done():
            if self._writer is not None and self._writer.done():
                raise AuditError("audit writer stopped")
            self._writer = asyncio.get_running_loop().create_task(
                self._write_loop(), name="audit-writer"
            )
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(kind, columns, clean, done))
        return await done

    async def _write_loop(self) -> None:
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < _MAX_BATCH and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stop = True
                    break
                batch.append(item)
            try:
                ids = await self._write(batch)
            except (sqlite3.Error, ValueError, AuditError) as exc:
                error = AuditError(f"audit write failed: {exc}")
                for pending in batch:
                    if not pending.done.done():
                        pending.done.set_exception(error)
                continue
            for pending, row_id in zip(batch, ids, strict=True):
                if not pending.done.done():
                    pending.done.set_result(row_id)

    async def _write(self, batch: Sequence[_Pending]) -> list[int]:
        ids: list[int] = []
        async with self.db.transaction() as conn:
            async with conn.execute(
                "SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1"
            ) as cur:
                head = await cur.fetchone()
            last_id, prev = (int(head[0]), str(head[1])) if head else (0, GENESIS)
            rows = []
            for pending in batch:
                last_id += 1
                ts = utc_now()
                session_id, identity, target, login = pending.columns
                digest = row_hash(
                    id=last_id,
                    ts=ts,
                    kind=pending.kind,
                    session_id=session_id,
                    identity=identity,
                    target=target,
                    login=login,
                    fields=pending.fields,
                    prev_hash=prev,
                )
                rows.append(
                    (
                        last_id,
                        ts,
                        pending.kind,
                        session_id,
                        identity,
                        target,
                        login,
                        canonical(pending.fields).decode("utf-8"),
                        prev,
                        digest,
                    )
                )
                ids.append(last_id)
                prev = digest
            await conn.executemany(
                f"INSERT INTO audit_log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                rows,
            )
        return ids

    # -- reading ---------------------------------------------------------------------------------

    async def query(
        self,
        *,
        kinds: Sequence[str] = (),
        session_id: str | None = None,
        identity: str | None = None,
        target: str | None = None,
        since: str | None = None,
        until: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[AuditRow]:
        """Rows matching every given filter; ``since``/``until`` compare ISO timestamps (UTC)."""
        where = ["id > ?"]
        params: list[Any] = [after_id]
        if kinds:
            where.append(f"kind IN ({', '.join('?' for _ in kinds)})")
            params.extend(kinds)
        for column, value in (
            ("session_id", session_id),
            ("identity", identity),
            ("target", target),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("ts >= ?")
            params.append(since)
        if until is not None:
            where.append("ts < ?")
            params.append(until)
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT {_COLUMNS} FROM audit_log WHERE {' AND '.join(where)} ORDER BY id {order}"  # noqa: S608
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [_row(r) for r in await self.db.fetchall(sql, params)]

    async def iter_rows(self, batch: int = 1000, **filters: Any) -> AsyncIterator[AuditRow]:
        """All matching rows in id order, fetched in batches (for export and verify)."""
        after = 0
        while True:
            rows = await self.query(after_id=after, limit=batch, **filters)
            for row in rows:
                yield row
            if len(rows) < batch:
                return
            after = rows[-1].id


def _row(r: Sequence[Any]) -> AuditRow:
    try:
        fields = orjson.loads(r[7])
    except orjson.JSONDecodeError:
        fields = {"_unparseable": r[7]}
    return AuditRow(
        id=int(r[0]),
        ts=str(r[1]),
        kind=str(r[2]),
        session_id=r[3],
        identity=r[4],
        target=r[5],
        login=r[6],
        fields=fields if isinstance(fields, dict) else {"_value": fields},
        prev_hash=str(r[8]),
        hash=str(r[9]),
    )
