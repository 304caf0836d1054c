"""Crash and disk-full behaviour with real processes and a real tiny filesystem."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.recording import Recorder, RecordingError, RecordingKey, verify_recording

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from bastion.recording import RecordingKey
    from bastion.recording.store import RecordingStore

    async def main():
        state = Path(sys.argv[1])
        store = RecordingStore(state / "recordings", RecordingKey.load_or_create(state),
                               fsync_interval=0.05)
        await store.start()
        rec = store.create(session_id="crash", channel=1)
        print(rec.path, flush=True)
        n = 0
        while True:  # runs until the parent kills it with SIGKILL
            n += 1
            rec.output(f"line {n} \\u00e9\\r\\n".encode())
            await asyncio.sleep(0.001)

    asyncio.run(main())
    """
)


def test_sigkill_mid_stream_leaves_a_file_verified_up_to_the_cut(tmp_path: Path) -> None:
    """A writer killed with SIGKILL leaves a playable file flagged unsealed, intact to the cut."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        cast = Path(proc.stdout.readline().strip())
        seal = cast.with_name(cast.name + ".seal")
        deadline = time.monotonic() + 20
        while seal.read_bytes().count(b"checkpoint") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    key = RecordingKey.load_or_create(tmp_path)
    result = verify_recording(cast, [key.public])
    assert result.status == "unsealed" and not result.ok
    assert result.events_verified > 0
    assert f"intact up to event {result.events_verified}" in result.reason
    # everything before the cut is still a valid asciicast that a player reads
    done = subprocess.run(
        [str(Path(sys.executable).parent / "asciinema"), "cat", str(cast)],
        capture_output=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert "line 1 é" in done.stdout.decode("utf-8", "replace")


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a 64k tmpfs needs root")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


async def test_disk_full_while_writing_raises(tiny_fs: Path) -> None:
    """When the disk fills mid-session the recorder raises RecordingError and stays failed."""
    key = RecordingKey.generate()
    rec = Recorder.create(root=tiny_fs, session_id="full", channel=0, key=key, buffer_limit=4096)
    with pytest.raises(RecordingError, match="No space left"):
        for _ in range(1000):  # 4 MB at most, far above the 64k filesystem
            rec.output(b"x" * 4096)
    with pytest.raises(RecordingError):
        rec.output(b"more")
    with pytest.raises(RecordingError):
        await rec.close()


async def test_disk_full_on_create_raises(tiny_fs: Path) -> None:
    """A recorder cannot be created on a full disk, and leaves no half-made files behind."""
    filler = tiny_fs / "filler"
    with pytest.raises(OSError), filler.open("wb") as fh:
        for _ in range(100):
            fh.write(b"\0" * 4096)
            fh.flush()
    key = RecordingKey.generate()
    with pytest.raises(RecordingError, match="cannot create recording"):
        Recorder.create(root=tiny_fs, session_id="full", channel=0, key=key)
    assert [p.name for p in tiny_fs.rglob("*.cast*")] == []  # noqa: ASYNC240
