"""A bastion whose PTY shells are line-gated by the shipped policy, and a terminal client."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from interactive.gated import start_line_gated
from support.bastion import RunningBastion

from bastion.testing.certs import CertificateAuthority
from bastion.testing.sshd import SshdTarget


@pytest.fixture(scope="module")
def gated_shell(
    tmp_path_factory: pytest.TempPathFactory, sshd: SshdTarget, ca: CertificateAuthority
) -> Iterator[RunningBastion]:
    # Review lines are refused here so input-trick tests get their prompt back at once; the
    # hold itself is tested with its own bastion (test_review_line_is_held_then_denied).
    extra = '[gate]\nshell_reviews = "refuse"\n'
    running = start_line_gated(tmp_path_factory.mktemp("ishell"), sshd, ca, extra)
    yield running
    running.stop()


@pytest.fixture
def trace_dir() -> Iterator[Path]:
    """A world-writable folder: a forbidden command would leave a file here."""
    path = Path(tempfile.mkdtemp(prefix="bastion-ishell-trace-"))
    path.chmod(0o777)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()
