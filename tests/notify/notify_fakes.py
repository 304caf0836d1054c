"""Local stand-ins for the services notifiers talk to (all on 127.0.0.1, real HTTP/websockets).

``FakeSlack`` plays Slack's Web API (chat.postMessage, chat.update, views.open,
apps.connections.open) and its Socket Mode websocket; ``Receiver`` records webhook / Teams POSTs
and can answer with an error status or hang. Secrets are generated per test, never literals.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import string
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import orjson
import pyotp
from aiohttp import WSMsgType, web

from bastion.approval import ApprovalBroker, ApprovalRequest, ApprovalsConfig
from bastion.audit import AuditStore

T = TypeVar("T")


def fake_token(prefix: str) -> str:
    """A random credential-shaped string (never a real one)."""
    return prefix + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(24))


def write_secret(path: Path, value: str, mode: int = 0o600) -> Path:
    path.write_text(value + "\n")
    path.chmod(mode)
    return path


@dataclass
class Call:
    method: str
    body: dict[str, Any]
    headers: dict[str, str]


class _Server:
    def __init__(self) -> None:
        self.app = web.Application()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class FakeSlack(_Server):
    """Slack's Web API under ``/api/`` and a Socket Mode endpoint at ``/ws``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self.changed = asyncio.Condition()
        self.envelopes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.acks: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.ws_connected = asyncio.Event()
        self.app.router.add_post("/api/{method}", self._api)
        self.app.router.add_get("/ws", self._ws)
        self._ts = 0

    @property
    def api_url(self) -> str:
        return self.url + "/api"

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        raw = await request.read()
        if request.content_type == "application/json":
            body = orjson.loads(raw) if raw else {}
        else:
            body = dict((await request.post()).items()) if raw else {}
            body.update(request.query)
        self.calls.append(Call(method, body, dict(request.headers)))
        async with self.changed:
            self.changed.notify_all()
        if method == "chat.postMessage":
            self._ts += 1
            return web.json_response(
                {"ok": True, "channel": "C0NOTIFY", "ts": f"1700000000.{self._ts:06d}"}
            )
        if method == "apps.connections.open":
            return web.json_response({"ok": True, "url": f"ws://127.0.0.1:{self.port}/ws"})
        return web.json_response({"ok": True})

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(orjson.dumps({"type": "hello", "num_connections": 1}).decode())
        self.ws_connected.set()

        async def pump() -> None:
            while True:
                await ws.send_str(orjson.dumps(await self.envelopes.get()).decode())

        sender = asyncio.create_task(pump())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self.acks.put(orjson.loads(msg.data))
        finally:
            sender.cancel()
        return ws

    async def wait_for(self, method: str, count: int = 1, within: float = 10.0) -> list[Call]:
        """The first ``count`` calls of ``method``, waiting (bounded) for them to arrive."""

        def found() -> bool:
            return len([c for c in self.calls if c.method == method]) >= count

        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(found), within)
        return [c for c in self.calls if c.method == method][:count]

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def interact(self, payload: dict[str, Any], within: float = 10.0) -> dict[str, Any]:
        """Send one ``interactive`` envelope over Socket Mode; return the bastion's ack."""
        envelope_id = secrets.token_hex(8)
        await self.envelopes.put(
            {"type": "interactive", "envelope_id": envelope_id, "payload": payload,
             "accepts_response_payload": True}
        )  # fmt: skip
        while True:
            ack = await asyncio.wait_for(self.acks.get(), within)
            if ack.get("envelope_id") == envelope_id:
                return ack


class Receiver(_Server):
    """Records JSON POSTs at ``/hook``; ``status`` and ``hang`` make it misbehave."""

    def __init__(self, status: int = 200, hang: bool = False) -> None:
        super().__init__()
        self.status = status
        self.hang = hang
        self.posts: list[tuple[bytes, dict[str, str]]] = []
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()  # ends hanging handlers (bounded teardown)
        self.app.router.add_post("/hook", self._hook)

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.posts.append((body, dict(request.headers)))
        self.arrived.set()
        if self.hang:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), 60)
        return web.Response(status=self.status, text="ok")

    async def stop(self) -> None:
        self.release.set()
        await super().stop()

    async def wait(self, count: int = 1, within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while len(self.posts) < count:
            assert time.monotonic() < deadline, f"only {len(self.posts)} POSTs arrived"
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), 0.2)


# -- a broker over a real database ------------------------------------------------------------


@dataclass
class BrokerEnv:
    audit: AuditStore
    broker: ApprovalBroker
    totp: dict[str, pyotp.TOTP] = field(default_factory=dict)

    async def enrol(self, name: str, **kw: Any) -> None:
        op = await self.broker.operators.add(name, **kw)
        self.totp[name] = pyotp.TOTP(op.totp_secret)

    def code(self, name: str) -> str:
        return self.totp[name].now()

    async def submit(self, **overrides: Any) -> ApprovalRequest:
        values: dict[str, Any] = {
            "session_id": "sess-1",
            "requester_key_id": "ci-agent-1",
            "requester_serial": 7,
            "principals": ("agents",),
            "target": "web-01",
            "login": "azureuser",
            "channel_kind": "exec",
            "command": "az group delete -n rg-test --yes",
            "units": (("az", "group", "delete", "-n", "rg-test", "--yes"),),
            "rules": ("az-destructive",),
            "approvers": ("sre",),
            "approvals_required": 1,
            "timeout": 60.0,
            "mode": "wait",
        }
        values.update(overrides)
        return await self.broker.submit(**values)

    async def audit_fields(self, kind: str = "approval") -> list[dict[str, Any]]:
        return [r.fields for r in await self.audit.query(kinds=(kind,))]


async def open_broker(db_path: Path) -> BrokerEnv:
    audit = await AuditStore.open(db_path)
    broker = await ApprovalBroker.open(
        audit.db, audit, ApprovalsConfig(public_url="https://bastion.test")
    )
    return BrokerEnv(audit, broker)


# -- Slack's side of an interaction ----------------------------------------------------------


def slack_sign(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def form_body(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": orjson.dumps(payload).decode()}).encode()


def button(request_id: str, user: str, approve: bool = True) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": {"id": user},
        "trigger_id": fake_token("trig-"),
        "container": {"type": "message", "message_ts": "1700000000.000001"},
        "actions": [
            {"action_id": "bastion_approve" if approve else "bastion_deny", "value": request_id}
        ],
    }


def submission(view: dict[str, Any], user: str, code: str, reason: str = "") -> dict[str, Any]:
    """What Slack sends when ``user`` submits ``view`` (the modal the bastion opened)."""
    return {
        "type": "view_submission",
        "user": {"id": user},
        "view": {
            "callback_id": view["callback_id"],
            "private_metadata": view["private_metadata"],
            "state": {
                "values": {
                    "totp": {"code": {"type": "plain_text_input", "value": code}},
                    "reason": {"text": {"type": "plain_text_input", "value": reason or None}},
                }
            },
        },
    }


class Threaded:
    """Runs a fake server on its own event loop thread (for tests whose bastion is a thread)."""

    def __init__(self, make: Callable[[], _Server]) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.server = self.call(self._build(make))

    @staticmethod
    async def _build(make: Callable[[], _Server]) -> _Server:
        server = make()
        await server.start()
        return server

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
