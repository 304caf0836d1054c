"""What ``bastion serve`` creates is private from creation, and ``check-config`` accepts it.

The state folder holds the database with the operators' TOTP secrets: 0700, and every database
file (with its -wal and -shm) 0600, under a permissive umask too (the modes come from the open
flags, not from a chmod afterwards).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from support.bastion import target_block, write_config
from support.bastion_process import ServeProcess

from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget

REPO = Path(__file__).resolve().parents[2]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_serve_makes_private_state_and_check_config_passes_on_it(
    tmp_path: Path, ca: CertificateAuthority, sshd: SshdTarget, agent: Agent
) -> None:
    shutil.copy(REPO / "config" / "policy.toml", tmp_path / "policy.toml")
    config = write_config(
        tmp_path, ca, target_block(sshd), workers=1,
        extra='[policy]\nfile = "policy.toml"\n[http]\nlisten = "127.0.0.1:0"\n',
    )  # fmt: skip
    state = tmp_path / "state"
    assert not state.exists()
    old = os.umask(0o002)  # a permissive umask: the modes must not depend on it
    try:
        served = ServeProcess.start(config)
    finally:
        os.umask(old)
    try:
        assert served.ssh(agent, "true").returncode == 0  # writes audit rows: WAL in use
        assert _mode(state) == 0o700
        databases = sorted(p.name for p in state.iterdir() if ".db" in p.name)
        assert "bastion.db" in databases and "bastion.db-wal" in databases, databases
        for name in databases:
            assert _mode(state / name) == 0o600, (name, oct(_mode(state / name)))
        checked = subprocess.run(
            [sys.executable, "-m", "bastion.cli", "check-config", "--config", str(config)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert f"server.state_dir {state}: owned by" in checked.stdout
    finally:
        served.stop()


def test_check_config_still_refuses_a_group_writable_state_folder(
    tmp_path: Path, ca: CertificateAuthority, sshd: SshdTarget
) -> None:
    shutil.copy(REPO / "config" / "policy.toml", tmp_path / "policy.toml")
    extra = '[policy]\nfile = "policy.toml"\n'
    config = write_config(tmp_path, ca, target_block(sshd), extra=extra)
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o770)
    checked = subprocess.run(
        [sys.executable, "-m", "bastion.cli", "check-config", "--config", str(config)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert checked.returncode != 0
    assert "server.state_dir" in checked.stdout + checked.stderr
    assert "0770" in checked.stdout + checked.stderr
