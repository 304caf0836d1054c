"""SIEM export: one JSON object per line, fields as documented in docs/audit.md."""

from __future__ import annotations

from typing import Any, BinaryIO

import orjson

from bastion.audit.store import AuditStore


async def export_jsonl(store: AuditStore, out: BinaryIO, **filters: Any) -> int:
    """Write matching rows in id order to ``out``; returns how many were written."""
    count = 0
    async for row in store.iter_rows(**filters):
        out.write(orjson.dumps(row.to_json(), option=orjson.OPT_SORT_KEYS) + b"\n")
        count += 1
    return count
