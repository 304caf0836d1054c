"""Finding recordings on disk and reading their headers (no verification here)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bastion.recording import layout
from bastion.recording.codec import (
    META_KEY,
    Event,
    decode_blob_ref,
    decode_event,
    decode_header,
)
from bastion.recording.errors import RecordingError

_MAX_HEADER = 1 << 20


@dataclass(frozen=True)
class RecordingInfo:
    path: Path
    session_id: str
    channel: int
    started: float
    width: int
    height: int
    command: str | None
    title: str | None
    meta: dict[str, Any]
    sealed: bool
    size: int

    @property
    def name(self) -> str:
        return self.path.name.removesuffix(layout.CAST_SUFFIX)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.name,
            "path": str(self.path),
            "session_id": self.session_id,
            "channel": self.channel,
            "started": self.started,
            "width": self.width,
            "height": self.height,
            "command": self.command,
            "title": self.title,
            "identity": self.meta.get("identity"),
            "target": self.meta.get("target"),
            "login": self.meta.get("login"),
            "meta": self.meta,
            "sealed": self.sealed,
            "size": self.size,
        }


def read_header(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            line = fh.readline(_MAX_HEADER)
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return decode_header(line)
    except ValueError as exc:
        raise RecordingError(f"{path}: not an asciicast v2 recording ({exc})") from None


def last_seal_record(path: Path) -> dict[str, Any] | None:
    """The sidecar's final complete record (unverified), if any."""
    try:
        lines = layout.seal_path(path).read_bytes().split(b"\n")[:-1]
    except OSError:
        return None
    for line in reversed(lines):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        return record if isinstance(record, dict) else None
    return None


def read_info(path: Path) -> RecordingInfo:
    header = read_header(path)
    meta = header.get(META_KEY) if isinstance(header.get(META_KEY), dict) else {}
    assert isinstance(meta, dict)
    parsed = layout.parse_name(path)
    session_id, channel = parsed if parsed else (str(meta.get("session_id", "")), -1)
    last = last_seal_record(path)
    return RecordingInfo(
        path=path,
        session_id=session_id,
        channel=channel,
        started=float(header.get("timestamp", 0) or 0),
        width=int(header["width"]),
        height=int(header["height"]),
        command=header.get("command") if isinstance(header.get("command"), str) else None,
        title=header.get("title") if isinstance(header.get("title"), str) else None,
        meta=meta,
        sealed=bool(last and last.get("type") == "seal"),
        size=path.stat().st_size + _blob_size(path),
    )


def iter_infos(root: Path) -> Iterator[RecordingInfo]:
    for path in layout.iter_casts(root):
        try:
            yield read_info(path)
        except RecordingError:
            continue  # unreadable files are reported by `recordings verify`, not by listing


def find(root: Path, ref: str) -> list[Path]:
    """A path, a ``<session>-<channel>`` name, or a session id (all its channels)."""
    as_path = Path(ref)
    if as_path.suffix == layout.CAST_SUFFIX and as_path.is_file():
        return [as_path]
    exact, session = [], []
    for path in layout.iter_casts(root):
        parsed = layout.parse_name(path)
        if path.name == f"{ref}{layout.CAST_SUFFIX}":
            exact.append(path)
        elif parsed and parsed[0] == ref:
            session.append(path)
    return exact or sorted(session, key=lambda p: (layout.parse_name(p) or ("", 0))[1])


def read_events(path: Path) -> tuple[dict[str, Any], list[Event]]:
    """Header and every complete event; a partial last line (crash) is ignored."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc.strerror}") from None
    lines = data.split(b"\n")
    try:
        header = decode_header(lines[0])
    except ValueError as exc:
        raise RecordingError(f"{path}: not an asciicast v2 recording ({exc})") from None
    events = []
    blob: bytes | None = None
    for n, line in enumerate(lines[1:-1], start=2):
        try:
            event = decode_event(line)
            if event.code == "b":  # a binary segment: its bytes are in <cast>.bin
                if blob is None:
                    blob = _read_blob(path)
                stream, offset, length = decode_blob_ref(event.data)
                raw = blob[offset : offset + length]
                if len(raw) != length:
                    raise ValueError("binary segment file is truncated")
                event = Event(event.time, stream, raw.decode("utf-8", "replace"), raw)
            events.append(event)
        except ValueError as exc:
            raise RecordingError(f"{path}: line {n}: {exc}") from None
    return header, events


def _read_blob(path: Path) -> bytes:
    blob = layout.blob_path(path)
    try:
        return blob.read_bytes()
    except OSError as exc:
        raise RecordingError(f"cannot read {blob}: {exc.strerror}") from None


def _blob_size(path: Path) -> int:
    try:
        return layout.blob_path(path).stat().st_size
    except OSError:
        return 0
