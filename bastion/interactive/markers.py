"""Shell-integration markers in target output: parse them out, robust to any split.

The remote bash prints ``ESC ] 133 ; <kind> ; <nonce> [; <payload>] BEL`` (kinds A prompt
start with the cwd, B prompt end, C command start with the command line, D command end with
the exit status). Every OSC 133 sequence is removed from the output; only those carrying the
session nonce drive the controller. Payloads are escaped by the shell (see ``unescape``).
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = b"\x1b]133;"
MAX_MARKER = 1 << 20  # a command line of up to MAX_UNIT bytes, escaped


@dataclass(frozen=True)
class Marker:
    kind: str  # "A" | "B" | "C" | "D" | anything a foreign program printed
    valid: bool  # carries this session's nonce
    payload: str


Segment = bytes | Marker

_UNESCAPE = {"\\": "\\", "n": "\n", "r": "\r", "t": "\t", "e": "\x1b", "a": "\x07"}


def escape(text: str) -> str:
    """What the shell's ``__bst_e`` does (used by tests and for symmetry)."""
    out = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return out.replace("\t", "\\t").replace("\x1b", "\\e").replace("\x07", "\\a")


def unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in _UNESCAPE:
            out.append(_UNESCAPE[text[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


class MarkerParser:
    """Splits target output into plain bytes and markers; keeps partial markers across chunks."""

    def __init__(self, nonce: str) -> None:
        self.nonce = nonce
        self._held = b""

    @property
    def holding(self) -> int:
        return len(self._held)

    def feed(self, data: bytes) -> list[Segment]:
        buf = self._held + data if self._held else data
        self._held = b""
        out: list[Segment] = []
        start = 0
        while True:
            i = buf.find(b"\x1b", start)
            if i < 0:
                _plain(out, buf[start:])
                return out
            rest = len(buf) - i
            if rest < len(PREFIX):
                if PREFIX.startswith(buf[i:]):
                    _plain(out, buf[start:i])
                    self._held = buf[i:]
                    return out
                _plain(out, buf[start : i + 1])
                start = i + 1
                continue
            if not buf.startswith(PREFIX, i):
                _plain(out, buf[start : i + 1])
                start = i + 1
                continue
            end, size = _terminator(buf, i + len(PREFIX))
            if end < 0:
                if size == 0 and rest <= MAX_MARKER:
                    _plain(out, buf[start:i])
                    self._held = buf[i:]
                    return out
                # Too long to be ours: plain output, and look for markers after its start.
                _plain(out, buf[start : i + 1])
                start = i + 1
                continue
            _plain(out, buf[start:i])
            out.append(self._marker(buf[i + len(PREFIX) : end]))
            start = end + size

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return held

    def _marker(self, body: bytes) -> Marker:
        text = body.decode("utf-8", "replace")
        parts = text.split(";", 2)
        kind = parts[0]
        valid = len(parts) >= 2 and parts[1] == self.nonce and kind in ("A", "B", "C", "D")
        payload = unescape(parts[2]) if valid and len(parts) == 3 else ""
        return Marker(kind, valid, payload)


def _terminator(buf: bytes, j: int) -> tuple[int, int]:
    """(index, size) of the BEL or ESC-backslash ending an OSC; (-1, 0) if not yet seen."""
    bel = buf.find(b"\x07", j)
    st = buf.find(b"\x1b\\", j)
    if bel < 0 and st < 0:
        return -1, 0
    if st < 0 or (0 <= bel < st):
        return bel, 1
    return st, 2


def _plain(out: list[Segment], data: bytes) -> None:
    if not data:
        return
    if out and isinstance(out[-1], bytes):
        out[-1] = out[-1] + data
    else:
        out.append(data)
