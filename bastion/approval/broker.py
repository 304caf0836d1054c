"""The approval broker: hold a reviewed command until named operators decide, or time runs out.

State machine (one row per request, every change audited as ``kind="approval"``)::

    pending --(N distinct allowed operators approve)--> approved
    pending --(one allowed operator denies)-----------> denied
    pending --(deadline passes: a timeout is a denial)-> expired
    pending --(the agent went away / bastion restart)--> abandoned

Every transition is a conditional ``UPDATE ... WHERE state = 'pending'`` inside ``BEGIN
IMMEDIATE``, so two processes (the bastion and ``bastion approvals approve``) can never both
move a request. ``wait()`` polls its row every ``poll_interval`` (0.2 s), so a decision made by
another process is seen well within a second; decisions made in this process wake it at once.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import hashlib
import hmac
import logging
import secrets
import shlex
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite
import orjson

from bastion.approval.config import ApprovalsConfig, Mode, parse_mode
from bastion.approval.ids import new_request_id, parse_request_id
from bastion.approval.model import (
    BAD_CREDENTIALS,
    ApprovalRefused,
    ApprovalRequest,
    Outcome,
    State,
    canonical_units,
)
from bastion.approval.operators import (
    LOCKOUT_SECONDS,
    MAX_FAILURES,
    Operator,
    OperatorStore,
    load_operator,
    match_totp,
)
from bastion.approval.render import escape_visible, mask_secrets
from bastion.approval.rows import AUDITED_SQL, load_request
from bastion.approval.schema import COMPONENT, MIGRATIONS
from bastion.audit.db import Database
from bastion.audit.errors import AuditError
from bastion.audit.store import AuditStore
from bastion.errors import BastionError

log = logging.getLogger("bastion.approval")

MAX_APPROVALS = 5
MAX_COMMAND = 64 * 1024
MAX_REASON = 500
MAX_EXPLANATION = 2000
MAX_BATCH = 20  # requests one code may decide at once (the list page's ticked rows)
LIST_LINK_VALIDITY = 86400.0  # an operator list link opens the list this long
VIAS = ("cli", "web", "slack")
AUDIT_GRACE = 10.0  # seconds an approval may wait for its audit row when decided near the deadline
LINK_GRACE = 86400.0  # an operator link still shows the full page this long after the deadline
_DUMMY_SECRET = "A" * 32  # compared against for an unknown operator: same work as a real one
_MASKED_ARG = "[MASKED]"


Listener = Callable[[str, ApprovalRequest], None]


@dataclass(frozen=True)
class _Change:
    """What a transaction did, audited after it commits."""

    event: str
    request: ApprovalRequest
    fields: dict[str, Any]


class ApprovalBroker:
    """Submit held commands, wait for their outcome, record operators' decisions."""

    def __init__(
        self,
        db: Database,
        audit: AuditStore,
        config: ApprovalsConfig,
        clock: Callable[[], float] = time.time,
        keys: dict[str, bytes] | None = None,
    ) -> None:
        self.db = db
        self.audit = audit
        self.config = config
        self.clock = clock
        self.operators = OperatorStore(db, clock)
        keys = keys or {}
        # Shared through the database by every process (workers, supervisor, CLI): see open().
        self._link_key = keys.get("link") or secrets.token_bytes(32)
        self._units_key = keys.get("units") or secrets.token_bytes(32)
        # Held commands are stored masked (like audit rows); the runtime sets its own masker.
        self.mask: Callable[[str], str] = mask_secrets
        self._wakeups: dict[str, asyncio.Event] = {}
        self._listeners: list[Listener] = []

    def add_listener(self, callback: Listener) -> None:
        """Call ``callback(event, request)`` after each audited change made by this process.

        ``event`` is the audit event (submitted, approval_added, approved, denied, expired,
        abandoned, used). Callbacks run synchronously and must not block (notifiers queue);
        an exception in one is logged and never affects the request.
        """
        self._listeners.append(callback)

    @classmethod
    async def open(
        cls,
        db: Database,
        audit: AuditStore,
        config: ApprovalsConfig,
        clock: Callable[[], float] = time.time,
    ) -> ApprovalBroker:
        """Run the approvals migrations on ``db`` and return a broker over it."""
        await db.migrate(COMPONENT, MIGRATIONS)
        return cls(db, audit, config, clock, keys=await _keys(db))

    # -- the relay's side ------------------------------------------------------------------------

    async def submit(
        self,
        *,
        session_id: str | None,
        requester_key_id: str,
        requester_serial: int,
        principals: Sequence[str],
        target: str,
        login: str,
        channel_kind: str,
        command: str,
        units: Sequence[Sequence[str]],
        rules: Sequence[str],
        approvers: Sequence[str] = (),
        approvals_required: int = 1,
        timeout: float | None = None,  # noqa: ASYNC109 (the request's deadline, not this call's)
        mode: str | None = None,
        explanation: str = "",
    ) -> ApprovalRequest:
        """Hold ``command`` for approval; durable (stored and audited) when it returns.

        In defer mode an identical pending request from the same identity to the same
        target+login is returned instead of a new one, so an agent retrying does not pile up
        requests. Raises BastionError for values that cannot be held safely.
        """
        chosen: Mode = self.config.mode if mode is None else parse_mode(mode, "review mode")
        if not 1 <= approvals_required <= MAX_APPROVALS:
            raise BastionError(f"approvals required must be 1..{MAX_APPROVALS}")
        wait_for = self.config.timeout if timeout is None else float(timeout)
        if not 0 < wait_for <= 7 * 86400:
            raise BastionError("approval timeout must be more than 0 and at most 7 days")
        if len(command) > MAX_COMMAND:
            raise BastionError("command too long to hold for approval")
        if not requester_key_id or not target or not login:
            raise BastionError("a held command needs a requester, a target and a login")
        # What is stored is masked: the command, the units shown to operators. The relay runs the
        # line it holds in memory; deferred approvals match the exact units by a keyed hash.
        shown = self.mask(command)
        units_text = canonical_units([self._mask_unit(u) for u in units])
        units_key = self._units_hash(units)
        now = self.clock()
        values = {
            "state": "pending",
            "mode": chosen,
            "session_id": session_id,
            "requester_key_id": requester_key_id,
            "requester_serial": int(requester_serial),
            "principals": orjson.dumps(list(principals)).decode(),
            "target": target,
            "login": login,
            "channel_kind": channel_kind,
            "command": shown,
            "command_escaped": escape_visible(shown),
            "units": units_text,
            "units_key": units_key,
            "rules": orjson.dumps(list(rules)).decode(),
            "approvers": orjson.dumps(sorted(set(approvers))).decode(),
            "approvals_required": approvals_required,
            "explanation": self.mask(explanation[:MAX_EXPLANATION]),
            "created_at": now,
            "expires_at": now + wait_for,
        }
        async with self.db.transaction() as conn:
            if chosen == "defer":
                async with conn.execute(
                    "SELECT id FROM approval_requests WHERE state = 'pending' AND mode = 'defer' "
                    "AND requester_key_id = ? AND target = ? AND login = ? AND units_key = ? "
                    "AND expires_at > ? ORDER BY created_at LIMIT 1",
                    (requester_key_id, target, login, units_key, now),
                ) as cur:
                    existing = await cur.fetchone()
                if existing is not None:
                    found = await self._load(conn, str(existing[0]))
                    assert found is not None
                    return found
            await self._check_pending_cap(conn, requester_key_id, now)
            request_id = new_request_id()
            names = ", ".join(values)
            marks = ", ".join("?" for _ in values)
            await conn.execute(
                f"INSERT INTO approval_requests (id, {names}) VALUES (?, {marks})",  # noqa: S608
                (request_id, *values.values()),
            )
            request = await self._load(conn, request_id)
        assert request is not None
        await self._audit(
            _Change(
                "submitted",
                request,
                {
                    "rules": list(request.rules),
                    "approvers": list(request.approvers),
                    "approvals_required": request.approvals_required,
                    "mode": request.mode,
                    "expires_in": round(wait_for, 3),
                },
            )
        )
        return request

    async def wait(
        self,
        request_id: str,
        *,
        abandon_on_cancel: bool = True,
        abandon_reason: Callable[[], str] | None = None,
    ) -> Outcome:
        """The final outcome of a request; at the deadline the request expires (= denied).

        If the waiting task is cancelled (the agent went away, or interrupted a held shell line)
        the request is abandoned, so an operator can no longer approve a command nobody is
        waiting for; ``abandon_reason()`` says why (read at that moment).
        """
        request_id = parse_request_id(request_id)
        wakeup = self._wakeups.setdefault(request_id, asyncio.Event())
        try:
            while True:
                request = await self.get(request_id)
                if request is None:
                    raise BastionError(f"no approval request {request_id}")
                remaining = request.expires_at - self.clock()
                if request.state == "approved" and not await self._audited(request):
                    # Committed elsewhere but not (yet) in the audit log: never run an unaudited
                    # approval. The deciding process audits right after its commit; if it died
                    # in between, the approval is void at the deadline.
                    decided = request.decided_at or request.created_at
                    remaining = max(remaining, decided + AUDIT_GRACE - self.clock())
                    if remaining <= 0:
                        return Outcome("denied", reason="the approval was not audited")
                elif request.state != "pending":
                    return request.outcome()
                elif remaining <= 0:
                    await self._close(request_id, "expired", "nobody decided before the deadline")
                    continue
                wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), min(remaining, self.config.poll_interval))
        except asyncio.CancelledError:
            if abandon_on_cancel:
                why = abandon_reason() if abandon_reason is not None else "the agent went away"
                with contextlib.suppress(BastionError, sqlite3.Error):
                    await asyncio.shield(self.abandon(request_id, why))
            raise
        finally:
            self._wakeups.pop(request_id, None)

    async def abandon(self, request_id: str, reason: str = "the agent went away") -> bool:
        """Close a pending request nobody waits for any more; False if it was already closed."""
        return await self._close(parse_request_id(request_id), "abandoned", reason)

    async def abandon_orphans(self) -> list[str]:
        """At start-up: every pending *wait*-mode request lost its session with the last process.

        Deferred requests stay pending: nobody waits on them, the agent comes back for them.
        """
        rows = await self.db.fetchall(
            "SELECT id FROM approval_requests WHERE state = 'pending' AND mode = 'wait'"
        )
        closed = []
        for row in rows:
            if await self._close(str(row[0]), "abandoned", "the bastion restarted"):
                closed.append(str(row[0]))
        return closed

    async def expire_due(self) -> list[str]:
        """Close every pending request past its deadline (nobody may be waiting on it)."""
        rows = await self.db.fetchall(
            "SELECT id FROM approval_requests WHERE state = 'pending' AND expires_at <= ?",
            (self.clock(),),
        )
        closed = []
        for row in rows:
            if await self._close(str(row[0]), "expired", "nobody decided before the deadline"):
                closed.append(str(row[0]))
        return closed

    async def consume_deferred(
        self,
        *,
        requester_key_id: str,
        target: str,
        login: str,
        units: Sequence[Sequence[str]],
    ) -> str | None:
        """Use (once) an approved deferred request for exactly these units; its id, or None."""
        units_key = self._units_hash(units)
        now = self.clock()
        async with self.db.transaction() as conn:
            async with (
                conn.execute(
                    "SELECT id FROM approval_requests WHERE state = 'approved' AND mode = 'defer' "  # noqa: S608 (constants)
                    "AND used_at IS NULL AND requester_key_id = ? AND target = ? AND login = ? "
                    "AND units_key = ? AND use_before > ? AND EXISTS (" + AUDITED_SQL + ") "
                    "ORDER BY decided_at LIMIT 1",
                    (requester_key_id, target, login, units_key, now),
                ) as cur
            ):
                row = await cur.fetchone()
            if row is None:
                return None
            request_id = str(row[0])
            cur2 = await conn.execute(
                "UPDATE approval_requests SET used_at = ? WHERE id = ? AND used_at IS NULL",
                (now, request_id),
            )
            if cur2.rowcount != 1:
                return None
            request = await self._load(conn, request_id)
        assert request is not None
        await self._audit(_Change("used", request, {}))
        return request_id

    # -- the operators' side ---------------------------------------------------------------------

    async def decide(
        self,
        request_id: str,
        *,
        operator: str,
        totp: str,
        approve: bool,
        reason: str = "",
        via: str = "cli",
    ) -> Outcome:
        """Record one operator's decision; raises ApprovalRefused with a one-line reason.

        Order of checks: the request is open, the operator exists and is not locked, the code is
        right and unused (a right code is spent even if a later check refuses), then the
        operator is not the requester, is in an allowed group, and has not already approved.
        An unknown operator and a wrong code get the same answer (``BAD_CREDENTIALS``). Wrong
        codes sent through the page (``via="web"``) are counted by the page's own limits
        (``bastion.approval.guard``), never in the operator's row: an agent, which can reach the
        page, cannot lock an operator out of the CLI or Slack.
        """
        request_id = parse_request_id(request_id)
        if via not in VIAS:
            raise ApprovalRefused(f"unknown channel {via!r}")
        reason = " ".join(reason.split())[:MAX_REASON]
        now = self.clock()
        changes: list[_Change] = []
        refusal: str | None = None
        refusal_kind = "other"
        outcome: Outcome | None = None
        async with self.db.transaction() as conn:
            request = await self._load(conn, request_id)
            op = await load_operator(conn, operator)
            if request is None:
                refusal = f"no approval request {request_id}"
            elif request.state != "pending":
                refusal = f"request {request_id} is already {request.state}"
            elif now >= request.expires_at:
                closed = await self._transition(
                    conn, request, "expired", "nobody decided before the deadline", now
                )
                changes.append(closed)
                refusal = f"request {request_id} expired"
            else:
                checked = await _check_code(conn, op, operator, totp, now,
                                            count_failure=via != "web")
                if isinstance(checked, tuple):
                    refusal, refusal_kind = checked
                else:
                    refusal = _operator_refusal(checked, request)
                    if refusal is None:
                        outcome, change = await self._record_decision(
                            conn, request, checked.name, approve, reason, via, now
                        )
                        changes.append(change)
        for change in changes:
            await self._audit(change)
            self._wake(change.request.id)
        if refusal is not None:
            await self._audit_refusal(request_id, operator, via, refusal)
            raise ApprovalRefused(refusal, refusal_kind)
        assert outcome is not None
        return outcome

    async def decide_batch(
        self,
        items: Sequence[tuple[str, str]],
        *,
        operator: str,
        totp: str,
        approve: bool,
        reason: str = "",
        via: str = "web",
    ) -> list[tuple[str, Outcome | str]]:
        """One operator's one TOTP code decides several requests the operator ticked.

        ``items`` are ``(request id, units digest)``: each digest is ``units_digest()`` of the
        units the operator was shown, so the code approves exactly those commands (a request
        whose units differ is refused). The code is checked once and its step spent once: the
        replay guard refuses it for anything afterwards. A wrong code refuses the whole batch
        (``ApprovalRefused``, as ``decide``); otherwise each request gets its outcome or a
        one-line refusal, in order.
        """
        if via not in VIAS:
            raise ApprovalRefused(f"unknown channel {via!r}")
        if not 1 <= len(items) <= MAX_BATCH:
            raise ApprovalRefused(f"tick 1 to {MAX_BATCH} requests")
        ids = [(parse_request_id(i), str(d)) for i, d in items]
        if len({i for i, _ in ids}) != len(ids):
            raise ApprovalRefused("a request is ticked twice")
        reason = " ".join(reason.split())[:MAX_REASON]
        now = self.clock()
        changes: list[_Change] = []
        results: list[tuple[str, Outcome | str]] = []
        refusal: str | None = None
        refusal_kind = "other"
        async with self.db.transaction() as conn:
            checked = await _check_code(conn, await load_operator(conn, operator), operator,
                                        totp, now, count_failure=False)
            if isinstance(checked, tuple):
                refusal, refusal_kind = checked
            else:
                op = checked
                for request_id, digest in ids:
                    request = await self._load(conn, request_id)
                    why: str | None
                    if request is None:
                        why = f"no approval request {request_id}"
                    elif request.state != "pending":
                        why = f"request {request_id} is already {request.state}"
                    elif now >= request.expires_at:
                        changes.append(await self._transition(
                            conn, request, "expired", "nobody decided before the deadline", now
                        ))  # fmt: skip
                        why = f"request {request_id} expired"
                    elif not hmac.compare_digest(digest, self.units_digest(request)):
                        why = f"request {request_id} is not the command you were shown"
                    else:
                        why = _operator_refusal(op, request)
                    if why is not None:
                        results.append((request_id, why))
                        continue
                    assert request is not None
                    outcome, change = await self._record_decision(
                        conn, request, op.name, approve, reason, via, now
                    )
                    change.fields["batch"] = len(ids)
                    changes.append(change)
                    results.append((request_id, outcome))
        for change in changes:
            await self._audit(change)
            self._wake(change.request.id)
        for request_id, result in results:
            if isinstance(result, str):
                await self._audit_refusal(request_id, operator, via, result)
        if refusal is not None:
            for request_id, _ in ids:
                await self._audit_refusal(request_id, operator, via, refusal)
            raise ApprovalRefused(refusal, refusal_kind)
        return results

    def units_digest(self, request: ApprovalRequest) -> str:
        """What binds a ticked row to the commands shown in it: a keyed hash of the request id
        and its (masked, stored) units, put in the list page's checkbox value."""
        text = f"batch|{request.id}|{canonical_units(request.units)}".encode(
            "utf-8", "surrogateescape"
        )
        return hmac.new(self._link_key, text, hashlib.sha256).hexdigest()[:32]

    def list_token(self, valid_until: float) -> str:
        """The ``op`` value of the operator list link: ``UNTIL.MAC`` (expires at ``UNTIL``)."""
        until = int(valid_until)
        mac = hmac.new(self._link_key, f"operator-list|{until}".encode(), hashlib.sha256)
        return f"{until}.{base64.urlsafe_b64encode(mac.digest()[:24]).decode()}"

    def list_url(self, valid_for: float = LIST_LINK_VALIDITY) -> str:
        """The signed link to the pending list, for operators only (``approvals list``)."""
        return f"{self.config.approve_url('')}?op={self.list_token(self.clock() + valid_for)}"

    def check_list_link(self, token: object) -> bool:
        """True for an unexpired list token signed with this database's link key."""
        if not isinstance(token, str) or len(token) > 64 or "." not in token:
            return False
        until, _, _mac = token.partition(".")
        if not until.isdigit() or int(until) < self.clock():
            return False
        return hmac.compare_digest(token, self.list_token(int(until)))

    async def _record_decision(
        self,
        conn: aiosqlite.Connection,
        request: ApprovalRequest,
        operator: str,
        approve: bool,
        reason: str,
        via: str,
        now: float,
    ) -> tuple[Outcome, _Change]:
        await conn.execute(
            "INSERT INTO approval_decisions (request_id, operator, approve, reason, via, at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (request.id, operator, int(approve), reason, via, now),
        )
        fields = {"operator": operator, "via": via, "reason": reason}
        if not approve:
            change = await self._transition(
                conn, request, "denied", reason or f"denied by {operator}", now
            )
            return change.request.outcome(), _Change(change.event, change.request, fields)
        approvers = {d.operator for d in request.decisions if d.approve} | {operator}
        if len(approvers) >= request.approvals_required:
            change = await self._transition(conn, request, "approved", reason, now)
            return change.request.outcome(), _Change(change.event, change.request, fields)
        updated = await self._load(conn, request.id)
        assert updated is not None
        fields["approvals"] = f"{updated.approvals}/{updated.approvals_required}"
        return updated.outcome(), _Change("approval_added", updated, fields)

    # -- reading ---------------------------------------------------------------------------------

    async def get(self, request_id: str) -> ApprovalRequest | None:
        return await self._load(self.db.conn, parse_request_id(request_id))

    async def list(
        self, *, states: Sequence[State] = (), limit: int = 100
    ) -> list[ApprovalRequest]:
        """Newest first; pending requests past their deadline are expired first."""
        await self.expire_due()
        sql = "SELECT id FROM approval_requests"
        params: list[Any] = []
        if states:
            sql += f" WHERE state IN ({', '.join('?' for _ in states)})"
            params.extend(states)
        sql += " ORDER BY created_at DESC LIMIT ?"
        params.append(int(limit))
        out = []
        for row in await self.db.fetchall(sql, params):
            request = await self.get(str(row[0]))
            if request is not None:
                out.append(request)
        return out

    # -- internals -------------------------------------------------------------------------------

    async def _load(self, conn: aiosqlite.Connection, request_id: str) -> ApprovalRequest | None:
        return await load_request(conn, request_id, self.config.approve_url, self.operator_url)

    # -- operator links ----------------------------------------------------------------------------

    def link_token(self, request_id: str, expires_at: float) -> str:
        """The signature that makes a status link an operator link (bound to id and deadline)."""
        return sign_operator_link(self._link_key, request_id, expires_at)

    def operator_url(self, request_id: str, expires_at: float) -> str:
        """The link delivered only to operators (chat notices, ``approvals show``)."""
        return f"{self.config.approve_url(request_id)}?op={self.link_token(request_id, expires_at)}"

    def check_link(self, request: ApprovalRequest, token: object) -> bool:
        """True for this request's operator token, until ``LINK_GRACE`` after its deadline."""
        if not isinstance(token, str) or len(token) != 32:
            return False
        if self.clock() > request.expires_at + LINK_GRACE:
            return False
        return hmac.compare_digest(token, self.link_token(request.id, request.expires_at))

    async def guessing_detected(
        self, *, scope: str, key: str, failures: int, address: str, request_id: str
    ) -> None:
        """The page's limits tripped: an audit row and a warning (the page counts the metric)."""
        log.warning(
            "approval.guessing",
            extra={
                "ctx": {
                    "scope": scope,
                    "key": key[:64],
                    "failures": failures,
                    "source": address,
                    "request": request_id,
                }
            },
        )
        try:
            await self.audit.record(
                "approval",
                request=request_id,
                event="guessing",
                scope=scope,
                key=key[:64],
                failures=failures,
                source=address,
                via="web",
            )
        except AuditError as exc:  # the lock stands either way
            log.error("audit.failed", extra={"ctx": {"request": request_id, "error": str(exc)}})

    # -- what is stored of a held command --------------------------------------------------------

    def _mask_unit(self, unit: Sequence[str]) -> builtins.list[str]:
        """Each argument masked; one the masker changes only in the context of the whole unit
        (``--password hunter2``) is replaced as a whole."""
        args = [str(a) for a in unit]
        whole = self.mask(shlex.join(args))
        out = []
        for arg in args:
            masked = self.mask(arg)
            if masked == arg and shlex.quote(arg) not in whole:
                masked = _MASKED_ARG
            out.append(masked)
        return out

    def _units_hash(self, units: Sequence[Sequence[str]]) -> str:
        """A keyed hash of the exact units: deferred approvals match on it, never on secrets."""
        text = canonical_units(units).encode("utf-8", "surrogateescape")
        return hmac.new(self._units_key, text, hashlib.sha256).hexdigest()

    async def _check_pending_cap(
        self, conn: aiosqlite.Connection, requester_key_id: str, now: float
    ) -> None:
        cap = self.config.max_pending_per_identity
        if cap <= 0:
            return
        async with conn.execute(
            "SELECT count(*) FROM approval_requests WHERE state = 'pending' "
            "AND requester_key_id = ? AND expires_at > ?",
            (requester_key_id, now),
        ) as cur:
            row = await cur.fetchone()
        pending = int(row[0]) if row else 0
        if pending >= cap:
            log.warning(
                "approval.pending_cap",
                extra={"ctx": {"identity": requester_key_id[:64], "pending": pending}},
            )
            raise ApprovalRefused(
                f"not held: this identity already has {pending} pending approval requests "
                f"(limits.max_pending_approvals_per_identity = {cap}); wait for a decision",
                "cap",
            )

    async def _transition(
        self,
        conn: aiosqlite.Connection,
        request: ApprovalRequest,
        state: State,
        reason: str,
        now: float,
    ) -> _Change:
        """Move a pending request to a final state (inside the caller's transaction)."""
        decided_by: list[str] = []
        if state == "denied":
            async with conn.execute(
                "SELECT operator FROM approval_decisions WHERE request_id = ? AND approve = 0",
                (request.id,),
            ) as cur:
                decided_by = sorted({str(r[0]) for r in await cur.fetchall()})
        elif state == "approved":
            async with conn.execute(
                "SELECT operator FROM approval_decisions WHERE request_id = ? AND approve = 1",
                (request.id,),
            ) as cur:
                decided_by = sorted({str(r[0]) for r in await cur.fetchall()})
        use_before = now + self.config.defer_validity if state == "approved" else None
        cur = await conn.execute(
            "UPDATE approval_requests SET state = ?, decided_at = ?, decided_by = ?, reason = ?, "
            "use_before = ? WHERE id = ? AND state = 'pending'",
            (state, now, orjson.dumps(decided_by).decode(), reason, use_before, request.id),
        )
        if cur.rowcount != 1:
            raise ApprovalRefused(f"request {request.id} was closed meanwhile")
        updated = await self._load(conn, request.id)
        assert updated is not None
        return _Change(state, updated, {"reason": reason})

    async def _close(self, request_id: str, state: State, reason: str) -> bool:
        """pending -> expired/abandoned if still pending; audited; False if already closed."""
        async with self.db.transaction() as conn:
            request = await self._load(conn, request_id)
            if request is None or request.state != "pending":
                return False
            change = await self._transition(conn, request, state, reason, self.clock())
        await self._audit(change)
        self._wake(request_id)
        return True

    async def _audited(self, request: ApprovalRequest) -> bool:
        """True when the audit log holds this request's "approved" row."""
        async with self.db.conn.execute(
            "SELECT 1 FROM approval_requests WHERE id = ? AND EXISTS (" + AUDITED_SQL + ")",  # noqa: S608
            (request.id,),
        ) as cur:
            return await cur.fetchone() is not None

    def _wake(self, request_id: str) -> None:
        event = self._wakeups.get(request_id)
        if event is not None:
            event.set()

    async def _audit(self, change: _Change) -> None:
        """Every state change is an audit row; AuditError propagates (the caller fails closed)."""
        r = change.request
        await self.audit.record(
            "approval",
            session_id=r.session_id,
            identity=r.requester_key_id,
            target=r.target,
            login=r.login,
            request=r.id,
            event=change.event,
            state=r.state,
            decided_by=list(r.decided_by),
            **change.fields,
        )
        log.info(
            "approval.%s",
            change.event,
            extra={"ctx": {"request": r.id, "state": r.state, "session": r.session_id}},
        )
        for listener in self._listeners:
            try:
                listener(change.event, r)
            except Exception as exc:  # a listener must never break the state machine
                log.error("approval.listener_failed", extra={"ctx": {"error": repr(exc)}})

    async def _audit_refusal(self, request_id: str, operator: str, via: str, why: str) -> None:
        try:
            await self.audit.record(
                "approval",
                request=request_id,
                event="refused",
                operator=operator[:64],
                via=via,
                reason=why,
            )
        except AuditError as exc:  # the refusal stands either way
            log.error("audit.failed", extra={"ctx": {"request": request_id, "error": str(exc)}})


async def _check_code(
    conn: Any, op: Operator | None, name: str, totp: str, now: float, *, count_failure: bool
) -> Operator | tuple[str, str]:
    """The operator when ``totp`` is a fresh, right code (its step is spent), else the refusal
    and its kind. An unknown name does the same work as a wrong code and gets the same answer;
    ``count_failure`` adds a wrong code to the operator's lockout count (not for the web page,
    whose guessing limits are per address and request: bastion/approval/guard.py)."""
    if op is None:
        match_totp(_DUMMY_SECRET, totp, now)  # the same work as for a real operator
        return BAD_CREDENTIALS, "credentials"
    if op.locked_until > now:
        return (f"operator {name!r} is locked for {int(op.locked_until - now) + 1}s after"
                " repeated wrong codes", "locked")
    step = match_totp(op.totp_secret, totp, now)
    if step is None:
        if count_failure:
            failures = op.failures + 1
            locked = now + LOCKOUT_SECONDS if failures >= MAX_FAILURES else 0.0
            await conn.execute(
                "UPDATE approval_operators SET failures = ?, locked_until = ? WHERE name = ?",
                (0 if locked else failures, locked, op.name),
            )
        return BAD_CREDENTIALS, "credentials"
    if step <= op.last_step:
        return "this TOTP code was already used; wait for the next one", "other"
    await conn.execute(
        "UPDATE approval_operators SET last_step = ?, failures = 0 WHERE name = ?",
        (step, op.name),
    )
    return op


def _operator_refusal(op: Operator, request: ApprovalRequest) -> str | None:
    """Why this (authenticated) operator may not decide this request, or None."""
    if op.is_linked_to(request.requester_key_id, request.principals):
        return (
            f"operator {op.name!r} is linked to the requester "
            f"{request.requester_key_id!r}; someone else must decide"
        )
    if not op.may_approve_for(request.approvers):
        return (
            f"operator {op.name!r} is not in an approver group of this request "
            f"({', '.join(request.approvers)})"
        )
    if any(d.operator == op.name for d in request.decisions):
        return (
            f"operator {op.name!r} already decided on this request; "
            f"it needs {request.approvals_required} different operators"
        )
    return None


def sign_operator_link(key: bytes, request_id: str, expires_at: float) -> str:
    """The ``op`` value of a request's operator link: 192 bits of HMAC-SHA256 under ``key``
    (the database's ``approval_keys`` "link" key) over the request id and its deadline."""
    message = f"operator-link|{request_id}|{int(expires_at)}".encode()
    mac = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:24]).decode()


async def _keys(db: Database) -> dict[str, bytes]:
    """This database's random keys, made once (the first process to open it wins the race)."""
    async with db.transaction() as conn:
        for name in ("link", "units"):
            await conn.execute(
                "INSERT OR IGNORE INTO approval_keys (name, key) VALUES (?, ?)",
                (name, secrets.token_bytes(32)),
            )
    rows = await db.fetchall("SELECT name, key FROM approval_keys")
    return {str(r[0]): bytes(r[1]) for r in rows}
