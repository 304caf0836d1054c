"""Generic webhook: a signed JSON POST (PagerDuty-style or in-house bots).

Headers: ``X-Bastion-Timestamp`` (unix seconds) and ``X-Bastion-Signature: sha256=<hex>``, the
HMAC-SHA256 under the shared secret of ``"<timestamp>.<body>"``. Receivers recompute it over the
raw body, compare in constant time and refuse old timestamps (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

import orjson

from bastion.notify.config import NotifySpec, Scope
from bastion.notify.event import NotifyEvent
from bastion.notify.http_post import JsonPoster


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, now: float, window: float = 300
) -> bool:
    """What a receiver does (used by the tests and shown in the docs)."""
    try:
        fresh = abs(now - int(timestamp)) <= window
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookNotifier:
    def __init__(self, spec: NotifySpec, clock: Callable[[], float] = time.time) -> None:
        self.name = spec.name
        self.scope: Scope = spec.scope
        self.timeout = spec.timeout
        self.retries = spec.retries
        self.url = spec.options["url"]
        self._secret = spec.secrets["secret"]
        self._clock = clock
        self._poster = JsonPoster(spec.timeout)

    def body(self, event: NotifyEvent) -> bytes:
        return orjson.dumps(event.webhook_json())

    async def deliver(self, event: NotifyEvent) -> None:
        body = self.body(event)
        timestamp = str(int(self._clock()))
        headers = {
            "X-Bastion-Timestamp": timestamp,
            "X-Bastion-Signature": sign(self._secret, timestamp, body),
            "X-Bastion-Event": event.kind,
        }
        await self._poster.post(self.url, body, headers, "webhook")

    async def close(self) -> None:
        await self._poster.close()
