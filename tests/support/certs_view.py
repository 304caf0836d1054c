"""Read facts out of `ssh-keygen -L` listings."""

from __future__ import annotations

import re
from datetime import datetime


def validity_seconds(listing: str) -> float:
    """Length of the ``Valid: from X to Y`` window in an ``ssh-keygen -L`` listing."""
    match = re.search(r"Valid: from (\S+) to (\S+)", listing)
    assert match, listing
    start, end = (datetime.fromisoformat(v) for v in match.groups())
    return (end - start).total_seconds()
