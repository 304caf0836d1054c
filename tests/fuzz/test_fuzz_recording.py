"""Fuzz the recording verifier and reader: hostile files never crash or hang them, and no
mutation of a sealed recording is ever reported intact."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from functools import lru_cache
from pathlib import Path

from fuzz_support import cpu_bounded, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from bastion.errors import BastionError
from bastion.recording import Recorder, RecordingError, RecordingKey, verify_recording
from bastion.recording.catalog import read_events, read_header
from bastion.recording.layout import seal_path
from bastion.recording.player import build_frames

NAME = "fuzz1-0.cast"


@lru_cache(maxsize=1)
def _key() -> RecordingKey:
    return RecordingKey.generate()


@lru_cache(maxsize=1)
def _sample() -> tuple[bytes, bytes]:
    """A sealed recording (output, input, resize, markers, a checkpoint): (.cast, .seal) bytes."""

    async def write(root: Path) -> Path:
        rec = Recorder.create(root=root, session_id="fuzz1", channel=0, key=_key(),
                              meta={"identity": "agent@example.test", "target": "vm1"},
                              command="bash", env={"TERM": "xterm"}, title="fuzz")
        rec.output(b"$ echo h\xc3")
        rec.input(b"echo hi\r")
        rec.output(b"\xa9llo\r\n\x1b[31mred\x1b[0m\r\n")
        rec.marker("gate allow: echo")
        await rec.sync()
        rec.resize(120, 40)
        rec.output(b"bye\r\n")
        await rec.close(exit_status=0)
        return Path(rec.path)

    with tempfile.TemporaryDirectory() as tmp:
        path = asyncio.run(write(Path(tmp)))
        return path.read_bytes(), seal_path(path).read_bytes()


def _check(cast: bytes, seal: bytes | None) -> str:
    """Write the pair, run every reader on it, return the verdict."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / NAME
        path.write_bytes(cast)
        if seal is not None:
            seal_path(path).write_bytes(seal)
        result = cpu_bounded(2.0, lambda: verify_recording(path, [_key().public]), "verify")
        assert result.status in ("intact", "unsealed", "tampered", "unreadable")
        assert "\n" not in result.reason
        for reader in (read_header, read_events):
            # a clean one-line refusal is fine; any other exception fails the test
            with contextlib.suppress(RecordingError, BastionError):
                cpu_bounded(2.0, lambda r=reader: r(path), reader.__name__)  # type: ignore[misc]
        try:
            _, events = read_events(path)
            build_frames(events, speed=2.0, idle_limit=1.0)
        except (RecordingError, BastionError):
            pass
        return result.status


def test_sample_is_intact() -> None:
    """The unmutated sample verifies as intact (the baseline the mutations are judged against)."""
    cast, seal = _sample()
    assert _check(cast, seal) == "intact"


@st.composite
def _mutation(draw: st.DrawFn, data: bytes) -> bytes:
    """One random change: flip, replace, insert, delete, truncate, duplicate or swap lines."""
    kind = draw(st.integers(0, 6))
    n = len(data)
    at = draw(st.integers(0, max(n - 1, 0)))
    if kind == 0:
        bit = 1 << draw(st.integers(0, 7))
        return data[:at] + bytes([data[at] ^ bit]) + data[at + 1:]
    if kind == 1:
        new = draw(st.binary(min_size=1, max_size=8))
        out = data[:at] + new + data[at + len(new):]
        return out if out != data else data[:at] + data[at + 1:]
    if kind == 2:
        return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
    if kind == 3:
        size = draw(st.integers(1, 16))
        return data[:at] + data[at + size:]
    if kind == 4:
        return data[:at]
    lines = data.split(b"\n")
    i = draw(st.integers(0, len(lines) - 1))
    j = draw(st.integers(0, len(lines) - 1))
    if kind == 5:
        lines.insert(j, lines[i])
    elif lines[i] != lines[j]:
        lines[i], lines[j] = lines[j], lines[i]
    else:
        lines.insert(j, lines[i])
    return b"\n".join(lines)


@fuzz_settings(200)
@given(st.data())
def test_fuzz_mutated_cast_is_never_intact(data: st.DataObject) -> None:
    """Any change to the .cast file of a sealed recording is reported as not intact."""
    cast, seal = _sample()
    mutated = data.draw(_mutation(cast))
    if mutated == cast:
        return
    assert _check(mutated, seal) != "intact"


@fuzz_settings(150)
@given(st.data())
def test_fuzz_mutated_seal_never_crashes(data: st.DataObject) -> None:
    """Any change to the seal sidecar is handled; if it still says intact, the signed records
    are unchanged (only the JSON spelling moved), never the recorded content."""
    cast, seal = _sample()
    mutated = data.draw(_mutation(seal))
    if mutated == seal:
        return
    if _check(cast, mutated) == "intact":
        import orjson

        def records(raw: bytes) -> list[object]:
            return [orjson.loads(line) for line in raw.split(b"\n")[:-1]]

        assert records(mutated) == records(seal) or mutated.split(b"\n")[:-1] == seal.split(
            b"\n")[:-1], mutated


@fuzz_settings(150)
@given(cast=st.binary(max_size=2000), seal=st.none() | st.binary(max_size=600))
def test_fuzz_random_files_never_crash_the_readers(cast: bytes, seal: bytes | None) -> None:
    """Random bytes as a recording and its seal: every reader answers or refuses cleanly."""
    assert _check(cast, seal) != "intact"
