"""Line-gated PTY shells end to end: agent (asyncssh) -> bastion -> real sshd running bash."""

from __future__ import annotations

from interactive.ishell import Term, open_term
from support.bastion import RunningBastion

from bastion.testing.certs import Agent


async def test_allowed_command_runs_and_output_is_clean(
    gated_shell: RunningBastion, agent: Agent
) -> None:
    """An allowed line runs on the target; its output arrives without shell-integration markers."""
    term: Term = await open_term(gated_shell, agent)
    out = await term.run("echo hello-$((40+2))")
    assert b"hello-42" in out
    assert b"\x1b]133" not in term.out
    term.conn.close()
