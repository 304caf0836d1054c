"""``[approvals]`` and ``[http]`` parsing: defaults, values, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.approval import ApprovalsConfig, parse_approvals_config
from bastion.config import load_config
from bastion.errors import ConfigError


def test_defaults_and_values(config_file: Path) -> None:
    """No sections give 15m/wait/1h and a link on the listen address; set keys are honoured."""
    assert parse_approvals_config({}) == ApprovalsConfig(
        timeout=900.0, mode="wait", defer_validity=3600.0, public_url="http://127.0.0.1:8080"
    )
    cfg = parse_approvals_config(
        {
            "approvals": {"timeout": "2m", "mode": "defer", "defer_validity": "30m"},
            "http": {"listen": "127.0.0.1:9000", "public_url": "https://b.example/"},
        }
    )
    assert (cfg.timeout, cfg.mode, cfg.defer_validity) == (120.0, "defer", 1800.0)
    assert (
        cfg.approve_url("AAAA-BBBB-CCCC-DDDD") == "https://b.example/approvals/AAAA-BBBB-CCCC-DDDD"
    )
    loaded = load_config(config_file)
    assert parse_approvals_config(loaded.raw, loaded.base_dir).public_url == "https://bastion.test"


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"approvals": {"mode": "later"}}, "approvals.mode"),
        ({"approvals": {"timeout": "0s"}}, "approvals.timeout"),
        ({"approvals": {"timeout": "forever"}}, "approvals.timeout"),
        ({"approvals": {"defer_validity": "8d"}}, "approvals.defer_validity"),
        ({"approvals": {"timout": "1m"}}, "approvals.timout"),
        ({"http": {"public_url": "javascript:alert(1)"}}, "http.public_url"),
        ({"http": {"public_url": "https://x/'><script>"}}, "http.public_url"),
        ({"http": {"listen": "nowhere"}}, "http.listen"),
        ({"approvals": "15m"}, "approvals"),
    ],
)
def test_bad_values_name_the_key(raw: dict[str, object], where: str) -> None:
    """Each bad value raises one ConfigError naming the offending key."""
    with pytest.raises(ConfigError) as err:
        parse_approvals_config(raw)
    assert err.value.where == where
