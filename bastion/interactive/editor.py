"""The bastion's own input line: the exact edit model, and what to echo for each edit.

Only edits the bastion can model exactly are applied (insert at the end, Backspace/DEL,
Ctrl-U, Ctrl-W); the cursor is always at the end because cursor movement is never accepted.
The echo is cosmetic (what the agent's terminal shows); the buffer is what gets gated.
"""

from __future__ import annotations

import unicodedata


def char_width(ch: str) -> int:
    if unicodedata.combining(ch) or ch in "\u200b\u200c\u200d\ufeff":
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _erase(chars: str) -> bytes:
    width = sum(char_width(c) if c != "\t" else 1 for c in chars)
    return b"\b \b" * width


class LineBuffer:
    """One unit being typed: finished continuation lines plus the current line."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.current = ""

    @property
    def empty(self) -> bool:
        return not self.lines and not self.current

    @property
    def size(self) -> int:
        return sum(len(x) + 1 for x in self.lines) + len(self.current)

    def text(self) -> str:
        """The unit as the shell will receive it (lines joined by newlines)."""
        return "\n".join([*self.lines, self.current])

    def insert(self, text: str) -> bytes:
        self.current += text
        return text.encode("utf-8", "surrogateescape")

    def backspace(self) -> bytes | None:
        """Delete one character; None when there is nothing to delete on this line."""
        if not self.current:
            return None
        gone, self.current = self.current[-1], self.current[:-1]
        return _erase(gone)

    def kill_line(self) -> bytes | None:
        """Ctrl-U: delete the current line back to its start."""
        if not self.current:
            return None
        gone, self.current = self.current, ""
        return _erase(gone)

    def kill_word(self) -> bytes | None:
        """Ctrl-W (readline unix-word-rubout): whitespace before the word, then the word."""
        if not self.current:
            return None
        s = self.current
        i = len(s)
        while i and s[i - 1] in " \t":
            i -= 1
        while i and s[i - 1] not in " \t":
            i -= 1
        gone, self.current = s[i:], s[:i]
        return _erase(gone)

    def newline(self) -> None:
        """Enter on an incomplete unit: the current line is finished, a new one starts."""
        self.lines.append(self.current)
        self.current = ""

    def clear(self) -> None:
        self.lines, self.current = [], ""

    def render(self, continuation: bytes) -> bytes:
        """The whole unit as typed, for a redraw (lines after the first get ``continuation``)."""
        parts = [*self.lines, self.current]
        out = parts[0].encode("utf-8", "surrogateescape")
        for line in parts[1:]:
            out += b"\r\n" + continuation + line.encode("utf-8", "surrogateescape")
        return out
