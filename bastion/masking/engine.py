"""Keyword prefilters: which rules can match in a text, and where their first keyword starts.

Two interchangeable engines behind one Protocol: Hyperscan (block mode over the text handed
in, which is always a bounded run of complete lines or one partial line) and a pure-Python
fallback (``bytes.find`` per keyword on the lower-cased text). ``BASTION_MASK_ENGINE=python``
or ``engine="python"`` forces the fallback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any, Protocol

from bastion.errors import BastionError

ENGINE_ENV = "BASTION_MASK_ENGINE"


class Prefilter(Protocol):
    name: str

    def first_hits(self, text: bytes) -> dict[int, int]:
        """Keyword index -> start of its first (case-insensitive) occurrence in ``text``."""
        ...


class PythonPrefilter:
    name = "python"

    def __init__(self, keywords: Sequence[bytes]) -> None:
        self._keywords = list(enumerate(keywords))

    def first_hits(self, text: bytes) -> dict[int, int]:
        low = text.lower()
        hits: dict[int, int] = {}
        for idx, kw in self._keywords:
            p = low.find(kw)
            if p != -1:
                hits[idx] = p
        return hits


class HyperscanPrefilter:
    name = "hyperscan"

    def __init__(self, keywords: Sequence[bytes]) -> None:
        import hyperscan

        self._hs = hyperscan
        self._lengths = [len(k) for k in keywords]
        self._db: Any = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        flags = hyperscan.HS_FLAG_CASELESS | hyperscan.HS_FLAG_SINGLEMATCH
        self._db.compile(
            expressions=[re.escape(k) for k in keywords],
            ids=list(range(len(keywords))),
            elements=len(keywords),
            flags=[flags] * len(keywords),
        )

    def first_hits(self, text: bytes) -> dict[int, int]:
        hits: dict[int, int] = {}
        lengths = self._lengths

        def on_match(idx: int, start: int, end: int, flags: int, ctx: object) -> None:
            hits[idx] = end - lengths[idx]

        if text:
            self._db.scan(text, match_event_handler=on_match)
        return hits


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
