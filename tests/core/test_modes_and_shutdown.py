"""Issue 22, item 14: which approval mode wins, and a shutdown with no sessions is prompt.

- ``[approvals] mode = "defer"`` with the shipped policy defers the shipped holds (the policy
  pins no rule's mode); a rule that sets its own mode keeps it, and check-config says so.
- SIGTERM with no session open: `serve` exits well within the 5 s shutdown grace (it used to
  wait all of it for a worker's supervisor-link reader, which never ends by itself).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.bastion import target_block, write_config
from support.bastion_process import ServeProcess

from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget

POLICY = Path(__file__).resolve().parents[2] / "config" / "policy.toml"


def _config(tmp_path: Path, ca: CertificateAuthority, sshd: SshdTarget, policy: Path,
            workers: int) -> Path:
    extra = (f'[policy]\nfile = "{policy}"\n[http]\nlisten = "127.0.0.1:0"\n'
             '[approvals]\nmode = "defer"\n')
    return write_config(tmp_path, ca, target_block(sshd), extra=extra, workers=workers)


def test_approvals_defer_defers_the_shipped_holds(
    tmp_path: Path, ca: CertificateAuthority, sshd: SshdTarget, agent: Agent
) -> None:
    served = ServeProcess.start(_config(tmp_path, ca, sshd, POLICY, workers=1))
    try:
        done = served.ssh(agent, "az group delete -n rg --yes", timeout=30)
        assert done.returncode == 75, done.stderr
        assert b"then run the same command again" in done.stderr
    finally:
        served.stop()


def test_a_rule_with_its_own_mode_keeps_it_and_check_config_says_so(
    tmp_path: Path, ca: CertificateAuthority, sshd: SshdTarget
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[policy]\nversion = 1\ndefault = "review"\n\n[[rules]]\nid = "az-group-delete"\n'
        'action = "review"\nreason = "deletes an Azure resource group"\nprogram = ["az"]\n'
        'subcommand = ["group delete"]\nmode = "wait"\n'
    )
    (tmp_path / "state").mkdir(mode=0o700)
    config = _config(tmp_path, ca, sshd, policy, workers=1)
    checked = subprocess.run(
        [sys.executable, "-m", "bastion.cli", "check-config", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )
    assert "ok   approvals: mode defer" in checked.stdout, checked.stdout + checked.stderr
    assert "approvals: rule(s) az-group-delete keep their own mode (not defer)" in checked.stdout


@pytest.mark.parametrize("workers", [1, 2])
def test_shutdown_without_sessions_is_prompt(
    tmp_path: Path, ca: CertificateAuthority, sshd: SshdTarget, workers: int
) -> None:
    served = ServeProcess.start(_config(tmp_path, ca, sshd, POLICY, workers=workers))
    began = time.monotonic()
    assert served.stop() == 0
    took = time.monotonic() - began
    assert took < 3.0, served.tail()  # the grace is 5 s; nothing needed it
    for event in served.events("shutdown.done"):
        start = [e for e in served.events("shutdown.begin") if e.get("worker") ==
                 event.get("worker")][-1]
        assert event["ts"] - start["ts"] < 2.0, (event, start)
