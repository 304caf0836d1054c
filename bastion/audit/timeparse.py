"""``--since``/``--until`` values: an ISO date or time (UTC unless an offset is given) or an age
like ``2h`` / ``7d`` meaning that long before now."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from bastion.errors import BastionError

_AGE = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(text: str, now: datetime | None = None) -> datetime:
    value = text.strip()
    m = _AGE.match(value)
    if m:
        return (now or datetime.now(UTC)) - timedelta(
            seconds=float(m.group(1)) * _UNITS[m.group(2)]
        )
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BastionError(
            f"cannot read time {text!r}: use e.g. 2025-01-31, 2025-01-31T10:00Z, 2h or 7d"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def to_ts(when: datetime) -> str:
    """The stored timestamp format, so text comparison orders like time."""
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
