"""StreamMasker: sans-IO streaming masker for one output stream (one channel direction).

Release policy (all positions are in visible text, escape sequences excluded):
* complete lines (ended by ``\\n`` or ``\\r``) are scanned and released at once;
* of a partial line, everything before the earliest point where a secret could start (a
  keyword minus the rule's lookback, a tail that could begin a keyword, a trailing token a
  fixed-offset key could still grow from) is released; the rest is held;
* a line longer than ``max_hold`` visible characters is cut at a deterministic point (last
  space/comma/semicolon in its second half) and scanned as if it were a line;
* ``release_idle()`` (the driver calls it after ``hold_timeout`` of quiet) releases the held
  tail, masking what matched plus any held token that starts like a secret.
Without idle releases, the output depends only on the input bytes, not on how they were split.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping

from bastion.masking.ansi import _PARTIAL, _SEQ, MAX_SEQUENCE, Tokens, filter_osc, tokenize
from bastion.masking.catalog import DEFAULT_RULES
from bastion.masking.detect import (
    RUN_CHARS,
    Detector,
    Span,
    get_detector,
    line_start,
    next_line_end,
)
from bastion.masking.engine import choose_engine
from bastion.masking.known import known_value_rules
from bastion.masking.memory import MAX_LEN as MAX_MEMORY_LEN
from bastion.masking.memory import SessionMemory
from bastion.masking.profiles import OutputProfile
from bastion.masking.rules import Rule
from bastion.masking.structure import StructState

DEFAULT_HOLD_TIMEOUT = 0.005
DEFAULT_MAX_HOLD = 16384
# line widths at which a token is taken to be folded by the terminal or the program
FOLD_WIDTHS = frozenset((80, 100, 120, 132, 140, 150, 160, 180, 200, 220, 240, 250, 256))
# Escapes stripped in one pass (see StreamMasker._coloured_lines): CSI and 2-byte escapes of
# bounded length, string sequences (OSC, DCS, SOS, PM, APC) that hold no line end, and a lone
# ESC (what ansi.tokenize does with an ESC that starts no sequence: binary output has one
# every ~256 bytes). The branches are tried in tokenize's order; where the bounds could make
# them differ from it (_LONG_SEQ, a string sequence with a line end, a rewritten OSC, an
# unfinished one), _coloured_lines declines.
_STRING_SEQ = re.compile(rb"\x1b[\]PX^_]")
_SIMPLE_SEQ = re.compile(
    rb"\x1b(?:\[[\x30-\x3f]{0,256}[\x20-\x2f]{0,16}[\x40-\x7e]"
    rb"|\][^\x07\x1b\r\n]*(?:\x07|\x1b\\)"
    rb"|[PX^_][^\x1b\r\n]*\x1b\\"
    rb"|[\x20-\x2f]{0,16}[\x30-\x4f\x51-\x57\x59\x5a\x5c\x60-\x7e])?"
)
_LONG_SEQ = re.compile(
    rb"\x1b(?:\[[\x30-\x3f]{257}|\[[\x30-\x3f]*[\x20-\x2f]{17}|[\x20-\x2f]{17})"
)


def _merge(spans: Iterable[Span], order: Mapping[str, int]) -> list[Span]:
    """Sort and merge overlapping spans; the earliest-starting (then first-listed, then longest)
    rule names the merged span."""
    out: list[Span] = []
    for s, e, rid in sorted(spans, key=lambda x: (x[0], order.get(x[2], 1 << 20), -x[1])):
        if out and s < out[-1][1]:
            ps, pe, prid = out[-1]
            if e > pe:
                out[-1] = (ps, e, prid)
        else:
            out.append((s, e, rid))
    return out


def _raw_line_offset(raw: bytes, vis: bytes, v: int) -> int:
    """Raw offset of visible position ``v`` (0, the end, or just after a line end) when the
    escapes stripped from ``raw`` hold no line ends: after the same number of line ends."""
    if v <= 0:
        return 0
    if v >= len(vis):
        return len(raw)
    n = vis.count(b"\n", 0, v) + vis.count(b"\r", 0, v)
    rest = raw.replace(b"\r", b"\n").split(b"\n", n)  # one pass in C, no Python loop
    return len(raw) - len(rest[-1]) if len(rest) > n else len(raw)


def _stars(seg: bytes) -> bytes:
    # one '*' per character (UTF-8 continuation bytes dropped) keeps the display width
    if seg.isascii():
        return b"*" * len(seg)
    return b"*" * sum(1 for c in seg if c & 0xC0 != 0x80)


class _Render:
    """Writes raw bytes for successive visible ranges, masking spans, keeping escapes."""

    def __init__(self, masker: StreamMasker, raw: bytes, tok: Tokens | None, vis: bytes) -> None:
        self.m, self.raw, self.tok, self.vis = masker, raw, tok, vis
        self.out = bytearray()
        self.cursor = 0  # raw bytes consumed
        self.pi = 0  # next piece (escape case)

    def emit(self, a: int, b: int, spans: list[Span]) -> None:
        """Release visible [a, b); spans are merged, in visible coordinates, clipped to >= a."""
        if self.tok is None:
            self.out += self.m._mask_range(self.vis, a, b, spans)
            self.cursor = b
            return
        tok = self.tok
        pieces, nvis = tok.pieces, len(tok.vis)
        if not spans and not tok.rewritten:  # nothing to change: copy raw bytes through
            if b >= nvis:
                raw_end, self.pi = tok.end, len(pieces)
            else:
                k = bisect_right(tok.text_vis, b) - 1
                self.pi = tok.text_idx[k]
                rs, _, vs, _, _ = pieces[self.pi]
                raw_end = rs + (b - vs)
            if raw_end > self.cursor:
                self.out += self.raw[self.cursor:raw_end]
                self.cursor = raw_end
            return
        while self.pi < len(pieces):
            rs, re_, vs, is_text, rep = pieces[self.pi]
            if not is_text:  # escape sequence: goes out with the visible text after it
                if not (vs < b or b == nvis):
                    return
                if rep is None:
                    self.out += self.raw[rs:re_]
                else:
                    self.out += rep
                    self.m._count_osc(rep)
                self.pi += 1
                self.cursor = re_
                continue
            plen = re_ - rs
            start = max(vs, a)
            end = min(vs + plen, b)
            if start >= b:
                return
            if end > start:
                self.out += self.m._mask_range(self.vis, start, end, spans)
            if vs + plen <= b:
                self.pi += 1
                self.cursor = re_
            else:
                self.cursor = rs + (b - vs)
                return

    def finish(self) -> int:
        """Raw bytes consumed (the caller keeps the rest held)."""
        if self.tok is not None and self.pi >= len(self.tok.pieces):
            return max(self.tok.end, self.cursor)
        return self.cursor


class StreamMasker:
    """Mask secrets in one byte stream; see the module docstring for the release policy."""

    def __init__(
        self,
        rules: Iterable[Rule] | None = None,
        pty: bool = False,
        *,
        engine: str | None = None,
        known_values: Iterable[bytes] = (),
        hold_timeout: float = DEFAULT_HOLD_TIMEOUT,
        max_hold: int = DEFAULT_MAX_HOLD,
        profile: OutputProfile | None = None,
        memory: SessionMemory | None = None,
    ) -> None:
        base = DEFAULT_RULES if rules is None else tuple(rules)
        all_rules = (*base, *known_value_rules(known_values))
        self._det: Detector = get_detector(all_rules, choose_engine(engine))
        self.pty = pty
        self.hold_timeout = hold_timeout
        self._max_line = max(256, max_hold)
        self._max_raw = 4 * self._max_line + MAX_SEQUENCE
        self._raw = b""
        self._ctx = b""  # visible text of the current line already released
        self._memo = [0, 1 << 62]  # keyword scan of the current partial line (see hold_point)
        self._held_visible = False
        # rule id of a mask that an idle release ended mid-token: the rest of that token is
        # masked too when it arrives (fail closed)
        self._carry: str | None = None
        self._carry_cr = False  # the carry comes from a line ended by \r (skip the \n after it)
        self._profile = profile
        # masked values, masked again wherever they reappear (see memory.py); shareable
        self._mem = memory if memory is not None else SessionMemory()
        # prefix-shaped formats are masked wherever they appear: only shapeless values (a Key
        # Vault value, a password after its key) need remembering
        self._shaped = frozenset(r.id for r in self._det.rules if r.strong)
        self._st = self._new_state()
        self._counts: Counter[str] = Counter()
        self._osc_rids: dict[bytes, list[str]] = {}
        self.late_detections = 0  # matches whose start had already been released

    # --- public API ---------------------------------------------------------------------------

    @property
    def engine(self) -> str:
        return self._det.engine

    @property
    def pending(self) -> bool:
        """True while visible bytes of a partial line are held back."""
        return self._held_visible

    @property
    def counts(self) -> Mapping[str, int]:
        return dict(self._counts)

    @property
    def profile(self) -> OutputProfile | None:
        return self._profile

    def set_profile(self, profile: OutputProfile | None) -> None:
        """Output profile of the command whose output follows (profiles.profile_for_argv);
        None goes back to the default rules (and to profiles selected by prompts seen in the
        stream)."""
        self._profile = profile
        self._st.profile, self._st.fixed_profile = profile, profile is not None
        self._st.prompt, self._st.bare = b"", False

    def _new_state(self) -> StructState:
        st = StructState()
        if self._profile is not None:
            st.profile, st.fixed_profile = self._profile, True
        return st

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        raw = self._raw + data if self._raw else bytes(data)
        out = self._plain(raw) if self._carry is None and b"\x1b" not in raw else None
        if out is None:
            out = self._run(raw, final=False, idle=False)
        if len(self._raw) > self._max_raw:  # bound memory even for escape-only floods
            out += self._run(self._raw, final=False, idle=True)
        return out

    def release_idle(self) -> bytes:
        if not self._raw:
            return b""
        return self._run(self._raw, final=False, idle=True)

    def flush(self) -> bytes:
        out = self._run(self._raw, final=True, idle=True) if self._raw else b""
        self._ctx, self._st, self._held_visible, self._carry = b"", self._new_state(), False, None
        self._carry_cr = False
        self._memo = [0, 1 << 62]
        return out

    # --- internals ----------------------------------------------------------------------------

    def _run(self, raw: bytes, final: bool, idle: bool) -> bytes:
        if not (final or idle) and self._carry is None and b"\x1b" in raw:
            done: list[bytes] = []
            while True:  # a chunk longer than max_line is taken a few lines at a time
                head = self._coloured_lines(raw)
                if head is None:
                    break
                done.append(head[0])
                raw = raw[head[1]:]
                if b"\x1b" not in raw or self._carry is not None:
                    break
            if done:
                done.append(self._run(raw, final, idle))
                return b"".join(done)
        tok = tokenize(raw, final, self._mask_payload) if b"\x1b" in raw else None
        vis = tok.vis if tok is not None else raw
        r = _Render(self, raw, tok, vis)
        n, pos = len(vis), 0
        while pos < n:
            last = max(vis.rfind(b"\n", pos), vis.rfind(b"\r", pos))
            if last >= pos:
                end = self._block_end(vis, pos, last + 1)
                if end > pos:
                    self._unit(r, vis, pos, end, self._ctx + vis[pos:end] if self._ctx
                               else vis[pos:end])
                    self._ctx = b""
                    pos = end
                    continue
            if len(self._ctx) + (next_line_end(vis, pos) - pos) > self._max_line:
                pos = self._cut(r, vis, pos)
                continue
            break
        if pos < n:  # the partial line
            ctx = self._ctx
            text = ctx + vis[pos:] if ctx else vis[pos:]
            if idle:
                self._unit(r, vis, pos, n, text, idle=not final, final=final)
                self._ctx = b"" if final else text
                pos = n
            else:
                k = len(ctx) if self._carry else self._hold(text, len(ctx))
                if k > len(ctx):
                    r.emit(pos, pos + k - len(ctx), [])
                    self._ctx = text[:k]
                    pos += k - len(ctx)
        else:
            r.emit(n, n, [])  # trailing escape sequences
        self._held_visible = pos < n
        self._raw = raw[r.finish():]
        return bytes(r.out)

    def _plain(self, raw: bytes) -> bytes | None:
        """Fast path of ``_run`` for a feed without escape sequences (most output): the same
        result with a few slices instead of the render machinery; unmasked text goes out as
        a slice of ``raw`` (no copy when all of it is released). Declines (None, nothing
        changed) when a line is over the limit."""
        n = len(raw)
        last = max(raw.rfind(b"\n"), raw.rfind(b"\r"))
        ctx = self._ctx
        end = last + 1
        limit = self._max_line
        if (len(ctx) if end == 0 else 0) + n - end > limit:
            return None  # the partial line is over the limit: _run cuts it
        if end and len(ctx) + end > limit and self._block_end(raw, 0, end) != end:
            return None
        masked: bytes | None = None
        if end:
            text = ctx + raw[:end] if ctx else raw if end == n else raw[:end]
            self._memo = [0, 1 << 62]
            spans = self._scan(text)
            if spans:
                r = _Render(self, raw, None, raw)
                self._emit_spans(r, 0, end, text, spans)
                masked = bytes(r.out)
            ctx = self._ctx = b""
        pos = end
        if end < n:  # the partial line: release what cannot start a secret
            text = ctx + raw[end:] if ctx else raw[end:] if end else raw
            k = self._hold(text, len(ctx))
            if k > len(ctx):
                pos = end + k - len(ctx)
                self._ctx = text[:k]
        self._held_visible = pos < n
        self._raw = raw[pos:] if pos < n else b""
        if masked is None:
            return raw if pos == n else raw[:pos]
        return masked + raw[end:pos] if pos > end else masked

    def _coloured_lines(self, raw: bytes) -> tuple[bytes, int] | None:
        """Fast path for the complete lines of output whose only escapes are CSI/2-byte
        sequences (colours): strip them with one regex and, when nothing matches, release the
        raw bytes as they are. Gives the same result as the general path, or declines."""
        end = max(raw.rfind(b"\n"), raw.rfind(b"\r")) + 1
        if end == 0:
            return None
        room = self._max_line - len(self._ctx)
        if end > room > 0:  # stop at a line end that keeps the visible text within max_line
            end = max(raw.rfind(b"\n", 0, room), raw.rfind(b"\r", 0, room)) + 1 or end
        head = raw[:end] if end < len(raw) else raw
        if _LONG_SEQ.search(head):
            return None
        for sm in _STRING_SEQ.finditer(head):  # as tokenize sees them in the whole input
            j = sm.start()
            m = _SEQ.match(raw, j)
            if m is None:
                if _PARTIAL.match(raw, j):
                    return None  # unfinished: tokenize holds it
                continue  # a lone ESC
            seq = m.group()
            if (len(seq) > MAX_SEQUENCE or b"\n" in seq or b"\r" in seq
                    or (seq[1:2] == b"]" and filter_osc(seq, self._mask_payload) != seq)):
                return None
        vis = _SIMPLE_SEQ.sub(b"", head)
        ctx = self._ctx
        if len(ctx) + len(vis) > self._max_line:
            return None
        text = ctx + vis if ctx else vis
        raw_spans = self._scan(text)
        self._memo, self._ctx = [0, 1 << 62], b""
        if not raw_spans:
            return head, end
        # tokenize only the lines that hold a span; the lines around them go out as they are
        nctx = len(ctx)
        a = line_start(vis, max(0, min(s for s, _, _ in raw_spans) - nctx))
        b = min(len(vis), next_line_end(vis, max(a, max(e for _, e, _ in raw_spans) - nctx - 1))
                + 1)
        ra, rb = _raw_line_offset(head, vis, a), _raw_line_offset(head, vis, b)
        piece = head[ra:rb]
        # final: every sequence in it was checked complete or lone in the whole input above (a
        # lone "ESC ]" would look unfinished at the end of the piece)
        tok = tokenize(piece, True, self._mask_payload)
        r = _Render(self, piece, tok, tok.vis)
        self._emit_spans(r, 0, len(tok.vis), text[:nctx + b], raw_spans)
        return head[:ra] + bytes(r.out) + head[rb:], end

    def _block_end(self, vis: bytes, pos: int, end: int) -> int:
        """Largest prefix of the complete lines [pos, end) with no line over the limit.

        A line longer than ``limit`` covers at least one multiple of ``limit`` (relative to the
        first line end), so only the lines at those few sample points are measured: O(1)
        Python work per block instead of a loop over every line.
        """
        limit = self._max_line
        if len(self._ctx) + end - pos <= limit:
            return end
        first = next_line_end(vis, pos)
        if len(self._ctx) + first - pos > limit:
            return pos
        # lines after the first start after vis[first] (a line end); end - 1 is a line end
        q = first + limit
        while q < end:
            c = vis[q]
            if c != 10 and c != 13:  # inside a line: measure it
                start = max(vis.rfind(b"\n", first, q), vis.rfind(b"\r", first, q)) + 1
                a = vis.find(b"\n", q, end)
                b = vis.find(b"\r", q, end)
                stop = b if a == -1 else a if b == -1 or a < b else b
                if stop - start > limit:
                    return start
            q += limit
        return end

    def _cut(self, r: _Render, vis: bytes, pos: int) -> int:
        """Scan the first ``max_line`` characters of an over-long line as a line of its own."""
        ctx = self._ctx
        head = (ctx + vis[pos:pos + self._max_line])[: self._max_line]
        half = self._max_line // 2
        c = max(head.rfind(b" ", half), head.rfind(b"\t", half), head.rfind(b",", half),
                head.rfind(b";", half)) + 1
        if c <= half:
            c = self._max_line
        if c <= len(ctx):  # already released past the cut: the rest stays line context
            self._memo = [0, 1 << 62]
            self._unit_spans_only(head[:c])
            self._ctx = ctx[c:]
            return pos
        end = pos + c - len(ctx)
        self._unit(r, vis, pos, end, head[:c], cut=True)
        self._ctx = b""
        return end

    def _fold(self, text: bytes, spans: list[Span]) -> list[Span]:
        """Terminal-width folding: a mask (8+ characters) that ends exactly at the end of a
        line of a terminal width (80, 120 …) goes on at the start of the next line; that
        leading run of token characters is masked too (and so on, for a token folded over
        several lines). A continuation beyond ``text`` is carried to the next unit."""
        out: list[Span] = []
        n = len(text)
        todo = [(s, e, rid) for s, e, rid in spans if e - s >= 8]
        while todo:
            _, e, rid = todo.pop()
            if e >= n or text[e] not in b"\r\n" or e - line_start(text, e) not in FOLD_WIDTHS:
                continue
            nxt = e + 1
            cr = text[e] == 13
            if cr and nxt < n and text[nxt] == 10:
                nxt += 1
            if nxt >= n:  # the rest arrives later
                self._carry, self._carry_cr = rid, cr and e + 1 == n
                continue
            stop = len(text) - len(text[nxt:].lstrip(RUN_CHARS))
            if stop > nxt and text[stop - 1] != 58:  # "apiVersion:" starts a key, no token
                out.append((nxt, stop, rid))
                todo.append((nxt, stop, rid))
        return out

    def _scan(self, text: bytes, kind: str = "", fold: bool = True) -> list[Span]:
        """Detector spans plus session memory: remembered values anywhere, and values masked
        in this text (remembered now) again after the place they were masked."""
        det = self._det
        if kind == "idle":
            spans = det.idle_spans(self._st, text)
        elif kind == "final":
            spans = det.final_spans(self._st, text)
        else:
            spans = det.spans(self._st, text)
        mem = self._mem
        if mem:
            spans += mem.find_all(text)
        if spans and kind != "idle":
            later: list[Span] = []
            shaped = self._shaped
            for s, e, rid in spans:
                if rid not in shaped and mem.remember(text[s:e], rid):
                    # (a line is always scanned whole, so "after it" is the same however the
                    # stream was chunked: the key of a TSV row that also holds its connection
                    # string is masked in both places)
                    later += mem.find_all(text, e, [text[s:e]])
            spans += later
            if fold:  # after remembering: a fold continuation is a fragment, not a value
                spans += self._fold(text, spans)
        return spans

    def _hold(self, text: bytes, released: int) -> int:
        """First position of the partial line that must stay held (see Detector.hold_point);
        with values remembered, also a complete remembered value in it and the trailing
        non-space run (which could be the start of one)."""
        if self._carry is not None:  # the rest of a masked token is still to come
            return released
        mem, memo = self._mem, self._memo
        if mem:
            found = mem.first(text, max(0, memo[0] - MAX_MEMORY_LEN))
            if found != -1 and found < memo[1]:
                memo[1] = found
        k = self._det.hold_point(self._st, text, released, memo)
        if mem and k > released:
            t = max(text.rfind(b" "), text.rfind(b"\t")) + 1
            k = max(released, min(k, t))
        return k

    def _unit_spans_only(self, text: bytes) -> None:
        # keeps the structure state in step for a unit whose bytes were all released already
        for s, e, _ in self._scan(text):
            if e > s:
                self.late_detections += 1

    def _unit(self, r: _Render, vis: bytes, pos: int, end: int, text: bytes,
              idle: bool = False, final: bool = False, cut: bool = False) -> None:
        """Scan ``text`` (= line context + vis[pos:end]) and release vis[pos:end] masked."""
        if not idle:
            self._memo = [0, 1 << 62]  # the line (or line piece) ends here
        raw_spans = self._scan(text, "idle" if idle else "final" if final else "", fold=False)
        if self._carry is not None:
            at = len(text) - (end - pos)
            seg = vis[pos:end]
            skip = 1 if self._carry_cr and seg[:1] == b"\n" else 0
            cont = len(seg) - skip - len(seg[skip:].lstrip(RUN_CHARS))
            if cont and seg[skip + cont - 1] == 58:
                cont = 0  # "apiVersion: v1" starts a key, not the rest of a token (as in _fold)
            if cont:
                raw_spans.append((at + skip, at + skip + cont, self._carry))
            if not (skip and len(seg) == 1):  # only the \n of a \r\n arrived: keep waiting
                self._carry, self._carry_cr = None, False
        if not idle and raw_spans:
            raw_spans += self._fold(text, raw_spans)
        # a mask that reaches the end of what is released now (an idle release, or the cut of
        # an over-long line inside a key) goes on over the rest of that token when it arrives
        if (cut or (idle and end == len(vis))) and any(e >= len(text) for _, e, _ in raw_spans):
            self._carry = next(rid for _, e, rid in raw_spans if e >= len(text))
            self._carry_cr = False
        self._emit_spans(r, pos, end, text, raw_spans)

    def _emit_spans(self, r: _Render, pos: int, end: int, text: bytes,
                    raw_spans: list[Span]) -> None:
        """Release vis[pos:end]; ``raw_spans`` are in ``text`` coordinates (text ends at end)."""
        if not raw_spans:
            r.emit(pos, end, [])
            return
        shift = pos - (len(text) - (end - pos))
        spans: list[Span] = []
        for s, e, rid in _merge(raw_spans, self._det.order):
            s, e = s + shift, e + shift
            if e <= pos:
                self.late_detections += 1
                continue
            if s < pos:
                self.late_detections += 1
                s = pos
            spans.append((s, e, rid))
            self._counts[rid] += 1
        r.emit(pos, end, spans)

    def _mask_range(self, vis: bytes, a: int, b: int, spans: list[Span]) -> bytes:
        if not spans:
            return vis[a:b]
        out = bytearray()
        p = a
        for s, e, rid in spans:
            if e <= a:
                continue
            if s >= b:
                break
            s2, e2 = max(s, a), min(e, b)
            out += vis[p:s2]
            if self.pty:
                out += _stars(vis[s2:e2])
            elif s2 == s:
                out += b"[MASKED:" + rid.encode() + b"]"
            p = e2
        out += vis[p:b]
        return bytes(out)

    def _mask_payload(self, payload: bytes) -> bytes:
        """Mask an OSC payload (window title, hyperlink) on its own."""
        spans = self._det.spans(StructState(), payload)
        if not spans:
            return payload
        merged = _merge(spans, self._det.order)
        masked = self._mask_range(payload, 0, len(payload), merged)
        if len(self._osc_rids) > 64:
            self._osc_rids.clear()
        self._osc_rids[masked] = [rid for _, _, rid in merged]
        return masked

    def _count_osc(self, seq: bytes) -> None:
        # an OSC is tokenized again while held; count its masks once, when it is released
        for key, rids in list(self._osc_rids.items()):
            if key in seq:
                self._counts.update(rids)
                del self._osc_rids[key]
                return

