"""``bastion check-config`` on a good config and on each kind of broken one."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support.bastion import target_block, write_config

from bastion.ops.cli import register
from bastion.testing.certs import CertificateAuthority
from bastion.testing.sshd import SshdTarget

REPO = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="bastion")
    register(parser.add_subparsers())
    args = parser.parse_args(["check-config", *argv])
    status = args.func(args)
    out, err = capsys.readouterr()
    return status, out, err


def keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True
    )
    return path


@pytest.fixture
def good(tmp_path: Path, ca: CertificateAuthority, sshd: SshdTarget) -> Path:
    """A config that passes: write_config + the shipped policy, state folder 0700."""
    shutil.copy(REPO / "config" / "policy.toml", tmp_path / "policy.toml")
    (tmp_path / "state").mkdir(mode=0o700)
    return write_config(tmp_path, ca, target_block(sshd), extra='[http]\nlisten = "127.0.0.1:0"')


def test_good_config_passes_with_one_line_per_check(
    capsys: pytest.CaptureFixture[str], good: Path
) -> None:
    """A sound config exits 0 and names what it checked: keys, pins, policy, state folder."""
    status, out, err = run(capsys, "--config", str(good))
    assert status == 0, err
    assert err == ""
    lines = out.splitlines()
    assert all(line.startswith("ok ") for line in lines[:-1])
    assert lines[-1].startswith("config OK")
    for expected in (
        "target web-01: host key pinned",
        "target web-01: identity_file",
        "examples pass",
        "server.state_dir",
        "trusted user CA",
        "masking: enabled",
        "limits:",
    ):
        assert any(expected in line for line in lines), expected


def test_quiet_prints_nothing_when_all_is_well(
    capsys: pytest.CaptureFixture[str], good: Path
) -> None:
    """--quiet (used by the unit's ExecStartPre) prints only failures."""
    assert run(capsys, "--quiet", "--config", str(good)) == (0, "", "")


def _fails(capsys: pytest.CaptureFixture[str], config: Path, *needles: str) -> str:
    status, _, err = run(capsys, "--config", str(config))
    assert status == 1
    fail_lines = [line for line in err.splitlines() if line.startswith("FAIL")]
    assert fail_lines, err
    for needle in needles:
        assert any(needle in line for line in fail_lines), (needle, err)
    return err


def _edit(config: Path, old: str, new: str) -> None:
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new))


def test_missing_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A config path that does not exist is one FAIL line, not a traceback."""
    _fails(capsys, tmp_path / "nope.toml", "file not found")


def test_invalid_toml(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    """A TOML syntax error is named."""
    good.write_text(good.read_text() + "\n[server\n")
    _fails(capsys, good, "not valid TOML")


def test_unpinned_target(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    """A target without host_key or known_hosts fails: the host key must be pinned."""
    lines = [ln for ln in good.read_text().splitlines() if not ln.startswith('host_key = "ssh-')]
    good.write_text("\n".join(lines))
    _fails(capsys, good, "must be pinned")


def test_known_hosts_without_the_target(
    capsys: pytest.CaptureFixture[str], good: Path, tmp_path: Path
) -> None:
    """A known_hosts file that has no key for the target's host:port fails."""
    other = keygen(tmp_path / "other_host_key")
    (tmp_path / "known_hosts").write_text(f"10.9.9.9 {other.with_suffix('.pub').read_text()}")
    lines = [ln for ln in good.read_text().splitlines() if not ln.startswith('host_key = "ssh-')]
    text = "\n".join(lines).replace("[[targets]]", '[[targets]]\nknown_hosts = "known_hosts"')
    good.write_text(text)
    _fails(capsys, good, "has no key for [127.0.0.1]:")


def test_identity_file_readable_by_others(
    capsys: pytest.CaptureFixture[str], good: Path, tmp_path: Path
) -> None:
    """A target identity file with mode 0644 is refused with a chmod hint."""
    key = keygen(tmp_path / "upstream_key")
    key.chmod(0o644)
    lines = [ln for ln in good.read_text().splitlines() if not ln.startswith("identity_file")]
    good.write_text(
        "\n".join(lines).replace("[[targets]]", f'[[targets]]\nidentity_file = "{key}"')
    )
    _fails(capsys, good, "chmod 600")


def test_identity_file_not_a_key(
    capsys: pytest.CaptureFixture[str], good: Path, tmp_path: Path
) -> None:
    """A target identity file that is not a private key fails, naming the target."""
    key = tmp_path / "garbage_key"
    key.write_text("this is not a key\n")
    key.chmod(0o600)
    lines = [ln for ln in good.read_text().splitlines() if not ln.startswith("identity_file")]
    good.write_text(
        "\n".join(lines).replace("[[targets]]", f'[[targets]]\nidentity_file = "{key}"')
    )
    _fails(capsys, good, "target web-01: identity_file", "not a usable private key")


def test_host_key_readable_by_others(
    capsys: pytest.CaptureFixture[str], good: Path, tmp_path: Path
) -> None:
    """The bastion's own host key with mode 0640 fails."""
    keygen(tmp_path / "ssh_host_ed25519_key").chmod(0o640)
    _fails(capsys, good, "server.host_key", "0640")


def test_host_key_unparseable(
    capsys: pytest.CaptureFixture[str], good: Path, tmp_path: Path
) -> None:
    """A host key file that does not parse fails."""
    key = tmp_path / "ssh_host_ed25519_key"
    key.write_text(
        "-----BEGIN OPENSSH PRIVATE KEY-----\ngarbage\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    key.chmod(0o600)
    _fails(capsys, good, "server.host_key", "not a usable private key")


def test_state_dir_open_to_others(
    capsys: pytest.CaptureFixture[str], good: Path, tmp_path: Path
) -> None:
    """A state folder others can enter (0755) fails."""
    (tmp_path / "state").chmod(0o755)
    _fails(capsys, good, "server.state_dir", "chmod 700")


def test_state_dir_owned_by_someone_else(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    """A state folder not owned by the service user fails (checked with --owner)."""
    other = str(os.geteuid() + 4242)
    status, _, err = run(capsys, "--config", str(good), "--owner", other)
    assert status == 1
    assert "server.state_dir" in err and f"uid {other}" in err


def test_unknown_owner_is_a_one_line_error(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    """--owner naming no user raises the one-line BastionError (exit 2 via cli.main)."""
    from bastion.errors import BastionError

    with pytest.raises(BastionError, match="no such user"):
        run(capsys, "--config", str(good), "--owner", "no-such-user-xyz")


def test_policy_example_that_fails(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    """A policy whose rule examples do not hold fails, naming the rule."""
    _edit(good.parent / "policy.toml", 'match = ["rm -rf /",', 'match = ["ls -la", "rm -rf /",')
    _fails(capsys, good, "policy", "rm-catastrophic", "ls -la")


def test_policy_writable_by_others(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    """A policy file others can write would let them change what runs: it fails."""
    (good.parent / "policy.toml").chmod(0o666)
    _fails(capsys, good, "policy file", "chmod go-w")


def test_config_writable_by_others(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    """The config file itself must not be writable by group or others."""
    good.chmod(0o664)
    _fails(capsys, good, "config file", "writable by group or others")


def test_unknown_section_is_a_typo(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    """A section the bastion does not read ([limit] for [limits]) fails instead of doing nothing."""
    good.write_text(good.read_text() + "\n[limit]\nmax_connections = 5\n")
    _fails(capsys, good, "unknown section [limit]")


def test_bad_limits(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    """A bad [limits] value fails naming the key."""
    good.write_text(good.read_text() + "\n[limits]\nmax_connections = 0\n")
    _fails(capsys, good, "limits.max_connections")


def test_limits_for_channels_pending_approvals_and_lockout(
    capsys: pytest.CaptureFixture[str], good: Path
) -> None:
    """The caps of issue 20 are known keys: valid values are reported, bad ones name the key."""
    base = good.read_text()
    good.write_text(
        base + "\n[limits]\nmax_channels_per_connection = 4\n"
        "max_pending_approvals_per_identity = 3\nauth_failures_per_address_per_minute = 50\n"
    )
    status, out, err = run(capsys, "--config", str(good))
    assert status == 0, out + err
    assert "4 channels per connection, 3 pending approvals per identity" in out
    assert "(50 per source)" in out
    for key in ("max_channels_per_connection", "max_pending_approvals_per_identity"):
        good.write_text(base + f"\n[limits]\n{key} = 0\n")
        _fails(capsys, good, f"limits.{key}")


def test_bad_masking(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    """A bad [masking] section fails."""
    good.write_text(good.read_text() + '\n[masking]\nengine = "quantum"\n')
    _fails(capsys, good, "masking.engine")


def test_known_values_file_readable_by_group(
    capsys: pytest.CaptureFixture[str], good: Path, tmp_path: Path
) -> None:
    """The masking known-values file holds secrets: group-readable fails."""
    known = tmp_path / "known_values"
    known.write_text("x" * 24 + "\n")
    known.chmod(0o640)
    good.write_text(good.read_text() + '\n[masking]\nknown_values_file = "known_values"\n')
    _fails(capsys, good, "masking.known_values_file", "chmod 600")


def test_recording_key_readable_by_others(
    capsys: pytest.CaptureFixture[str], good: Path, tmp_path: Path
) -> None:
    """The recording signing key with mode 0644 fails."""
    from bastion.recording.keys import RecordingKey

    RecordingKey.load_or_create(tmp_path / "state")
    (tmp_path / "state" / "recording_key").chmod(0o644)
    _fails(capsys, good, "recording.key_file", "chmod 600")


def test_recording_key_and_state_pass_after_first_start(
    capsys: pytest.CaptureFixture[str], good: Path, tmp_path: Path
) -> None:
    """Keys the bastion creates itself (recording key, recordings folder) pass the checks."""
    from bastion.recording.keys import RecordingKey

    RecordingKey.load_or_create(tmp_path / "state")
    (tmp_path / "state" / "recordings").mkdir(mode=0o700)
    status, out, err = run(capsys, "--config", str(good))
    assert status == 0, err
    assert "recording.key_file" in out and "Ed25519" in out


def test_ca_key_missing_and_open(
    capsys: pytest.CaptureFixture[str], good: Path, tmp_path: Path
) -> None:
    """The identity CA key must exist and be private."""
    good.write_text(good.read_text() + '\n[ca]\nkey = "issuing_ca"\n')
    _fails(capsys, good, "ca.key", "file not found")
    keygen(tmp_path / "issuing_ca").chmod(0o644)
    _fails(capsys, good, "ca.key", "chmod 600")
    (tmp_path / "issuing_ca").chmod(0o600)
    status, _, err = run(capsys, "--config", str(good))
    assert status == 0, err


def test_http_tls_key_missing(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    """TLS configured with a key file that is not there fails."""
    _edit(
        good,
        '[http]\nlisten = "127.0.0.1:0"',
        '[http]\nlisten = "127.0.0.1:0"\ntls_cert = "c.pem"\ntls_key = "k.pem"',
    )
    _fails(capsys, good, "http.tls_key", "file not found")
