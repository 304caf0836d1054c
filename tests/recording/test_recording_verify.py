"""verify_recording: intact files pass; every kind of tampering fails with the right reason."""

from __future__ import annotations

from pathlib import Path

import orjson

from bastion.recording import Recorder, RecordingKey, verify_recording
from bastion.recording.seal import encode_record, sign_record


def _rewrite_lines(path: Path, edit: object) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(edit(lines)))  # type: ignore[operator]


def test_intact_recording_verifies(sample: Recorder, key: RecordingKey) -> None:
    """A sealed, untouched recording is reported intact with all its events."""
    result = verify_recording(sample.path, [key.public])
    assert result.ok and result.status == "intact"
    assert result.events_verified == 8


def test_flipped_byte_is_detected(sample: Recorder, key: RecordingKey) -> None:
    """Changing one character inside an event's text breaks the signed digest."""
    data = bytearray(sample.path.read_bytes())
    pos = data.index(b"session end")
    data[pos] ^= 0x01
    sample.path.write_bytes(bytes(data))
    result = verify_recording(sample.path, [key.public])
    assert result.status == "tampered" and "changed" in result.reason


def test_deleted_line_is_detected(sample: Recorder, key: RecordingKey) -> None:
    """Removing one event from the middle is detected."""
    _rewrite_lines(sample.path, lambda lines: lines[:2] + lines[3:])
    result = verify_recording(sample.path, [key.public])
    assert result.status == "tampered" and "removed" in result.reason


def test_deleted_last_line_is_detected(sample: Recorder, key: RecordingKey) -> None:
    """Removing the final event (a clean cut at a line boundary) is detected too."""
    _rewrite_lines(sample.path, lambda lines: lines[:-1])
    result = verify_recording(sample.path, [key.public])
    assert result.status == "tampered" and "truncated or events removed" in result.reason


def test_truncation_is_detected(sample: Recorder, key: RecordingKey) -> None:
    """Cutting the file mid-line reports truncation."""
    data = sample.path.read_bytes()
    sample.path.write_bytes(data[: len(data) - 10])
    result = verify_recording(sample.path, [key.public])
    assert result.status == "tampered" and "truncated" in result.reason


def test_reordered_events_are_detected(sample: Recorder, key: RecordingKey) -> None:
    """Swapping two events breaks the chain and the reason names the out-of-order line."""
    _rewrite_lines(sample.path, lambda lines: [lines[0], lines[2], lines[1], *lines[3:]])
    result = verify_recording(sample.path, [key.public])
    assert result.status == "tampered"
    assert "reordered" in result.reason and "out of order" in result.reason


def test_appended_data_is_detected(sample: Recorder, key: RecordingKey) -> None:
    """An event appended after the seal is unsigned and fails verification."""
    with sample.path.open("ab") as fh:
        fh.write(b'[99.0,"o","injected"]\n')
    result = verify_recording(sample.path, [key.public])
    assert result.status == "tampered" and "after the sealed end" in result.reason


def test_replaced_signature_is_detected(sample: Recorder, key: RecordingKey) -> None:
    """A seal re-signed by another key (after editing the file) is rejected."""
    data = sample.path.read_bytes().replace(b"session end", b"session END")
    sample.path.write_bytes(data)
    forger = RecordingKey.generate()
    records = [orjson.loads(x) for x in sample.seal_path.read_bytes().splitlines()]
    forged = b"".join(encode_record(sign_record(forger, r)) for r in records)
    sample.seal_path.write_bytes(forged)
    result = verify_recording(sample.path, [key.public])
    assert result.status == "tampered" and "untrusted key" in result.reason


def test_corrupted_signature_bytes_are_detected(sample: Recorder, key: RecordingKey) -> None:
    """A seal whose signature was swapped for another record's signature does not verify."""
    records = [orjson.loads(x) for x in sample.seal_path.read_bytes().splitlines()]
    records[-1]["sig"] = records[0]["sig"]
    sample.seal_path.write_bytes(b"".join(encode_record(r) for r in records))
    result = verify_recording(sample.path, [key.public])
    assert result.status == "tampered" and "does not verify" in result.reason


def test_missing_seal_file_fails(sample: Recorder, key: RecordingKey) -> None:
    """Without its sidecar a recording cannot be verified and is not reported ok."""
    sample.seal_path.unlink()
    result = verify_recording(sample.path, [key.public])
    assert not result.ok and "missing" in result.reason


async def test_seal_of_another_recording_is_rejected(
    tmp_path: Path, sample: Recorder, key: RecordingKey
) -> None:
    """A valid seal copied from another recording does not vouch for this one."""
    other = Recorder.create(root=tmp_path / "other", session_id="zzz", channel=0, key=key)
    await other.close()
    other.seal_path.write_bytes(sample.seal_path.read_bytes())
    other.path.write_bytes(sample.path.read_bytes())
    result = verify_recording(other.path, [key.public])
    assert result.status == "tampered" and "belongs to" in result.reason
