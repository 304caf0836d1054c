"""Where recordings live: ``<root>/YYYY/MM/DD/<session-id>-<channel>.cast`` (UTC date).

Names are built only from bastion-generated ids, checked against a strict pattern, so nothing a
user sends (login names, commands) can steer a path.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

from bastion.recording.errors import RecordingError
from bastion.recording.seal import SEAL_SUFFIX

CAST_SUFFIX = ".cast"
_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_NAME = re.compile(r"^(?P<session>[A-Za-z0-9][A-Za-z0-9_-]{0,63})-(?P<channel>\d{1,6})\.cast$")


def check_session_id(session_id: str) -> str:
    if not isinstance(session_id, str) or not _SESSION_ID.match(session_id):
        raise RecordingError(
            f"invalid session id {session_id!r}: expected 1-64 letters, digits, '_' or '-'"
        )
    return session_id


def cast_path(root: Path, session_id: str, channel: int, started: float) -> Path:
    check_session_id(session_id)
    if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel < 1_000_000:
        raise RecordingError(f"invalid channel number {channel!r}")
    day = time.strftime("%Y/%m/%d", time.gmtime(started))
    return root / day / f"{session_id}-{channel}{CAST_SUFFIX}"


def seal_path(cast: Path) -> Path:
    return cast.with_name(cast.name + SEAL_SUFFIX)


BLOB_SUFFIX = ".bin"


def blob_path(cast: Path) -> Path:
    """The raw bytes of binary output (``b`` events), created on the first one."""
    return cast.with_name(cast.name + BLOB_SUFFIX)


def parse_name(path: Path) -> tuple[str, int] | None:
    m = _NAME.match(path.name)
    return (m.group("session"), int(m.group("channel"))) if m else None


def iter_casts(root: Path) -> Iterator[Path]:
    """Every recording under root, oldest day first (only the YYYY/MM/DD layout is walked)."""
    if not root.is_dir():
        return
    for path in sorted(root.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]/*.cast")):
        if parse_name(path) is not None and path.is_file():
            yield path
