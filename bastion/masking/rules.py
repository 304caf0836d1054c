"""Rule data: one secret format = a confirm regex, prefilter keywords and value checks.

Invariant every rule must keep (the streaming hold-back relies on it): every match lies on one
line (no pattern may cross ``\\r`` or ``\\n``), and the secret span starts at most ``lookback``
characters before an occurrence of one of the rule's ``keywords`` (matched case-insensitively)
inside that match.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

# Value check: receives the secret bytes and the key text (or b"") and says whether to mask.
Check = Callable[[bytes, bytes], bool]


@dataclass(frozen=True)
class Rule:
    """One secret format. ``pattern`` is a Python ``re`` bytes pattern; the secret is the first
    participating group named ``s``, ``s2``, ``s3`` ..., else the whole match."""

    id: str
    description: str
    pattern: bytes
    keywords: tuple[bytes, ...]
    lookback: int = 0
    # Fixed-offset rules: the confirm regex is tried at (each occurrence of anchor) - anchor_offset.
    anchor: bytes | None = None
    anchor_offset: int = 0
    flags: int = 0
    check: Check | None = None
    # Keywords are secret prefixes: a held fragment starting with one is masked on idle release.
    strong: bool = False
    example: str = ""
    # checks that judge the surroundings: key_of() then returns
    # ``before + b"\0" + key + b"\0" + after`` (this many bytes each side of the secret)
    context: int = 0
    compiled: re.Pattern[bytes] = field(init=False, repr=False, compare=False, hash=False)
    secret_groups: tuple[int, ...] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        rx = re.compile(self.pattern, self.flags)
        groups = tuple(
            idx for name, idx in sorted(rx.groupindex.items(), key=lambda kv: kv[1])
            if re.fullmatch(r"s\d*", name)
        )
        object.__setattr__(self, "compiled", rx)
        object.__setattr__(self, "secret_groups", groups)
        object.__setattr__(self, "keywords", tuple(k.lower() for k in self.keywords))

    def key_of(self, m: re.Match[bytes]) -> bytes:
        """The key/context text of a match (group ``k``), for checks that judge the key name."""
        key = (m.group("k") or b"") if "k" in self.compiled.groupindex else b""
        if self.context:
            s, e = self.secret_span(m)
            text = m.string
            assert isinstance(text, bytes)
            return text[max(0, s - self.context):s] + b"\0" + key + b"\0" + \
                text[e:e + self.context]
        return key

    def secret_span(self, m: re.Match[bytes]) -> tuple[int, int]:
        for idx in self.secret_groups:
            if m.start(idx) != -1:
                return m.span(idx)
        return m.span()


# --- value checks shared by rules -------------------------------------------------------------

_PLACEHOLDER_WORDS = frozenset(
    w.encode()
    for w in (
        "changeme", "change_me", "change-me", "redacted", "masked", "hidden", "secret",
        "password", "passwd", "token", "example", "placeholder", "dummy", "sample", "test",
        "none", "null", "nil", "true", "false", "yes", "no", "undefined", "required",
        "optional", "string", "value", "todo", "tbd", "xxx", "notset", "not-set", "unset",
        "empty", "default", "prompt", "ask", "secretref", "****", "(sensitive value)",
        "sensitive", "your-password", "your_password", "yourpassword", "mypassword",
        "password123", "pass", "env", "vault", "file", "stdin", "-", "--",
    )
)
_PLACEHOLDER_RX = re.compile(
    rb"""^(?:
        \$\{[^}]*\}? | \$\([^)]*\)? | \$[A-Za-z_][A-Za-z0-9_]*   # ${VAR} $(cmd) $VAR
      | %[A-Za-z_][A-Za-z0-9_]*%                                  # %VAR%
      | \{\{.*\}\} | \{%.*%\}                                     # templates
      | <[^<>]*> | \[[^\[\]]*\] | \(.*                            # <redacted> [hidden] (sensitive)
      | [*xX.#_-]+                                               # ****  xxxx
      | .*(?:REDACTED|redacted|MASKED|\*\*\*\*|xxxxxx|XXXXXX|changeme|CHANGEME|your[_-]|YOUR[_-]
            |example|EXAMPLE|placeholder|PLACEHOLDER).*
    )$""",
    re.X | re.S,
)


def is_placeholder(value: bytes) -> bool:
    """A value that only stands for a secret (``${VAR}``, ``<redacted>``, ``****``, ``changeme``)
    rather than being one."""
    v = value.strip().strip(b"\"'")
    if not v:
        return True
    if v.lower() in _PLACEHOLDER_WORDS:
        return True
    if len(set(v)) == 1:
        return True
    return _PLACEHOLDER_RX.match(v) is not None


def entropy(value: bytes) -> float:
    """Shannon entropy in bits per byte."""
    if not value:
        return 0.0
    n = len(value)
    counts: dict[int, int] = {}
    for b in value:
        counts[b] = counts.get(b, 0) + 1
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def char_classes(value: bytes) -> int:
    """How many of lower / upper / digit / other appear."""
    lower = upper = digit = other = 0
    for b in value:
        if 97 <= b <= 122:
            lower = 1
        elif 65 <= b <= 90:
            upper = 1
        elif 48 <= b <= 57:
            digit = 1
        else:
            other = 1
    return lower + upper + digit + other


def not_placeholder(value: bytes, key: bytes) -> bool:
    return not is_placeholder(value)


def random_looking(min_len: int, min_entropy: float) -> Check:
    """A check accepting non-placeholder values of some length, entropy and >= 2 char classes."""

    def check(value: bytes, key: bytes) -> bool:
        return (
            len(value) >= min_len
            and not is_placeholder(value)
            and char_classes(value) >= 2
            and entropy(value) >= min_entropy
        )

    return check
