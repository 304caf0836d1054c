"""Exec channels through the bastion with the real OpenSSH client and a real sshd target."""

from __future__ import annotations

import hashlib
import os
import subprocess

from support.bastion import RunningBastion

from bastion.testing.certs import Agent


def test_exec_output_and_exit_status(bastion: RunningBastion, agent: Agent) -> None:
    """A stock ssh client runs a command on the target through the bastion; exit code returns."""
    result = bastion.ssh(agent, "web-01", "echo hi; exit 3")
    assert result.stdout == b"hi\n", result.stderr
    assert result.returncode == 3


def test_login_at_target_addressing(bastion: RunningBastion, agent: Agent, sshd) -> None:
    """``LOGIN@TARGET`` as the SSH user name selects the login on the target."""
    result = bastion.ssh(agent, f"{sshd.login}@web-01", "id -un")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == sshd.login


def test_stdout_and_stderr_stay_apart(bastion: RunningBastion, agent: Agent) -> None:
    """Target stderr reaches the agent's stderr, stdout its stdout, never mixed."""
    result = bastion.ssh(agent, "web-01", "echo to-out; echo to-err >&2; echo more-out")
    assert result.stdout == b"to-out\nmore-out\n"
    assert b"to-err" in result.stderr
    assert b"to-err" not in result.stdout


def test_stdin_is_relayed_and_eof_ends_it(bastion: RunningBastion, agent: Agent) -> None:
    """Agent stdin reaches the target and EOF from the agent lets the command finish."""
    payload = os.urandom(100_000)
    result = bastion.ssh(agent, "web-01", "sha256sum", input=payload)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0].decode() == hashlib.sha256(payload).hexdigest()


def test_large_download_is_intact(bastion: RunningBastion, agent: Agent) -> None:
    """64 MiB from the target arrive byte for byte (flow control and ordering hold)."""
    # The target streams random bytes and reports their digest on stderr once done.
    command = "head -c 67108864 /dev/urandom | tee >(sha256sum >&2)"
    proc = subprocess.run(
        [*bastion.ssh_args(agent, "web-01"), command], capture_output=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-500:]
    assert len(proc.stdout) == 64 * 1024 * 1024
    assert hashlib.sha256(proc.stdout).hexdigest().encode() in proc.stderr


def test_large_upload_is_intact(bastion: RunningBastion, agent: Agent) -> None:
    """64 MiB sent by the agent reach the target byte for byte."""
    payload = os.urandom(64 * 1024 * 1024)
    result = bastion.ssh(agent, "web-01", "sha256sum", input=payload, timeout=120)
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout.split()[0].decode() == hashlib.sha256(payload).hexdigest()


def test_exit_status_of_killed_command_is_reported(bastion: RunningBastion, agent: Agent) -> None:
    """A command killed by a signal on the target makes the ssh client fail, not succeed."""
    result = bastion.ssh(agent, "web-01", "kill -TERM $$")
    assert result.returncode != 0
