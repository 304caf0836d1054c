"""Command-aware masking end to end: the exec command's output profile (bastion/masking/
profiles.py) masks shapeless output before the real ssh client sees it."""

from __future__ import annotations

from pathlib import Path

from support.bastion import recorded_runtime, start_bastion, target_block, write_config

from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget


def test_exec_output_is_masked_by_the_command_profile(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent
) -> None:
    """``printenv HOME`` prints one shapeless value: its whole output is secret under its
    profile; ``printenv`` masks every value but keeps the names; the same value printed by
    ``echo`` (no profile) passes."""
    config = write_config(tmp_path, ca, target_block(sshd))
    running = start_bastion(config, recorded_runtime)
    try:
        one = running.ssh(agent, "web-01", "printenv HOME")
        dump = running.ssh(agent, "web-01", "printenv")
        plain = running.ssh(agent, "web-01", "echo $HOME")
    finally:
        running.stop()
    assert plain.returncode == 0, plain.stderr
    home = plain.stdout.strip()
    assert home.startswith(b"/")
    assert one.returncode == 0, one.stderr
    assert one.stdout == b"[MASKED:command-output]\n"
    assert dump.returncode == 0, dump.stderr
    assert b"HOME=[MASKED:command-output]" in dump.stdout
    assert home not in dump.stdout
