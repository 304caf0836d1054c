"""``POST /integrations/slack/interactions``: Slack's HTTP interactivity, signature first.

Slack signs each request: ``X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:<ts>:<body>">`` under
the app's signing secret, with ``X-Slack-Request-Timestamp``. A request whose timestamp is more
than 5 minutes off (replay) or whose signature does not match (constant-time compare) gets 401
and an audit row (``kind="notify"``, ``event="slack_refused"``); nothing in its body is read.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from urllib.parse import parse_qs

import orjson
from aiohttp import web

from bastion.audit.errors import AuditError
from bastion.notify.hub import NotifierHub

log = logging.getLogger("bastion.notify")
PATH = "/integrations/slack/interactions"
MAX_BODY = 64 * 1024
WINDOW = 300.0
_HUB: web.AppKey[NotifierHub] = web.AppKey("notify_hub", NotifierHub)


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def check_signature(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float
) -> str | None:
    """None when the request is authentic and fresh; otherwise why it is refused."""
    if not timestamp or not signature:
        return "missing signature headers"
    try:
        ts = int(timestamp)
    except ValueError:
        return "malformed timestamp"
    if abs(now - ts) > WINDOW:
        return "stale timestamp (more than 5 minutes off)"
    if not hmac.compare_digest(slack_signature(secret, timestamp, body), signature):
        return "bad signature"
    return None


def add_routes(app: web.Application, hub: NotifierHub) -> None:
    """Serve Slack's interactivity endpoint from ``hub`` (refuses everything without Slack)."""
    app[_HUB] = hub
    app.router.add_post(PATH, _interactions)


async def _refuse(hub: NotifierHub, request: web.Request, why: str, status: int) -> web.Response:
    log.warning("slack.http_refused", extra={"ctx": {"reason": why, "peer": request.remote}})
    if hub.broker is not None:
        try:
            await hub.broker.audit.record(
                "notify", event="slack_refused", reason=why, source=request.remote
            )
        except AuditError as exc:
            log.error("audit.failed", extra={"ctx": {"error": str(exc)}})
    return web.Response(status=status, text=why + "\n")


async def _interactions(request: web.Request) -> web.Response:
    hub = request.app[_HUB]
    slacks = [s for s in hub.slack_notifiers() if s.interactions is not None]
    if not slacks:
        return web.Response(status=404, text="slack is not configured\n")
    if request.content_length is not None and request.content_length > MAX_BODY:
        return await _refuse(hub, request, "body too large", 413)
    body = await request.content.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        return await _refuse(hub, request, "body too large", 413)
    timestamp = request.headers.get("X-Slack-Request-Timestamp")
    signature = request.headers.get("X-Slack-Signature")
    why = "bad signature"
    for slack in slacks:  # several workspaces: the one whose secret signed it
        problem = check_signature(slack.signing_secret, timestamp, signature, body, hub.clock())
        if problem is None:
            break
        why = problem
    else:
        return await _refuse(hub, request, why, 401)
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True)
        payload = orjson.loads(form["payload"][0])
        if not isinstance(payload, dict):
            raise ValueError("payload is not an object")
    except (ValueError, KeyError, UnicodeDecodeError):
        return await _refuse(hub, request, "malformed payload", 400)
    assert slack.interactions is not None
    answer = await slack.interactions.handle(payload)
    if answer is None:
        return web.Response(status=200)
    return web.json_response(answer, dumps=lambda v: orjson.dumps(v).decode())
