"""Prometheus metrics: scraped from the registry's text output and parsed back."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from bastion.ops.metrics import AUTH_LABELS, MAX_RULE_LABELS, OTHER, Metrics, auth_reason_label


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_sessions_active_and_total_by_target() -> None:
    """Opening and closing sessions moves the gauge; the counter only grows."""
    m = Metrics(targets=["web-01", "db-01"])
    m.session_opened("web-01")
    m.session_opened("web-01")
    m.session_opened("db-01")
    m.session_closed("web-01")
    s = _samples(m)
    assert s[("bastion_sessions_active", (("target", "web-01"),))] == 1
    assert s[("bastion_sessions_active", (("target", "db-01"),))] == 1
    assert s[("bastion_sessions_total", (("target", "web-01"),))] == 2


def test_unknown_target_names_never_become_labels() -> None:
    """A target name not in the config is counted as 'other' (no label cardinality attack)."""
    m = Metrics(targets=["web-01"])
    m.session_opened("attacker-chosen-name-1")
    m.session_opened("attacker-chosen-name-2")
    s = _samples(m)
    assert s[("bastion_sessions_total", (("target", OTHER),))] == 2
    assert not any("attacker" in str(key) for key in s)


def test_auth_failures_are_bucketed_to_a_fixed_label_set() -> None:
    """Refusal messages map to bounded reasons; free text never reaches a label."""
    m = Metrics()
    m.auth_failed("certificate has expired")
    m.auth_failed("certificate has expired")
    m.auth_failed("target 'x; rm -rf /' does not exist or is not granted to your principals")
    m.auth_failed("some message nobody anticipated <script>")
    s = _samples(m)
    assert s[("bastion_auth_failures_total", (("reason", "expired"),))] == 2
    assert s[("bastion_auth_failures_total", (("reason", "not_granted"),))] == 1
    assert s[("bastion_auth_failures_total", (("reason", OTHER),))] == 1
    reasons = {dict(k[1]).get("reason") for k in s if k[0] == "bastion_auth_failures_total"}
    assert reasons == AUTH_LABELS


def test_auth_reason_buckets_cover_the_ssh_server_messages() -> None:
    """Every refusal the SSH server produces maps to a specific bucket, not 'other'."""
    messages = {
        "plain public keys are not accepted; log in with a CA-signed certificate": "plain_key",
        "certificate is not signed by a trusted user CA": "untrusted_ca",
        "certificate signature is invalid": "bad_signature",
        "a host certificate cannot be used as a user certificate": "host_certificate",
        "certificate is not yet valid": "not_yet_valid",
        "certificate validity exceeds the maximum of 86400s": "validity_too_long",
        "certificate has unsupported critical options: x": "critical_option",
        "certificate names no principals": "no_principals",
        "certificate has been revoked": "revoked",
        "connections from 10.0.0.9 are not allowed by this certificate": "source_address",
        "the user name must be TARGET or LOGIN@TARGET (e.g. azureuser@web-01)": "bad_username",
    }
    for message, label in messages.items():
        assert auth_reason_label(message) == label, message


def test_decisions_approvals_masking_bytes_and_recorder_errors() -> None:
    """Each recording method lands in its metric with the expected labels and values."""
    m = Metrics()
    m.decision("allow", "read-only-tools")
    m.decision("deny", "rm-root")
    m.decision("weird", None)
    m.approval_pending(1)
    m.approval_pending(1)
    m.approval_pending(-1)
    m.approval_resolved("approved", 42.0)
    m.approval_resolved("bogus", 1.0)
    m.masked("aws-access-key", 3)
    m.bytes_relayed("in", 100)
    m.bytes_relayed("out", 5000)
    m.bytes_relayed("sideways", 7)
    m.recorder_error()
    s = _samples(m)
    assert s[("bastion_decisions_total", (("action", "allow"), ("rule", "read-only-tools")))] == 1
    assert s[("bastion_decisions_total", (("action", "deny"), ("rule", "rm-root")))] == 1
    assert s[("bastion_decisions_total", (("action", OTHER), ("rule", "none")))] == 1
    assert s[("bastion_approvals_pending", ())] == 1
    assert s[("bastion_approvals_total", (("outcome", "approved"),))] == 1
    assert s[("bastion_approvals_total", (("outcome", OTHER),))] == 1
    assert s[("bastion_approval_wait_seconds_count", (("outcome", "approved"),))] == 1
    assert s[("bastion_approval_wait_seconds_sum", (("outcome", "approved"),))] == 42.0
    assert (
        s[("bastion_approval_wait_seconds_bucket", (("le", "30.0"), ("outcome", "approved")))] == 0
    )
    assert (
        s[("bastion_approval_wait_seconds_bucket", (("le", "60.0"), ("outcome", "approved")))] == 1
    )
    assert s[("bastion_masked_secrets_total", (("rule", "aws-access-key"),))] == 3
    assert s[("bastion_relayed_bytes_total", (("direction", "in"),))] == 100
    assert s[("bastion_relayed_bytes_total", (("direction", "out"),))] == 5000
    assert s[("bastion_recorder_errors_total", ())] == 1


def test_rule_labels_are_validated_and_capped() -> None:
    """Rule ids that are not identifiers, or past the cap, are counted as 'other'."""
    m = Metrics()
    m.decision("deny", "bad rule with spaces")
    for i in range(MAX_RULE_LABELS + 5):
        m.masked(f"rule-{i}")
    s = _samples(m)
    rules = {dict(k[1])["rule"] for k in s if k[0] == "bastion_masked_secrets_total"}
    assert len(rules) == MAX_RULE_LABELS + 1  # the cap plus "other"
    assert s[("bastion_masked_secrets_total", (("rule", OTHER),))] == 5
    assert s[("bastion_decisions_total", (("action", "deny"), ("rule", OTHER)))] == 1


def test_registries_are_private() -> None:
    """Two Metrics objects do not share counts (a reload or a test cannot double-register)."""
    a, b = Metrics(), Metrics()
    a.recorder_error()
    assert _samples(b)[("bastion_recorder_errors_total", ())] == 0
