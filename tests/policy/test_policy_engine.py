"""Engine contract: decisions, floors, scoping, review requirements, loading errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.errors import ConfigError
from bastion.policy import Context, Policy, is_incomplete, load_policy
from bastion.policy.loader import parse_policy

CTX = Context(principals=("agents",), target="web-01", target_labels={"env": "prod"},
              login="azureuser", channel="exec")


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(Policy.default_path())


def test_issue_examples(policy: Policy) -> None:
    """Group delete is review naming approvers, vm list is allow, disk wipes are deny."""
    d = policy.decide("az group delete -n rg --yes", CTX)
    assert d.action == "review" and "az-group-delete" in d.rules
    assert d.review is not None and d.review.approvers == ("sre",)
    # no mode pinned: [approvals] mode decides (issue 22, item 14)
    assert d.review.timeout == 900.0 and d.review.mode is None
    assert policy.decide("az vm list", CTX).action == "allow"
    for line in ("rm -rf /", "mkfs.ext4 /dev/sda", "dd if=/dev/zero of=/dev/sda"):
        assert policy.decide(line, CTX).action == "deny", line


def test_most_severe_unit_wins_and_rules_lead_with_it(policy: Policy) -> None:
    """Across a line the most severe unit decides and its rule id comes first."""
    d = policy.decide("git status && rm -rf / ; ls", CTX)
    assert d.action == "deny"
    assert d.rules[0] == "rm-catastrophic"
    assert [u.argv[0] for u in d.units] == ["git", "rm", "ls"]


def test_floor_cannot_be_lowered_by_allow_rule(policy: Policy) -> None:
    """A dynamic command name is review even though the words look like an allowed command."""
    d = policy.decide('X=ls; "$X" -la', CTX)
    assert d.action == "review" and "dynamic-command" in d.rules


def test_engine_error_is_review(policy: Policy, monkeypatch: pytest.MonkeyPatch) -> None:
    """An internal exception yields review with rule id engine-error, never an exception."""

    def boom(*_: object) -> object:
        raise RuntimeError("bug")

    monkeypatch.setattr(Policy, "_decide", boom)
    d = policy.decide("ls", CTX)
    assert d.action == "review" and d.rules == ("engine-error",)


def test_to_log_has_identity_and_rules_but_not_the_command(policy: Policy) -> None:
    """The log form names identity, target and rule ids and carries no command text."""
    secret = "s3cr3t-" + "x" * 8
    d = policy.decide(f"psql -c \"DROP TABLE t\" --password={secret}", CTX)
    log = d.to_log(CTX)
    assert log["decision"] == "review" and log["target"] == "web-01"
    assert log["principals"] == ["agents"] and "sql-destructive" in log["rules"]
    assert secret not in repr(log)


def _mini(rules: str) -> Policy:
    import tomllib

    return parse_policy(tomllib.loads(rules), "mini.toml")


def test_scoping_by_principal_target_labels_login_channel() -> None:
    """A scoped rule only fires for matching principals, target labels, logins and channels."""
    p = _mini(
        """
        [[rules]]
        id = "prod-ls"
        action = "deny"
        program = ["ls"]
        principals = ["agents"]
        target_labels = { env = "prod" }
        logins = ["azure*"]
        channels = ["exec"]
        [[rules]]
        id = "ls"
        action = "allow"
        program = ["ls"]
        """
    )
    assert p.decide("ls", CTX).action == "deny"
    assert p.decide("ls", Context(principals=("humans",), target_labels={"env": "prod"},
                                  login="azureuser")).action == "allow"
    assert p.decide("ls", Context(principals=("agents",), target_labels={"env": "dev"},
                                  login="azureuser")).action == "allow"
    assert p.decide("ls", Context(principals=("agents",), target_labels={"env": "prod"},
                                  login="azureuser", channel="shell")).action == "allow"


def test_review_requirements_merge() -> None:
    """Approvers are unioned, approvals take the max and timeout the min across firing rules."""
    p = _mini(
        """
        [[rules]]
        id = "a"
        action = "review"
        program = ["a"]
        approvers = ["sre"]
        approvals = 2
        timeout = "10m"
        mode = "defer"
        [[rules]]
        id = "b"
        action = "review"
        program = ["b"]
        approvers = ["dba", "sre"]
        timeout = "5m"
        """
    )
    d = p.decide("a; b", CTX)
    assert d.review is not None
    assert d.review.approvers == ("sre", "dba") and d.review.approvals == 2
    assert d.review.timeout == 300.0 and d.review.mode == "defer"


def test_load_refuses_failing_examples(tmp_path: Path) -> None:
    """A rule whose example does not match makes loading fail with a message naming it."""
    f = tmp_path / "p.toml"
    f.write_text('[[rules]]\nid = "x"\naction = "deny"\nprogram = ["rm"]\nmatch = ["ls"]\n')
    with pytest.raises(ConfigError, match=r"p\.toml.*rule x: example 'ls' should match"):
        load_policy(f)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[[rules]]\nid = 'x'\naction = 'maybe'\n", "action must be one of"),
        ("[[rules]]\nid = 'x'\naction = 'deny'\nbogus = 1\n", "unknown key(s): bogus"),
        ("[[rules]]\nid = 'x'\naction = 'deny'\n[[rules]]\nid = 'x'\naction = 'deny'\n",
         "duplicate rule id"),
        ("[[rules]]\nid = 'x'\naction = 'deny'\npaths_any = ['nope']\n", "unknown path class"),
        ("not toml [", "not valid TOML"),
        ("[[rules]]\nid = 'x'\naction = 'review'\ntimeout = 'soon'\n", "duration"),
    ],
)
def test_load_errors_are_one_line(tmp_path: Path, text: str, fragment: str) -> None:
    """Bad policy files raise ConfigError naming the file and the reason."""
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_policy(f)
    assert "bad.toml" in str(exc.value) and fragment in str(exc.value)
    assert "\n" not in str(exc.value)


def test_missing_file_is_config_error(tmp_path: Path) -> None:
    """A missing policy file is a ConfigError, not a traceback."""
    with pytest.raises(ConfigError, match="not found"):
        load_policy(tmp_path / "none.toml")


@pytest.mark.parametrize(
    ("text", "incomplete"),
    [
        ("if true; then", True), ("echo 'abc", True), ('echo "abc', True), ("ls |", True),
        ("ls &&", True), ("ls ||", True), ("for i in 1; do", True), ("case x in", True),
        ("cat <<EOF", True), ("cat <<EOF\nhi", True), ("ls \\", True), ("echo $(ls", True),
        ("ls", False), ("cat <<EOF\nhi\nEOF", False), ("if true; then ls; fi", False),
        ("ls )", False), ("ls \\\\", False), ("echo 'a' \"b\"", False),
        # here-strings and quoted "<<" are not here-documents (issue 20 item 8)
        ("cat <<< hi", False), ("cat <<<hi", False), ("tr a-z A-Z <<< 'a b'", False),
        ("wc -c <<< \"$HOME\"", False), ('echo "<<EOF"', False), ("echo '<<EOF'", False),
        ("cat <<< hi <<EOF", True), ("cat <<'E F'\nx", True), ("cat <<-EOF\n\tx\n\tEOF", False),
    ],
)
def test_is_incomplete(text: str, incomplete: bool) -> None:
    """Open quotes, operators, compounds and here-docs need more lines; finished or broken don't."""
    assert is_incomplete(text) is incomplete
