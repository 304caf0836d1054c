"""How a held command is shown to a human: secrets masked, invisible characters made visible.

Both the CLI and the web page show commands through ``display_text`` so an approver never sees a
secret the agent typed and never misses a bidi override or an escape sequence hidden in the line.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# C0/C1 controls (TAB and LF included: a reviewer must see them), DEL, and invisible/bidi
# characters (the same set the policy treats as review-worthy, plus line/paragraph separators).
_HIDDEN = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"
    "\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb"
    "\U000e0000-\U000e0fff]"
)
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\\": "\\\\"}


def _escape_char(m: re.Match[str]) -> str:
    c = m.group()
    if c in _NAMED:
        return _NAMED[c]
    code = ord(c)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape_visible(text: str) -> str:
    """Every control, invisible or bidi character as a backslash escape; backslashes doubled."""
    return _HIDDEN.sub(_escape_char, text.replace("\\", "\\\\"))


def has_hidden(text: str) -> bool:
    return bool(_HIDDEN.search(text.replace("\t", " ")))


def _load_masker() -> Callable[[str], str] | None:
    try:
        from bastion.masking import StreamMasker
    except ImportError:  # masking not installed in this build: show the line unmasked
        return None

    def mask(text: str) -> str:
        masker = StreamMasker()
        data = text.encode("utf-8", "surrogateescape")
        out = masker.feed(data) + masker.flush()
        return out.decode("utf-8", "replace")

    return mask


_MASK = _load_masker()


def mask_secrets(text: str) -> str:
    return _MASK(text) if _MASK is not None else text


def display_text(text: str) -> str:
    """Masked, then escaped: what a reviewer may see of a command line or argument."""
    return escape_visible(mask_secrets(text))
