"""The supervisor <-> worker link: JSON lines over a Unix socketpair.

Two kinds of message travel on it:

* a **call** ``{"id": n, "op": ..., "args": [...]}`` expects a reply ``{"re": n, "ok": value}``
  (or ``{"re": n, "error": text}``);
* an **event** ``{"op": ..., "args": [...]}`` is fire-and-forget.

Lines are bounded (``MAX_LINE``); a peer that sends a longer or malformed line is a bug or an
attack on the supervisor, and the link is closed. When the link closes, every call still waiting
fails with ``LinkClosed`` so callers fail closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from bastion.tasks import spawn

log = logging.getLogger("bastion.workers")

MAX_LINE = 64 * 1024
CALL_TIMEOUT = 10.0

Handler = Callable[[str, list[Any]], Awaitable[Any]]


class LinkClosed(Exception):
    """The other side of the link is gone (or did not answer in time)."""


class Link:
    """One end of a supervisor <-> worker socketpair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._closed = asyncio.Event()

    @classmethod
    async def from_socket(cls, sock: socket.socket) -> Link:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_LINE + 1)
        return cls(reader, writer)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def call(self, op: str, *args: Any) -> Any:
        """Ask the other side; raises ``LinkClosed`` if it cannot answer within CALL_TIMEOUT."""
        if self.closed:
            raise LinkClosed("the supervisor link is closed")
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = future
        try:
            self._send({"id": call_id, "op": op, "args": list(args)})
            return await asyncio.wait_for(future, CALL_TIMEOUT)
        except TimeoutError:
            raise LinkClosed(f"no answer to {op} within {CALL_TIMEOUT:g}s") from None
        finally:
            self._waiting.pop(call_id, None)

    def event(self, op: str, *args: Any) -> None:
        """Tell the other side; dropped silently once the link is closed."""
        if not self.closed:
            self._send({"op": op, "args": list(args)})

    def _send(self, message: dict[str, Any]) -> None:
        try:
            self._writer.write(orjson.dumps(message) + b"\n")
        except (OSError, RuntimeError):
            self._close()

    async def serve(self, handler: Handler | None = None) -> None:
        """Read messages until the link closes; calls and events go to ``handler``."""
        try:
            while True:
                try:
                    line = await self._reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    return  # EOF: the other process is gone
                except asyncio.LimitOverrunError:
                    log.error("workers.link_overrun")
                    return
                message = _decode(line)
                if message is None:
                    log.error("workers.link_malformed")
                    return
                if "re" in message:
                    self._answer(message)
                elif handler is not None:
                    self._dispatch(handler, message)
        except (ConnectionError, OSError):
            return
        finally:
            self._close()

    def _answer(self, message: dict[str, Any]) -> None:
        future = self._waiting.get(message["re"]) if isinstance(message["re"], int) else None
        if future is None or future.done():
            return
        if "error" in message:
            future.set_exception(LinkClosed(str(message["error"])))
        else:
            future.set_result(message.get("ok"))

    def _dispatch(self, handler: Handler, message: dict[str, Any]) -> None:
        op, args, call_id = message.get("op"), message.get("args", []), message.get("id")
        if not isinstance(op, str) or not isinstance(args, list):
            log.error("workers.link_malformed")
            self._close()
            return

        async def run() -> None:
            try:
                result = await handler(op, args)
            except Exception as exc:  # a bad request answers an error; the link stays up
                log.error("workers.call_failed", extra={"ctx": {"op": op, "error": repr(exc)}})
                if isinstance(call_id, int):
                    self._send({"re": call_id, "error": f"{op} failed"})
                return
            if isinstance(call_id, int):
                self._send({"re": call_id, "ok": result})

        spawn(run(), name=f"link-{op}")

    def _close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(LinkClosed("the supervisor link is closed"))
        with contextlib.suppress(Exception):
            self._writer.close()

    def close(self) -> None:
        self._close()


def _decode(line: bytes) -> dict[str, Any] | None:
    try:
        message = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return message if isinstance(message, dict) else None
