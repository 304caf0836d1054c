"""Block Kit for Slack: the request message, its resolved form, and the TOTP modal.

The command goes into a ``rich_text_preformatted`` element, which Slack shows literally (no
mrkdwn, so a command cannot smuggle links, mentions or break out of a code block). Other
untrusted text in mrkdwn has ``& < >`` escaped, which disables links and @-mentions.
"""

from __future__ import annotations

from typing import Any

import orjson

from bastion.approval.model import iso
from bastion.notify.event import NotifyEvent

APPROVE = "bastion_approve"
DENY = "bastion_deny"
OPEN = "bastion_open"
DECIDE_CALLBACK = "bastion_decide"
TOTP_BLOCK, TOTP_ACTION = "totp", "code"
REASON_BLOCK, REASON_ACTION = "reason", "text"
MAX_COMMAND = 2800  # a rich_text element tops out near 3000 characters
Block = dict[str, Any]


def mrkdwn_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:150], "emoji": False}


def _date(ts: float | None) -> str:
    """Slack renders ``<!date^...>`` in each reader's time zone; the ISO text is the fallback."""
    if ts is None:
        return "-"
    return f"<!date^{int(ts)}^{{date_short_pretty}} {{time_secs}}|{iso(ts)}>"


def _command(event: NotifyEvent) -> Block:
    text = event.command
    if len(text) > MAX_COMMAND:
        text = text[:MAX_COMMAND] + " … (truncated; open the approval page)"
    return {
        "type": "rich_text",
        "elements": [
            {"type": "rich_text_preformatted", "elements": [{"type": "text", "text": text}]}
        ],
    }


def fallback_text(event: NotifyEvent) -> str:
    """The notification / screen-reader text of the message."""
    head = "Held for approval" if event.kind == "approval.requested" else event.outcome_line()
    return mrkdwn_escape(
        f"{head}: {event.requester} -> {event.login}@{event.target} "
        f"[{', '.join(event.rules)}] ({event.request_id})"
    )


def message_blocks(event: NotifyEvent) -> list[Block]:
    """The channel message: facts, the command, and buttons while the request is pending."""
    pending = event.kind == "approval.requested"
    title = "Command held for approval" if pending else f"Request {event.state}"
    approvers = mrkdwn_escape(", ".join(event.approvers) or "any operator")
    approvers += f" ({event.approvals_required} needed)"
    link = f"<{event.operator_url or event.approve_url}|Open the approval page>"
    blocks: list[Block] = [
        {"type": "header", "text": _plain(title)},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Requester*\n{mrkdwn_escape(event.requester)}"},
                {
                    "type": "mrkdwn",
                    "text": f"*Target*\n{mrkdwn_escape(f'{event.login}@{event.target}')}",
                },
                {"type": "mrkdwn", "text": f"*Rules*\n{mrkdwn_escape(', '.join(event.rules))}"},
                {"type": "mrkdwn", "text": f"*Expires*\n{_date(event.expires_at)}"},
                {"type": "mrkdwn", "text": f"*Approvers*\n{approvers}"},
            ],
        },
        _command(event),
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": f"Request `{event.request_id}` · {link}"},
            ],
        },
    ]
    if pending:
        blocks.append(
            {
                "type": "actions",
                "block_id": "bastion_decision",
                "elements": [
                    {
                        "type": "button",
                        "action_id": APPROVE,
                        "style": "primary",
                        "text": _plain("Approve"),
                        "value": event.request_id,
                    },
                    {
                        "type": "button",
                        "action_id": DENY,
                        "style": "danger",
                        "text": _plain("Deny"),
                        "value": event.request_id,
                    },
                ],
            }
        )
    else:
        line = f"*{mrkdwn_escape(event.outcome_line())}*"
        if event.decided_at is not None:
            line += f" ({_date(event.decided_at)})"
        if event.reason:
            line += f"\nReason: {mrkdwn_escape(event.reason)}"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": line}})
    return blocks


def totp_modal(event: NotifyEvent, approve: bool, metadata: dict[str, str]) -> Block:
    """Asks the operator for the current code (and an optional reason) before deciding."""
    verb = "Approve" if approve else "Deny"
    where = mrkdwn_escape(f"{event.login}@{event.target}")
    summary = (
        f"*{verb}* request `{event.request_id}` from {mrkdwn_escape(event.requester)} on {where}"
    )
    return {
        "type": "modal",
        "callback_id": DECIDE_CALLBACK,
        "private_metadata": orjson.dumps(metadata).decode(),
        "title": _plain(f"{verb} command"),
        "submit": _plain(verb),
        "close": _plain("Cancel"),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": summary}},
            _command(event),
            {
                "type": "input",
                "block_id": TOTP_BLOCK,
                "label": _plain("TOTP code"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": TOTP_ACTION,
                    "min_length": 6,
                    "max_length": 6,
                    "placeholder": _plain("6 digits from your authenticator"),
                },
            },
            {
                "type": "input",
                "block_id": REASON_BLOCK,
                "optional": True,
                "label": _plain("Reason"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": REASON_ACTION,
                    "max_length": 500,
                },
            },
        ],
    }


def notice_modal(title: str, text: str) -> Block:
    """A read-only modal (a refusal, or the recorded decision)."""
    return {
        "type": "modal",
        "title": _plain(title[:24]),
        "close": _plain("Close"),
        "blocks": [{"type": "section", "text": {"type": "plain_text", "text": text[:2900]}}],
    }
