"""Agent keystrokes as keys: printable text, C0 controls, escape sequences and pastes.

The tokenizer is incremental (a sequence split across SSH packets is reassembled) and bounded
(a paste or escape sequence larger than its limit becomes one ``Dropped`` key, never a buffer
that grows without bound). It never interprets keys; ``LineEditor`` decides what they mean.
"""

from __future__ import annotations

from dataclasses import dataclass

PASTE_START = b"\x1b[200~"
PASTE_END = b"\x1b[201~"
MAX_SEQUENCE = 256  # CSI/OSC/DCS longer than this are garbage: dropped whole
MAX_PASTE = 1 << 20


@dataclass(frozen=True)
class Text:
    """Printable characters (ASCII or UTF-8) typed by the agent."""

    text: str


@dataclass(frozen=True)
class Control:
    """One C0 control byte (0x00-0x1f) or DEL (0x7f)."""

    code: int


@dataclass(frozen=True)
class Escape:
    """An escape sequence (arrow, function key, Alt-key, OSC...): never forwarded."""

    data: bytes

    @property
    def name(self) -> str:
        return _NAMES.get(self.data, "Alt-key" if len(self.data) == 2 else "escape sequence")


@dataclass(frozen=True)
class Paste:
    """A bracketed paste (``ESC[200~ ... ESC[201~``), content only."""

    data: bytes


@dataclass(frozen=True)
class Dropped:
    """Bytes that are not a valid key (bad UTF-8, an oversized sequence or paste)."""

    data: bytes
    why: str


Key = Text | Control | Escape | Paste | Dropped

_NAMES = {
    b"\x1b[A": "Up", b"\x1b[B": "Down", b"\x1b[C": "Right", b"\x1b[D": "Left",
    b"\x1bOA": "Up", b"\x1bOB": "Down", b"\x1bOC": "Right", b"\x1bOD": "Left",
    b"\x1b[H": "Home", b"\x1b[F": "End", b"\x1b[5~": "PageUp", b"\x1b[6~": "PageDown",
    b"\x1b[3~": "Delete", b"\x1b[2~": "Insert", b"\x1b": "Escape",
}


class KeyTokenizer:
    """bytes -> keys, robust to any split of the input."""

    def __init__(self) -> None:
        self._buf = b""
        self._paste: bytearray | None = None
        self._paste_overflow = False

    @property
    def pending(self) -> bool:
        """True while an incomplete sequence waits for more bytes (see ``flush``)."""
        return bool(self._buf) or self._paste is not None

    def feed(self, data: bytes) -> list[Key]:
        self._buf += data
        keys: list[Key] = []
        buf, i, n = self._buf, 0, len(self._buf)
        while i < n:
            if self._paste is not None:
                end = buf.find(PASTE_END, i)
                if end < 0:
                    # Keep a possible partial terminator for the next chunk.
                    keep = _partial_suffix(buf[i:], PASTE_END)
                    self._paste_add(buf[i : n - keep])
                    i = n - keep
                    break
                self._paste_add(buf[i:end])
                i = end + len(PASTE_END)
                keys.append(self._paste_done())
                continue
            b = buf[i]
            if b == 0x1B:
                size = _escape_size(buf, i)
                if size == 0:
                    break  # incomplete: wait for more bytes
                seq = buf[i : i + size]
                i += size
                if seq == PASTE_START:
                    self._paste = bytearray()
                elif size > MAX_SEQUENCE:
                    keys.append(Dropped(seq[:16], "oversized escape sequence"))
                else:
                    keys.append(Escape(seq))
            elif b < 0x20 or b == 0x7F:
                keys.append(Control(b))
                i += 1
            else:
                j = i
                while j < n and buf[j] >= 0x20 and buf[j] != 0x7F and buf[j] != 0x1B:
                    j += 1
                chunk = buf[i:j]
                keep = _utf8_tail(chunk) if j == n else 0
                text_bytes = chunk[: len(chunk) - keep]
                if text_bytes:
                    keys.extend(_decode(text_bytes))
                i = j - keep
                if keep:
                    break
        self._buf = buf[i:]
        if len(self._buf) > MAX_SEQUENCE + 8:  # an unterminated OSC/DCS: drop it
            keys.append(Dropped(self._buf[:16], "oversized escape sequence"))
            self._buf = b""
        return keys

    def flush(self) -> list[Key]:
        """End an ambiguous pending sequence (a lone ESC) after a short quiet time."""
        keys: list[Key] = []
        if self._paste is not None:
            self._paste_add(self._buf)
            self._buf = b""
            keys.append(self._paste_done())
        if self._buf:
            buf, self._buf = self._buf, b""
            keys.append(Escape(buf) if buf[:1] == b"\x1b" else Dropped(buf, "incomplete character"))
        return keys

    def _paste_add(self, data: bytes) -> None:
        assert self._paste is not None
        if len(self._paste) + len(data) > MAX_PASTE:
            self._paste_overflow = True
        else:
            self._paste += data

    def _paste_done(self) -> Key:
        assert self._paste is not None
        data, over = bytes(self._paste), self._paste_overflow
        self._paste, self._paste_overflow = None, False
        if over:
            return Dropped(data[:16], "paste larger than 1 MiB")
        return Paste(data)


def _decode(data: bytes) -> list[Key]:
    try:
        return [Text(data.decode("utf-8"))]
    except UnicodeDecodeError as exc:
        out: list[Key] = []
        if exc.start:
            out.append(Text(data[: exc.start].decode("utf-8")))
        out.append(Dropped(data[exc.start : exc.end], "invalid UTF-8"))
        out.extend(_decode(data[exc.end :]) if exc.end < len(data) else [])
        return out


def _utf8_tail(data: bytes) -> int:
    """Bytes at the end of ``data`` that start a UTF-8 character not yet complete."""
    for back in range(1, min(4, len(data)) + 1):
        b = data[-back]
        if b & 0xC0 == 0x80:
            continue  # continuation byte: look further back
        need = 2 if b & 0xE0 == 0xC0 else 3 if b & 0xF0 == 0xE0 else 4 if b & 0xF8 == 0xF0 else 1
        return back if need > back else 0
    return 0


def _partial_suffix(data: bytes, marker: bytes) -> int:
    for k in range(min(len(marker) - 1, len(data)), 0, -1):
        if data.endswith(marker[:k]):
            return k
    return 0


def _escape_size(buf: bytes, i: int) -> int:
    """Length of the escape sequence at ``buf[i]`` (ESC), or 0 when it is not complete yet."""
    n = len(buf)
    if i + 1 >= n:
        return 0
    c = buf[i + 1]
    if c == 0x5B:  # CSI: parameters/intermediates, then a final byte 0x40-0x7e
        j = i + 2
        while j < n and 0x20 <= buf[j] <= 0x3F:
            j += 1
        if j >= n:
            return 0 if j - i <= MAX_SEQUENCE else j - i
        return j - i + 1
    if c == 0x4F:  # SS3: one more byte
        return 3 if i + 2 < n else 0
    if c in (0x5D, 0x50, 0x5F, 0x5E, 0x58):  # OSC, DCS, APC, PM, SOS: until BEL or ST
        j = i + 2
        while j < n:
            if buf[j] == 0x07:
                return j - i + 1
            if buf[j] == 0x1B:
                if j + 1 >= n:
                    return 0
                if buf[j + 1] == 0x5C:
                    return j - i + 2
            j += 1
        return 0
    if c == 0x1B:  # ESC ESC: the first one is a lone Escape
        return 1
    if c < 0x20 or c == 0x7F:
        return 2  # Alt + control key
    if c >= 0x80:  # Alt + a UTF-8 character: take the whole character
        need = 2 if c & 0xE0 == 0xC0 else 3 if c & 0xF0 == 0xE0 else 4 if c & 0xF8 == 0xF0 else 1
        return 1 + need if i + 1 + need <= n else 0
    return 2  # Alt + printable
