"""asciicast v2 lines and the hash chain over them.

Every line of a ``.cast`` file (header included) is chained: ``h0 = sha256(DOMAIN || header)``,
``h_n = sha256(h_{n-1} || line_n)`` where a line is its exact UTF-8 bytes including ``\\n``. The
file itself stays an asciicast that any player reads; the chain lives in the seal sidecar.

Output that is not text (invalid UTF-8, or control bytes that JSON would blow up sixfold) is
kept byte for byte in the ``.cast.bin`` file beside it (format 2): its event is
``[t, "b", "<stream> <offset> <length>"]`` and its chain step covers the line and the bytes,
``h_n = sha256(h_{n-1} || line_n || bytes)``. Players skip ``b`` events; ``bastion play`` and
``bastion recordings export`` read them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from bastion.recording.errors import RecordingError

FORMAT_VERSION = 2  # our metadata/seal format; bump with a migration note in docs/recordings.md
READABLE_FORMATS = frozenset({1, 2})  # 1: no binary segments (no "b" events, no blob_bytes)
META_KEY = "bastion"  # custom header key holding session metadata (ignored by players)
CHAIN_DOMAIN = b"bastion-cast-chain-v1\n"
EVENT_CODES = frozenset("oirmb")

EventCode = Literal["o", "i", "r", "m"]


def chain_start(header_line: bytes) -> bytes:
    return hashlib.sha256(CHAIN_DOMAIN + header_line).digest()


def chain_next(previous: bytes, line: bytes, blob: bytes = b"") -> bytes:
    h = hashlib.sha256(previous)
    h.update(line)
    if blob:
        h.update(blob)
    return h.digest()


def encode_blob_ref(stream: str, offset: int, length: int) -> str:
    return f"{stream} {offset} {length}"


def decode_blob_ref(data: str) -> tuple[str, int, int]:
    """``"o 0 32768"`` -> ("o", 0, 32768); raises ValueError on anything else."""
    parts = data.split(" ")
    if len(parts) != 3 or parts[0] not in ("o", "i"):
        raise ValueError("binary event reference is not 'STREAM OFFSET LENGTH'")
    if not all(p.isdigit() and p.isascii() for p in parts[1:]):
        raise ValueError("binary event offset or length is not a number")
    offset, length = int(parts[1]), int(parts[2])
    if length <= 0:
        raise ValueError("binary event length is not positive")
    return parts[0], offset, length


def encode_header(
    *,
    width: int,
    height: int,
    timestamp: int,
    command: str | None,
    title: str | None,
    env: Mapping[str, str],
    meta: Mapping[str, Any],
) -> bytes:
    header: dict[str, Any] = {
        "version": 2,
        "width": width,
        "height": height,
        "timestamp": timestamp,
    }
    if command is not None:
        header["command"] = command
    if title is not None:
        header["title"] = title
    header["env"] = {k: v for k, v in env.items() if k in ("TERM", "SHELL")}
    header[META_KEY] = dict(meta)
    try:
        return orjson.dumps(header) + b"\n"
    except TypeError as exc:
        raise RecordingError(f"recording metadata is not JSON-serialisable: {exc}") from None


def encode_event(t: float, code: EventCode, data: str) -> bytes:
    return orjson.dumps([round(t, 6), code, data]) + b"\n"


@dataclass(frozen=True)
class Event:
    """One event; ``raw`` holds the exact bytes of a binary segment (``data`` is then their
    text with U+FFFD for what is not UTF-8, and ``code`` the stream, ``o`` or ``i``)."""

    time: float
    code: str
    data: str
    raw: bytes | None = None


def decode_header(line: bytes) -> dict[str, Any]:
    """Parse a header line; raises ValueError when it is not an asciicast v2 header."""
    header = orjson.loads(line)
    if not isinstance(header, dict) or header.get("version") != 2:
        raise ValueError("not an asciicast v2 header")
    for key in ("width", "height"):
        if not isinstance(header.get(key), int) or isinstance(header.get(key), bool):
            raise ValueError(f"header {key} is not an integer")
    return header


def decode_event(line: bytes) -> Event:
    """Parse one event line; raises ValueError on anything that is not ``[time, code, text]``."""
    value = orjson.loads(line)
    if not isinstance(value, list) or len(value) != 3:
        raise ValueError("event is not a [time, code, data] array")
    t, code, data = value
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t < 0:
        raise ValueError("event time is not a non-negative number")
    if code not in EVENT_CODES or not isinstance(data, str):
        raise ValueError("event code or data is invalid")
    return Event(float(t), code, data)
