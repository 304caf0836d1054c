"""``bastion recordings export``: a plain asciicast v2 that any player renders as recorded.

Binary segments (``b`` events, bytes in ``<cast>.bin``) become ordinary output events again, as
text with U+FFFD where the bytes are not UTF-8 (asciicast holds text only; the exact bytes stay
in the recording). Output of a channel without a terminal carries bare ``\\n`` line ends, which
a player's terminal would render as a staircase; they become ``\\r\\n``, as a terminal's own line
discipline would have written them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from bastion.recording.codec import Event

_BARE_LF = re.compile("(?<!\r)\n")


def had_terminal(header: dict[str, Any]) -> bool:
    """The recorder writes TERM into the header's env exactly when the channel had a PTY."""
    env = header.get("env")
    return isinstance(env, dict) and "TERM" in env


def for_terminal(header: dict[str, Any], events: Iterable[Event]) -> Iterator[Event]:
    """The events as a terminal should be fed them: output of a channel without a PTY gets
    ``\r\n`` for its bare ``\n``; everything else as recorded."""
    if had_terminal(header):
        yield from events
        return
    after_cr = False  # the previous output event ended in \r (a \r\n cut between two events)
    for event in events:
        data = event.data
        if event.code == "o" and data:
            fixed = _BARE_LF.sub("\r\n", data)
            if after_cr and data.startswith("\n"):
                fixed = fixed[1:]  # "\r\n" -> "\n": the \r came in the previous event
            after_cr = data.endswith("\r")
            event = Event(event.time, event.code, fixed, event.raw)
        yield event


def asciicast_lines(header: dict[str, Any], events: Iterable[Event]) -> Iterator[bytes]:
    yield orjson.dumps(header) + b"\n"
    for event in for_terminal(header, events):
        yield orjson.dumps([event.time, event.code, event.data]) + b"\n"
