"""The recording CLI end to end: verify, list, show, export, play, prune (real files, real DB)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from pathlib import Path

import pytest

from bastion.audit import AuditStore, verify_chain
from bastion.cli import main
from bastion.recording import Recorder, RecordingKey
from bastion.recording.cli import load_recording_config
from bastion.recording.codec import Event
from bastion.recording.player import build_frames, frames_until


def _state(config_file: Path) -> tuple[Path, RecordingKey]:
    cfg = load_recording_config(config_file)
    return cfg.dir, RecordingKey.load_or_create(cfg.key_file.parent)


async def _record(
    config_file: Path,
    session_id: str,
    *,
    target: str = "vm1",
    identity: str = "agent-a",
    started_at: float | None = None,
    close: bool = True,
) -> Recorder:
    root, key = _state(config_file)
    rec = Recorder.create(
        root=root,
        session_id=session_id,
        channel=0,
        key=key,
        meta={"identity": identity, "target": target, "login": "azureuser"},
        width=40,
        height=5,
        command="bash",
        started_at=started_at,
    )
    rec.output(b"$ ")
    rec.input(b"lss\x7f -l\r")
    rec.output(b"lss\x08 \x08 -l\r\ntotal 0\r\n")
    rec.marker("gate allow: ls -l (rule read-only)")
    rec.output(b"progress 10%\rprogress 99%\r\n$ ")
    if close:
        await rec.close(exit_status=0)
    return rec


async def test_verify_command_exit_codes(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """verify exits 0 for intact files and 1 with a reason for tampered or unsealed ones."""
    good = await _record(config_file, "good")
    bad = await _record(config_file, "bad")
    open_rec = await _record(config_file, "open", close=False)
    await open_rec.sync()
    bad.path.write_bytes(bad.path.read_bytes().replace(b"total 0", b"total 9"))
    cfg = ["--config", str(config_file)]
    assert main(["recordings", "verify", str(good.path), *cfg]) == 0
    assert "OK: intact" in capsys.readouterr().out
    assert main(["recordings", "verify", str(bad.path), *cfg]) == 1
    assert "TAMPERED: content differs" in capsys.readouterr().out
    assert main(["recordings", "verify", str(open_rec.path), *cfg]) == 1
    assert "UNSEALED: unsealed" in capsys.readouterr().out
    await open_rec.close()


async def test_verify_with_wrong_key_fails(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An explicitly trusted key that did not sign the recording makes verify fail."""
    rec = await _record(config_file, "k1")
    other = RecordingKey.load_or_create(tmp_path / "other")
    pub = tmp_path / "other" / "recording_key.pub"
    assert other.key_id not in rec.seal_path.read_text()
    assert main(["recordings", "verify", str(rec.path), "--key", str(pub)]) == 1
    assert "untrusted key" in capsys.readouterr().out


async def test_verify_missing_file_is_a_one_line_error(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A path that does not exist is a clear user error (exit 2), not a traceback."""
    assert main(["recordings", "verify", "/nonexistent/x.cast", "--config", str(config_file)]) == 3
    assert capsys.readouterr().err.strip() == "bastion: no such recording file: /nonexistent/x.cast"


async def test_list_filters_and_json(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """list --json shows each recording once and honours --target and --identity."""
    await _record(config_file, "one", target="vm1", identity="agent-a")
    await _record(config_file, "two", target="vm2", identity="agent-b")
    assert main(["recordings", "list", "--json", "--config", str(config_file)]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert sorted(r["id"] for r in rows) == ["one-0", "two-0"]
    assert all(r["sealed"] for r in rows)
    main(["recordings", "list", "--json", "--target", "vm2", "--config", str(config_file)])
    assert [json.loads(x)["id"] for x in capsys.readouterr().out.splitlines()] == ["two-0"]
    main(["recordings", "list", "--json", "--identity", "agent-a", "--config", str(config_file)])
    assert [json.loads(x)["id"] for x in capsys.readouterr().out.splitlines()] == ["one-0"]
    main(["recordings", "list", "--since", "1d", "--config", str(config_file)])
    header, *rows_text = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["STARTED", "(UTC)", "ID"] and len(rows_text) == 2


async def test_list_is_in_time_order(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Recordings are listed oldest first, whatever their ids or folders."""
    now = time.time()
    await _record(config_file, "aaa-late", started_at=now - 60)
    await _record(config_file, "zzz-early", started_at=now - 3 * 86400)
    await _record(config_file, "mmm-middle", started_at=now - 86400)
    assert main(["recordings", "list", "--config", str(config_file)]) == 0
    ids = [line.split()[2] for line in capsys.readouterr().out.splitlines()[1:]]
    assert ids == ["zzz-early-0", "mmm-middle-0", "aaa-late-0"]


async def test_show_lists_metadata_and_decisions(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """show by session id prints identity, target, verification and the gate markers."""
    await _record(config_file, "shown")
    assert main(["recordings", "show", "shown", "--config", str(config_file)]) == 0
    out = capsys.readouterr().out
    assert "agent-a" in out and "vm1" in out and "intact" in out
    assert "gate allow: ls -l (rule read-only)" in out
    assert "events: 3 output, 1 input, 0 resize, 1 marker" in out
    assert "{" not in out and "[" not in out.replace("[rule", "")  # no Python reprs


async def test_show_prints_lists_as_text(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, key = _state(config_file)
    rec = Recorder.create(root=root, session_id="princ", channel=0, key=key,
                          meta={"principals": ["agents", "ci"], "identity": "a"})
    await rec.close()
    assert main(["recordings", "show", "princ", "--config", str(config_file)]) == 0
    assert "principals  agents, ci" in capsys.readouterr().out


async def test_export_text_keeps_what_a_clear_screen_erased_and_exec_lines_at_column_zero(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`clear` (or a full-screen program) erases the display: the transcript keeps what was on
    it before; an exec channel's bare \\n starts each line at column 0, not a staircase."""
    root, key = _state(config_file)
    rec = Recorder.create(root=root, session_id="cleared", channel=0, key=key, width=40, height=5)
    rec.output("".join(f"row {i}\n" for i in range(12)).encode())
    rec.output(b"\x1b[H\x1b[2Jafter clear\n")
    await rec.close()
    assert main(["recordings", "export", "cleared", "--text", "--config", str(config_file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"row {i}" for i in range(12)] + ["after clear"]


async def test_export_text_renders_what_the_terminal_showed(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The transcript applies backspaces and carriage returns like a terminal would."""
    await _record(config_file, "exported")
    assert main(["recordings", "export", "exported", "--text", "--config", str(config_file)]) == 0
    assert capsys.readouterr().out == "$ ls -l\ntotal 0\nprogress 99%\n$\n"


async def test_play_writes_output_and_refuses_tampered(
    config_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """play (no TTY) writes the output stream; a tampered file is refused unless --no-verify."""
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    rec = await _record(config_file, "played")
    cfg = ["--config", str(config_file)]
    assert main(["play", "played", "--speed", "1000", *cfg]) == 0
    assert capsys.readouterr().out.startswith("$ lss\x08 \x08 -l\r\ntotal 0")
    rec.path.write_bytes(rec.path.read_bytes().replace(b"total 0", b"total 1"))
    assert main(["play", str(rec.path), *cfg]) == 3
    assert "failed verification" in capsys.readouterr().err
    assert main(["play", str(rec.path), "--no-verify", "--speed", "1000", *cfg]) == 0
    assert "total 1" in capsys.readouterr().out


def test_frames_carry_resizes() -> None:
    """A resize event becomes xterm's window-size request at its time."""
    frames = build_frames([Event(0.0, "o", "a"), Event(1.0, "r", "100x30")])
    assert [f.text for f in frames] == ["a", "\x1b[8;30;100t"]


def test_frames_follow_speed_idle_limit_and_seek() -> None:
    """Idle gaps are capped, speed divides time, and seeking finds the right frame."""
    events = [Event(0.5, "o", "a"), Event(30.5, "i", "x"), Event(31.0, "o", "b")]
    frames = build_frames(events, speed=2.0, idle_limit=1.0)
    assert [(f.time, f.text) for f in frames] == [(0.25, "a"), (1.0, "b")]
    assert frames_until(frames, 0.0) == 0 and frames_until(frames, 0.5) == 1
    assert frames_until(frames, 5.0) == 2


async def test_prune_deletes_old_recordings_and_audits_it(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """prune deletes only recordings older than N days and writes one audit row for each."""
    old_time = time.time() - 40 * 86400
    old = await _record(config_file, "old", started_at=old_time)
    os.utime(old.path, (old_time, old_time))
    new = await _record(config_file, "new")
    cfg = ["--config", str(config_file)]
    # the CLI runs its own event loop, so call it from a thread as a shell would
    dry = ["recordings", "prune", "--older-than", "30", "--dry-run", *cfg]
    assert await asyncio.to_thread(main, dry) == 0
    assert old.path.exists()
    assert await asyncio.to_thread(main, ["recordings", "prune", "--older-than", "30", *cfg]) == 0
    assert not old.path.exists() and not old.seal_path.exists() and new.path.exists()
    store = await AuditStore.open(config_file.parent / "state" / "bastion.db")
    try:
        rows = await store.query(kinds=["recording_pruned"])
        assert [r.session_id for r in rows] == ["old"]
        assert rows[0].fields["sealed"] is True and len(rows[0].fields["digest"]) == 64
        assert (await verify_chain(store.db)).ok
    finally:
        await store.close()
