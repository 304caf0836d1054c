"""The command gate the relay calls: the policy engine, adapted to the relay's seam.

Exec commands are decided by the policy before the upstream channel opens. Interactive shells
cannot be inspected line by line yet, so they are refused unless the config explicitly says
``[gate] shells = "allow"`` (fail closed: a shell the gate cannot see is never let through
by default).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bastion.config import Config
from bastion.errors import ConfigError
from bastion.hooks import EXIT_DENIED, EXIT_REVIEW_REFUSED, GateVerdict
from bastion.model import ChannelRequest, SessionInfo

if TYPE_CHECKING:
    from bastion.policy import Policy

log = logging.getLogger("bastion.gate")


@dataclass(frozen=True)
class GateSettings:
    policy_file: Path
    shells: str  # "refuse" | "allow"


def gate_settings(config: Config) -> GateSettings:
    policy = config.raw.get("policy", {})
    gate = config.raw.get("gate", {})
    if not isinstance(policy, dict) or not isinstance(gate, dict):
        raise ConfigError(f"{config.path}: policy/gate", "expected a table")
    file = policy.get("file", "policy.toml")
    if not isinstance(file, str) or not file:
        raise ConfigError(f"{config.path}: policy.file", "expected a path")
    shells = gate.get("shells", "refuse")
    if shells not in ("refuse", "allow"):
        raise ConfigError(f"{config.path}: gate.shells", "expected 'refuse' or 'allow'")
    return GateSettings(policy_file=config.resolve(file), shells=shells)


class PolicyGate:
    """Adapts ``bastion.policy.Policy.decide`` (pure, never raises) to the relay."""

    def __init__(self, config: Config, policy: Policy, settings: GateSettings) -> None:
        self.config = config
        self.policy = policy
        self.settings = settings

    async def check(self, session: SessionInfo, request: ChannelRequest) -> GateVerdict:
        from bastion.policy import Context

        if request.kind == "shell":
            if self.settings.shells == "allow":
                return GateVerdict("allow", rules=("gate-shell-allowed",))
            return GateVerdict(
                "deny",
                "interactive shells are not allowed on this bastion (every command must be"
                " inspected): run commands with ssh TARGET 'COMMAND'",
                rules=("gate-shell-refused",),
                exit_status=EXIT_DENIED,
            )
        command = request.command or ""
        target = self.config.targets[session.target]
        ctx = Context(
            principals=session.identity.principals,
            target=session.target,
            target_labels=dict(target.labels),
            login=session.login,
            channel="exec",
            cwd=None,
        )
        decision = self.policy.decide(command, ctx)
        rules = tuple(decision.rules)
        # The engine's reason reads "review: <why> [rule-id] in `<unit>`"; drop the verdict word.
        reason = decision.reason.split(": ", 1)[-1]
        if decision.action == "allow":
            return GateVerdict("allow", rules=rules, details={"decision": decision.to_log()})
        if decision.action == "deny":
            return GateVerdict(
                "deny",
                f"denied by policy: {reason}",
                rules=rules,
                exit_status=EXIT_DENIED,
                details={"decision": decision.to_log()},
            )
        review = decision.review
        return GateVerdict(
            "review",
            reason,
            rules=rules,
            exit_status=EXIT_REVIEW_REFUSED,
            details={"decision": decision.to_log()},
            units=tuple(tuple(u.argv) for u in decision.units),
            approvers=tuple(review.approvers) if review else (),
            approvals_required=review.approvals if review else 1,
            hold_timeout=review.timeout if review else None,
            hold_mode=review.mode if review else None,
        )


def build_gate(config: Config) -> PolicyGate:
    from bastion.policy import load_policy

    settings = gate_settings(config)
    return PolicyGate(config, load_policy(settings.policy_file), settings)
