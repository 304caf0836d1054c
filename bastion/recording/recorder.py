"""One asciicast recording of one channel: buffered writes, periodic durable checkpoints, a seal.

Recording is a required sink: every failure raises ``RecordingError`` and the recorder stays
failed, so the caller ends the session instead of letting traffic through unrecorded.
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bastion.recording import layout
from bastion.recording.codec import (
    FORMAT_VERSION,
    EventCode,
    chain_next,
    chain_start,
    encode_blob_ref,
    encode_event,
    encode_header,
)
from bastion.recording.errors import RecordingError
from bastion.recording.keys import RecordingKey
from bastion.recording.seal import encode_record, sign_record

DEFAULT_BUFFER = 1024 * 1024  # 64 KiB cost 0.15-0.3 CPU s/GB more in write() calls on bulk output
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_DIM = 10_000
# Hot path (one call per relayed chunk): the same bytes as codec.encode_event/chain_next,
# without the intermediate calls and copies.
_sha256 = hashlib.sha256
_dumps = orjson.dumps
_NEWLINE = orjson.OPT_APPEND_NEWLINE
_utf8_decode = codecs.utf_8_decode
# C0 controls that JSON escapes as \u00XX (six bytes for one), less the ones terminals live on
# (TAB LF CR ESC BEL BS): a chunk whose escaping they dominate is stored as raw bytes instead.
_ODD_CONTROLS = bytes(b for b in range(0x20) if b not in b"\t\n\r\x1b\x07\x08")
_NOT_ODD = bytes(b for b in range(256) if b not in _ODD_CONTROLS)
_LINE_OVERHEAD = 32  # '[123456.123456,"o",""]\n' and then some


@dataclass(frozen=True)
class SealInfo:
    """What ``Recorder.close`` returns; ``audit_fields()`` is the ``recording_sealed`` row."""

    path: Path
    seal_path: Path
    session_id: str
    channel: int
    events: int
    bytes: int
    digest: str
    signature: str
    key_id: str
    started_at: float
    duration: float
    exit_status: int | None
    blob_bytes: int = 0  # bytes of binary output in <cast>.bin

    def audit_fields(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "seal_path": str(self.seal_path),
            "channel": self.channel,
            "events": self.events,
            "bytes": self.bytes,
            "digest": self.digest,
            "signature": self.signature,
            "key_id": self.key_id,
            "duration": round(self.duration, 3),
            "exit_status": self.exit_status,
            "blob_bytes": self.blob_bytes,
        }


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


_Snapshot = tuple[int, int, bytes, int]  # events, .cast bytes, chain digest, .bin bytes


class Recorder:
    """Use ``Recorder.create``; call ``output``/``input``/``resize``/``marker``, then ``close``."""

    def __init__(
        self,
        *,
        path: Path,
        fd: int,
        seal_fd: int,
        key: RecordingKey,
        session_id: str,
        channel: int,
        header: bytes,
        started_at: float,
        record_input: bool,
        buffer_limit: int,
    ) -> None:
        self.path = path
        self.seal_path = layout.seal_path(path)
        self.session_id = session_id
        self.channel = channel
        self.started_at = started_at
        self.record_input = record_input
        self._fd = fd
        self._seal_fd = seal_fd
        self._key = key
        self._t0 = time.monotonic()
        self._t0_ns = time.monotonic_ns()
        self._buffer = bytearray()
        self._buffer_limit = buffer_limit
        self._digest = chain_start(header)
        self._events = 0
        self._bytes = len(header)
        self._signed: _Snapshot = (0, len(header), self._digest, 0)
        # Binary output: raw bytes in <cast>.bin, opened on the first binary segment.
        self.blob_path = layout.blob_path(path)
        self._blob_fd = -1
        self._blob_buffer = bytearray()
        self._blob_bytes = 0
        self._dir_synced = False
        # undecoded tail per stream: a multi-byte character split across chunks is held back
        self._pending: dict[EventCode, bytes] = {"o": b"", "i": b""}
        self._lock = asyncio.Lock()
        self._error: RecordingError | None = None
        self._seal: SealInfo | None = None
        self._closing = False
        self.on_close: Callable[[Recorder], None] | None = None

    @classmethod
    def create(
        cls,
        *,
        root: Path,
        session_id: str,
        channel: int,
        key: RecordingKey,
        meta: Mapping[str, Any] | None = None,
        width: int = 80,
        height: int = 24,
        command: str | None = None,
        env: Mapping[str, str] | None = None,
        title: str | None = None,
        record_input: bool = True,
        buffer_limit: int = DEFAULT_BUFFER,
        started_at: float | None = None,
    ) -> Recorder:
        """Create the ``.cast`` and its seal sidecar; raises RecordingError if that fails.

        ``started_at`` (wall clock) defaults to now; it dates the file and its folder.
        """
        _check_size(width, height)
        started = time.time() if started_at is None else started_at
        path = layout.cast_path(Path(root), session_id, channel, started)
        info = {
            **dict(meta or {}),
            # ours last: metadata handed in cannot spoof the ids the file name is built from
            "format": FORMAT_VERSION,
            "session_id": session_id,
            "channel": channel,
            "input_recorded": record_input,
        }
        header = encode_header(
            width=width,
            height=height,
            timestamp=int(started),
            command=command,
            title=title,
            env=env or {},
            meta=info,
        )
        fd = seal_fd = -1
        try:
            path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            fd = os.open(path, _OPEN_FLAGS, 0o640)
            seal_fd = os.open(layout.seal_path(path), _OPEN_FLAGS | os.O_APPEND, 0o640)
            _write_all(fd, header)
            rec = cls(
                path=path,
                fd=fd,
                seal_fd=seal_fd,
                key=key,
                session_id=session_id,
                channel=channel,
                header=header,
                started_at=started,
                record_input=record_input,
                buffer_limit=buffer_limit,
            )
            _write_all(seal_fd, encode_record(rec._signed_record("open", rec._signed)))
        except OSError as exc:
            for opened in (fd, seal_fd):
                if opened >= 0:
                    os.close(opened)
            if fd >= 0:
                path.unlink(missing_ok=True)
            if seal_fd >= 0:
                layout.seal_path(path).unlink(missing_ok=True)
            raise RecordingError(f"cannot create recording {path}: {exc.strerror}") from None
        return rec

    # -- events (synchronous, called from the event loop for every chunk) -----------------------

    def output(self, data: bytes) -> None:
        self._emit_bytes("o", data)

    def input(self, data: bytes) -> None:
        if self.record_input:
            self._emit_bytes("i", data)

    def resize(self, width: int, height: int) -> None:
        _check_size(width, height)
        self._emit("r", f"{width}x{height}")

    def marker(self, text: str) -> None:
        self._emit("m", str(text))

    @property
    def failed(self) -> RecordingError | None:
        return self._error

    @property
    def closed(self) -> bool:
        return self._seal is not None or self._closing

    def _emit_bytes(self, code: EventCode, data: bytes) -> None:
        if self._error is not None or self._seal is not None or self._closing:
            self._check()
        # Incremental UTF-8 decoding ("replace"): an incomplete character at the end of the
        # chunk is held back until the next chunk completes it (or close() flushes it).
        # Strict incremental UTF-8 decoding: an incomplete character at the end of the chunk
        # is held back until the next chunk completes it (or close() flushes it); bytes that
        # are not UTF-8 make the chunk a binary segment, kept exactly.
        pending = self._pending[code]
        if pending:
            data = pending + data
        try:
            text, used = _utf8_decode(data, "strict", False)
        except UnicodeDecodeError:
            self._pending[code] = b""
            self._emit_blob(code, bytes(data))
            return
        if used != len(data):
            self._pending[code] = bytes(data[used:])
        elif pending:
            self._pending[code] = b""
        if not text:
            return
        # == codec.encode_event(t, code, text) with t rounded to the microsecond
        t = (time.monotonic_ns() - self._t0_ns + 500) // 1000 / 1e6
        if len(data) >= 256 and len(data[:256].translate(None, _NOT_ODD)) > 12:
            # The head is full of controls JSON would escape sixfold (zeros, packed binary that
            # happens to be UTF-8): decide before paying for the escaping.
            raw = bytes(data[:used]) if used != len(data) else bytes(data)
            if 20 * len(raw.translate(None, _NOT_ODD)) >= used:
                self._emit_blob(code, raw, t)
                return
        line = _dumps([t, code, text], option=_NEWLINE)
        excess = len(line) - used - _LINE_OVERHEAD
        if excess > used >> 2:  # rare: escaping grew the chunk by over a quarter
            raw = bytes(data[:used]) if used != len(data) else bytes(data)
            if 10 * len(raw.translate(None, _NOT_ODD)) >= excess:
                self._emit_blob(code, raw, t)
                return
        h = _sha256(self._digest)  # == codec.chain_next, without copying the line
        h.update(line)
        self._digest = h.digest()
        self._events += 1
        self._bytes += len(line)
        buffer = self._buffer
        buffer += line
        if len(buffer) >= self._buffer_limit:
            self._flush()

    def _emit_blob(self, stream: EventCode, raw: bytes, t: float | None = None) -> None:
        """A binary segment: a ``b`` event in the .cast, the bytes themselves in the .bin."""
        if self._blob_fd < 0:
            try:
                self._blob_fd = os.open(self.blob_path, _OPEN_FLAGS, 0o640)
            except OSError as exc:
                raise self._fail("creating the binary segment file", exc) from None
        if t is None:
            t = (time.monotonic_ns() - self._t0_ns + 500) // 1000 / 1e6
        line = _dumps([t, "b", encode_blob_ref(stream, self._blob_bytes, len(raw))],
                      option=_NEWLINE)
        h = _sha256(self._digest)  # == codec.chain_next(digest, line, raw)
        h.update(line)
        h.update(raw)
        self._digest = h.digest()
        self._events += 1
        self._bytes += len(line)
        self._blob_bytes += len(raw)
        self._blob_buffer += raw
        self._buffer += line
        if len(self._buffer) + len(self._blob_buffer) >= self._buffer_limit:
            self._flush()

    def _emit(self, code: EventCode, text: str) -> None:
        self._check()
        line = encode_event(time.monotonic() - self._t0, code, text)
        self._digest = chain_next(self._digest, line)
        self._events += 1
        self._bytes += len(line)
        self._buffer += line
        if len(self._buffer) >= self._buffer_limit:
            self._flush()

    def _check(self) -> None:
        if self._error is not None:
            raise self._error
        if self._seal is not None or self._closing:
            raise RecordingError(f"recording {self.path.name} is closed")

    def _fail(self, what: str, exc: OSError) -> RecordingError:
        if self._error is None:
            self._error = RecordingError(
                f"recording {self.path.name}: {what} failed: {exc.strerror or exc}"
            )
        return self._error

    def _flush(self) -> _Snapshot:
        """Hand the buffer to the OS (no fsync) and return what is now written."""
        snapshot = (self._events, self._bytes, self._digest, self._blob_bytes)
        if self._blob_buffer:  # first: no event may reach the disk before its bytes
            try:
                _write_all(self._blob_fd, self._blob_buffer)
            except OSError as exc:
                raise self._fail("write", exc) from None
            self._blob_buffer.clear()
        if self._buffer:
            try:
                _write_all(self._fd, self._buffer)
            except OSError as exc:
                raise self._fail("write", exc) from None
            self._buffer.clear()
        return snapshot

    # -- durability ------------------------------------------------------------------------------

    def _signed_record(self, kind: str, snap: _Snapshot, **extra: Any) -> dict[str, Any]:
        events, size, digest, blob_bytes = snap
        fields: dict[str, Any] = {
            "type": kind,
            "v": FORMAT_VERSION,
            "file": self.path.name,
            "session_id": self.session_id,
            "channel": self.channel,
            "events": events,
            "bytes": size,
            "digest": digest.hex(),
            "blob_bytes": blob_bytes,
            "time": round(time.time(), 3),
            **extra,
        }
        return sign_record(self._key, fields)

    def _make_durable(self, snap: _Snapshot, kind: str, extra: dict[str, Any]) -> dict[str, Any]:
        """Runs in a worker thread: fsync the data, then append and fsync a signed record."""
        try:
            if self._blob_fd >= 0:
                os.fsync(self._blob_fd)
            os.fsync(self._fd)
            if not self._dir_synced:
                _fsync_dir(self.path.parent)
                self._dir_synced = True
        except OSError as exc:
            raise self._fail("fsync", exc) from None
        record = self._signed_record(kind, snap, **extra)
        try:
            _write_all(self._seal_fd, encode_record(record))
            os.fsync(self._seal_fd)
        except OSError as exc:
            raise self._fail("writing the seal", exc) from None
        self._signed = snap
        return record

    async def sync(self) -> None:
        """Flush, fsync in a worker thread, append a signed checkpoint. Raises RecordingError."""
        async with self._lock:
            if self._seal is not None or self._closing:
                return
            self._check()
            snap = self._flush()
            if snap != self._signed:
                await asyncio.to_thread(self._make_durable, snap, "checkpoint", {})

    async def close(self, exit_status: int | None = None) -> SealInfo:
        """Final flush and fsync, then seal: a signature over the final chain digest."""
        async with self._lock:
            if self._seal is not None:
                return self._seal
            try:
                self._check()
                for code, pending in self._pending.items():
                    if pending:  # an incomplete character the stream ended in: bytes as they are
                        self._pending[code] = b""
                        self._emit_blob(code, pending)
                self._closing = True
                snap = self._flush()
                duration = time.monotonic() - self._t0
                record = await asyncio.to_thread(
                    self._make_durable,
                    snap,
                    "seal",
                    {"exit_status": exit_status, "duration": round(duration, 6)},
                )
            finally:
                self._closing = True
                self._release()
            self._seal = SealInfo(
                path=self.path,
                seal_path=self.seal_path,
                session_id=self.session_id,
                channel=self.channel,
                events=snap[0],
                bytes=snap[1],
                digest=snap[2].hex(),
                signature=record["sig"],
                key_id=record["key_id"],
                started_at=self.started_at,
                duration=duration,
                exit_status=exit_status,
                blob_bytes=snap[3],
            )
            return self._seal

    def _release(self) -> None:
        for fd in (self._fd, self._seal_fd, self._blob_fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError as exc:
                    self._fail("close", exc)
        self._fd = self._seal_fd = self._blob_fd = -1
        if self.on_close is not None:
            self.on_close(self)


def _check_size(width: int, height: int) -> None:
    for v in (width, height):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= _MAX_DIM:
            raise RecordingError(f"invalid terminal size {width!r}x{height!r}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
