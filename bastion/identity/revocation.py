"""The login-time revocation check: synchronous, fast, fail closed.

``RevocationList.is_revoked`` keeps the revoked serials and key IDs in memory and asks SQLite
``PRAGMA data_version`` on every call whether any other connection has committed since the last
look (a read of the WAL index, no table access). Only then is the snapshot reloaded. So the
staleness bound is zero: a revocation committed by ``bastion cert revoke`` (any process) is seen
by the very next login. If the database cannot be read, or was replaced under us and cannot be
reopened, every certificate counts as revoked.

A key ID revocation matches the full key ID and also its stable part (the text before the first
space, i.e. ``tenant/object-id`` without the display name), so renaming an app does not escape it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from pathlib import Path

from bastion.identity.store import BUSY_TIMEOUT_MS, StoreError, ensure_database

log = logging.getLogger("bastion.identity")


def stable_key_id(key_id: str) -> str:
    return key_id.split(" ", 1)[0]


class RevocationList:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._inode: tuple[int, int] | None = None
        self._version: int | None = None
        self._serials: frozenset[int] = frozenset()
        self._key_ids: frozenset[str] = frozenset()

    @classmethod
    def open(cls, path: Path) -> RevocationList:
        """Create the database if needed and load the first snapshot; raise StoreError."""
        ensure_database(path)
        revocations = cls(path)
        with revocations._lock:
            if not revocations._refresh():
                raise StoreError(f"cannot read revocations from {path}")
        return revocations

    def is_revoked(self, serial: int, key_id: str) -> bool:
        """True if the certificate is revoked, or if that cannot be determined."""
        with self._lock:
            if not self._refresh():
                return True
            return (
                serial in self._serials
                or key_id in self._key_ids
                or stable_key_id(key_id) in self._key_ids
            )

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._version = None

    def _refresh(self) -> bool:
        """Bring the snapshot up to date; False when the database cannot be read."""
        try:
            st = os.stat(self.path)
            inode = (st.st_dev, st.st_ino)
            if self._conn is None or inode != self._inode:
                self._drop()  # first use, or the file was replaced: read the new one
                uri = f"file:{self.path}?mode=ro"
                self._conn = sqlite3.connect(
                    uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
                )
                self._inode = inode
            version = self._conn.execute("PRAGMA data_version").fetchone()[0]
            if version != self._version:
                serials = self._conn.execute(
                    "SELECT serial FROM revocations WHERE serial IS NOT NULL"
                ).fetchall()
                key_ids = self._conn.execute(
                    "SELECT key_id FROM revocations WHERE key_id IS NOT NULL"
                ).fetchall()
                self._serials = frozenset(int(r[0]) for r in serials)
                self._key_ids = frozenset(str(r[0]) for r in key_ids)
                self._version = version
        except (OSError, sqlite3.Error, TypeError, ValueError) as exc:
            log.error("revocation list unreadable, refusing all certificates: %s", exc)
            self._drop()
            return False
        return True
