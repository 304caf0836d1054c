"""Delivery status per request and notifier (shown by ``bastion approvals show``) and the Slack
message each request was posted as (so its outcome can update it, even after a restart)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import aiosqlite

from bastion.approval.model import iso
from bastion.audit.db import Database

COMPONENT = "notify"
MIGRATIONS = [
    """
    CREATE TABLE notify_deliveries (
        request_id TEXT NOT NULL,
        notifier TEXT NOT NULL,
        event TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued','retrying','delivered','failed','dropped')),
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT '',
        updated_at REAL NOT NULL,
        PRIMARY KEY (request_id, notifier, event)
    );
    CREATE TABLE notify_slack_messages (
        request_id TEXT NOT NULL,
        notifier TEXT NOT NULL,
        channel TEXT NOT NULL,
        ts TEXT NOT NULL,
        PRIMARY KEY (request_id, notifier)
    );
    """,
]
MAX_ERROR = 300


@dataclass(frozen=True)
class Delivery:
    notifier: str
    event: str
    state: str
    attempts: int
    error: str
    updated_at: float

    def to_json(self) -> dict[str, object]:
        return {
            "notifier": self.notifier,
            "event": self.event,
            "state": self.state,
            "attempts": self.attempts,
            "error": self.error,
            "updated_at": iso(self.updated_at),
        }


class NotifyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    async def open(cls, db: Database) -> NotifyStore:
        await db.migrate(COMPONENT, MIGRATIONS)
        return cls(db)

    async def set_state(
        self,
        request_id: str,
        notifier: str,
        event: str,
        state: str,
        attempts: int,
        error: str,
        now: float,
    ) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO notify_deliveries "
                "(request_id, notifier, event, state, attempts, error, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_id, notifier, event) DO UPDATE "
                "SET state = excluded.state, attempts = excluded.attempts, "
                "error = excluded.error, updated_at = excluded.updated_at",
                (request_id, notifier, event, state, attempts, error[:MAX_ERROR], now),
            )

    async def save_message(self, request_id: str, notifier: str, channel: str, ts: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT OR REPLACE INTO notify_slack_messages (request_id, notifier, channel, ts) "
                "VALUES (?, ?, ?, ?)",
                (request_id, notifier, channel, ts),
            )

    async def message(self, request_id: str, notifier: str) -> tuple[str, str] | None:
        rows = await self.db.fetchall(
            "SELECT channel, ts FROM notify_slack_messages WHERE request_id = ? AND notifier = ?",
            (request_id, notifier),
        )
        return (str(rows[0][0]), str(rows[0][1])) if rows else None


async def load_deliveries(conn: aiosqlite.Connection, request_id: str) -> list[Delivery]:
    """Deliveries of one request (empty when notifications were never set up on this database)."""
    try:
        async with conn.execute(
            "SELECT notifier, event, state, attempts, error, updated_at FROM notify_deliveries "
            "WHERE request_id = ? ORDER BY updated_at, notifier",
            (request_id,),
        ) as cur:
            rows = await cur.fetchall()
    except sqlite3.OperationalError:  # no such table: notifications never configured
        return []
    return [
        Delivery(str(r[0]), str(r[1]), str(r[2]), int(r[3]), str(r[4]), float(r[5])) for r in rows
    ]
