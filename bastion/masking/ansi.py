"""ECMA-48 tokenizer: split terminal output into visible text and escape sequences.

Matching happens on the visible text so a secret broken up by colour codes is still found;
escape sequences are passed through untouched, except that OSC payloads (window titles,
OSC 8 hyperlinks) are masked like text and OSC 52 (clipboard write) is removed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

# An escape sequence longer than this is not trusted as one: its ESC passes through and the
# rest is treated (and scanned) as text, so the hold-back stays bounded.
MAX_SEQUENCE = 4096

# CSI, OSC (BEL or ST terminated), DCS/SOS/PM/APC strings, then 2-byte and nF escapes.
_SEQ = re.compile(
    rb"\x1b(?:\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]"
    rb"|\][^\x07\x1b]*(?:\x07|\x1b\\)"
    rb"|[PX^_][^\x1b]*\x1b\\"
    rb"|[\x20-\x2f]*[\x30-\x4f\x51-\x57\x59\x5a\x5c\x60-\x7e])"
)
# A sequence that is not finished yet (more bytes could complete it).
_PARTIAL = re.compile(
    rb"\x1b(?:\[[\x30-\x3f]*[\x20-\x2f]*|\][^\x07\x1b]*\x1b?|[PX^_][^\x1b]*\x1b?|[\x20-\x2f]*)\Z"
)

# (raw_start, raw_end, vis_pos, is_text, out): vis_pos is where the piece sits in the visible
# text; out replaces the raw bytes of an escape sequence (None = copy unchanged).
Piece = tuple[int, int, int, bool, bytes | None]


_ANY = re.compile(_SEQ.pattern + rb"|\x1b")


@dataclass
class Tokens:
    vis: bytes
    pieces: list[Piece]
    end: int  # raw bytes consumed; raw[end:] is an unfinished escape sequence
    rewritten: bool = False  # some escape sequence is replaced (masked OSC, dropped OSC 52)
    text_vis: list[int] = field(default_factory=list)  # vis start of each text piece
    text_idx: list[int] = field(default_factory=list)  # its index in pieces


def filter_osc(seq: bytes, mask_payload: Callable[[bytes], bytes]) -> bytes:
    """Mask an OSC payload; drop OSC 52 (clipboard write) entirely."""
    term_len = 1 if seq.endswith(b"\x07") else 2
    payload = seq[2:-term_len]
    code = payload.split(b";", 1)[0]
    if code == b"52":
        return b""
    masked = mask_payload(payload)
    if masked == payload:
        return seq
    return b"\x1b]" + masked + seq[-term_len:]


def tokenize(raw: bytes, final: bool, mask_payload: Callable[[bytes], bytes]) -> Tokens:
    tok = _tokenize(raw, final, mask_payload)
    for idx, (_, _, vs, is_text, out) in enumerate(tok.pieces):
        if is_text:
            tok.text_vis.append(vs)
            tok.text_idx.append(idx)
        elif out is not None:
            tok.rewritten = True
    return tok


def _tokenize(raw: bytes, final: bool, mask_payload: Callable[[bytes], bytes]) -> Tokens:
    vis = bytearray()
    pieces: list[Piece] = []
    i, n = 0, len(raw)
    # fast pass: one regex walk over all sequences (lone ESCs included: binary output has one
    # every ~256 bytes); an unfinished or over-long sequence drops to the slow loop
    for fm in _ANY.finditer(raw):
        j = fm.start()
        if j < i:
            continue
        end = fm.end()
        if end - j > MAX_SEQUENCE:
            break  # over-long sequence: its ESC alone is dropped below, the rest is text
        if end - j == 1 and not final and n - j <= MAX_SEQUENCE and _PARTIAL.match(raw, j):
            break  # an unfinished sequence near the end: held below
        if j > i:
            pieces.append((i, j, len(vis), True, None))
            vis += raw[i:j]
        if end - j == 1:  # a lone ESC (_SEQ failed here): passes through, the rest is text
            pieces.append((j, end, len(vis), False, None))
            i = end
            continue
        seq = fm.group()
        out = filter_osc(seq, mask_payload) if seq[1:2] == b"]" else None
        pieces.append((j, end, len(vis), False, out))
        i = end
    while i < n:
        j = raw.find(b"\x1b", i)
        if j == -1:
            j = n
        if j > i:
            pieces.append((i, j, len(vis), True, None))
            vis += raw[i:j]
        if j == n:
            break
        if not final and n - j <= MAX_SEQUENCE and _PARTIAL.match(raw, j):
            return Tokens(bytes(vis), pieces, j)
        m = _SEQ.match(raw, j)
        if m is None or m.end() - j > MAX_SEQUENCE:
            pieces.append((j, j + 1, len(vis), False, None))  # lone ESC; what follows is text
            i = j + 1
            continue
        seq = m.group()
        out = filter_osc(seq, mask_payload) if seq[1:2] == b"]" else None
        pieces.append((j, m.end(), len(vis), False, out))
        i = m.end()
    return Tokens(bytes(vis), pieces, n)
