"""Detector: prefilter hits -> confirmed secret spans; plus the partial-line hold decision.

Texts handed in are always whole lines (plus, for the hold and idle decisions, one partial
line). Rules never match across a line end, so running a rule from the start of the line of
its first keyword gives the same matches as running it over the whole text.
"""

from __future__ import annotations

import re
import threading
from bisect import bisect_left
from collections.abc import Iterable, Sequence

from bastion.masking import structure
from bastion.masking.catalog import KEYWORD_BEFORE_SECRET
from bastion.masking.decode import JSON_ESCAPE, PERCENT, decoded_views
from bastion.masking.engine import Prefilter, _trie_pattern, build_prefilter
from bastion.masking.rules import Rule, char_classes
from bastion.masking.structure import StructState

Span = tuple[int, int, str]

# Characters of a token that a fixed-offset rule (Azure identifiable keys ...) may hold
# before its signature arrives: the trailing run of these is held back.
RUN_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_~.:=-"
KNOWN_PREFIX_MIN = 4
# On idle release, a value being typed or printed right after a secret-named key (or a
# secret-carrying CLI flag) at the end of the held text is masked even if it is still short.
_IDLE_VALUE = re.compile(
    rb"(?i)(?:(?:pass(?:word|wd|phrase)?|pwd|secret|token|credentials?|api[_-]?key|access[_-]?key"
    rb"|private[_-]?key|auth|accountkey|sharedaccesskey|sig|code)[A-Za-z0-9_.-]*[\"']?"
    rb"[ \t]*(?::=|=>|=|:)|--[a-z-]*(?:password|secret|token|key|pat)(?:[ \t]+|=))"
    rb"[ \t]*[\"']?(?P<s>[^\s\"',;&|]+)\Z"
    rb"|://[^\s:/@\"'<>]*:(?P<s2>[^\s@/\"'<>]+)@?\Z"  # scheme://user:pass... (host not yet)
)


def line_start(text: bytes, pos: int) -> int:
    return max(text.rfind(b"\n", 0, pos), text.rfind(b"\r", 0, pos)) + 1


def next_line_end(text: bytes, pos: int) -> int:
    """Index of the next ``\\n`` or ``\\r`` at or after ``pos``, or ``len(text)``."""
    a = text.find(b"\n", pos)
    b = text.find(b"\r", pos)
    if a == -1:
        return len(text) if b == -1 else b
    return a if b == -1 or a < b else b


_PCT = re.compile(rb"%[0-9A-Fa-f]{2}")
_LAST_SEPARATOR = re.compile(rb"=(?=[^=]+=*\Z)")


def _held_fragment_suspicious(run: bytes) -> bool:
    """A held token of 8+ letters/digits mixing at least two of lower, upper and digits: it
    could be the start of a key whose signature or context has not arrived yet."""
    return len(run) >= 8 and char_classes(bytes(c for c in run if chr(c).isalnum())) >= 2


class Detector:
    """Compiled rule set + prefilter; stateless (the structure state is passed in)."""

    def __init__(self, rules: Sequence[Rule], engine: str) -> None:
        self.rules = list(rules)
        self.order: dict[str, int] = {}
        for i, r in enumerate(self.rules):
            self.order.setdefault(r.id, i)
        keywords: list[bytes] = []
        index: dict[bytes, int] = {}
        self._kw_rules: list[list[int]] = []
        self._kw_lookback: list[int | None] = []
        for ridx, rule in enumerate(self.rules):
            for kw in rule.keywords:
                k = index.setdefault(kw, len(keywords))
                if k == len(keywords):
                    keywords.append(kw)
                    self._kw_rules.append([])
                    self._kw_lookback.append(None)
                self._kw_rules[k].append(ridx)
                prev = self._kw_lookback[k]
                self._kw_lookback[k] = rule.lookback if prev is None else max(prev, rule.lookback)
        self._struct_kws: set[int] = set()
        for kw in structure.KEYWORDS:
            k = index.setdefault(kw, len(keywords))
            if k == len(keywords):
                keywords.append(kw)
                self._kw_rules.append([])
                self._kw_lookback.append(None)
            self._struct_kws.add(k)
        self._name_kws = {index[kw]: len(kw) for kw in structure.NAME_KEYWORDS}
        self.always = [i for i, r in enumerate(self.rules) if not r.keywords]
        self.prefilter: Prefilter = build_prefilter(engine, keywords)
        self.engine = self.prefilter.name if keywords else engine
        self._max_kw = max((len(k) for k in keywords), default=0)
        self._prefixes = {kw[:i] for kw in keywords for i in range(1, len(kw))}
        # With look-back rules the trailing run of RUN_CHARS is held anyway, so of the keyword
        # prefixes a line tail may end in only those with another character (a quote, a
        # space) can hold more: one anchored regex finds the longest instead of a loop over
        # every tail length (see hold_point).
        # Only keywords a secret can start at need this: where the secret always follows the
        # keyword (context rules, structural keywords), releasing part of the keyword early
        # cannot release part of a secret.
        held_kws = {kw for r in self.rules if r.id not in KEYWORD_BEFORE_SECRET
                    for kw in r.keywords}
        special = sorted(
            (p for p in {kw[:i] for kw in held_kws for i in range(1, len(kw))}
             if p == p.lower() and any(c not in RUN_CHARS for c in p)),
            key=len, reverse=True,
        )  # fmt: skip
        self._special_max = max((len(p) for p in special), default=0)
        self._special_tail = (
            re.compile(b"(?:" + _trie_pattern(special) + rb")\Z", re.I)
            if special else None
        )  # fmt: skip
        self._max_lookback = max((r.lookback for r in self.rules), default=0)
        self._strong = [(kw, r.id) for r in self.rules if r.strong for kw in r.keywords]
        self._strong_prefixes = {kw[:i]: r.id for r in self.rules if r.strong
                                 for kw in r.keywords for i in range(8, len(kw))}
        known = [kw for r in self.rules if r.id == "known-value" for kw in r.keywords]
        self._known_prefixes = {kw[:i] for kw in known for i in range(KNOWN_PREFIX_MIN, len(kw))}
        self._max_known = max((len(k) for k in known), default=0)

    # --- matching ---------------------------------------------------------------------------

    def hits(self, text: bytes) -> tuple[dict[int, list[int]], list[int]]:
        """Rule index -> keyword positions (ascending), and the structural keyword positions."""
        rule_hits: dict[int, list[int]] = {i: [0] for i in self.always}
        struct: list[int] = []
        kw_rules, struct_kws, name_kws = self._kw_rules, self._struct_kws, self._name_kws
        for k, p in self.prefilter.all_hits(text):
            if k in struct_kws:
                ln = name_kws.get(k)
                # "name": "vm1" starts nothing: only a secret name is worth a look at the line
                if ln is None or structure.secret_name_at(text, p + ln):
                    struct.append(p)
            for ridx in kw_rules[k]:
                lst = rule_hits.get(ridx)
                if lst is None:
                    rule_hits[ridx] = [p]
                else:
                    lst.append(p)
        return rule_hits, struct

    def rule_spans(self, text: bytes, hits: dict[int, list[int]]) -> list[Span]:
        out: list[Span] = []
        n = len(text)
        for ridx, positions in hits.items():
            rule = self.rules[ridx]
            if rule.anchor is not None:
                out.extend(self._anchored(rule, text, min(positions)))
                continue
            if ridx in self.always:
                out.extend(self._confirm(rule, rule.compiled.finditer(text), text))
                continue
            # run the rule only on the lines holding one of its keywords
            finditer = rule.compiled.finditer
            end = -1
            for p in sorted(positions):
                if p < end:
                    continue
                start = line_start(text, p)
                end = min(next_line_end(text, p) + 1, n)
                out.extend(self._confirm(rule, finditer(text, start, end), text))
        return out

    def _anchored(self, rule: Rule, text: bytes, first: int) -> Iterable[Span]:
        assert rule.anchor is not None
        rx, anchor, off = rule.compiled, rule.anchor, rule.anchor_offset
        p = text.find(anchor, max(0, first))
        while p != -1:
            if p >= off:
                m = rx.match(text, p - off)
                if m is not None:
                    yield from self._confirm(rule, (m,), text)
            p = text.find(anchor, p + 1)

    @staticmethod
    def _confirm(rule: Rule, matches: Iterable[re.Match[bytes]], text: bytes) -> Iterable[Span]:
        check = rule.check
        for m in matches:
            s, e = rule.secret_span(m)
            if e > s and (check is None or check(text[s:e], rule.key_of(m))):
                yield (s, e, rule.id)

    def struct_spans(self, st: StructState, text: bytes, struct: list[int], partial_tail: bool
                     ) -> list[Span]:
        """Feed the lines of ``text`` to the structure machine: every line while a state is
        active, otherwise only the lines holding a structural keyword."""
        if not st.busy and not struct:
            return []
        struct.sort()
        out: list[Span] = []
        n = len(text)
        pos = 0 if st.busy else line_start(text, struct[0])
        while pos < n:
            eol = next_line_end(text, pos)
            partial = eol == n and partial_tail
            out.extend(structure.line_spans(st, text[pos:eol], pos, partial))
            pos = eol + 1
            if not st.busy and pos < n:
                i = bisect_left(struct, pos)
                if i == len(struct):
                    break
                pos = line_start(text, struct[i])
        return out

    def spans(self, st: StructState, text: bytes, partial_tail: bool = False) -> list[Span]:
        hits, struct = self.hits(text)
        out = self.rule_spans(text, hits) if hits else []
        if st.busy or struct:
            out.extend(self.struct_spans(st, text, struct, partial_tail))
        if b"\\" in text or b"%" in text:
            out.extend(self.decoded_spans(text))
        return out

    def decoded_spans(self, text: bytes) -> list[Span]:
        """Rule matches in the JSON-unescaped / percent-decoded views of the lines that have
        escapes, mapped back to the raw (encoded) span."""
        out: list[Span] = []
        n = len(text)
        pos = 0
        # only an escape that decodes (decode.JSON_ESCAPE, decode.PERCENT) gives a view: lines
        # whose backslashes and percent signs are something else (binary output has one every
        # ~128 bytes) are skipped in C. Two regexes with a literal first byte run ~6x faster
        # than one alternation; each looks ahead once, the next search starts past the line.
        ja = JSON_ESCAPE.search(text)
        pa = PERCENT.search(text)
        while pos < n:
            if ja is not None and ja.start() < pos:
                ja = JSON_ESCAPE.search(text, pos)
            if pa is not None and pa.start() < pos:
                pa = PERCENT.search(text, pos)
            if ja is None:
                if pa is None:
                    break
                first = pa.start()
            else:
                first = ja.start() if pa is None else min(ja.start(), pa.start())
            start = line_start(text, first)
            end = next_line_end(text, first)
            for chain in decoded_views(text[start:end]):
                dec = chain.text
                hits, _ = self.hits(dec)
                for s, e, rid in self.rule_spans(dec, hits) if hits else []:
                    rs, re_ = chain.span(s, e)
                    out.append((start + rs, start + re_, rid))
                st = StructState()
                for s, e, rid in structure.inline_spans(st, dec):
                    rs, re_ = chain.span(s, e)
                    out.append((start + rs, start + re_, rid))
            pos = end + 1
        return out

    # --- hold-back decisions ------------------------------------------------------------------

    def hold_point(self, st: StructState, text: bytes, released: int, memo: list[int]) -> int:
        """First position of a partial line that must stay held (bytes before it are safe).

        ``memo`` = [scanned length, earliest keyword start minus look-back] for this line, so a
        line fed byte by byte is scanned once, not once per byte."""
        n = len(text)
        if st.busy or self.always or n <= released:
            return released
        start = max(0, memo[0] - self._max_kw + 1)
        seg = text[start:] if start else text
        for kidx, p in self.prefilter.first_hits(seg).items():
            lb = self._kw_lookback[kidx] or 0  # structural keywords hold from themselves
            if start + p - lb < memo[1]:
                memo[1] = start + p - lb
        # an escape (JSON \\, %XX) can hide a keyword or move a boundary: decoded matches may
        # start up to the longest look-back before it
        esc = seg.find(b"\\")
        pm = _PCT.search(seg) if b"%" in seg else None
        if pm is not None and (esc == -1 or pm.start() < esc):
            esc = pm.start()
        if esc != -1 and start + esc - self._max_lookback < memo[1]:
            memo[1] = max(0, start + esc - self._max_lookback)
        memo[0] = n
        k = min(n, memo[1])
        if self._max_lookback:
            k = min(k, len(text.rstrip(RUN_CHARS)))
            if self._special_tail is not None:
                m = self._special_tail.search(text, max(0, n - self._special_max))
                if m is not None:
                    k = min(k, m.start())
        elif self._max_kw > 1:
            tail = text[-(self._max_kw - 1):].lower()
            for ln in range(len(tail), 0, -1):
                if tail[-ln:] in self._prefixes:
                    k = min(k, n - ln)
                    break
        return max(k, released)

    def final_spans(self, st: StructState, text: bytes) -> list[Span]:
        """Spans for the last partial line at end of stream (the text is complete)."""
        return self.spans(st, text, partial_tail=True)

    def idle_spans(self, st: StructState, text: bytes) -> list[Span]:
        """Spans for releasing a held partial line now: real matches plus fail-closed masks
        for what could still be the start of a secret."""
        out = self.spans(st, text, partial_tail=True)
        n = len(text)
        m = _IDLE_VALUE.search(text, line_start(text, n))
        if m is not None:
            g = "s" if m.start("s") != -1 else "s2"
            out.append((m.start(g), n, "held-fragment"))
        t = len(text.rstrip(RUN_CHARS))
        sep = _LAST_SEPARATOR.search(text, t)  # "KEY=value": the key part is not the secret
        if sep is not None:
            t = sep.end()
        run = text[t:].lower()
        if run and m is None:
            for kw, rid in self._strong:
                if kw in run:
                    out.append((t, n, rid))
                    break
            else:
                if _held_fragment_suspicious(text[t:]):
                    out.append((t, n, "held-fragment"))
                else:  # a held prefix of a secret prefix, e.g. "github_pat" or "AGE-SECRET"
                    for ln in range(min(len(run), 40), 7, -1):
                        prefix_of = self._strong_prefixes.get(run[-ln:])
                        if prefix_of is not None:
                            out.append((n - ln, n, prefix_of))
                            break
        if self._max_known:
            tail = text[-(self._max_known - 1):]
            for ln in range(len(tail), KNOWN_PREFIX_MIN - 1, -1):
                if tail[-ln:].lower() in self._known_prefixes:
                    out.append((n - ln, n, "known-value"))
                    break
        return out


_CACHE: dict[tuple[tuple[Rule, ...], str], Detector] = {}
_CACHE_LOCK = threading.Lock()


def get_detector(rules: Sequence[Rule], engine: str) -> Detector:
    """Compiling the prefilter costs milliseconds: share one detector per (rules, engine)."""
    key = (tuple(rules), engine)
    with _CACHE_LOCK:
        det = _CACHE.get(key)
        if det is None:
            det = Detector(rules, engine)
            if len(_CACHE) > 32:
                _CACHE.clear()
            _CACHE[key] = det
        return det
