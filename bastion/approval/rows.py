"""Reading approval rows back into ``ApprovalRequest`` (shared by the broker and its readers)."""

from __future__ import annotations

from collections.abc import Callable

import aiosqlite
import orjson

from bastion.approval.model import ApprovalRequest, DecisionRecord, State
from bastion.errors import BastionError

_COLUMNS = (
    "id, state, mode, session_id, requester_key_id, requester_serial, principals, target, login, "
    "channel_kind, command, command_escaped, units, rules, approvers, approvals_required, "
    "created_at, expires_at, decided_at, decided_by, reason, use_before, used_at, explanation"
)


# Correlated on approval_requests: the audit row that made an approval count.
AUDITED_SQL = (
    "SELECT 1 FROM audit_log a WHERE a.kind = 'approval' "
    "AND a.session_id IS approval_requests.session_id "
    "AND json_extract(a.fields, '$.request') = approval_requests.id "
    "AND json_extract(a.fields, '$.event') = 'approved'"
)


async def load_request(
    conn: aiosqlite.Connection,
    request_id: str,
    approve_url: Callable[[str], str],
    operator_url: Callable[[str, float], str] | None = None,
) -> ApprovalRequest | None:
    """One request with its decisions, or None; ``operator_url(id, expires_at)`` signs links."""
    async with conn.execute(
        f"SELECT {_COLUMNS} FROM approval_requests WHERE id = ?",  # noqa: S608
        (request_id,),
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        return None
    async with conn.execute(
        "SELECT operator, approve, reason, via, at FROM approval_decisions "
        "WHERE request_id = ? ORDER BY at, rowid",
        (request_id,),
    ) as cur:
        decisions = tuple(
            DecisionRecord(str(d[0]), bool(d[1]), str(d[2]), str(d[3]), float(d[4]))
            for d in await cur.fetchall()
        )
    r = tuple(row)
    return ApprovalRequest(
        id=str(r[0]),
        state=_state(r[1]),
        mode=str(r[2]),
        session_id=None if r[3] is None else str(r[3]),
        requester_key_id=str(r[4]),
        requester_serial=int(r[5]),
        principals=tuple(orjson.loads(r[6])),
        target=str(r[7]),
        login=str(r[8]),
        channel_kind=str(r[9]),
        command=str(r[10]),
        command_escaped=str(r[11]),
        units=tuple(tuple(u) for u in orjson.loads(r[12])),
        rules=tuple(orjson.loads(r[13])),
        approvers=tuple(orjson.loads(r[14])),
        approvals_required=int(r[15]),
        created_at=float(r[16]),
        expires_at=float(r[17]),
        decided_at=None if r[18] is None else float(r[18]),
        decided_by=tuple(orjson.loads(r[19])),
        reason=str(r[20]),
        use_before=None if r[21] is None else float(r[21]),
        used_at=None if r[22] is None else float(r[22]),
        explanation=str(r[23] or ""),
        approve_url=approve_url(str(r[0])),
        decisions=decisions,
        operator_url=operator_url(str(r[0]), float(r[17])) if operator_url else "",
    )


_STATES: dict[object, State] = {
    s: s for s in ("pending", "approved", "denied", "expired", "abandoned")
}


def _state(value: object) -> State:
    if value in _STATES:
        return _STATES[value]
    raise BastionError(f"unknown approval state {value!r} in the database")
