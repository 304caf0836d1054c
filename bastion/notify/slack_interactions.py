"""Slack button presses and modal submissions -> broker decisions (Socket Mode and HTTP alike).

Approve/Deny opens a modal asking for the TOTP code; the Slack user id must belong to an enrolled
operator (``bastion operators add NAME --slack-id U...``) allowed for the request. The decision
itself is ``broker.decide(..., via="slack")``, so every rule of the CLI and page applies (code
counted once, no self-approval, groups, four eyes). Refusals before the broker is asked are
audited here as ``approval``/``refused`` rows with ``via="slack"``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bastion.approval.broker import ApprovalBroker
from bastion.approval.ids import parse_request_id
from bastion.approval.model import ApprovalRefused, ApprovalRequest
from bastion.approval.operators import Operator
from bastion.audit.errors import AuditError
from bastion.errors import BastionError
from bastion.notify.event import NotifyEvent
from bastion.notify.slack_blocks import (
    APPROVE,
    DECIDE_CALLBACK,
    DENY,
    REASON_ACTION,
    REASON_BLOCK,
    TOTP_ACTION,
    TOTP_BLOCK,
    notice_modal,
    totp_modal,
)

log = logging.getLogger("bastion.notify")
Response = dict[str, Any]


def _get(data: object, *path: str) -> object:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _errors(text: str) -> Response:
    """Keeps the modal open with ``text`` under the code field."""
    return {"response_action": "errors", "errors": {TOTP_BLOCK: text[:150]}}


class SlackInteractions:
    def __init__(self, broker: ApprovalBroker, client: AsyncWebClient) -> None:
        self.broker = broker
        self.client = client

    async def handle(self, payload: Mapping[str, Any]) -> Response | None:
        """The body to answer Slack with (None: an empty 200 / a bare ack)."""
        kind = payload.get("type")
        if kind == "block_actions":
            await self._button(payload)
            return None
        if kind == "view_submission" and _get(payload, "view", "callback_id") == DECIDE_CALLBACK:
            return await self._submit(payload)
        return None

    async def _operator(self, user_id: str) -> Operator | None:
        if not user_id:
            return None
        return await self.broker.operators.by_slack_id(user_id)

    async def _refused(self, request_id: str, who: str, why: str) -> None:
        log.warning("slack.refused", extra={"ctx": {"request": request_id, "reason": why}})
        try:
            await self.broker.audit.record(
                "approval", request=request_id, event="refused", operator=who[:64],
                via="slack", reason=why,
            )  # fmt: skip
        except AuditError as exc:  # the refusal stands either way
            log.error("audit.failed", extra={"ctx": {"request": request_id, "error": str(exc)}})

    def _precheck(
        self, user_id: str, op: Operator | None, request: ApprovalRequest | None, request_id: str
    ) -> str | None:
        if op is None:
            return (
                f"Slack user {user_id or '?'} is not linked to an enrolled operator "
                f"(bastion operators add NAME --slack-id {user_id or 'U...'})"
            )
        if request is None:
            return f"no approval request {request_id}"
        if request.state != "pending":
            return f"request {request_id} is already {request.state}"
        if op.is_linked_to(request.requester_key_id, request.principals):
            return f"operator {op.name!r} is linked to the requester; someone else must decide"
        if not op.may_approve_for(request.approvers):
            return (
                f"operator {op.name!r} is not in an approver group of this request "
                f"({', '.join(request.approvers)})"
            )
        return None

    async def _button(self, payload: Mapping[str, Any]) -> None:
        actions = payload.get("actions")
        action = actions[0] if isinstance(actions, list) and actions else None
        action_id = _get(action, "action_id")
        if action_id not in (APPROVE, DENY):
            return  # the link button and anything unknown need no answer
        user_id = str(_get(payload, "user", "id") or "")
        trigger = str(payload.get("trigger_id") or "")
        try:
            request_id = parse_request_id(str(_get(action, "value") or ""))
        except BastionError:
            await self._refused("-", f"slack:{user_id}", "malformed request id in a button")
            return
        op = await self._operator(user_id)
        await self.broker.expire_due()
        request = await self.broker.get(request_id)
        refusal = self._precheck(user_id, op, request, request_id)
        if refusal is not None or request is None:
            await self._refused(request_id, op.name if op else f"slack:{user_id}", refusal or "")
            await self._open(trigger, notice_modal("Cannot decide", refusal or "refused"))
            return
        approve = action_id == APPROVE
        event = NotifyEvent.from_request("approval.requested", request)
        metadata = {"request": request_id, "approve": "1" if approve else "0"}
        await self._open(trigger, totp_modal(event, approve, metadata))

    async def _open(self, trigger_id: str, view: Mapping[str, Any]) -> None:
        if not trigger_id:
            return
        try:
            await self.client.views_open(trigger_id=trigger_id, view=dict(view))
        except (SlackApiError, OSError, TimeoutError) as exc:
            log.error("slack.views_open_failed", extra={"ctx": {"error": type(exc).__name__}})

    async def _submit(self, payload: Mapping[str, Any]) -> Response:
        user_id = str(_get(payload, "user", "id") or "")
        try:
            meta = orjson.loads(str(_get(payload, "view", "private_metadata") or ""))
            request_id = parse_request_id(str(meta["request"]))
            approve = meta["approve"] == "1"
        except (orjson.JSONDecodeError, KeyError, TypeError, BastionError):
            await self._refused("-", f"slack:{user_id}", "malformed modal metadata")
            return _errors("this form is not from the bastion; press the button again")
        values = _get(payload, "view", "state", "values")
        code = str(_get(values, TOTP_BLOCK, TOTP_ACTION, "value") or "")
        reason = str(_get(values, REASON_BLOCK, REASON_ACTION, "value") or "")
        op = await self._operator(user_id)
        if op is None:
            why = self._precheck(user_id, None, None, request_id) or ""
            await self._refused(request_id, f"slack:{user_id}", why)
            return _errors(why)
        try:
            outcome = await self.broker.decide(
                request_id, operator=op.name, totp=code, approve=approve, reason=reason,
                via="slack",
            )  # fmt: skip
        except ApprovalRefused as exc:  # audited by the broker
            return _errors(str(exc))
        except AuditError:
            return _errors("the decision could not be audited; try again or use the CLI")
        if outcome.state == "pending":
            text = (
                f"Your approval of {request_id} is recorded ({outcome.approvals} of "
                f"{outcome.required}); it waits for another operator."
            )
        else:
            text = f"Request {request_id} is {outcome.state} by {', '.join(outcome.decided_by)}."
        return {"response_action": "update", "view": notice_modal("Decision recorded", text)}
