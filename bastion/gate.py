"""The command gate the relay calls: the policy engine, adapted to the relay's seam.

Exec commands are decided by the policy before the upstream channel opens. Interactive shells:
``[gate] shells = "gate"`` (default) lets a PTY shell through only when a line-owning controller
(bastion.interactive) was wired for this config, and then decides every unit typed into it with
the policy (channel "shell") plus the PTY floors of ``bastion.interactive.programs``;
``"refuse"`` refuses shells; ``"allow"`` lets them through unseen (fail closed: a shell the gate
cannot see is never let through by default).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from bastion.config import Config, parse_duration
from bastion.errors import ConfigError
from bastion.hooks import EXIT_DENIED, EXIT_REVIEW_REFUSED, GateVerdict
from bastion.model import ChannelRequest, SessionInfo

if TYPE_CHECKING:
    from bastion.policy import Policy
    from bastion.policy.model import Decision

log = logging.getLogger("bastion.gate")


@dataclass(frozen=True)
class GateSettings:
    policy_file: Path
    shells: str  # "gate" | "refuse" | "allow"
    shell_reviews: str = "hold"  # a review line typed in a gated shell: "hold" | "refuse"
    decision_budget: float = 0.020  # CPU seconds one decision may use before it is review


def gate_settings(config: Config) -> GateSettings:
    policy = config.raw.get("policy", {})
    gate = config.raw.get("gate", {})
    if not isinstance(policy, dict) or not isinstance(gate, dict):
        raise ConfigError(f"{config.path}: policy/gate", "expected a table")
    file = policy.get("file", "policy.toml")
    if not isinstance(file, str) or not file:
        raise ConfigError(f"{config.path}: policy.file", "expected a path")
    shells = gate.get("shells", "gate")
    if shells not in ("gate", "refuse", "allow"):
        raise ConfigError(f"{config.path}: gate.shells", "expected 'gate', 'refuse' or 'allow'")
    shell_reviews = gate.get("shell_reviews", "hold")
    if shell_reviews not in ("hold", "refuse"):
        raise ConfigError(f"{config.path}: gate.shell_reviews", "expected 'hold' or 'refuse'")
    where = f"{config.path}: gate.decision_budget"
    budget = parse_duration(gate.get("decision_budget", "20ms"), where)
    if not 0.001 <= budget <= 10.0:
        raise ConfigError(where, "expected a duration between '1ms' and '10s'")
    return GateSettings(
        policy_file=config.resolve(file), shells=shells, shell_reviews=shell_reviews,
        decision_budget=budget,
    )


class PolicyGate:
    """Adapts ``bastion.policy.Policy.decide`` (pure, never raises) to the relay."""

    def __init__(self, config: Config, policy: Policy, settings: GateSettings) -> None:
        from bastion.interactive.config import parse_interactive_config

        self.config = config
        self.policy = policy
        self.settings = settings
        section = config.raw.get("interactive", {})
        if not isinstance(section, dict):
            raise ConfigError(f"{config.path}: interactive", "expected a table")
        self.interactive = parse_interactive_config(section, config.base_dir)

    async def check(self, session: SessionInfo, request: ChannelRequest) -> GateVerdict:
        verdict = await self._check(session, request)
        if (
            verdict.action == "review"
            and request.kind == "shell"
            and request.command is not None
            and self.settings.shell_reviews == "refuse"
        ):
            return replace(verdict, hold_mode="refuse")  # shown at the prompt, not held
        return verdict

    async def _check(self, session: SessionInfo, request: ChannelRequest) -> GateVerdict:
        from bastion.policy import Context

        if request.kind == "shell" and request.command is None:
            return self._shell_channel(request)
        from bastion.interactive.programs import SHELL_STATE, shell_floor

        shell = request.kind == "shell"  # a unit typed into a line-gated PTY shell
        state = SHELL_STATE.get() if shell else None
        command = request.command or ""
        target = self.config.targets.get(session.target)
        ctx = Context(
            principals=session.identity.principals,
            target=session.target,
            target_labels=dict(target.labels) if target else {},
            login=session.login,
            channel="shell" if shell else "exec",
            cwd=state.cwd if state is not None else None,
            oldpwd=state.oldpwd if state is not None else None,
            cdpath=state.cdpath if state is not None else False,
            variables=dict(state.variables) if state is not None else {},
            integers=tuple(sorted(state.integers)) if state is not None else (),
        )
        # Off the event loop: a slow line delays only its own channel, and it is bounded by the
        # budget (the engine stops and answers review/decision-budget). The exec floors (PTY,
        # guard overrides, sudo) parse the line again: they run in the same thread.
        def decide() -> Decision:
            decided = self.policy.decide(command, ctx, self.settings.decision_budget)
            return decided if shell else self._exec_floor(command, request, decided)

        decision = await asyncio.to_thread(decide)
        rules = tuple(decision.rules)
        if shell:
            floor = shell_floor(command, [u.argv for u in decision.units], state)
            interactive = None
            if floor is None and decision.action == "allow" and state is not None:
                from bastion.interactive.programs import interactive_program

                interactive = interactive_program(
                    [u.argv for u in decision.units], state.extra_interactive
                )
            if floor is not None and decision.action != "deny":
                return GateVerdict(
                    "review",
                    f"{floor.reason} [{floor.rule}]",
                    rules=(*rules, floor.rule),
                    exit_status=EXIT_REVIEW_REFUSED,
                    details={"decision": decision.to_log(), "floor": floor.rule},
                )
            if interactive is not None:
                return GateVerdict(
                    "allow",
                    rules=rules,
                    details={"decision": decision.to_log(), "interactive": interactive},
                )
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

    def _exec_floor(self, command: str, request: ChannelRequest, decision: Decision) -> Decision:
        """Raise an exec decision to review when an exec floor applies (see
        ``bastion.interactive.execguard``): the pager/editor guard the relay puts in front of
        every exec command would be undone, or, with a PTY, a program would read keystrokes."""
        if decision.action == "deny":
            return decision
        from bastion.interactive.execguard import ExecContext, exec_floor
        from bastion.policy.model import Decision, ReviewSpec

        ectx = ExecContext(
            pty=request.has_pty,
            passthrough=self.interactive.passthrough,
            extra_interactive=self.interactive.extra_interactive,
        )
        floor = exec_floor(command, [u.argv for u in decision.units], ectx)
        if floor is None:
            return decision
        rules = (floor.rule, *(r for r in decision.rules if r != floor.rule))
        review = decision.review if decision.action == "review" else ReviewSpec()
        return Decision(
            "review",
            rules,
            decision.units,
            f"review: {floor.reason} [{floor.rule}]",
            review or ReviewSpec(),
        )

    def _shell_channel(self, request: ChannelRequest) -> GateVerdict:
        """Channel-level decision for an interactive shell (before any line is typed)."""
        mode = self.settings.shells
        if mode == "allow":
            return GateVerdict("allow", rules=("gate-shell-allowed",))
        if mode == "gate":
            from bastion.interactive import is_wired

            if request.has_pty and is_wired(self.config):
                return GateVerdict("allow", rules=("gate-shell-line-owned",))
            if not request.has_pty:
                return GateVerdict(
                    "deny",
                    "interactive shells are not allowed without a terminal (lines cannot be"
                    " gated): request a PTY (ssh -t) or run ssh TARGET 'COMMAND'",
                    rules=("gate-shell-no-pty",),
                    exit_status=EXIT_DENIED,
                )
        return GateVerdict(
            "deny",
            "interactive shells are not allowed on this bastion (every command must be"
            " inspected): run commands with ssh TARGET 'COMMAND'",
            rules=("gate-shell-refused",),
            exit_status=EXIT_DENIED,
        )


def build_gate(config: Config) -> PolicyGate:
    from bastion.policy import load_policy

    settings = gate_settings(config)
    return PolicyGate(config, load_policy(settings.policy_file), settings)
