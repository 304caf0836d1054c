"""Bad configuration gives one readable line naming the file, key and reason — never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.bastion import target_block, write_config

from bastion.config import load_config, parse_duration
from bastion.errors import ConfigError
from bastion.testing.certs import CertificateAuthority
from bastion.testing.sshd import SshdTarget


def run_serve(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def good(tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority) -> Path:
    return write_config(tmp_path, ca, target_block(sshd))


def test_good_config_loads(good: Path) -> None:
    """The harness's config parses: targets, pinned keys, access rules, durations."""
    config = load_config(good)
    assert list(config.targets) == ["web-01"]
    assert config.targets["web-01"].host_keys
    assert config.auth.max_cert_validity == 24 * 3600
    assert config.is_granted(("agents",), "web-01", config.targets["web-01"].login)
    assert not config.is_granted(("others",), "web-01", config.targets["web-01"].login)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda t: t.replace('max_cert_validity = "24h"', 'max_cert_validity = "soon"'),
            "auth.max_cert_validity: expected a duration",
        ),
        (
            lambda t: t.replace('host_key = "ssh-ed25519', 'host_key = "ssh-nope'),
            "targets[0].host_key: not a valid OpenSSH public key",
        ),
        (
            lambda t: "\n".join(x for x in t.splitlines() if not x.startswith('host_key = "ssh')),
            "targets[0]: the target's host key must be pinned",
        ),
        (lambda t: t.replace("[server]", "[server\n"), "not valid TOML"),
        (
            lambda t: t.replace('name = "web-01"', 'name = "../etc"'),
            "targets[0].name: use letters, digits",
        ),
        (
            lambda t: t.replace('listen = "127.0.0.1:0"', 'listen = "nowhere"'),
            "server.listen: expected 'HOST:PORT'",
        ),
    ],
    ids=["duration", "host-key", "unpinned", "toml", "target-name", "listen"],
)
def test_bad_config_is_one_line(good: Path, edit, expected: str) -> None:  # type: ignore[no-untyped-def]
    """Each config mistake is reported by `bastion serve` in one line naming the key."""
    good.write_text(edit(good.read_text()))
    result = run_serve(good)
    assert result.returncode == 3  # EXIT_ERROR (2 is "deny")
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"bastion: {good}")
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    """A config path that does not exist is named in the error."""
    result = run_serve(tmp_path / "nope.toml")
    assert result.returncode == 3  # EXIT_ERROR (2 is "deny")
    assert result.stderr.strip() == f"bastion: {tmp_path / 'nope.toml'}: file not found"


def test_private_key_readable_by_others_is_refused(good: Path, sshd: SshdTarget) -> None:
    """An upstream identity file readable by group/others is refused (it is a credential)."""
    sshd.client_key.chmod(0o644)
    try:
        with pytest.raises(ConfigError, match=r"identity_file: .* readable by group or others"):
            load_config(good)
    finally:
        sshd.client_key.chmod(0o600)


@pytest.mark.parametrize(
    ("text", "seconds"), [("15m", 900.0), ("24h", 86400.0), ("500ms", 0.5), ("30", 30.0), (7, 7.0)]
)
def test_durations(text: object, seconds: float) -> None:
    """Durations accept ms/s/m/h/d suffixes and plain seconds."""
    assert parse_duration(text) == seconds
