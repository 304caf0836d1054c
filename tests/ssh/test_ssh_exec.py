"""Exec channels through the bastion with the real OpenSSH client and a real sshd target."""

from __future__ import annotations

from support.bastion import RunningBastion
from support.certs import Agent


def test_exec_output_and_exit_status(bastion: RunningBastion, agent: Agent) -> None:
    """A stock ssh client runs a command on the target through the bastion and gets its exit code."""
    result = bastion.ssh(agent, "web-01", "echo hi; exit 3")
    assert result.stdout == b"hi\n", result.stderr
    assert result.returncode == 3
