"""Ctrl-C on a held shell line, seen from Slack: the request's message is updated to abandoned,
and an operator pressing Approve afterwards is refused (no TOTP modal, an audited refusal)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import cast

import pyotp
from interactive.gated import start_line_gated
from interactive.ishell import PROMPT, open_term

from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "notify"))
from notify_fakes import FakeSlack, Threaded, button, fake_token, write_secret


async def test_ctrl_c_abandons_and_slack_shows_it_and_refuses_approval(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent, trace_dir: Path
) -> None:
    fake = Threaded(FakeSlack)
    slack = cast(FakeSlack, fake.server)
    for name, prefix in (("bot", "xoxb-"), ("app", "xapp-"), ("sig", "s")):
        write_secret(tmp_path / name, fake_token(prefix))
    extra = (
        '[http]\nlisten = "127.0.0.1:0"\n[[notify]]\ntype = "slack"\nchannel = "C0NOTIFY"\n'
        'bot_token_file = "bot"\napp_token_file = "app"\nsigning_secret_file = "sig"\n'
        f'api_url = "{slack.api_url}"\n'
    )
    running = await asyncio.to_thread(start_line_gated, tmp_path, sshd, ca, extra)
    try:
        out = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "bastion.cli", "operators", "add", "alice", "--group", "sre",
             "--slack-id", "U0alice", "--config", str(running.config.path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        pyotp.parse_uri(out.stdout.splitlines()[0])
        await asyncio.to_thread(fake.call, slack.ws_connected.wait())
        term = await open_term(running, agent)
        mark = term.type(f"az group delete -n rg --yes; touch {trace_dir}/held\r".encode())
        line = re.compile(rb"held for review as (\S+) ")
        found = line.search(await term.read_until(line, start=mark))
        assert found is not None
        request_id = found.group(1).decode()
        posts = await asyncio.to_thread(fake.call, slack.wait_for("chat.postMessage", 1))
        assert posts[0].body["blocks"][-1]["elements"][0]["value"] == request_id
        mark = term.type(b"\x03")
        await term.read_until(PROMPT, start=mark)
        updates = await asyncio.to_thread(fake.call, slack.wait_for("chat.update", 1))
        assert updates[0].body["blocks"][-1]["text"]["text"].startswith("*Abandoned at ")
        await asyncio.to_thread(fake.call, slack.interact(button(request_id, "U0alice")))
        (opened,) = await asyncio.to_thread(fake.call, slack.wait_for("views.open", 1))
        text = str(opened.body["view"])
        assert f"request {request_id} is already abandoned" in text
        assert "totp" not in text.lower()  # no code is asked for
        term.conn.close()
        assert not (trace_dir / "held").exists()
    finally:
        await asyncio.to_thread(running.stop)
        fake.close()
