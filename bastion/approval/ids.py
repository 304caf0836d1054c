"""Request ids: 80 random bits as four groups of Crockford base32, easy to read aloud.

``K7QH-2MXD-9PTA-M3RC``: no I, L, O or U, so a misheard or lower-cased id still parses
(``parse_request_id`` folds o->0, i/l->1 and drops dashes and spaces).
"""

from __future__ import annotations

import secrets

from bastion.errors import BastionError

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
GROUPS = 4
GROUP_LEN = 4
ID_BITS = GROUPS * GROUP_LEN * 5  # 80
_FOLD = str.maketrans({"O": "0", "I": "1", "L": "1"})


def new_request_id() -> str:
    chars = "".join(secrets.choice(ALPHABET) for _ in range(GROUPS * GROUP_LEN))
    return "-".join(chars[i : i + GROUP_LEN] for i in range(0, len(chars), GROUP_LEN))


def parse_request_id(text: str) -> str:
    """Canonical form of a typed id; raises BastionError when it cannot be one."""
    compact = "".join(text.split()).replace("-", "").upper().translate(_FOLD)
    if len(compact) != GROUPS * GROUP_LEN or any(c not in ALPHABET for c in compact):
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise BastionError(f"not a request id: {shown!r} (expected e.g. K7QH-2MXD-9PTA-M3RC)")
    return "-".join(compact[i : i + GROUP_LEN] for i in range(0, len(compact), GROUP_LEN))
