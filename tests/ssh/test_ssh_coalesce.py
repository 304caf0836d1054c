"""UpstreamSession merges bulk target output per event-loop turn and keeps its order."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import asyncssh

from bastion.relay import COALESCE_FROM, UpstreamSession

STDERR = asyncssh.EXTENDED_DATA_STDERR


class _Relay:
    """Records what UpstreamSession hands to ChannelRelay, in order."""

    def __init__(self, fail: bool = False) -> None:
        self.events: list[tuple[str, Any]] = []
        self.exit_status: int | None = None
        self.fail = fail
        self.server = self

    def log_context(self) -> dict[str, Any]:
        return {}

    def upstream_data(self, data: bytes, *, stderr: bool) -> None:
        if self.fail:
            raise RuntimeError("a bug in the output path")
        self.events.append(("err" if stderr else "out", data))

    def abort(self, message: str) -> None:
        self.events.append(("abort", message))

    def upstream_eof(self) -> None:
        self.events.append(("eof", None))

    def upstream_closed(self, exc: Exception | None) -> None:
        self.events.append(("closed", exc))


def _session(fail: bool = False) -> tuple[UpstreamSession, _Relay]:
    relay = _Relay(fail)
    return UpstreamSession(relay), relay  # type: ignore[arg-type]


async def _next_turn() -> None:
    await asyncio.sleep(0)


async def test_bulk_packets_of_one_read_reach_the_relay_as_one_chunk() -> None:
    session, relay = _session()
    packets = [os.urandom(32768) for _ in range(5)]
    for p in packets:  # what asyncssh does while parsing one 160 KiB read
        session.data_received(p, None)
    assert relay.events == []  # nothing yet: the read is still being parsed
    await _next_turn()
    assert relay.events == [("out", b"".join(packets))]
    session.data_received(packets[0], None)  # the next read starts a new chunk
    await _next_turn()
    assert relay.events[1:] == [("out", packets[0])]


async def test_short_output_is_relayed_at_once() -> None:
    session, relay = _session()
    session.data_received(b"$ ", None)
    assert relay.events == [("out", b"$ ")]  # an interactive prompt waits for nothing


async def test_short_output_behind_bulk_output_keeps_its_place() -> None:
    session, relay = _session()
    bulk = os.urandom(COALESCE_FROM)
    session.data_received(bulk, None)
    session.data_received(b"tail\n", None)
    assert relay.events == []
    await _next_turn()
    assert relay.events == [("out", bulk + b"tail\n")]


async def test_switching_between_stdout_and_stderr_keeps_the_order() -> None:
    session, relay = _session()
    a, b, c = (os.urandom(COALESCE_FROM) for _ in range(3))
    session.data_received(a, None)
    session.data_received(b, STDERR)
    session.data_received(c, None)
    await _next_turn()
    assert relay.events == [("out", a), ("err", b), ("out", c)]


async def test_eof_and_close_come_after_the_output_they_follow() -> None:
    session, relay = _session()
    bulk = os.urandom(4 * COALESCE_FROM)
    session.data_received(bulk, None)
    session.eof_received()
    assert relay.events == [("out", bulk), ("eof", None)]
    session.data_received(bulk, STDERR)
    session.connection_lost(None)
    assert relay.events[2:] == [("err", bulk), ("closed", None)]
    await _next_turn()  # the scheduled flush finds nothing left to send twice
    assert len(relay.events) == 4


async def test_an_error_in_merged_output_ends_the_channel() -> None:
    """The merged flush runs from the event loop, outside asyncssh's error handling: a failure
    there ends the channel instead of dropping the output and carrying on."""
    session, relay = _session(fail=True)
    session.data_received(os.urandom(COALESCE_FROM), None)
    await _next_turn()
    assert [kind for kind, _ in relay.events] == ["abort"]
