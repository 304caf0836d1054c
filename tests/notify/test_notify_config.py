"""``[[notify]]`` parsing: types, scope, and secrets only from 0600 files or the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from notify_fakes import fake_token, write_secret

from bastion.errors import ConfigError
from bastion.notify import parse_notify_config
from bastion.notify.config import Scope


def _slack(tmp_path: Path, **extra: object) -> dict[str, object]:
    write_secret(tmp_path / "bot", fake_token("xoxb-"))
    write_secret(tmp_path / "signing", fake_token("sig"))
    block: dict[str, object] = {
        "type": "slack",
        "channel": "C0NOTIFY",
        "bot_token_file": "bot",
        "signing_secret_file": "signing",
    }
    block.update(extra)
    return block


def test_all_three_types_parse_with_secrets_from_files_and_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slack, Teams and webhook blocks parse; secrets come from relative files and env vars."""
    hook_secret = fake_token("whs")
    write_secret(tmp_path / "hook", hook_secret)
    teams_url = "https://example.invalid/workflows/" + fake_token("t")
    monkeypatch.setenv("TEAMS_URL_FOR_TEST", teams_url)
    specs = parse_notify_config(
        {
            "notify": [
                _slack(tmp_path, rules=["az-*"], targets=["web-*"], groups=["sre"]),
                {"type": "teams", "webhook_url_env": "TEAMS_URL_FOR_TEST"},
                {"type": "webhook", "url": "https://hooks.example.invalid/x",
                 "secret_file": "hook", "timeout": "3s", "retries": 2},
            ]
        },
        tmp_path,
    )  # fmt: skip
    assert [s.type for s in specs] == ["slack", "teams", "webhook"]
    assert specs[0].options["api_url"] == "https://slack.com/api"
    assert specs[0].scope == Scope(("az-*",), ("web-*",), ("sre",))
    assert specs[1].secrets["webhook_url"] == teams_url
    assert specs[2].secrets["secret"] == hook_secret
    assert (specs[2].timeout, specs[2].retries) == (3.0, 2)
    assert hook_secret not in repr(specs[2])  # secrets stay out of reprs and logs


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bot_token": "inline"}, "never inline"),
        ({"type": "carrier-pigeon"}, "expected one of"),
        ({"colour": "red"}, "unknown key"),
        ({"api_url": "ftp://x"}, "http"),
        ({"retries": 99}, "0..20"),
        ({"bot_token_file": "missing-file"}, "cannot read"),
        ({"bot_token_env": "NOT_SET_ANYWHERE_FOR_TEST"}, "not both"),
    ],
)
def test_bad_blocks_are_refused_naming_the_key(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    """Inline secrets, unknown types/keys, bad URLs and missing files are one-line errors."""
    with pytest.raises(ConfigError, match=message):
        parse_notify_config({"notify": [_slack(tmp_path, **change)]}, tmp_path)


def test_group_or_world_readable_secret_file_is_refused(tmp_path: Path) -> None:
    """A secret file readable by group or others is refused (chmod 600 it)."""
    block = _slack(tmp_path)
    (tmp_path / "bot").chmod(0o640)
    with pytest.raises(ConfigError, match="readable by group or others"):
        parse_notify_config({"notify": [block]}, tmp_path)


def test_unset_environment_variable_is_refused(tmp_path: Path) -> None:
    """A secret named by an unset environment variable is a config error."""
    block = _slack(tmp_path)
    del block["bot_token_file"]
    block["bot_token_env"] = "BASTION_TEST_UNSET_TOKEN_VAR"
    with pytest.raises(ConfigError, match="is not set"):
        parse_notify_config({"notify": [block]}, tmp_path)


def test_scope_matches_rules_targets_and_groups() -> None:
    """A scoped notifier hears only matching requests; a request naming no group reaches all."""
    scope = Scope(rules=("az-*",), targets=("web-*",), groups=("sre",))
    assert scope.matches(["az-destructive"], "web-01", ["sre"])
    assert not scope.matches(["rm-rf"], "web-01", ["sre"])
    assert not scope.matches(["az-destructive"], "db-01", ["sre"])
    assert not scope.matches(["az-destructive"], "web-01", ["dba"])
    assert scope.matches(["az-destructive"], "web-01", [])
    assert Scope().matches([], "anything", ["x"])
