"""Tables of the "approvals" component in the shared database (``Database.migrate``)."""

from __future__ import annotations

COMPONENT = "approvals"

MIGRATIONS = [
    """
    CREATE TABLE approval_requests (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL CHECK (state IN ('pending','approved','denied','expired','abandoned')),
        mode TEXT NOT NULL CHECK (mode IN ('wait','defer')),
        session_id TEXT,
        requester_key_id TEXT NOT NULL,
        requester_serial INTEGER NOT NULL,
        principals TEXT NOT NULL,
        target TEXT NOT NULL,
        login TEXT NOT NULL,
        channel_kind TEXT NOT NULL,
        command TEXT NOT NULL,
        command_escaped TEXT NOT NULL,
        units TEXT NOT NULL,
        rules TEXT NOT NULL,
        approvers TEXT NOT NULL,
        approvals_required INTEGER NOT NULL CHECK (approvals_required >= 1),
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        decided_at REAL,
        decided_by TEXT NOT NULL DEFAULT '[]',
        reason TEXT NOT NULL DEFAULT '',
        use_before REAL,
        used_at REAL
    );
    CREATE INDEX approval_requests_state ON approval_requests (state, expires_at);
    CREATE INDEX approval_requests_defer ON approval_requests
        (requester_key_id, target, login, state);
    CREATE TABLE approval_decisions (
        request_id TEXT NOT NULL REFERENCES approval_requests (id),
        operator TEXT NOT NULL,
        approve INTEGER NOT NULL,
        reason TEXT NOT NULL,
        via TEXT NOT NULL,
        at REAL NOT NULL,
        UNIQUE (request_id, operator)
    );
    CREATE TABLE approval_operators (
        name TEXT PRIMARY KEY,
        groups TEXT NOT NULL,
        identities TEXT NOT NULL,
        slack_id TEXT,
        email TEXT,
        totp_secret TEXT NOT NULL,
        last_step INTEGER NOT NULL DEFAULT 0,
        failures INTEGER NOT NULL DEFAULT 0,
        locked_until REAL NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    """,
    # v2: commands are stored masked; deferred approvals match on a keyed hash of the exact
    # units (units_key) instead of the stored text. approval_keys holds this database's random
    # keys (the operator-link key, the units key), made by the broker on first open.
    """
    ALTER TABLE approval_requests ADD COLUMN units_key TEXT;
    CREATE INDEX approval_requests_units_key ON approval_requests (requester_key_id, units_key);
    CREATE TABLE approval_keys (
        name TEXT PRIMARY KEY,
        key BLOB NOT NULL
    );
    """,
    # v3: the reason the agent was given (the gate's explanation, masked), shown to operators.
    """
    ALTER TABLE approval_requests ADD COLUMN explanation TEXT NOT NULL DEFAULT '';
    """,
]
