"""Held commands through the bastion, end to end: the real ssh client waits while an operator
approves or denies with a TOTP code on the CLI (a separate process), or the request expires."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from support.bastion import RunningBastion, start_bastion, target_block, write_config

from bastion.app import build_runtime
from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget

# A small policy whose review rules exercise every approval path.
TEST_POLICY = """
[policy]
version = 1
default = "review"

[[rules]]
id = "everyday"
action = "allow"
reason = "harmless"
program = ["echo", "true", "cat", "touch"]

[[rules]]
id = "az-group-delete"
action = "review"
reason = "deletes an Azure resource group"
program = ["az"]
subcommand = ["group delete"]
approvers = ["sre"]
timeout = "60s"

[[rules]]
id = "quick-expiry"
action = "review"
reason = "expires quickly"
program = ["sleep"]
timeout = "2s"

[[rules]]
id = "deferred"
action = "review"
reason = "defer mode"
program = ["rm"]
mode = "defer"

[[rules]]
id = "four-eyes"
action = "review"
reason = "needs two approvers"
program = ["shutdown"]
approvals = 2
"""


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


class Operators:
    """Operators enrolled with the real CLI; codes come from their printed otpauth URIs."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.totp: dict[str, pyotp.TOTP] = {}
        self._count = 0

    def fresh(self, group: str = "sre") -> str:
        """A newly enrolled operator: a code is single-use per operator per 30 s step, so each
        decision in these tests comes from someone who has not decided yet."""
        self._count += 1
        name = f"op{self._count}"
        self.add(name, "--group", group)
        return name

    def add(self, name: str, *extra: str) -> None:
        out = cli(self.config, "operators", "add", name, *extra)
        assert out.returncode == 0, out.stderr
        self.totp[name] = pyotp.parse_uri(out.stdout.splitlines()[0])

    def code(self, name: str, *, previous: bool = False) -> str:
        totp = self.totp[name]
        return totp.at(time.time() - 30) if previous else totp.now()

    def decide(self, verb: str, request_id: str, name: str, code: str | None = None):  # type: ignore[no-untyped-def]
        return cli(
            self.config, "approvals", verb, request_id,
            "--operator", name, "--totp", code or self.code(name),
        )  # fmt: skip


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, sshd: SshdTarget, ca: CertificateAuthority
) -> Iterator[tuple[RunningBastion, Operators, Path]]:
    directory = tmp_path_factory.mktemp("approvals")
    (directory / "policy.toml").write_text(TEST_POLICY)
    config = write_config(
        directory, ca, target_block(sshd), extra='[policy]\nfile = "policy.toml"\n'
    )
    operators = Operators(config)
    operators.add("mallory", "--group", "sre", "--identity", "ci-agent-1")
    running = start_bastion(config, build_runtime)
    yield running, operators, config
    running.stop()


def start_held(
    running: RunningBastion, agent: Agent, command: str
) -> tuple[subprocess.Popen[bytes], str]:
    """Start a command that will be held; return the process and the request id it was given."""
    proc = subprocess.Popen(
        [*running.ssh_args(agent, "web-01"), command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    assert line.startswith("bastion: held for review as "), line
    return proc, line.split(" as ", 1)[1].split()[0]


def test_held_command_runs_after_cli_approval(setup, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    """`az group delete` waits with its request id; after an sre approves with TOTP it runs."""
    running, ops, _ = setup
    proc, request_id = start_held(running, agent, "az group delete -n rg --yes; echo after")
    time.sleep(0.5)
    assert proc.poll() is None  # still waiting
    done = ops.decide("approve", request_id, ops.fresh())
    assert done.returncode == 0, done.stderr
    out, _ = proc.communicate(timeout=20)
    assert b"after\n" in out  # the exact held command ran (az is absent on the target)
    assert proc.returncode == 0


def test_denied_command_never_runs(setup, agent: Agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A denial ends the wait with one line and exit 77."""
    running, ops, _ = setup
    proc, request_id = start_held(running, agent, "az group delete -n rg --yes")
    bob = ops.fresh()
    assert ops.decide("deny", request_id, bob).returncode == 0
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 77
    assert f"request {request_id} was denied by {bob}".encode() in err


def test_request_expires(setup, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    """A request nobody decides expires at its rule's timeout: exit 78."""
    running, _, _ = setup
    proc, _ = start_held(running, agent, "sleep 1")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 78
    assert b"expired without a decision" in err


def test_self_wrong_and_reused_totp_and_group_are_refused(setup, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    """Self-approval, a wrong code, a reused code and an operator outside the group are refused."""
    running, ops, _ = setup
    proc, request_id = start_held(running, agent, "az group delete -n other --yes")
    try:
        selfish = ops.decide("approve", request_id, "mallory")
        assert selfish.returncode != 0 and "linked to the requester" in selfish.stderr
        wrong = ops.decide("approve", request_id, ops.fresh(), "000000")
        assert wrong.returncode != 0 and "code" in wrong.stderr.lower()
        outsider = ops.decide("approve", request_id, ops.fresh("dba"))
        assert outsider.returncode != 0
        bob = ops.fresh()
        code = ops.code(bob)
        assert ops.decide("deny", request_id, bob, code).returncode == 0
        proc.communicate(timeout=20)
        assert proc.returncode == 77
    finally:
        proc.kill()
    proc2, request2 = start_held(running, agent, "az group delete -n third --yes")
    try:
        reused = ops.decide("approve", request2, bob, code)
        assert reused.returncode != 0 and "already used" in reused.stderr
        assert ops.decide("deny", request2, ops.fresh()).returncode == 0
        proc2.communicate(timeout=20)
    finally:
        proc2.kill()


def test_two_approvals_needed(setup, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    """A four-eyes rule runs only after two distinct operators approve."""
    running, ops, _ = setup
    proc, request_id = start_held(running, agent, "shutdown --help; echo ran-after-two")
    alice = ops.fresh()
    assert ops.decide("approve", request_id, alice).returncode == 0
    time.sleep(1.0)
    assert proc.poll() is None  # one approval is not enough
    again = ops.decide("approve", request_id, alice, ops.code(alice, previous=False))
    assert again.returncode != 0  # the same person twice is not four eyes
    assert ops.decide("approve", request_id, ops.fresh()).returncode == 0
    out, _ = proc.communicate(timeout=20)
    assert b"ran-after-two" in out


def test_defer_mode_then_rerun(setup, agent: Agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Defer mode returns at once with exit 75; once approved, the same command runs once."""
    running, ops, _ = setup
    first = running.ssh(agent, "web-01", "rm -f /tmp/bastion-defer-test-nothing")
    assert first.returncode == 75
    request_id = first.stderr.decode().split(" as ", 1)[1].split()[0]
    assert ops.decide("approve", request_id, ops.fresh()).returncode == 0
    second = running.ssh(agent, "web-01", "rm -f /tmp/bastion-defer-test-nothing")
    assert second.returncode == 0, second.stderr
    third = running.ssh(agent, "web-01", "rm -f /tmp/bastion-defer-test-nothing")
    assert third.returncode == 75  # single use: a new request


def test_pending_request_is_abandoned_when_the_agent_leaves(setup, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    """If the waiting agent disconnects, its request becomes abandoned and cannot be approved."""
    running, ops, config = setup
    proc, request_id = start_held(running, agent, "az group delete -n gone --yes")
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    state = ""
    while time.monotonic() < deadline and state != "abandoned":
        shown = cli(config, "approvals", "show", request_id, "--json")
        state = (
            shown.stdout.split('"state"', 1)[1].split('"')[1] if '"state"' in shown.stdout else ""
        )
        time.sleep(0.2)
    assert state == "abandoned"
    assert ops.decide("approve", request_id, ops.fresh()).returncode != 0
