"""Prometheus metrics for ``/metrics``: a private registry and small typed recording methods.

Label values are bounded so a hostile client cannot grow the metric set: targets come from the
config (anything else is ``other``), auth-failure reasons are bucketed from the bastion's own
messages, rule ids are validated identifiers from the policy/masking config. User input (user
names, commands, certificate key ids) never becomes a label. Metrics are an optional sink: the
methods never raise into the data path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST

OTHER = "other"
MAX_RULE_LABELS = 512  # past this, new rule ids are counted as "other"

# Auth-failure buckets, matched in order against the bastion's refusal text (bastion/ssh).
AUTH_REASONS: tuple[tuple[str, str], ...] = (
    ("plain public key", "plain_key"),
    ("not a usable openssh certificate", "malformed_certificate"),
    ("not signed by a trusted", "untrusted_ca"),
    ("signature is invalid", "bad_signature"),
    ("host certificate", "host_certificate"),
    ("not yet valid", "not_yet_valid"),
    ("expired", "expired"),
    ("validity exceeds", "validity_too_long"),
    ("critical option", "critical_option"),
    ("not utf-8", "malformed_certificate"),
    ("no principals", "no_principals"),
    ("revoked", "revoked"),
    ("source-address", "source_address"),
    ("are not allowed by this certificate", "source_address"),
    ("user name must be", "bad_username"),
    ("not granted", "not_granted"),
    ("timeout", "login_timeout"),
    ("timed out", "login_timeout"),
    ("rate limit", "rate_limited"),
    ("too many", "rate_limited"),
)
AUTH_LABELS = frozenset(label for _, label in AUTH_REASONS) | {OTHER}

DECISION_ACTIONS = frozenset({"allow", "review", "deny"})
APPROVAL_OUTCOMES = frozenset({"approved", "denied", "expired", "abandoned"})  # approval.model
DIRECTIONS = frozenset({"in", "out"})
GUESSING_SCOPES = frozenset({"address", "request", "operator"})  # bastion.approval.guard
_RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,79}$")

# Approval waits are human-scale: seconds to hours.
WAIT_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 14400.0)


def auth_reason_label(reason: str) -> str:
    """Map a refusal message to one of ``AUTH_LABELS`` (never the message itself)."""
    text = reason.lower()
    for needle, label in AUTH_REASONS:
        if needle in text:
            return label
    return OTHER


class Metrics:
    """Owns a private ``CollectorRegistry`` (tests and reloads never collide on the global one)."""

    def __init__(self, targets: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._targets = frozenset(targets)
        self._rules: set[str] = set()
        r = self.registry
        self.sessions_active = Gauge(
            "bastion_sessions_active",
            "Authenticated agent sessions open now",
            ["target"],
            registry=r,
        )
        self.sessions_total = Counter(
            "bastion_sessions", "Authenticated agent sessions opened", ["target"], registry=r
        )
        self.auth_failures = Counter(
            "bastion_auth_failures", "Refused authentication attempts", ["reason"], registry=r
        )
        self.decisions = Counter(
            "bastion_decisions", "Gate decisions on commands", ["action", "rule"], registry=r
        )
        self.approvals_pending = Gauge(
            "bastion_approvals_pending", "Commands held waiting for an operator", registry=r
        )
        self.approvals = Counter(
            "bastion_approvals", "Resolved approval requests", ["outcome"], registry=r
        )
        self.approval_wait = Histogram(
            "bastion_approval_wait_seconds",
            "Time from hold to resolution",
            ["outcome"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.masked_total = Counter(
            "bastion_masked_secrets", "Secrets masked in output, by rule", ["rule"], registry=r
        )
        self.bytes_total = Counter(
            "bastion_relayed_bytes",
            "Bytes relayed (in: agent to target, out: target to agent)",
            ["direction"],
            registry=r,
        )
        self.recorder_errors = Counter(
            "bastion_recorder_errors", "Recording failures (each ends a session)", registry=r
        )
        self.approval_guessing_total = Counter(
            "bastion_approval_guessing",
            "Approval page limits tripped by repeated failed attempts (an alert), by scope",
            ["scope"],
            registry=r,
        )
        for scope in sorted(GUESSING_SCOPES):
            self.approval_guessing_total.labels(scope=scope)
        for label in sorted(AUTH_LABELS):  # so dashboards see zeros, not absent series
            self.auth_failures.labels(reason=label)
        for direction in sorted(DIRECTIONS):
            self.bytes_total.labels(direction=direction)

    def set_targets(self, targets: Iterable[str]) -> None:
        """After a config reload: only configured target names become labels."""
        self._targets = frozenset(targets)

    # -- what the bastion calls -----------------------------------------------------------------
    def session_opened(self, target: str) -> None:
        label = self._target(target)
        self.sessions_active.labels(target=label).inc()
        self.sessions_total.labels(target=label).inc()

    def session_closed(self, target: str) -> None:
        self.sessions_active.labels(target=self._target(target)).dec()

    def auth_failed(self, reason: str) -> None:
        self.auth_failures.labels(reason=auth_reason_label(reason)).inc()

    def decision(self, action: str, rule: str | None) -> None:
        action = action if action in DECISION_ACTIONS else OTHER
        self.decisions.labels(action=action, rule=self._rule(rule)).inc()

    def approval_pending(self, delta: int) -> None:
        self.approvals_pending.inc(delta)

    def approval_resolved(self, outcome: str, wait_seconds: float) -> None:
        outcome = outcome if outcome in APPROVAL_OUTCOMES else OTHER
        self.approvals.labels(outcome=outcome).inc()
        self.approval_wait.labels(outcome=outcome).observe(max(0.0, wait_seconds))

    def approval_guessing(self, scope: str) -> None:
        label = scope if scope in GUESSING_SCOPES else OTHER
        self.approval_guessing_total.labels(scope=label).inc()

    def masked(self, rule: str, n: int = 1) -> None:
        if n > 0:
            self.masked_total.labels(rule=self._rule(rule)).inc(n)

    def bytes_relayed(self, direction: str, n: int) -> None:
        if n > 0 and direction in DIRECTIONS:
            self.bytes_total.labels(direction=direction).inc(n)

    def recorder_error(self) -> None:
        self.recorder_errors.inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)

    # -- label hygiene -------------------------------------------------------------------------
    def _target(self, target: str) -> str:
        return target if target in self._targets else OTHER

    def _rule(self, rule: str | None) -> str:
        if not rule:
            return "none"
        if not _RULE_ID.match(rule):
            return OTHER
        if rule not in self._rules:
            if len(self._rules) >= MAX_RULE_LABELS:
                return OTHER
            self._rules.add(rule)
        return rule
