"""Terminal playback: timing (speed, idle limit), pause with space, seek with arrow keys."""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TextIO

from bastion.recording.codec import Event

SEEK_STEP = 5.0
_RESET = "\x1bc"
_KEY_RIGHT = b"\x1b[C"
_KEY_LEFT = b"\x1b[D"


@dataclass(frozen=True)
class Frame:
    time: float  # playback time in seconds, after idle capping and speed
    text: str


def build_frames(
    events: Iterable[Event], *, speed: float = 1.0, idle_limit: float | None = None
) -> list[Frame]:
    """Output events on the playback clock: gaps longer than idle_limit shrink to it."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    frames: list[Frame] = []
    clock = 0.0
    previous = 0.0
    for event in events:
        gap = max(event.time - previous, 0.0)
        previous = event.time
        if idle_limit is not None:
            gap = min(gap, idle_limit)
        clock += gap / speed
        if event.code == "o":
            frames.append(Frame(clock, event.data))
        elif event.code == "r":
            w, _, h = event.data.partition("x")
            if w.isdigit() and h.isdigit():
                # xterm's window-size request: terminals that honour it follow the recording
                frames.append(Frame(clock, f"\x1b[8;{int(h)};{int(w)}t"))
    return frames


def frames_until(frames: list[Frame], when: float) -> int:
    """Index of the first frame after ``when`` (the screen at ``when`` is frames[:index])."""
    lo, hi = 0, len(frames)
    while lo < hi:
        mid = (lo + hi) // 2
        if frames[mid].time <= when:
            lo = mid + 1
        else:
            hi = mid
    return lo


class _Keys:
    """Raw key reads from a TTY with a timeout; a no-op sleeper when stdin is not a TTY."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd

    def wait(self, timeout: float | None) -> bytes:
        if self.fd is None:
            if timeout:
                time.sleep(timeout)
            return b""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        return os.read(self.fd, 16) if ready else b""


@contextlib.contextmanager
def _terminal(stdin: TextIO) -> Iterator[int | None]:
    if not stdin.isatty():
        yield None
        return
    fd = stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def play(frames: list[Frame], out: TextIO | None = None, stdin: TextIO | None = None) -> None:
    """Write frames at their times. Keys (TTY only): space pause, ←/→ seek 5 s, q quit."""
    out = out or sys.stdout
    with _terminal(stdin or sys.stdin) as fd:
        _Player(frames, out, _Keys(fd)).run()


class _Player:
    def __init__(self, frames: list[Frame], out: TextIO, keys: _Keys) -> None:
        self.frames = frames
        self.out = out
        self.keys = keys
        self.index = 0
        self.start = time.monotonic()
        self.paused_at: float | None = None

    def now(self) -> float:
        return self.paused_at if self.paused_at is not None else time.monotonic() - self.start

    def seek(self, when: float) -> None:
        when = max(0.0, min(when, self.frames[-1].time if self.frames else 0.0))
        target = frames_until(self.frames, when)
        if target < self.index:  # going back: redraw from the start
            self.out.write(_RESET)
            self.index = 0
        self.out.write("".join(f.text for f in self.frames[self.index : target]))
        self.out.flush()
        self.index = target
        if self.paused_at is not None:
            self.paused_at = when
        else:
            self.start = time.monotonic() - when

    def run(self) -> None:
        while self.index < len(self.frames):
            frame = self.frames[self.index]
            if self.paused_at is not None:
                key = self.keys.wait(None)
            else:
                delay = frame.time - self.now()
                key = self.keys.wait(delay) if delay > 0 else b""
            if key in (b"q", b"\x03"):
                return
            if key == b" ":
                if self.paused_at is None:
                    self.paused_at = self.now()
                else:
                    self.start = time.monotonic() - self.paused_at
                    self.paused_at = None
            elif key == _KEY_RIGHT:
                self.seek(self.now() + SEEK_STEP)
            elif key == _KEY_LEFT:
                self.seek(self.now() - SEEK_STEP)
            elif not key and self.paused_at is None and frame.time <= self.now():
                self.out.write(frame.text)
                self.out.flush()
                self.index += 1
