"""Binary output: kept byte for byte in <cast>.bin, compact (at most ~1.2x the bytes moved for
zeros and random bytes), tamper-evident, and exported as a plain asciicast that asciinema plays."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bastion.recording import Recorder, RecordingKey, catalog, layout, verify_recording
from bastion.recording.export import asciicast_lines

ASCIINEMA = Path(sys.executable).parent / "asciinema"
CHUNK = 32 * 1024
PAYLOAD = 4 * 1024 * 1024


def _stored(rec: Recorder) -> int:
    blob = layout.blob_path(rec.path)
    return rec.path.stat().st_size + (blob.stat().st_size if blob.exists() else 0)


def _relayed(events: list[catalog.Event]) -> bytes:
    return b"".join(e.raw if e.raw is not None else e.data.encode() for e in events
                    if e.code == "o")


def _random_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.mark.parametrize("kind", ["zeros", "random", "control-heavy"])
async def test_binary_output_is_exact_and_compact(
    tmp_path: Path, key: RecordingKey, kind: str
) -> None:
    payload = {
        "zeros": bytes(PAYLOAD),
        "random": _random_bytes(PAYLOAD, 7),
        "control-heavy": bytes(range(32)) * (PAYLOAD // 32),
    }[kind]
    rec = Recorder.create(root=tmp_path, session_id="bin", channel=0, key=key)
    for i in range(0, len(payload), CHUNK):
        rec.output(payload[i : i + CHUNK])
    seal = await rec.close()
    assert _stored(rec) <= 1.2 * len(payload)
    _, events = catalog.read_events(rec.path)
    assert _relayed(events) == payload
    assert verify_recording(rec.path, [key.public]).ok
    assert seal.blob_bytes == layout.blob_path(rec.path).stat().st_size


async def test_text_stays_inline_and_mixed_streams_keep_their_order(
    tmp_path: Path, key: RecordingKey
) -> None:
    """Text is an ordinary "o" event (asciinema shows it from the raw file); a binary chunk in
    between is a "b" event; reading back gives every byte in order."""
    rec = Recorder.create(root=tmp_path, session_id="mix", channel=0, key=key)
    parts = [b"\x1b[1mbold\x1b[0m text\r\n", b"\xff\xfe\x00binary", "héllo\r\n".encode()]
    for part in parts:
        rec.output(part)
    await rec.close()
    codes = [orjson.loads(line)[1] for line in rec.path.read_bytes().splitlines()[1:]]
    assert codes == ["o", "b", "o"]
    _, events = catalog.read_events(rec.path)
    assert _relayed(events) == b"".join(parts)


async def _binary_recording(tmp_path: Path, key: RecordingKey) -> Recorder:
    rec = Recorder.create(root=tmp_path, session_id="tamper", channel=0, key=key)
    rec.output(b"before\r\n")
    rec.output(_random_bytes(3000, 1))
    rec.output(b"after\r\n")
    rec.output(_random_bytes(3000, 2))
    await rec.close()
    return rec


@pytest.mark.parametrize("change", ["flip", "truncate", "append", "remove"])
async def test_a_changed_binary_segment_file_is_tampered(
    tmp_path: Path, key: RecordingKey, change: str
) -> None:
    rec = await _binary_recording(tmp_path, key)
    assert verify_recording(rec.path, [key.public]).ok
    blob = layout.blob_path(rec.path)
    data = bytearray(blob.read_bytes())
    if change == "flip":
        data[1500] ^= 1
        blob.write_bytes(bytes(data))
    elif change == "truncate":
        blob.write_bytes(bytes(data[:-10]))
    elif change == "append":
        blob.write_bytes(bytes(data) + b"x")
    else:
        os.unlink(blob)
    result = verify_recording(rec.path, [key.public])
    assert result.status == "tampered", result.reason


async def test_a_rewritten_segment_reference_is_tampered(tmp_path: Path, key: RecordingKey) -> None:
    """Pointing the second segment at the first one's bytes changes the chain."""
    rec = await _binary_recording(tmp_path, key)
    text = rec.path.read_bytes().replace(b'"o 3000 3000"', b'"o 0 3000"')
    rec.path.write_bytes(text)
    assert verify_recording(rec.path, [key.public]).status == "tampered"


async def test_export_plays_in_asciinema_with_exec_output_at_column_zero(
    tmp_path: Path, key: RecordingKey
) -> None:
    """An exec channel (no PTY) writes bare \n; the export turns it into \r\n so a player's
    terminal does not stair-step, and carries binary output as text."""
    rec = Recorder.create(root=tmp_path, session_id="exp", channel=0, key=key,
                          command="ls")  # no TERM in env: no PTY
    rec.output(b"one\ntwo\r")
    rec.output(b"\nthree\n")
    rec.output(b"\x00\x01bin\xff\n")
    await rec.close()
    header, events = catalog.read_events(rec.path)
    exported = tmp_path / "plain.cast"
    exported.write_bytes(b"".join(asciicast_lines(header, events)))
    done = subprocess.run(  # noqa: ASYNC221 - a test may block on the real CLI
        [str(ASCIINEMA), "cat", str(exported)], capture_output=True, check=True, timeout=30,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.stdout == "one\r\ntwo\r\nthree\r\n\x00\x01bin\ufffd\r\n".encode()
    assert all(orjson.loads(line)[1] in "oirm" for line in exported.read_bytes().splitlines()[1:])


async def test_pty_output_is_exported_unchanged(tmp_path: Path, key: RecordingKey) -> None:
    rec = Recorder.create(root=tmp_path, session_id="pty", channel=0, key=key,
                          env={"TERM": "xterm"})
    rec.output(b"a\nb\r\n")
    await rec.close()
    header, events = catalog.read_events(rec.path)
    lines = list(asciicast_lines(header, events))
    assert orjson.loads(lines[1])[2] == "a\nb\r\n"


def test_a_format_1_recording_still_verifies(tmp_path: Path, key: RecordingKey) -> None:
    """A recording written before binary segments (format 1: no "b" events, no blob_bytes in
    its seal records) verifies as intact, and a change to it is still caught."""
    from bastion.recording.codec import chain_next, chain_start, encode_event
    from bastion.recording.seal import encode_record, sign_record

    cast = tmp_path / "old-0.cast"
    header = orjson.dumps({"version": 2, "width": 80, "height": 24, "timestamp": 1,
                           "env": {}, "bastion": {"format": 1, "session_id": "old",
                                                  "channel": 0}}) + b"\n"
    lines = [encode_event(0.5, "o", "hello\r\n"), encode_event(1.0, "m", "gate: allow")]
    digest = chain_start(header)
    for line in lines:
        digest = chain_next(digest, line)
    cast.write_bytes(header + b"".join(lines))

    def record(kind: str, events: int, size: int, dig: bytes) -> bytes:
        return encode_record(sign_record(key, {
            "type": kind, "v": 1, "file": cast.name, "session_id": "old", "channel": 0,
            "events": events, "bytes": size, "digest": dig.hex(), "time": 1.0,
        }))  # fmt: skip

    layout.seal_path(cast).write_bytes(
        record("open", 0, len(header), chain_start(header))
        + record("seal", 2, len(header) + sum(map(len, lines)), digest)
    )
    assert verify_recording(cast, [key.public]).ok
    cast.write_bytes(cast.read_bytes().replace(b"hello", b"HELLO"))
    assert verify_recording(cast, [key.public]).status == "tampered"
