"""Fixtures for the approval tests: a real database file, audit store, broker and operators."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).parent))

from approval_env import Env, FakeClock, open_env


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A minimal valid bastion config whose state dir (and database) is ``tmp_path/state``."""
    ca = Ed25519PrivateKey.generate().public_key()
    (tmp_path / "ca.pub").write_bytes(
        ca.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    path = tmp_path / "bastion.toml"
    path.write_text(
        '[server]\nstate_dir = "state"\n[auth]\ntrusted_user_ca_keys = ["ca.pub"]\n'
        '[http]\nlisten = "127.0.0.1:8080"\npublic_url = "https://bastion.test"\n'
        '[approvals]\ntimeout = "15m"\nmode = "wait"\ndefer_validity = "1h"\n'
    )
    return path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


@pytest.fixture
async def env(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Env]:
    """A broker over a real SQLite file with a controllable clock."""
    e = await open_env(tmp_path / "state" / "bastion.db", clock)
    yield e
    await e.audit.close()


@pytest.fixture
async def live_env(tmp_path: Path) -> AsyncIterator[Env]:
    """A broker on the real clock (for tests that involve another process)."""
    e = await open_env(tmp_path / "state" / "bastion.db", time.time)
    yield e
    await e.audit.close()
