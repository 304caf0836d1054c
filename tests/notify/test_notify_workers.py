"""Notifications with worker processes: a command held in a worker is announced by the
supervisor's notifier, and its resolution (decided on the CLI, another process) follows."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import cast

import orjson
import pyotp
from notify_fakes import Receiver, Threaded, fake_token, write_secret
from support.bastion import target_block, write_config
from support.bastion_process import ServeProcess

from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget

POLICY = """
[policy]
version = 1
default = "review"

[[rules]]
id = "az-group-delete"
action = "review"
reason = "deletes an Azure resource group"
program = ["az"]
subcommand = ["group delete"]
approvers = ["sre"]
timeout = "60s"
"""


def test_held_in_a_worker_announced_and_resolved_by_the_supervisor(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent
) -> None:
    (tmp_path / "policy.toml").write_text(POLICY)
    write_secret(tmp_path / "hook", fake_token("w"))
    receiver = Threaded(Receiver)
    hook = cast(Receiver, receiver.server)
    extra = f"""
[policy]
file = "policy.toml"

[http]
listen = "127.0.0.1:0"

[[notify]]
type = "webhook"
name = "pager"
url = "{hook.url}/hook"
secret_file = "hook"
"""
    config = write_config(tmp_path, ca, target_block(sshd), extra=extra, workers=2)
    served = ServeProcess.start(config)
    try:
        enrolled = served.cli("operators", "add", "alice", "--group", "sre")
        assert enrolled.returncode == 0, enrolled.stderr
        totp = pyotp.parse_uri(enrolled.stdout.splitlines()[0])
        proc = subprocess.Popen(
            [*served.ssh_args(agent), "az group delete -n rg --yes; echo after"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        request_id = line.split(" as ", 1)[1].split()[0]
        holder = served.events("command.decided", decision="review")[-1]["worker"]
        assert holder in (1, 2)

        receiver.call(hook.wait(1, within=20))
        first = orjson.loads(hook.posts[0][0])
        assert (first["event"], first["request_id"]) == ("approval.requested", request_id)
        assert first["command"] == "az group delete -n rg --yes; echo after"

        decided = served.cli(
            "approvals", "approve", request_id, "--operator", "alice", "--totp", totp.now()
        )
        assert decided.returncode == 0, decided.stderr
        out, _ = proc.communicate(timeout=30)
        assert out == b"after\n"
        receiver.call(hook.wait(2, within=30))
        last = orjson.loads(hook.posts[-1][0])
        assert (last["event"], last["request_id"], last["state"]) == (
            "approval.resolved",
            request_id,
            "approved",
        )
        # Announced once: only the supervisor runs notifiers (its log lines carry no worker).
        time.sleep(0.5)
        assert len(hook.posts) == 2
        started = served.events("notify.started")
        assert len(started) == 1 and "worker" not in started[0]
    finally:
        served.stop()
        receiver.close()
