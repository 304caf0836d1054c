"""The shipped systemd units: security exposure, verify, tmpfiles, and the settings they rely on."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
INSTALLED_BIN = "/opt/bastion/venv/bin/bastion"
UNITS = ("bastion.service", "bastion-prune.service", "bastion-prune.timer")

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not installed (Debian package: systemd)",
)


def _settings(unit: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (SYSTEMD / unit).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def _exposure(unit: str) -> tuple[float, str]:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(SYSTEMD / unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", done.stdout)
    assert match, done.stdout[-2000:] + done.stderr
    return float(match.group(1)), match.group(2)


@needs_analyze
def test_bastion_service_exposure_is_ok() -> None:
    """systemd-analyze rates bastion.service at most 2.0 ('OK' or better)."""
    level, rating = _exposure("bastion.service")
    assert level <= 2.0
    assert rating in ("OK", "SAFE")


@needs_analyze
def test_prune_service_exposure_is_safe() -> None:
    """The prune job needs no network and no capabilities: rated SAFE."""
    level, rating = _exposure("bastion-prune.service")
    assert level <= 1.0
    assert rating == "SAFE"


@needs_analyze
def test_units_verify(tmp_path: Path) -> None:
    """systemd-analyze verify accepts the units (installed binary path swapped for this venv's)."""
    here = Path(sys.executable).parent / "bastion"
    if not here.exists():
        pytest.skip(f"{here} not installed (pip install -e .)")
    for unit in UNITS:
        text = (SYSTEMD / unit).read_text().replace(INSTALLED_BIN, str(here))
        (tmp_path / unit).write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / u) for u in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "bastion" not in done.stderr, done.stderr


def test_service_contract() -> None:
    """The unit keeps the promises the bastion and docs rely on."""
    s = _settings("bastion.service")
    assert s["Type"] == ["notify"]
    assert s["NotifyAccess"] == ["main"]
    assert s["WatchdogSec"] and s["WatchdogSec"][0] not in ("0", "infinity")
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["User"] == ["bastion"]
    assert s["StateDirectory"] == ["bastion"]
    assert s["ConfigurationDirectory"] == ["bastion"]
    assert s["LogsDirectory"] == ["bastion"]
    assert s["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert s["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    for key in ("NoNewPrivileges", "PrivateTmp", "PrivateDevices", "ProtectHome"):
        assert s[key] == ["yes"], key
    assert s["ProtectSystem"] == ["strict"]
    assert s["MemoryDenyWriteExecute"] == ["yes"]
    assert "@system-service" in s["SystemCallFilter"]
    assert set(s["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert any("check-config" in line for line in s["ExecStartPre"])


def test_prune_timer_runs_the_existing_prune_command() -> None:
    """The timer starts the prune service, which calls `bastion recordings prune --older-than`."""
    timer = _settings("bastion-prune.timer")
    assert timer["OnCalendar"] == ["daily"]
    assert timer["Persistent"] in (["yes"], ["true"])
    service = _settings("bastion-prune.service")
    (exec_start,) = service["ExecStart"]
    assert exec_start.startswith(f"{INSTALLED_BIN} recordings prune --older-than ")
    assert "--config /etc/bastion/bastion.toml" in exec_start
    from bastion.recording.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = exec_start.replace("${BASTION_RETENTION_DAYS}", "90").split()[1:]
    parsed = parser.parse_args(args)
    assert parsed.older_than == 90.0


@pytest.mark.skipif(shutil.which("systemd-tmpfiles") is None, reason="systemd-tmpfiles missing")
def test_tmpfiles_entry_creates_private_folders(tmp_path: Path) -> None:
    """systemd-tmpfiles creates the state, recordings and log folders with the intended modes."""
    import getpass

    me = getpass.getuser()
    conf = tmp_path / "bastion.conf"
    lines = []
    for line in (SYSTEMD / "bastion.tmpfiles").read_text().splitlines():
        fields = line.split()
        if fields and not line.startswith("#"):  # this test runs as whoever runs the suite
            fields = [me if i in (3, 4) and f == "bastion" else f for i, f in enumerate(fields)]
        lines.append(" ".join(fields))
    conf.write_text("\n".join(lines) + "\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    shutil.copy("/etc/passwd", root / "etc" / "passwd")
    shutil.copy("/etc/group", root / "etc" / "group")
    done = subprocess.run(
        ["systemd-tmpfiles", "--create", f"--root={root}", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    modes = {
        "var/lib/bastion": 0o700,
        "var/lib/bastion/recordings": 0o700,
        "var/log/bastion": 0o750,
        "etc/bastion": 0o750,
    }
    for path, mode in modes.items():
        assert (root / path).stat().st_mode & 0o7777 == mode, path
