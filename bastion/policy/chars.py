"""Lexical guards that run before parsing, and confusable skeletons for command names.

tree-sitter-bash silently misparses some inputs (CR/VT/FF as blanks, backslash-newline inside a
word), and invisible or bidi characters make the reviewed text differ from what runs. Such lines
are held for review before the parser gets a chance to be wrong.
"""

from __future__ import annotations

import re
import unicodedata

from bastion.policy.model import Finding

MAX_LINE_BYTES = 16 * 1024
# Longer lines are held for review without being parsed at all: parsing and walking are linear
# but cost ~4 s per MiB, and a gate call must stay short (the bastion allows up to 1 MiB lines).
MAX_PARSE_BYTES = 4 * MAX_LINE_BYTES

# C0 controls except TAB and LF, DEL, and C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")
# Bidi controls and default-ignorable / invisible characters.
_INVISIBLE = re.compile(
    "[\u00a0\u2000-\u200a\u202f\u205f\u3000\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e0fff]"
)
# A backslash-newline glued to a word: tree-sitter splits the word where bash joins it.
_GLUED_CONTINUATION = re.compile(r"[^\s]\\\n")

# Latin look-alikes that NFKC does not fold (Cyrillic, Greek). Enough for command names.
_CONFUSABLES = str.maketrans(
    {
        "а": "a", "в": "b", "с": "c", "е": "e", "һ": "h", "і": "i", "ј": "j", "к": "k",
        "м": "m", "о": "o", "р": "p", "ԛ": "q", "ѕ": "s", "т": "t", "у": "y", "х": "x",
        "ԁ": "d", "ɡ": "g", "ո": "n", "ս": "u", "ν": "v", "ԝ": "w", "ᴢ": "z",
        "А": "A", "В": "B", "С": "C", "Е": "E", "Н": "H", "І": "I", "К": "K", "М": "M",
        "О": "O", "Р": "P", "Т": "T", "Х": "X", "α": "a", "ο": "o", "ρ": "p", "ε": "e",
        "ι": "i", "κ": "k", "τ": "t", "υ": "u", "χ": "x", "Ѕ": "S", "‐": "-", "‑": "-",
        "–": "-", "—": "-", "−": "-",
    }
)


def line_findings(line: str) -> list[Finding]:
    """Findings about the raw characters of a line; each one is at least review."""
    found: list[Finding] = []
    if len(line.encode("utf-8", "surrogatepass")) > MAX_LINE_BYTES:
        found.append(Finding("review", "too-long", f"line longer than {MAX_LINE_BYTES} bytes"))
    if "\ufffd" in line or any(0xD800 <= ord(c) <= 0xDFFF for c in line):
        found.append(Finding("review", "bad-encoding", "line is not valid UTF-8"))
    m = _CONTROL.search(line)
    if m:
        found.append(
            Finding("review", "control-char", f"control character {m.group()!r} in the line")
        )
    m = _INVISIBLE.search(line)
    if m:
        found.append(
            Finding(
                "review", "invisible-char", f"invisible or bidi character U+{ord(m.group()):04X}"
            )
        )
    if _GLUED_CONTINUATION.search(line):
        found.append(
            Finding("review", "line-continuation", "backslash-newline inside a word")
        )
    return found


def skeleton(word: str) -> str:
    """ASCII look-alike of a word (NFKC, then Cyrillic/Greek confusables), e.g. 'ｒｍ' -> 'rm'."""
    if word.isascii():
        return word
    return unicodedata.normalize("NFKC", word).translate(_CONFUSABLES)
