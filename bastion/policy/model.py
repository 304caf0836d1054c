"""Plain data of the policy engine: context in, decision out.

Everything here is frozen so a decision can be logged, compared and handed across tasks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["allow", "review", "deny"]
ACTIONS: tuple[Action, ...] = ("allow", "review", "deny")
SEVERITY: Mapping[str, int] = {"allow": 0, "review": 1, "deny": 2}


def most_severe(a: Action, b: Action) -> Action:
    return a if SEVERITY[a] >= SEVERITY[b] else b


@dataclass(frozen=True)
class Context:
    """Who runs the line, where, and how (exec request or interactive shell line)."""

    principals: tuple[str, ...] = ()
    target: str | None = None
    target_labels: Mapping[str, str] = field(default_factory=dict)
    login: str | None = None
    channel: str = "exec"
    cwd: str | None = None  # None: the login's home for exec, not known for a shell line
    oldpwd: str | None = None  # a gated shell's previous directory ($OLDPWD), when known
    cdpath: bool = False  # CDPATH may be set in the shell (`cd name` may go elsewhere)
    variables: Mapping[str, str] = field(default_factory=dict)  # a gated shell's known values
    integers: tuple[str, ...] = ()  # its variables declared -i


@dataclass(frozen=True)
class Finding:
    """A structural fact that sets a floor on a unit (or the whole line): no rule can go lower."""

    action: Action
    rule: str
    reason: str


@dataclass(frozen=True)
class ReviewSpec:
    """Approval requirements merged from the review rules that fired."""

    approvers: tuple[str, ...] = ()
    approvals: int = 1
    timeout: float | None = None
    mode: str | None = None  # "wait" | "defer" | None


@dataclass(frozen=True)
class UnitDecision:
    """The verdict on one unit: a simple command (after unwrapping), a redirect or a line floor."""

    argv: tuple[str, ...]
    action: Action
    rule: str
    reason: str
    text: str
    matched: str | None = None  # the policy rule that matched, even when a floor overrode it


@dataclass(frozen=True)
class Decision:
    """The verdict on a whole line: the most severe unit decision."""

    action: Action
    rules: tuple[str, ...]
    units: tuple[UnitDecision, ...]
    reason: str
    review: ReviewSpec | None = None

    def to_log(self, context: Context | None = None) -> dict[str, Any]:
        """Compact, secret-free form for audit logs: decision, rule ids and identity/target only."""
        out: dict[str, Any] = {"decision": self.action, "rules": list(self.rules)}
        if context is not None:
            out["principals"] = list(context.principals)
            out["target"] = context.target
            out["login"] = context.login
            out["channel"] = context.channel
        if self.review is not None:
            out["approvers"] = list(self.review.approvers)
            out["approvals"] = self.review.approvals
        return out

    def to_json(self) -> dict[str, Any]:
        """Full explanation (contains the normalised command words) for the CLI."""
        out: dict[str, Any] = {
            "decision": self.action,
            "rules": list(self.rules),
            "reason": self.reason,
            "units": [
                {
                    "argv": list(u.argv),
                    "action": u.action,
                    "rule": u.rule,
                    "reason": u.reason,
                    "text": u.text,
                }
                for u in self.units
            ],
        }
        if self.review is not None:
            out["review"] = {
                "approvers": list(self.review.approvers),
                "approvals": self.review.approvals,
                "timeout": self.review.timeout,
                "mode": self.review.mode,
            }
        return out
