"""Keyword prefilters: which rules can match in a text, and where their first keyword starts.

Two interchangeable engines behind one Protocol: Hyperscan (block mode over the text handed
in, which is always a bounded run of complete lines or one partial line) and a pure-Python
fallback (``bytes.find`` per keyword on the lower-cased text). ``BASTION_MASK_ENGINE=python``
or ``engine="python"`` forces the fallback.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from bastion.errors import BastionError

ENGINE_ENV = "BASTION_MASK_ENGINE"


class Prefilter(Protocol):
    name: str

    def first_hits(self, text: bytes) -> dict[int, int]:
        """Keyword index -> start of its first (case-insensitive) occurrence in ``text``."""
        ...

    def all_hits(self, text: bytes) -> list[tuple[int, int]]:
        """(keyword index, start) of every (case-insensitive) occurrence in ``text``."""
        ...


def _trie_pattern(words: Sequence[bytes]) -> bytes:
    """One regex for a set of literals with common prefixes factored out (a trie): Python's
    ``re`` then tries a few branches per position instead of every keyword."""
    root: dict[int | None, Any] = {}
    for w in words:
        node = root
        for ch in w:
            node = node.setdefault(ch, {})
        node[None] = {}

    def build(node: dict[int | None, Any]) -> bytes:
        keys = sorted(k for k in node if k is not None)
        alts = [re.escape(bytes([ch])) + build(node[ch]) for ch in keys]
        if not alts:
            return b""
        body = alts[0] if len(alts) == 1 else b"(?:" + b"|".join(alts) + b")"
        return b"(?:" + body + b")?" if None in node else body

    return build(root)


class PythonPrefilter:
    """Pure-Python fallback: a trie regex over the lower-cased text, in a look-ahead so that
    overlapping occurrences are all seen; the longest keyword at a position implies the
    keywords that are its prefixes."""

    name = "python"

    def __init__(self, keywords: Sequence[bytes]) -> None:
        self._index = {kw: i for i, kw in enumerate(keywords)}
        self._implied = {
            kw: [self._index[kw[:n]] for n in range(1, len(kw) + 1) if kw[:n] in self._index]
            for kw in keywords
        }
        self._rx = re.compile(b"(?=(" + _trie_pattern(keywords) + b"))") if keywords else None

    def all_hits(self, text: bytes) -> list[tuple[int, int]]:
        if self._rx is None:
            return []
        implied = self._implied
        out: list[tuple[int, int]] = []
        for m in self._rx.finditer(text.lower()):
            w = m.group(1)
            if w:
                p = m.start()
                out.extend((k, p) for k in implied[w])
        return out

    def first_hits(self, text: bytes) -> dict[int, int]:
        hits: dict[int, int] = {}
        for k, p in self.all_hits(text):
            hits.setdefault(k, p)
        return hits


class HyperscanPrefilter:
    name = "hyperscan"

    def __init__(self, keywords: Sequence[bytes]) -> None:
        import hyperscan

        self._hs = hyperscan
        self._lengths = [len(k) for k in keywords]
        self._db = self._compile(keywords, hyperscan.HS_FLAG_SINGLEMATCH)
        self._db_all = self._compile(keywords, 0)
        # Hyperscan scratch space must never be used by two threads at once, and a database's
        # built-in scratch is shared: each thread gets its own (allocated on first use).
        self._local = threading.local()

    def _scratch(self) -> tuple[Any, Any]:
        pair: tuple[Any, Any] | None = getattr(self._local, "scratch", None)
        if pair is None:
            pair = (self._hs.Scratch(self._db), self._hs.Scratch(self._db_all))
            self._local.scratch = pair
        return pair

    def _compile(self, keywords: Sequence[bytes], extra: int) -> Any:
        hs = self._hs
        db = hs.Database(mode=hs.HS_MODE_BLOCK)
        db.compile(
            expressions=[re.escape(k) for k in keywords],
            ids=list(range(len(keywords))),
            elements=len(keywords),
            flags=[hs.HS_FLAG_CASELESS | extra] * len(keywords),
        )
        return db

    def first_hits(self, text: bytes) -> dict[int, int]:
        hits: dict[int, int] = {}
        lengths = self._lengths

        def on_match(idx: int, start: int, end: int, flags: int, ctx: object) -> None:
            hits[idx] = end - lengths[idx]

        if text:
            self._db.scan(text, match_event_handler=on_match, scratch=self._scratch()[0])
        return hits

    def all_hits(self, text: bytes) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        lengths = self._lengths

        def on_match(idx: int, start: int, end: int, flags: int, ctx: object) -> None:
            out.append((idx, end - lengths[idx]))

        if text:
            self._db_all.scan(text, match_event_handler=on_match, scratch=self._scratch()[1])
        return out


def hyperscan_available() -> bool:
    try:
        import hyperscan  # noqa: F401
    except ImportError:
        return False
    return True


def choose_engine(requested: str | None) -> str:
    """Resolve the engine name: explicit argument, then the environment, then auto."""
    name = (requested or os.environ.get(ENGINE_ENV) or "auto").strip().lower()
    if name == "auto":
        return "hyperscan" if hyperscan_available() else "python"
    if name == "hyperscan":
        if not hyperscan_available():
            raise BastionError("masking engine 'hyperscan' requested but the module is missing")
        return name
    if name == "python":
        return name
    raise BastionError(f"unknown masking engine {name!r} (expected auto, hyperscan or python)")


def build_prefilter(engine: str, keywords: Sequence[bytes]) -> Prefilter:
    if engine == "hyperscan" and keywords:
        return HyperscanPrefilter(keywords)
    return PythonPrefilter(keywords)
