"""What a notifier may say about a request: masked, escaped facts, never the raw command.

The command (and any operator reason) goes through a fresh ``StreamMasker`` (feed + flush) and
then every control, invisible or bidi character becomes a visible escape. Masking is imported
unconditionally: without it no notification can be built (fail closed, never unmasked).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from bastion.approval.model import ApprovalRequest, iso
from bastion.approval.render import escape_visible
from bastion.masking import StreamMasker

EventKind = Literal["approval.requested", "approval.resolved"]
SCHEMA_VERSION = 1


def masked(text: str) -> str:
    """``text`` with secrets masked and invisible characters made visible."""
    masker = StreamMasker()
    data = text.encode("utf-8", "surrogateescape")
    out = masker.feed(data) + masker.flush()
    return escape_visible(out.decode("utf-8", "replace"))


@dataclass(frozen=True)
class NotifyEvent:
    kind: EventKind
    request_id: str
    target: str
    login: str
    requester: str
    command: str  # masked and escaped
    rules: tuple[str, ...]
    approvers: tuple[str, ...]
    approvals_required: int
    approve_url: str
    created_at: float
    expires_at: float
    state: str
    decided_by: tuple[str, ...] = ()
    decided_at: float | None = None
    reason: str = ""  # masked and escaped
    operator_url: str = ""  # the signed operator link (approve_url is the agent's status link)

    @classmethod
    def from_request(cls, kind: EventKind, request: ApprovalRequest) -> NotifyEvent:
        return cls(
            kind=kind,
            request_id=request.id,
            target=request.target,
            login=request.login,
            requester=request.requester_key_id,
            command=masked(request.command),
            rules=request.rules,
            approvers=request.approvers,
            approvals_required=request.approvals_required,
            approve_url=request.approve_url,
            created_at=request.created_at,
            expires_at=request.expires_at,
            state=request.state,
            decided_by=request.decided_by,
            decided_at=request.decided_at,
            reason=masked(request.reason),
            operator_url=request.operator_url or request.approve_url,
        )

    def webhook_json(self) -> dict[str, Any]:
        """The documented webhook body (schema version 1; fields are only ever added)."""
        return {
            "version": SCHEMA_VERSION,
            "event": self.kind,
            "request_id": self.request_id,
            "target": self.target,
            "login": self.login,
            "requester": self.requester,
            "command": self.command,
            "rules": list(self.rules),
            "approve_url": self.approve_url,
            "operator_url": self.operator_url,
            "expires_at": iso(self.expires_at),
            "state": self.state,
            "approvers": list(self.approvers),
            "approvals_required": self.approvals_required,
            "decided_by": list(self.decided_by),
            "decided_at": iso(self.decided_at),
            "reason": self.reason,
        }

    def outcome_line(self) -> str:
        """One plain sentence about how the request ended (for chat updates)."""
        when = iso(self.decided_at) or ""
        who = ", ".join(self.decided_by)
        if self.state == "approved":
            return f"Approved by {who} at {when}"
        if self.state == "denied":
            return f"Denied by {who or 'an operator'} at {when}"
        if self.state == "expired":
            return f"Expired at {when}: nobody decided before the deadline (denied)"
        if self.state == "abandoned":
            return f"Abandoned at {when}: the agent stopped waiting"
        return f"State: {self.state}"
