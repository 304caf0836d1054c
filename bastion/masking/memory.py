"""Session memory: a value masked once is masked wherever it appears later.

A Key Vault value masked in ``az keyvault secret show`` JSON appears again, shapeless, in an
``echo``, a URL or a log line; the memory catches it there. Bounded (``MAX_VALUES`` most
recent values of ``MIN_LEN``..``MAX_LEN`` characters, no whitespace), held only in memory,
never logged or counted by value. Matching is an exact ``bytes.find`` per value (a few
microseconds per 4 KiB feed for a full memory; nothing when it is empty).

One ``SessionMemory`` may be shared by the maskers of one session (stdout and stderr of every
channel); each stream's output still depends only on its own bytes and the values remembered
before them.
"""

from __future__ import annotations

import re

from bastion.masking.rules import is_placeholder

MAX_VALUES = 32
MIN_LEN = 8
MAX_LEN = 512
RID = "session-memory"
_NOT_REMEMBERED = frozenset(("held-fragment", RID, "known-value"))
_SPACE = re.compile(rb"[\s\x1b]")


class SessionMemory:
    def __init__(self, max_values: int = MAX_VALUES) -> None:
        self._values: dict[bytes, None] = {}
        self._max = max_values

    def __len__(self) -> int:
        return len(self._values)

    def __bool__(self) -> bool:
        return bool(self._values)

    def remember(self, value: bytes, rid: str) -> bool:
        """Keep ``value`` (masked by rule ``rid``); True when it is new."""
        if rid in _NOT_REMEMBERED or not MIN_LEN <= len(value) <= MAX_LEN:
            return False
        if _SPACE.search(value) is not None or is_placeholder(value) or value.isdigit():
            return False
        if value in self._values:
            return False
        self._values[value] = None
        if len(self._values) > self._max:
            del self._values[next(iter(self._values))]
        return True

    def find_all(self, text: bytes, start: int = 0,
                 values: list[bytes] | None = None) -> list[tuple[int, int, str]]:
        out: list[tuple[int, int, str]] = []
        for v in self._values if values is None else values:
            i = text.find(v, start)
            while i != -1:
                out.append((i, i + len(v), RID))
                i = text.find(v, i + 1)
        return out

    def first(self, text: bytes, start: int = 0) -> int:
        """Start of the earliest remembered value at or after ``start``, or -1."""
        best = -1
        for v in self._values:
            i = text.find(v, start)
            if i != -1 and (best == -1 or i < best):
                best = i
        return best
