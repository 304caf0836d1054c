"""Check a recording against its signed seal sidecar.

Verdicts: ``intact`` (sealed, every byte matches the signed digest), ``unsealed`` (no seal record:
the process died; verified up to the last signed checkpoint), ``tampered`` (anything changed,
removed, reordered, truncated, appended or re-signed) and ``unreadable``. Only ``intact`` is ok.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from bastion.recording import layout
from bastion.recording.codec import (
    READABLE_FORMATS,
    chain_next,
    chain_start,
    decode_blob_ref,
    decode_event,
    decode_header,
)
from bastion.recording.keys import RecordingPublicKey
from bastion.recording.seal import RECORD_TYPES, check_record

Status = Literal["intact", "unsealed", "tampered", "unreadable"]


@dataclass(frozen=True)
class VerifyResult:
    path: Path
    status: Status
    reason: str
    events_verified: int = 0
    bytes_verified: int = 0
    seal: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "intact"


def _fail(path: Path, status: Status, reason: str) -> VerifyResult:
    return VerifyResult(path, status, reason)


def _read_records(
    path: Path, trusted: Sequence[RecordingPublicKey]
) -> tuple[list[dict[str, Any]], str | None]:
    """Signed records of the sidecar, in order; the error text if any record is not acceptable."""
    sidecar = layout.seal_path(path)
    try:
        data = sidecar.read_bytes()
    except FileNotFoundError:
        return [], f"seal file {sidecar.name} is missing"
    except OSError as exc:
        return [], f"cannot read seal file: {exc.strerror}"
    lines = data.split(b"\n")
    complete = lines[:-1]  # a partial last line is an interrupted append: not part of the record
    records: list[dict[str, Any]] = []
    for n, line in enumerate(complete, start=1):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            return records, f"seal file line {n} is not valid JSON"
        if not isinstance(record, dict) or record.get("type") not in RECORD_TYPES:
            return records, f"seal file line {n} is not a seal record"
        if record.get("v") not in READABLE_FORMATS:
            return records, f"seal file line {n}: unsupported seal format {record.get('v')!r}"
        problem = check_record(record, trusted)
        if problem:
            return records, f"seal file line {n}: {problem}"
        if record.get("file") != path.name:
            return records, f"seal file line {n} belongs to {record.get('file')!r}, not {path.name}"
        record.setdefault("blob_bytes", 0)  # format 1 has no binary segments
        for key in ("events", "bytes", "blob_bytes"):
            if not isinstance(record.get(key), int) or isinstance(record.get(key), bool):
                return records, f"seal file line {n}: {key} is not an integer"
        if records and (record["type"] == "open" or any(r.get("sig") == record.get("sig")
                                                         for r in records)):
            return records, f"seal file line {n}: repeats an earlier record"
        if records:
            prev = records[-1]
            if prev["type"] == "seal":
                return records, f"seal file line {n}: record after the seal"
            if (record["events"] < prev["events"] or record["bytes"] < prev["bytes"]
                    or record["blob_bytes"] < prev["blob_bytes"]):
                return records, f"seal file line {n}: records out of order"
            if record.get("session_id") != prev.get("session_id"):
                return records, f"seal file line {n}: session id changes"
        elif record["type"] != "open":
            return records, "seal file does not start with an open record"
        records.append(record)
    if not records:
        return records, "seal file has no records"
    return records, None


def verify_recording(path: Path, trusted: Sequence[RecordingPublicKey]) -> VerifyResult:
    """Recompute the chain over the .cast and compare it with every signed record."""
    path = Path(path)
    records, problem = _read_records(path, trusted)
    if problem:
        return _fail(path, "tampered", problem)
    by_events: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        by_events.setdefault(record["events"], []).append(record)
    sealed = records[-1]["type"] == "seal"
    last = records[-1]

    try:
        handle = path.open("rb")
    except OSError as exc:
        return _fail(path, "unreadable", f"cannot read: {exc.strerror}")
    blob = _Blob(layout.blob_path(path))
    digest = b""
    events = -1  # the header is line 0
    size = 0
    structural: str | None = None
    last_time = 0.0
    good: dict[str, Any] | None = None  # last record whose digest matched
    partial = 0
    with handle, blob:
        for line in handle:
            if not line.endswith(b"\n"):
                partial = len(line)
                break
            if events < 0:
                digest = chain_start(line)
                if structural is None:
                    structural = _check_header(line, records[0])
            else:
                try:
                    event = decode_event(line)
                except ValueError as exc:
                    digest = chain_next(digest, line)
                    if structural is None:
                        structural = f"line {events + 2} is not a valid asciicast event ({exc})"
                else:
                    raw = b""
                    if event.code == "b":
                        raw, problem = blob.read(event.data)
                        if problem and structural is None:
                            structural = f"line {events + 2}: {problem}"
                    digest = chain_next(digest, line, raw)
                    if structural is None:
                        if event.time < last_time:
                            structural = (
                                f"line {events + 2} is out of order "
                                f"(time {event.time} after {last_time})"
                            )
                        last_time = event.time
            events += 1
            size += len(line)
            for record in by_events.get(events, ()):
                if (record["bytes"] != size or record["digest"] != digest.hex()
                        or record["blob_bytes"] != blob.offset):
                    where = f"events {good['events'] + 1}-{events}" if good else "the header"
                    detail = f"; {structural}" if structural else ""
                    return _fail(
                        path,
                        "tampered",
                        f"content differs from the signed digest: an event was changed, "
                        f"removed or reordered in {where} (lines {_lines(good, events)}){detail}",
                    )
                good = record
    events = max(events, 0)
    if good is None:
        return _fail(path, "tampered", "the file is shorter than its signed header (truncated)")
    if last["events"] > events:
        cut = f" plus a partial line of {partial} bytes" if partial else ""
        return _fail(
            path,
            "tampered",
            f"truncated or events removed: the file has {events} complete events{cut}, "
            f"the {'seal' if sealed else 'last checkpoint'} covers {last['events']}",
        )
    if sealed:
        extra = size + partial - last["bytes"]
        if extra:
            return _fail(path, "tampered", f"{extra} bytes of unsigned data after the sealed end")
        blob_extra = blob.size() - last["blob_bytes"]
        if blob_extra:
            return _fail(path, "tampered",
                         f"the binary segment file has {blob_extra:+d} bytes against its seal")
        return VerifyResult(
            path,
            "intact",
            f"intact: sealed, {events} events, signed by {last['key_id']}",
            events,
            size,
            last,
        )
    after = events - good["events"]
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(good.get("time", 0))))
    tail = f", and a partial last line of {partial} bytes" if partial else ""
    return VerifyResult(
        path,
        "unsealed",
        f"unsealed (the recorder did not close): intact up to event {good['events']} "
        f"(byte {good['bytes']}, signed {good['type']} at {when}); "
        f"{after} later events cannot be verified{tail}",
        good["events"],
        good["bytes"],
        good,
    )


def _lines(good: dict[str, Any] | None, events: int) -> str:
    first = good["events"] + 2 if good else 1
    return f"{first}-{events + 1}"


def _check_header(line: bytes, opened: dict[str, Any]) -> str | None:
    try:
        header = decode_header(line)
    except ValueError as exc:
        return f"line 1 is not a valid asciicast v2 header ({exc})"
    meta = header.get("bastion")
    if not isinstance(meta, dict) or meta.get("session_id") != opened.get("session_id"):
        return "line 1: header session id does not match the seal"
    return None


class _Blob:
    """Sequential reader of ``<cast>.bin``: each ``b`` event must take the next bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self._handle: Any = None

    def __enter__(self) -> _Blob:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()

    def read(self, ref: str) -> tuple[bytes, str | None]:
        try:
            _, offset, length = decode_blob_ref(ref)
        except ValueError as exc:
            return b"", str(exc)
        if offset != self.offset:
            return b"", f"binary segment at offset {offset}, expected {self.offset}"
        if self._handle is None:
            try:
                self._handle = self.path.open("rb")
            except OSError as exc:
                return b"", f"cannot read binary segments {self.path.name}: {exc.strerror}"
        raw = self._handle.read(length)
        self.offset += len(raw)
        if len(raw) != length:
            return raw, f"binary segment file {self.path.name} is truncated"
        return raw, None

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0
