"""Fixtures every test module can use: a CA, agents, a real sshd target and the bastion."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.bastion import (
    RunningBastion,
    bare_runtime,
    start_bastion,
    target_block,
    write_config,
)

from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget, start_sshd


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shared")


@pytest.fixture(scope="session")
def sshd(session_dir: Path) -> Iterator[SshdTarget]:
    """One real OpenSSH sshd target for the whole run (started on a free loopback port)."""
    target = start_sshd(session_dir / "sshd")
    yield target
    target.stop()


@pytest.fixture(scope="session")
def ca(session_dir: Path) -> CertificateAuthority:
    return CertificateAuthority.create(session_dir)


@pytest.fixture(scope="session")
def agent(session_dir: Path, ca: CertificateAuthority) -> Agent:
    """An agent whose certificate carries the principal ``agents``."""
    # Valid for the whole run: a slow CI machine must not see it expire mid-suite.
    return Agent.create(
        session_dir / "agent", ca, principals="agents", key_id="ci-agent-1", validity="-5m:+6h"
    )


@pytest.fixture
def make_agent(tmp_path: Path, ca: CertificateAuthority) -> Callable[..., Agent]:
    counter = iter(range(1000))

    def make(signer: CertificateAuthority | None = None, **sign: object) -> Agent:
        return Agent.create(tmp_path / f"agent{next(counter)}", signer or ca, **sign)

    return make


@pytest.fixture(scope="module")
def bastion(
    tmp_path_factory: pytest.TempPathFactory, sshd: SshdTarget, ca: CertificateAuthority
) -> Iterator[RunningBastion]:
    """The bastion in front of the sshd target as ``web-01``; bare relay (gate allows all)."""
    directory = tmp_path_factory.mktemp("bastion")
    config = write_config(directory, ca, target_block(sshd))
    running = start_bastion(config, bare_runtime)
    yield running
    running.stop()
