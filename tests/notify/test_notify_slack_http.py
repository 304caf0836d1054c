"""Slack's HTTP interactivity endpoint: signed callbacks only, and every refusal answered and
audited (bad signature, stale timestamp, unknown Slack user, outsider, wrong TOTP)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from notify_fakes import (
    BrokerEnv,
    FakeSlack,
    button,
    fake_token,
    form_body,
    slack_sign,
    submission,
    write_secret,
)

from bastion.notify import NotifierHub, add_routes, make_notifier, parse_notify_config


@dataclass
class Endpoint:
    url: str
    secret: str
    slack: FakeSlack
    env: BrokerEnv

    async def post(
        self, payload: dict[str, Any], *, secret: str | None = None, age: float = 0.0
    ) -> tuple[int, bytes]:
        body = form_body(payload)
        ts = str(int(time.time() - age))
        headers = {
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": slack_sign(secret or self.secret, ts, body),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        async with aiohttp.ClientSession() as s, s.post(self.url, data=body, headers=headers) as r:
            return r.status, await r.read()


@pytest.fixture
async def endpoint(tmp_path: Path, env: BrokerEnv, slack: FakeSlack) -> AsyncIterator[Endpoint]:
    """The bastion's HTTP app with the Slack route, a hub bound to the broker, fake Slack API."""
    secret = fake_token("sig")
    write_secret(tmp_path / "bot", fake_token("xoxb-"))
    write_secret(tmp_path / "sig", secret)
    specs = parse_notify_config(
        {"notify": [{"type": "slack", "channel": "C0NOTIFY", "bot_token_file": "bot",
                     "signing_secret_file": "sig", "api_url": slack.api_url}]},
        tmp_path,
    )  # fmt: skip
    hub = NotifierHub([make_notifier(s) for s in specs], sweep_interval=0.1)
    app = web.Application()
    add_routes(app, hub)
    await hub.start(env.broker)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await env.enrol("alice", groups=["sre"], slack_id="U0ALICE")
    await env.enrol("dave", groups=["dba"], slack_id="U0DAVE")
    yield Endpoint(f"http://127.0.0.1:{port}/integrations/slack/interactions", secret, slack, env)
    await hub.stop()
    await runner.cleanup()


async def _refusals(env: BrokerEnv) -> list[dict[str, Any]]:
    return [f for f in await env.audit_fields() if f["event"] == "refused"]


async def test_button_then_totp_modal_approves(endpoint: Endpoint) -> None:
    """Approve opens the TOTP modal; submitting the right code approves via Slack."""
    env = endpoint.env
    request = await env.submit()
    status, body = await endpoint.post(button(request.id, "U0ALICE"))
    assert (status, body) == (200, b"")
    (opened,) = await endpoint.slack.wait_for("views.open")
    view = opened.body["view"]
    assert view["callback_id"] == "bastion_decide"
    assert [b.get("block_id") for b in view["blocks"] if b["type"] == "input"] == [
        "totp", "reason"
    ]  # fmt: skip
    status, body = await endpoint.post(submission(view, "U0ALICE", env.code("alice"), "ok"))
    assert status == 200
    answer = orjson.loads(body)
    assert answer["response_action"] == "update"
    assert "approved by alice" in answer["view"]["blocks"][0]["text"]["text"]
    decided = await env.broker.get(request.id)
    assert decided is not None and decided.state == "approved"
    assert [(d.operator, d.via) for d in decided.decisions] == [("alice", "slack")]


async def test_bad_signature_is_refused_and_audited(endpoint: Endpoint) -> None:
    """A callback signed with another secret gets 401, changes nothing, and is audited."""
    request = await endpoint.env.submit()
    status, body = await endpoint.post(button(request.id, "U0ALICE"), secret=fake_token("x"))
    assert status == 401 and b"bad signature" in body
    assert endpoint.slack.of("views.open") == []
    rows = await endpoint.env.audit_fields("notify")
    assert rows[-1]["event"] == "slack_refused" and rows[-1]["reason"] == "bad signature"


async def test_stale_timestamp_is_refused_and_audited(endpoint: Endpoint) -> None:
    """A correctly signed callback more than 5 minutes old (a replay) gets 401."""
    request = await endpoint.env.submit()
    status, body = await endpoint.post(button(request.id, "U0ALICE"), age=301)
    assert status == 401 and b"stale timestamp" in body
    rows = await endpoint.env.audit_fields("notify")
    assert rows[-1]["reason"].startswith("stale timestamp")


async def test_unknown_slack_user_is_refused_and_audited(endpoint: Endpoint) -> None:
    """A Slack user linked to no operator gets a "cannot decide" modal; the refusal is audited."""
    request = await endpoint.env.submit()
    status, _ = await endpoint.post(button(request.id, "U0STRANGER"))
    assert status == 200
    (opened,) = await endpoint.slack.wait_for("views.open")
    assert opened.body["view"]["title"]["text"] == "Cannot decide"
    assert "not linked to an enrolled operator" in opened.body["view"]["blocks"][0]["text"]["text"]
    (row,) = await _refusals(endpoint.env)
    assert (row["operator"], row["via"], row["request"]) == (
        "slack:U0STRANGER",
        "slack",
        request.id,
    )


async def test_operator_outside_the_approver_group_is_refused(endpoint: Endpoint) -> None:
    """dave (group dba) cannot decide a request for sre: refused modal and audit row."""
    request = await endpoint.env.submit(approvers=("sre",))
    await endpoint.post(button(request.id, "U0DAVE"))
    (opened,) = await endpoint.slack.wait_for("views.open")
    assert "not in an approver group" in opened.body["view"]["blocks"][0]["text"]["text"]
    (row,) = await _refusals(endpoint.env)
    assert row["operator"] == "dave"
    still = await endpoint.env.broker.get(request.id)
    assert still is not None and still.state == "pending"


async def test_wrong_totp_keeps_the_modal_open_with_an_error(endpoint: Endpoint) -> None:
    """A wrong code answers with a field error (modal stays open); the broker audits it."""
    env = endpoint.env
    request = await env.submit()
    await endpoint.post(button(request.id, "U0ALICE"))
    (opened,) = await endpoint.slack.wait_for("views.open")
    wrong = "000000" if env.code("alice") != "000000" else "111111"
    status, body = await endpoint.post(submission(opened.body["view"], "U0ALICE", wrong))
    assert status == 200
    assert orjson.loads(body) == {
        "response_action": "errors", "errors": {"totp": "unknown operator or wrong TOTP code"}
    }  # fmt: skip
    (row,) = await _refusals(env)
    assert (row["operator"], row["via"], row["reason"]) == (
        "alice", "slack", "unknown operator or wrong TOTP code"
    )  # fmt: skip
    still = await env.broker.get(request.id)
    assert still is not None and still.state == "pending"


async def test_unknown_user_submitting_a_modal_is_refused(endpoint: Endpoint) -> None:
    """A modal submitted by a Slack user who maps to no operator records no decision."""
    env = endpoint.env
    request = await env.submit()
    await endpoint.post(button(request.id, "U0ALICE"))
    (opened,) = await endpoint.slack.wait_for("views.open")
    status, body = await endpoint.post(submission(opened.body["view"], "U0OTHER", "123456"))
    assert status == 200 and orjson.loads(body)["response_action"] == "errors"
    assert [r["operator"] for r in await _refusals(env)] == ["slack:U0OTHER"]
