"""Recorder: asciicast output that real players read, UTF-8 handling, durability, failures."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bastion.recording import Recorder, RecordingError, RecordingKey, catalog, verify_recording
from bastion.recording.store import RecordingStore

ASCIINEMA = Path(sys.executable).parent / "asciinema"


def _lines(path: Path) -> list[object]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def test_asciinema_cat_renders_the_recorded_output(sample: Recorder) -> None:
    """The real asciinema CLI reads the .cast unchanged and prints exactly the output stream."""
    rec = sample
    done = subprocess.run(  # noqa: ASYNC221 - a test may block on the real CLI
        [str(ASCIINEMA), "cat", str(rec.path)],
        capture_output=True,
        check=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.stdout.decode("utf-8") == "$ echo héllo €\r\nhéllo €\r\n"


async def test_file_is_asciicast_v2_with_metadata_and_all_event_kinds(
    tmp_path: Path, sample: Recorder
) -> None:
    """Header carries size, command, env and our metadata; o/i/r/m events have relative times."""
    rec = sample
    header, *events = _lines(rec.path)
    assert isinstance(header, dict)
    assert header["version"] == 2 and header["width"] == 80 and header["height"] == 24
    assert header["command"] == "bash" and header["title"] == "test"
    assert header["env"] == {"TERM": "xterm-256color", "SHELL": "/bin/bash"}
    assert header["bastion"]["session_id"] == "sess1"
    assert header["bastion"]["identity"] == "agent@example.test"
    assert {e[1] for e in events} == {"o", "i", "r", "m"}  # type: ignore[index]
    assert [e[2] for e in events if e[1] == "r"] == ["120x40"]  # type: ignore[index]
    times = [e[0] for e in events]  # type: ignore[index]
    assert times == sorted(times) and times[0] >= 0
    # layout: YYYY/MM/DD/<session-id>-<channel>.cast
    assert rec.path.relative_to(tmp_path / "recordings").parts[3] == "sess1-0.cast"


@pytest.mark.parametrize("cut", range(1, 12))
async def test_utf8_split_anywhere_is_not_corrupted(
    tmp_path: Path, key: RecordingKey, cut: int
) -> None:
    """A multi-byte character split across two chunks at any byte arrives intact."""
    data = "añ€😀z".encode()
    rec = Recorder.create(root=tmp_path, session_id="u", channel=cut, key=key)
    rec.output(data[:cut])
    rec.output(data[cut:])
    await rec.close()
    text = "".join(e[2] for e in _lines(rec.path)[1:])  # type: ignore[index]
    assert text == "añ€😀z"


async def test_truncated_character_at_close_is_kept_as_its_bytes(
    tmp_path: Path, key: RecordingKey
) -> None:
    """A dangling partial character at close is kept byte for byte (a binary segment), never
    dropped or replaced."""
    rec = Recorder.create(root=tmp_path, session_id="u", channel=0, key=key)
    rec.output(b"ok\xe2\x82")
    await rec.close()
    _, events = catalog.read_events(rec.path)
    assert b"".join(e.raw if e.raw is not None else e.data.encode() for e in events) == (
        b"ok\xe2\x82"
    )
    assert verify_recording(rec.path, [key.public]).ok


async def test_input_not_recorded_when_disabled(tmp_path: Path, key: RecordingKey) -> None:
    """record_input=false drops 'i' events and says so in the header."""
    rec = Recorder.create(root=tmp_path, session_id="n", channel=0, key=key, record_input=False)
    rec.input(b"secret-typed\r")
    rec.output(b"x")
    await rec.close()
    header, *events = _lines(rec.path)
    assert header["bastion"]["input_recorded"] is False  # type: ignore[index]
    assert [e[1] for e in events] == ["o"]  # type: ignore[index]


async def test_user_input_cannot_steer_the_file_name(tmp_path: Path, key: RecordingKey) -> None:
    """Session ids that could escape the layout are refused before any file is created."""
    for bad in ("../x", "a/b", "", "x" * 65, ".hidden"):
        with pytest.raises(RecordingError):
            Recorder.create(root=tmp_path, session_id=bad, channel=0, key=key)
    assert list(tmp_path.iterdir()) == []  # noqa: ASYNC240


async def test_closed_recorder_refuses_events(tmp_path: Path, key: RecordingKey) -> None:
    """Writing after close raises instead of silently losing the event."""
    rec = Recorder.create(root=tmp_path, session_id="c", channel=0, key=key)
    await rec.close()
    with pytest.raises(RecordingError, match="closed"):
        rec.output(b"late")


async def test_store_syncs_open_recorders_on_its_interval(
    tmp_path: Path, key: RecordingKey
) -> None:
    """The store's task flushes and appends signed checkpoints without any call from the owner."""
    store = RecordingStore(tmp_path, key, fsync_interval=0.05)
    await store.start()
    try:
        rec = store.create(session_id="p", channel=0)
        rec.output(b"first\r\n")
        for _ in range(100):
            await asyncio.sleep(0.02)
            if b"checkpoint" in rec.seal_path.read_bytes():
                break
        assert rec.path.read_bytes().endswith(b'"first\\r\\n"]\n')  # on disk before close
        assert b'"checkpoint"' in rec.seal_path.read_bytes()
        await rec.close()
        assert store.open_recorders == frozenset()
    finally:
        await store.stop()
    assert verify_recording(rec.path, [key.public]).ok


def test_key_created_private_and_public_exported(tmp_path: Path) -> None:
    """The signing key is created 0600 with its .pub beside it, and reloads as the same key."""
    first = RecordingKey.load_or_create(tmp_path)
    assert stat.S_IMODE((tmp_path / "recording_key").stat().st_mode) == 0o600
    pub = (tmp_path / "recording_key.pub").read_text()
    assert pub.startswith("ssh-ed25519 ")
    assert RecordingKey.load_or_create(tmp_path).key_id == first.key_id


def test_group_readable_key_is_refused(tmp_path: Path) -> None:
    """A signing key others can read is not trusted (fail closed)."""
    RecordingKey.load_or_create(tmp_path)
    os.chmod(tmp_path / "recording_key", 0o640)
    with pytest.raises(RecordingError, match="chmod 600"):
        RecordingKey.load_or_create(tmp_path)


async def test_chunked_output_keeps_every_byte_in_order(tmp_path: Path) -> None:
    """Any split of the byte stream (bytes, bytearray or memoryview chunks, invalid bytes,
    a character cut at the very end) reads back as exactly the bytes written: text events hold
    whole characters (a split one waits for its end), invalid bytes go to binary segments, and
    times are microsecond-rounded."""
    import random

    key = RecordingKey.generate()
    data = "héllo € 😀 ok\r\n".encode() * 20 + b"\xff\xfe bad \xc3" + "end é".encode()[:-1]
    rnd = random.Random(7)
    rec = Recorder.create(root=tmp_path, session_id="split", channel=0, key=key)
    i = 0
    while i < len(data):
        n = rnd.randint(1, 9)
        chunk = data[i:i + n]
        i += n
        wrapped = (bytes, bytearray, memoryview)[rnd.randrange(3)](chunk)
        rec.output(wrapped)  # type: ignore[arg-type]
    seal = await rec.close()
    _, read = catalog.read_events(seal.path)
    assert b"".join(e.raw if e.raw is not None else e.data.encode() for e in read) == data
    events = _lines(seal.path)[1:]
    assert "b" in {e[1] for e in events}  # type: ignore[index]
    for e in events:
        t = e[0]  # type: ignore[index]
        assert isinstance(t, float | int) and round(t, 6) == t
    assert verify_recording(seal.path, [key.public]).status == "intact"
