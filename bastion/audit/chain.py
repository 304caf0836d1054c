"""The audit hash chain: each row's hash covers its columns and the previous row's hash."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

GENESIS = "0" * 64
_DOMAIN = b"bastion-audit-v1\n"


def canonical(value: Any) -> bytes:
    """Canonical JSON: sorted keys, compact, UTF-8 (stable across processes and versions)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def row_hash(
    *,
    id: int,
    ts: str,
    kind: str,
    session_id: str | None,
    identity: str | None,
    target: str | None,
    login: str | None,
    fields: dict[str, Any],
    prev_hash: str,
) -> str:
    body = {
        "id": id,
        "ts": ts,
        "kind": kind,
        "session_id": session_id,
        "identity": identity,
        "target": target,
        "login": login,
        "fields": fields,
        "prev": prev_hash,
    }
    return hashlib.sha256(_DOMAIN + canonical(body)).hexdigest()
