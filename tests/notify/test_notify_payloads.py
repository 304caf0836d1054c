"""What each notifier sends, as received by local servers: webhook JSON + signature, the Teams
Adaptive Card, Slack's Block Kit message and its update; secrets masked in all of them."""

from __future__ import annotations

import secrets
import string
import time
from pathlib import Path
from typing import Any

import orjson
from notify_fakes import BrokerEnv, FakeSlack, Receiver, fake_token, write_secret

from bastion.notify import NotifierHub, make_notifier, parse_notify_config
from bastion.notify.webhook import verify


def _github_token() -> str:
    alphabet = string.ascii_letters + string.digits
    return "ghp_" + "".join(secrets.choice(alphabet) for _ in range(36))


def hub_for(tmp_path: Path, blocks: list[dict[str, Any]]) -> NotifierHub:
    specs = parse_notify_config({"notify": blocks}, tmp_path)
    return NotifierHub([make_notifier(s) for s in specs], backoff=0.05, sweep_interval=0.1)


async def test_webhook_posts_signed_json_for_request_and_outcome(
    tmp_path: Path, env: BrokerEnv, receiver: Receiver
) -> None:
    """The webhook gets the documented v1 JSON, signed over "<ts>.<body>", for both events."""
    secret = fake_token("whs")
    write_secret(tmp_path / "hook", secret)
    hub = hub_for(tmp_path, [{"type": "webhook", "url": receiver.url + "/hook",
                              "secret_file": "hook"}])  # fmt: skip
    await hub.start(env.broker)
    try:
        await env.enrol("alice", groups=["sre"])
        request = await env.submit()
        await receiver.wait(1)
        await env.broker.decide(request.id, operator="alice", totp=env.code("alice"), approve=True)
        await receiver.wait(2)
    finally:
        await hub.stop()
    for body, headers in receiver.posts:
        assert headers["X-Bastion-Signature"].startswith("sha256=")
        assert verify(secret, headers["X-Bastion-Timestamp"], body,
                      headers["X-Bastion-Signature"], time.time())  # fmt: skip
        assert not verify("wrong" + secret, headers["X-Bastion-Timestamp"], body,
                          headers["X-Bastion-Signature"], time.time())  # fmt: skip
    first = orjson.loads(receiver.posts[0][0])
    assert {k: first[k] for k in ("version", "event", "request_id", "target", "login",
                                   "requester", "command", "rules", "state")} == {
        "version": 1, "event": "approval.requested", "request_id": request.id,
        "target": "web-01", "login": "azureuser", "requester": "ci-agent-1",
        "command": "az group delete -n rg-test --yes", "rules": ["az-destructive"],
        "state": "pending",
    }  # fmt: skip
    assert first["approve_url"] == f"https://bastion.test/approvals/{request.id}"  # status link
    assert first["operator_url"] == request.operator_url  # the signed link that can decide
    assert first["operator_url"].startswith(first["approve_url"] + "?op=")
    assert first["expires_at"].endswith("Z")
    second = orjson.loads(receiver.posts[1][0])
    assert (second["event"], second["state"], second["decided_by"]) == (
        "approval.resolved", "approved", ["alice"]
    )  # fmt: skip


async def test_commands_are_masked_and_escaped_everywhere(
    tmp_path: Path, env: BrokerEnv, receiver: Receiver, slack: FakeSlack
) -> None:
    """A token typed in the command never leaves the bastion; a bidi override is shown escaped."""
    token = _github_token()
    write_secret(tmp_path / "hook", fake_token("whs"))
    write_secret(tmp_path / "teams", receiver.url + "/hook")
    write_secret(tmp_path / "bot", fake_token("xoxb-"))
    write_secret(tmp_path / "sig", fake_token("s"))
    hub = hub_for(tmp_path, [
        {"type": "webhook", "url": receiver.url + "/hook", "secret_file": "hook"},
        {"type": "teams", "webhook_url_file": "teams"},
        {"type": "slack", "channel": "C0NOTIFY", "bot_token_file": "bot",
         "signing_secret_file": "sig", "api_url": slack.api_url},
    ])  # fmt: skip
    await hub.start(env.broker)
    try:
        await env.submit(command=f"curl -H 'Authorization: token {token}' x\u202ey")
        await receiver.wait(2)
        await slack.wait_for("chat.postMessage")
    finally:
        await hub.stop()
    sent = [body for body, _ in receiver.posts] + [orjson.dumps(c.body) for c in slack.calls]
    for body in sent:
        assert token.encode() not in body
        assert b"[MASKED:github-token]" in body
        assert b"\\\\u202e" in body  # the JSON of the visible escape "\u202e"
        assert "\u202e".encode() not in body


async def test_teams_gets_an_adaptive_card_with_the_facts_and_a_link(
    tmp_path: Path, env: BrokerEnv, receiver: Receiver
) -> None:
    """Teams receives a message with one Adaptive Card: facts, command and "Open approval"."""
    write_secret(tmp_path / "teams", receiver.url + "/hook")
    hub = hub_for(tmp_path, [{"type": "teams", "webhook_url_file": "teams"}])
    await hub.start(env.broker)
    try:
        request = await env.submit()
        await receiver.wait(1)
    finally:
        await hub.stop()
    message = orjson.loads(receiver.posts[0][0])
    assert message["type"] == "message"
    (attachment,) = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    # the operators' signed link, not the agent's status link
    assert request.operator_url.startswith(f"https://bastion.test/approvals/{request.id}?op=")
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open approval",
                                "url": request.operator_url}]  # fmt: skip
    texts = ["".join(i["text"] for i in b["inlines"]) for b in card["body"]
             if b["type"] == "RichTextBlock"]  # fmt: skip
    assert f"Request: {request.id}" in texts
    assert "Requester: ci-agent-1" in texts
    assert "Target: azureuser@web-01" in texts
    assert "Rules: az-destructive" in texts
    assert "az group delete -n rg-test --yes" in texts
    # untrusted text only in TextRuns, which Teams never renders as markdown
    assert all(i["type"] == "TextRun" for b in card["body"] if b["type"] == "RichTextBlock"
               for i in b["inlines"])  # fmt: skip


async def test_slack_message_blocks_then_update_with_outcome(
    tmp_path: Path, env: BrokerEnv, slack: FakeSlack
) -> None:
    """chat.postMessage carries the Block Kit request with buttons; the outcome is a chat.update
    of that same message saying who decided and when, without buttons."""
    bot = fake_token("xoxb-")
    write_secret(tmp_path / "bot", bot)
    write_secret(tmp_path / "sig", fake_token("s"))
    hub = hub_for(tmp_path, [{"type": "slack", "channel": "C0NOTIFY", "bot_token_file": "bot",
                              "signing_secret_file": "sig", "api_url": slack.api_url}])  # fmt: skip
    await hub.start(env.broker)
    try:
        await env.enrol("alice", groups=["sre"])
        request = await env.submit()
        (post,) = await slack.wait_for("chat.postMessage")
        await env.broker.decide(request.id, operator="alice", totp=env.code("alice"),
                                approve=False, reason="wrong RG")  # fmt: skip
        (update,) = await slack.wait_for("chat.update")
    finally:
        await hub.stop()
    assert post.headers["Authorization"] == f"Bearer {bot}"
    assert post.body["channel"] == "C0NOTIFY"
    blocks = post.body["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section", "rich_text", "context", "actions"]
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert fields[:3] == ["*Requester*\nci-agent-1", "*Target*\nazureuser@web-01",
                          "*Rules*\naz-destructive"]  # fmt: skip
    assert fields[3].startswith("*Expires*\n<!date^")
    assert f"<{request.operator_url}|Open the approval page>" in str(blocks)  # operators' link
    pre = blocks[2]["elements"][0]
    assert pre["type"] == "rich_text_preformatted"
    assert pre["elements"][0]["text"] == "az group delete -n rg-test --yes"
    buttons = blocks[4]["elements"]
    assert [(b["action_id"], b["value"], b["style"]) for b in buttons] == [
        ("bastion_approve", request.id, "primary"), ("bastion_deny", request.id, "danger")
    ]  # fmt: skip
    assert (update.body["channel"], update.body["ts"]) == ("C0NOTIFY", "1700000000.000001")
    kinds = [b["type"] for b in update.body["blocks"]]
    assert "actions" not in kinds
    outcome = update.body["blocks"][-1]["text"]["text"]
    assert outcome.startswith("*Denied by alice at ") and "Reason: wrong RG" in outcome
    assert update.body["blocks"][0]["text"]["text"] == "Request denied"


async def test_untrusted_text_cannot_mention_or_link_in_slack(
    tmp_path: Path, env: BrokerEnv, slack: FakeSlack
) -> None:
    """A requester or reason containing <!channel> or a link is escaped in mrkdwn."""
    write_secret(tmp_path / "bot", fake_token("xoxb-"))
    write_secret(tmp_path / "sig", fake_token("s"))
    hub = hub_for(tmp_path, [{"type": "slack", "channel": "C0NOTIFY", "bot_token_file": "bot",
                              "signing_secret_file": "sig", "api_url": slack.api_url}])  # fmt: skip
    await hub.start(env.broker)
    try:
        await env.submit(requester_key_id="<!channel> <https://evil.example|click>")
        (post,) = await slack.wait_for("chat.postMessage")
    finally:
        await hub.stop()
    text = orjson.dumps(post.body).decode()
    assert "<!channel>" not in text and "<https://evil" not in text
    assert "&lt;!channel&gt;" in text
