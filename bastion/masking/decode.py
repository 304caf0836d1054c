"""Decoded views of one line for matching: JSON string escapes and URL percent-encoding.

A secret inside an escaped JSON string (``{\\"password\\":\\"…\\"}``, a token right after a
``\\n`` escape, ``\\u0026sig=``) or a URL-encoded query (``%3D``, ``%22``) has boundaries the
rules cannot see. ``decoded_views`` returns the line with escapes undone (repeatedly, for
JSON inside JSON) together with a map from each decoded position back to the raw line, so a
match in the decoded text masks the whole encoded span. ``\\n``, ``\\r`` and ``\\t`` decode to a
space: the view stays one line. Work is proportional to the number of escapes.
"""

from __future__ import annotations

import re
from bisect import bisect_right

_JSON_ESC = re.compile(rb"\\(?:u([0-9A-Fa-f]{4})|([\"\\/bfnrt']))")
_PCT = re.compile(rb"%([0-9A-Fa-f]{2})")
# any escape either pass decodes (a line with neither has no decoded view)
JSON_ESCAPE = _JSON_ESC
PERCENT = _PCT
_SIMPLE = {b'"': b'"', b"\\": b"\\", b"/": b"/", b"'": b"'", b"b": b" ", b"f": b" ",
           b"n": b" ", b"r": b" ", b"t": b" "}
MAX_DEPTH = 3
MAX_LINE = 1 << 16


class View:
    """A decoded line and the raw offsets of its positions."""

    __slots__ = ("_dec", "_len", "_raw", "text")

    def __init__(self, text: bytes, dec_starts: list[int], raw_starts: list[int],
                 raw_len: int) -> None:
        # segment i: decoded [dec_starts[i], ...) copies raw from raw_starts[i]; an escape is a
        # one-character segment whose raw extent runs to the next segment's raw start
        self.text, self._dec, self._raw, self._len = text, dec_starts, raw_starts, raw_len

    def raw_start(self, d: int) -> int:
        i = bisect_right(self._dec, d) - 1
        if i < 0:
            return 0
        nxt = self._raw[i + 1] if i + 1 < len(self._raw) else self._len
        return min(self._raw[i] + (d - self._dec[i]), nxt)

    def raw_end(self, d: int) -> int:
        """Raw end of a span ending (exclusively) at decoded ``d``."""
        if d <= 0:
            return 0
        i = bisect_right(self._dec, d - 1) - 1
        nxt = self._raw[i + 1] if i + 1 < len(self._raw) else self._len
        return min(self._raw[i] + (d - self._dec[i]), nxt) if not self._esc(i) else nxt

    def _esc(self, i: int) -> bool:
        # an escape segment decodes to one char from more than one raw char
        nxt_raw = self._raw[i + 1] if i + 1 < len(self._raw) else self._len
        nxt_dec = self._dec[i + 1] if i + 1 < len(self._dec) else len(self.text)
        return nxt_raw - self._raw[i] != nxt_dec - self._dec[i]


def _one_pass(line: bytes, rx: re.Pattern[bytes], pct: bool) -> View | None:
    out: list[bytes] = []
    dec: list[int] = []
    raw: list[int] = []
    d = p = 0
    for m in rx.finditer(line):
        s = m.start()
        if s > p:
            dec.append(d)
            raw.append(p)
            out.append(line[p:s])
            d += s - p
        if pct:
            ch = bytes([int(m.group(1), 16)])
            if ch in b"\r\n\t":
                ch = b" "
        elif m.group(1) is not None:
            cp = int(m.group(1), 16)
            ch = bytes([cp]) if 0x20 <= cp < 0x7F else b" " if cp < 0x20 else b"?"
        else:
            ch = _SIMPLE[m.group(2)]
        dec.append(d)
        raw.append(s)
        out.append(ch)
        d += 1
        p = m.end()
    if not dec:
        return None
    if p < len(line):
        dec.append(d)
        raw.append(p)
        out.append(line[p:])
    return View(b"".join(out), dec, raw, len(line))


class Chain:
    """Several decoding passes composed: decoded position -> raw position of the original."""

    def __init__(self, views: list[View]) -> None:
        self.views = views
        self.text = views[-1].text

    def span(self, s: int, e: int) -> tuple[int, int]:
        for v in reversed(self.views):
            s, e = v.raw_start(s), v.raw_end(e)
        return s, e


def decoded_views(line: bytes) -> list[Chain]:
    """Decoded variants of ``line`` (JSON-unescaped up to MAX_DEPTH times, percent-decoded);
    empty when the line has no escapes."""
    if len(line) > MAX_LINE:
        return []
    out: list[Chain] = []
    if b"\\" in line:
        views: list[View] = []
        cur = line
        for _ in range(MAX_DEPTH):
            v = _one_pass(cur, _JSON_ESC, False)
            if v is None:
                break
            views.append(v)
            out.append(Chain(list(views)))
            cur = v.text
            if b"\\" not in cur:
                break
    if b"%" in line:
        v = _one_pass(line, _PCT, True)
        if v is not None:
            out.append(Chain([v]))
    return out
