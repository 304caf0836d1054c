"""Issue 20 findings 4 and 6 (approvals), through the real ssh client and the real database file.

4: a held command is stored masked: a generated fake token typed into it is found neither in the
   database file nor in its WAL, while deferred approvals still bind to the exact command.
6: ``[limits] max_pending_approvals_per_identity`` caps the requests one identity keeps pending
   (approval flooding): the next held command is refused with one line; others are not.
"""

from __future__ import annotations

import secrets
import string
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from support.bastion import RunningBastion, start_bastion, target_block, write_config

from bastion.app import build_runtime
from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget

POLICY = """
[policy]
version = 1
default = "review"

[[rules]]
id = "everyday"
action = "allow"
reason = "harmless"
program = ["echo", "true"]

[[rules]]
id = "az-group-delete"
action = "review"
reason = "deletes an Azure resource group"
program = ["az"]
subcommand = ["group delete"]
timeout = "60s"

[[rules]]
id = "deferred-printf"
action = "review"
reason = "defer mode"
program = ["printf"]
mode = "defer"
"""
CAP = 2


def fake_github_token() -> str:
    """A generated value shaped like a GitHub token (not a credential)."""
    alphabet = string.ascii_letters + string.digits
    return "ghp_" + "".join(secrets.choice(alphabet) for _ in range(36))


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli", *args, "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, sshd: SshdTarget, ca: CertificateAuthority
) -> Iterator[tuple[RunningBastion, Path, pyotp.TOTP]]:
    directory = tmp_path_factory.mktemp("approval-storage")
    (directory / "policy.toml").write_text(POLICY)
    extra = (
        f'[policy]\nfile = "policy.toml"\n[limits]\nmax_pending_approvals_per_identity = {CAP}\n'
    )
    config = write_config(directory, ca, target_block(sshd), extra=extra)
    out = cli(config, "operators", "add", "alice")
    assert out.returncode == 0, out.stderr
    running = start_bastion(config, build_runtime)
    yield running, config, pyotp.parse_uri(out.stdout.splitlines()[0])
    running.stop()


def start_held(
    running: RunningBastion, agent: Agent, command: str
) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [*running.ssh_args(agent, "web-01"), command],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    assert line.startswith("bastion: held for review as "), line
    return proc, line.split(" as ", 1)[1].split()[0]


def _stored(config: Path) -> bytes:
    state = config.parent / "state"
    return b"".join(
        (state / name).read_bytes()
        for name in ("bastion.db", "bastion.db-wal")
        if (state / name).exists()
    )


def test_a_held_token_never_reaches_the_database_or_its_wal(setup, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    running, config, _ = setup
    token = fake_github_token()
    proc, request_id = start_held(running, agent, f"az group delete -n rg --yes --token {token}")
    try:
        shown = cli(config, "approvals", "show", request_id)
        assert "[MASKED:github-token]" in shown.stdout and token not in shown.stdout
        stored = _stored(config)
        assert (config.parent / "state" / "bastion.db-wal").exists()
        assert request_id.encode() in stored  # the request is there ...
        assert token.encode() not in stored  # ... its secret is not, in the file or the WAL
        assert token[4:20].encode() not in stored
    finally:
        proc.kill()
        proc.wait()


def test_a_deferred_approval_still_binds_to_the_exact_secret(setup, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    """Stored masked, matched by a keyed hash: the approved command runs once; the same command
    with another token (same masked text) is a new request."""
    running, config, totp = setup
    token = fake_github_token()
    first = running.ssh(agent, "web-01", f"printf '%s\\n' ok {token}")
    assert first.returncode == 75, first.stderr
    request_id = first.stderr.decode().split(" as ", 1)[1].split()[0]
    assert token.encode() not in _stored(config)
    done = cli(config, "approvals", "approve", request_id, "--operator", "alice",
               "--totp", totp.now())  # fmt: skip
    assert done.returncode == 0, done.stderr
    other = running.ssh(agent, "web-01", f"printf '%s\\n' ok {fake_github_token()}")
    assert other.returncode == 75  # same masked text, other secret: not the approved command
    second = running.ssh(agent, "web-01", f"printf '%s\\n' ok {token}")
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith(b"ok\n")
    assert token.encode() not in _stored(config)


def test_pending_approvals_per_identity_are_capped(setup, make_agent) -> None:  # type: ignore[no-untyped-def]
    """Deferred requests pending count too (flooding is flooding); another identity is free."""
    running, _, _ = setup
    flooder = make_agent(key_id="flood-agent")
    held = []
    try:
        for i in range(CAP):
            held.append(start_held(running, flooder, f"az group delete -n rg{i} --yes")[0])
        over = running.ssh(flooder, "web-01", "az group delete -n rg-over --yes")
        assert over.returncode == 77
        line = over.stderr.decode().strip()
        assert line == (
            f"bastion: not held: this identity already has {CAP} pending approval requests "
            f"(limits.max_pending_approvals_per_identity = {CAP}); wait for a decision"
        ), line
        other = make_agent(key_id="quiet-agent")
        held.append(start_held(running, other, "az group delete -n rg-other --yes")[0])
    finally:
        for proc in held:
            proc.kill()
            proc.wait()
