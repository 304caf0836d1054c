"""Developer-tool declarations on the data path: the real ssh client, the bastion, a real sshd.

Each held line would only `touch` a marker if it ran (a git pager or alias, a make --eval, a
`bisect run` whose command is not allowed); the test proves the target never sees it, on a
plain exec channel and on one with a PTY (`ssh -tt`). The near-misses run.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.bastion import RunningBastion, shared_folder, start_shipped_policy

from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget

pytestmark = pytest.mark.skipif(shutil.which("git") is None or shutil.which("make") is None,
                                reason="needs git and make on the target")


@pytest.fixture(scope="module")
def gated(
    tmp_path_factory: pytest.TempPathFactory, sshd: SshdTarget, ca: CertificateAuthority
) -> Iterator[RunningBastion]:
    running = start_shipped_policy(tmp_path_factory.mktemp("gated-devtools"), sshd, ca)
    yield running
    running.stop()


@pytest.fixture
def work() -> Iterator[Path]:
    with shared_folder("bastion-test-devtools-") as path:
        yield path


def test_everyday_git_and_make_run(gated: RunningBastion, agent: Agent, work: Path) -> None:
    """`git -c color.ui=never ...` and `make -C DIR target` pass the gate and run."""
    (work / "Makefile").write_text("hello:\n\t@echo made-it\n", encoding="utf-8")
    (work / "Makefile").chmod(0o666)
    result = gated.ssh(agent, "web-01", f"git -c color.ui=never --no-pager version && "
                                        f"make -s -C {work} hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"git version ")
    assert result.stdout.endswith(b"made-it\n")


HELD = [
    ("git -c core.pager='touch {m}' -p version", b"tool-runs"),
    ("git -c alias.x='!touch {m}' x", b"(tool-"),  # alias.* runs; `x` is not a subcommand
    ("git -c Core.Pager='touch {m}' -p version", b"tool-runs"),
    ("make -C {w} --eval='$(shell touch {m})' -f /dev/null", b"tool-runs"),
    ("make -C {w} 'X!=touch {m}' -f /dev/null", b"tool-runs"),
]


@pytest.mark.parametrize(("template", "rule"), HELD)
@pytest.mark.parametrize("tty", [False, True], ids=["exec", "exec-tty"])
def test_code_running_options_are_held(
    gated: RunningBastion, agent: Agent, work: Path, template: str, rule: bytes, tty: bool
) -> None:
    """A git pager or alias set with -c (any case) and make's --eval or `!=` are held for
    review before the target sees the line: the marker is never created."""
    marker = work / "ran"
    line = template.format(m=marker, w=work)
    options = ("-tt",) if tty else ()
    proc = subprocess.Popen([*gated.ssh_args(agent, "web-01", *options), line],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert b"held for review as " in first, first
        assert rule in first
        time.sleep(0.3)
        assert proc.poll() is None
        assert not marker.exists()
    finally:
        proc.kill()
        proc.wait()
