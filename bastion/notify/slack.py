"""Slack: a Block Kit message per held command (``chat.postMessage``), updated with the outcome
(``chat.update``); buttons come back through Socket Mode or the signed HTTP endpoint.

``api_url`` points ``slack-sdk`` at another base URL (tests, Slack-compatible gateways). With an
``app_token`` the bastion opens a Socket Mode websocket (no inbound port); the HTTP endpoint
``POST /integrations/slack/interactions`` works either way.
"""

from __future__ import annotations

import logging

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from bastion.approval.broker import ApprovalBroker
from bastion.notify.base import DeliveryError
from bastion.notify.config import NotifySpec, Scope
from bastion.notify.event import NotifyEvent
from bastion.notify.slack_blocks import fallback_text, message_blocks
from bastion.notify.slack_interactions import SlackInteractions
from bastion.notify.store import NotifyStore
from bastion.tasks import spawn

log = logging.getLogger("bastion.notify")
SOCKET_PING = 10.0


class SlackNotifier:
    def __init__(self, spec: NotifySpec) -> None:
        self.name = spec.name
        self.scope: Scope = spec.scope
        self.timeout = spec.timeout
        self.retries = spec.retries
        self.channel = spec.options["channel"]
        self.api_url = spec.options["api_url"]
        self.signing_secret = spec.secrets["signing_secret"]
        self._app_token = spec.secrets.get("app_token")
        self.client = AsyncWebClient(
            token=spec.secrets["bot_token"],
            base_url=self.api_url + "/",
            timeout=max(1, int(spec.timeout)),
        )
        self.store: NotifyStore | None = None
        self.interactions: SlackInteractions | None = None
        self.socket: SocketModeClient | None = None

    @property
    def socket_mode(self) -> bool:
        return self._app_token is not None

    async def start(self, broker: ApprovalBroker, store: NotifyStore) -> None:
        """Bind to the broker; with an app token, connect Socket Mode in the background."""
        self.store = store
        self.interactions = SlackInteractions(broker, self.client)
        if self._app_token is None:
            return
        self.socket = SocketModeClient(
            app_token=self._app_token,
            web_client=AsyncWebClient(
                base_url=self.api_url + "/", timeout=max(1, int(self.timeout))
            ),
            ping_interval=SOCKET_PING,
            logger=logging.getLogger("bastion.notify.socket_mode"),
        )
        self.socket.socket_mode_request_listeners.append(self._on_request)
        # connect() retries until Slack answers: never let it hold up the bastion's start.
        spawn(self.socket.connect(), name=f"slack-socket-{self.name}")  # type: ignore[no-untyped-call]

    async def _on_request(self, client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        if req.type != "interactive" or self.interactions is None:
            await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
            return
        body = None
        try:
            body = await self.interactions.handle(req.payload)
        except Exception as exc:  # still ack, so Slack does not redeliver a broken envelope
            log.error("slack.interaction_failed", extra={"ctx": {"error": repr(exc)}})
        await client.send_socket_mode_response(
            SocketModeResponse(envelope_id=req.envelope_id, payload=body)
        )

    async def deliver(self, event: NotifyEvent) -> None:
        text, blocks = fallback_text(event), message_blocks(event)
        store = self.store
        try:
            if event.kind == "approval.resolved" and store is not None:
                ref = await store.message(event.request_id, self.name)
                if ref is not None:
                    await self.client.chat_update(
                        channel=ref[0], ts=ref[1], text=text, blocks=blocks
                    )
                    return
            response = await self.client.chat_postMessage(
                channel=self.channel, text=text, blocks=blocks, unfurl_links=False
            )
        except SlackApiError as exc:
            raise DeliveryError(f"slack: {exc.response.get('error', 'error')}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise DeliveryError(f"slack unreachable: {type(exc).__name__}") from None
        channel, ts = response.get("channel"), response.get("ts")
        if store is not None and isinstance(channel, str) and isinstance(ts, str):
            await store.save_message(event.request_id, self.name, channel, ts)

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()  # type: ignore[no-untyped-call]
            self.socket = None
