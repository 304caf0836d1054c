"""End to end through the bastion: a held `ssh` command is posted to (fake) Slack, approved by a
button press and a TOTP code in the modal over Socket Mode, runs, and the message is updated; a
hanging webhook alongside never delays a CLI approval and its failure is shown by the CLI."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import orjson
import pyotp
import pytest
from notify_fakes import FakeSlack, Receiver, Threaded, button, fake_token, submission, write_secret
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
approvers = ["sre"]
timeout = "60s"
"""


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli", *args, "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, sshd: SshdTarget, ca: CertificateAuthority
) -> Iterator[tuple[RunningBastion, Threaded, Path, dict[str, pyotp.TOTP]]]:
    directory = tmp_path_factory.mktemp("notify-e2e")
    (directory / "policy.toml").write_text(POLICY)
    fake = Threaded(FakeSlack)
    hanging = Threaded(lambda: Receiver(hang=True))
    for name, prefix in (("bot", "xoxb-"), ("app", "xapp-"), ("sig", "s"), ("hook", "w")):
        write_secret(directory / name, fake_token(prefix))
    notify = f"""
[http]
listen = "127.0.0.1:0"

[[notify]]
type = "slack"
channel = "C0NOTIFY"
bot_token_file = "bot"
app_token_file = "app"
signing_secret_file = "sig"
api_url = "{cast(FakeSlack, fake.server).api_url}"

[[notify]]
type = "webhook"
name = "pager"
url = "{hanging.server.url}/hook"
secret_file = "hook"
timeout = "10s"
retries = 0
"""
    config = write_config(
        directory, ca, target_block(sshd), extra='[policy]\nfile = "policy.toml"\n' + notify
    )
    totp: dict[str, pyotp.TOTP] = {}
    for name in ("alice", "bob"):
        out = cli(config, "operators", "add", name, "--group", "sre", "--slack-id", f"U0{name}")
        assert out.returncode == 0, out.stderr
        totp[name] = pyotp.parse_uri(out.stdout.splitlines()[0])
    running = start_bastion(config, build_runtime)  # wires the notifier hub
    yield running, fake, config, totp
    running.stop()
    hanging.close()
    fake.close()


def start_held(running: RunningBastion, agent: Agent, command: str) -> tuple[Any, str]:
    proc = subprocess.Popen(
        [*running.ssh_args(agent, "web-01"), command],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    assert line.startswith("bastion: held for review as "), line
    return proc, line.split(" as ", 1)[1].split()[0]


def test_approve_from_slack_runs_the_command_and_updates_the_message(setup, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    """Message posted -> Approve pressed -> TOTP in the modal -> command runs -> chat.update."""
    running, fake, _, totp = setup
    slack = cast(FakeSlack, fake.server)
    fake.call(slack.ws_connected.wait())  # Socket Mode connected (hello sent)
    proc, request_id = start_held(running, agent, "az group delete -n rg --yes; echo after")
    posts = fake.call(slack.wait_for("chat.postMessage", 1))
    assert posts[0].body["blocks"][-1]["elements"][0]["value"] == request_id
    ack = fake.call(slack.interact(button(request_id, "U0alice")))
    assert "payload" not in ack or not ack["payload"]
    (opened,) = fake.call(slack.wait_for("views.open", 1))
    view = opened.body["view"]
    assert view["callback_id"] == "bastion_decide"
    ack = fake.call(slack.interact(submission(view, "U0alice", totp["alice"].now())))
    assert ack["payload"]["response_action"] == "update"
    out, _ = proc.communicate(timeout=20)
    assert b"after\n" in out and proc.returncode == 0
    updates = fake.call(slack.wait_for("chat.update", 1))
    assert (updates[0].body["channel"], updates[0].body["ts"]) == ("C0NOTIFY", "1700000000.000001")
    outcome = updates[0].body["blocks"][-1]["text"]["text"]
    assert outcome.startswith("*Approved by alice at ")


def test_cli_approval_is_not_delayed_by_a_hanging_webhook(setup, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    """The pager webhook hangs (10 s timeout), yet a CLI approval releases the command at once;
    Slack is updated from the other process's decision; the failure shows in approvals show."""
    running, fake, config, totp = setup
    slack = cast(FakeSlack, fake.server)
    before = len(slack.of("chat.update"))
    proc, request_id = start_held(running, agent, "az group delete -n other --yes; echo done")
    done = cli(config, "approvals", "approve", request_id, "--operator", "bob",
               "--totp", totp["bob"].now())  # fmt: skip
    assert done.returncode == 0, done.stderr
    decided = time.monotonic()
    out, _ = proc.communicate(timeout=20)
    assert b"done\n" in out
    assert time.monotonic() - decided < 5.0  # well under the hanging webhook's 10 s
    updates = fake.call(slack.wait_for("chat.update", before + 1))
    assert updates[-1].body["blocks"][-1]["text"]["text"].startswith("*Approved by bob at ")
    deadline = time.monotonic() + 30
    notes: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        shown = cli(config, "approvals", "show", request_id, "--json")
        notes = orjson.loads(shown.stdout)["notifications"]
        if any(n["notifier"] == "pager" and n["state"] == "failed" for n in notes):
            break
        time.sleep(0.5)
    failed = [n for n in notes if n["notifier"] == "pager" and n["state"] == "failed"]
    assert failed and failed[0]["error"] == "no answer within 10s"
    assert any(n["notifier"] == "slack-0" and n["state"] == "delivered" for n in notes)
