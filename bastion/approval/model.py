"""Plain data of approvals: a held request, an outcome, a refusal."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from bastion.approval.render import display_text
from bastion.errors import BastionError

State = Literal["pending", "approved", "denied", "expired", "abandoned"]
FINAL_STATES: tuple[State, ...] = ("approved", "denied", "expired", "abandoned")
Via = Literal["cli", "web", "slack"]


# The one answer for an unknown operator, a wrong code and (on the page) a locked operator, so
# names cannot be probed.
BAD_CREDENTIALS = "unknown operator or wrong TOTP code"


class ApprovalRefused(BastionError):
    """A decision (or a hold) was not accepted; the message is one line to act on.

    ``kind`` says why, for callers that count failures: "credentials" (unknown operator or wrong
    code), "locked" (the operator is locked after wrong codes), "other" (everything else).
    """

    def __init__(self, message: str, kind: str = "other") -> None:
        super().__init__(message)
        self.kind = kind


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class DecisionRecord:
    operator: str
    approve: bool
    reason: str
    via: str
    at: float


@dataclass(frozen=True)
class Outcome:
    """Where a request stands. ``wait()`` returns only final ones; ``decide()`` may return
    ``pending`` with the approvals gathered so far (four-eyes rules)."""

    state: State
    decided_by: tuple[str, ...] = ()
    reason: str = ""
    approvals: int = 0
    required: int = 1

    @property
    def final(self) -> bool:
        return self.state != "pending"


@dataclass(frozen=True)
class ApprovalRequest:
    id: str
    state: State
    mode: str
    session_id: str | None
    requester_key_id: str
    requester_serial: int
    principals: tuple[str, ...]
    target: str
    login: str
    channel_kind: str
    command: str
    command_escaped: str
    units: tuple[tuple[str, ...], ...]
    rules: tuple[str, ...]
    approvers: tuple[str, ...]
    approvals_required: int
    created_at: float
    expires_at: float
    decided_at: float | None
    decided_by: tuple[str, ...]
    reason: str
    use_before: float | None
    used_at: float | None
    approve_url: str  # the status link shown to the agent: anyone may see, nobody decides
    decisions: tuple[DecisionRecord, ...] = ()
    operator_url: str = ""  # the signed, expiring link for operators only (notices, the CLI)
    explanation: str = ""  # the reason the agent was given (the gate's message, masked)

    @property
    def approvals(self) -> int:
        return len({d.operator for d in self.decisions if d.approve})

    def outcome(self) -> Outcome:
        return Outcome(
            state=self.state,
            decided_by=self.decided_by,
            reason=self.reason,
            approvals=self.approvals,
            required=self.approvals_required,
        )

    def to_json(self) -> dict[str, Any]:
        """The CLI's ``--json`` shape: command and units masked and escaped for display."""
        return {
            "id": self.id,
            "state": self.state,
            "mode": self.mode,
            "session_id": self.session_id,
            "requester": {
                "key_id": self.requester_key_id,
                "serial": self.requester_serial,
                "principals": list(self.principals),
            },
            "target": self.target,
            "login": self.login,
            "channel_kind": self.channel_kind,
            "command": display_text(self.command),
            "units": [display_text(shlex.join(u)) for u in self.units],
            "rules": list(self.rules),
            "explanation": display_text(self.explanation),
            "approvers": list(self.approvers),
            "approvals_required": self.approvals_required,
            "approvals": self.approvals,
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "decided_at": iso(self.decided_at),
            "decided_by": list(self.decided_by),
            "reason": self.reason,
            "use_before": iso(self.use_before),
            "used_at": iso(self.used_at),
            "approve_url": self.approve_url,
            "operator_url": self.operator_url,
            "decisions": [
                {
                    "operator": d.operator,
                    "approve": d.approve,
                    "reason": d.reason,
                    "via": d.via,
                    "at": iso(d.at),
                }
                for d in self.decisions
            ],
        }


def canonical_units(units: Sequence[Sequence[str]]) -> str:
    """One stable text for a unit list, so deferred approvals compare exactly."""
    return orjson.dumps([list(map(str, u)) for u in units]).decode()
