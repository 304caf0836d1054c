"""Fixtures for the notifier tests: a broker over a real database, fake Slack, receivers."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from notify_fakes import BrokerEnv, FakeSlack, Receiver, open_broker


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[BrokerEnv]:
    """A broker on a real SQLite file (real clock: TOTP codes come from pyotp)."""
    e = await open_broker(tmp_path / "state" / "bastion.db")
    yield e
    await e.audit.close()


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    server = FakeSlack()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    yield server
    await server.stop()
