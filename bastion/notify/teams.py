"""Microsoft Teams: an Adaptive Card posted to a Workflows / incoming-webhook URL.

Teams cannot call back into the bastion, so the card links to the approval page ("Open
approval"); the outcome is posted as a second card. Untrusted text (command, requester, reason)
goes into ``TextRun`` inlines, which Teams never renders as markdown (no smuggled links).
"""

from __future__ import annotations

from typing import Any

import orjson

from bastion.approval.model import iso
from bastion.notify.config import NotifySpec, Scope
from bastion.notify.event import NotifyEvent
from bastion.notify.http_post import JsonPoster

CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_VERSION = "1.4"
MAX_COMMAND = 4000


def _run(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextRun", "text": text, **style}


def _fact(label: str, value: str) -> dict[str, Any]:
    return {
        "type": "RichTextBlock",
        "inlines": [_run(f"{label}: ", weight="Bolder"), _run(value)],
    }


def adaptive_card(event: NotifyEvent) -> dict[str, Any]:
    """The card (``content``) for one event."""
    command = event.command
    if len(command) > MAX_COMMAND:
        command = command[:MAX_COMMAND] + " … (truncated; open the approval page)"
    if event.kind == "approval.requested":
        title, colour = "Command held for approval", "Warning"
    else:
        title = f"Request {event.state}"
        colour = "Good" if event.state == "approved" else "Attention"
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Large",
         "color": colour, "wrap": True},
        _fact("Request", event.request_id),
        _fact("Requester", event.requester),
        _fact("Target", f"{event.login}@{event.target}"),
        _fact("Rules", ", ".join(event.rules)),
        _fact("Expires", iso(event.expires_at) or ""),
        {"type": "RichTextBlock",
         "inlines": [_run(command, fontType="Monospace")]},
    ]  # fmt: skip
    if event.kind == "approval.resolved":
        outcome = event.outcome_line() + (f" ({event.reason})" if event.reason else "")
        body.append({"type": "RichTextBlock", "inlines": [_run(outcome, weight="Bolder")]})
    return {
        "$schema": CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": body,
        "actions": [
            {
                "type": "Action.OpenUrl",
                "title": "Open approval",
                "url": event.operator_url or event.approve_url,
            }
        ],
    }


def teams_message(event: NotifyEvent) -> dict[str, Any]:
    """The POST body Workflows and incoming webhooks accept: a message with one card."""
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": adaptive_card(event),
            }
        ],
    }


class TeamsNotifier:
    def __init__(self, spec: NotifySpec) -> None:
        self.name = spec.name
        self.scope: Scope = spec.scope
        self.timeout = spec.timeout
        self.retries = spec.retries
        self._url = spec.secrets["webhook_url"]  # the URL is the credential
        self._poster = JsonPoster(spec.timeout)

    async def deliver(self, event: NotifyEvent) -> None:
        await self._poster.post(self._url, orjson.dumps(teams_message(event)), {}, "teams webhook")

    async def close(self) -> None:
        await self._poster.close()
