"""Plain-text transcript of a recording, rendered through a terminal emulator (pyte).

Rendering (rather than stripping escapes) gives what a person saw: carriage returns overwrite,
backspaces erase, cursor movement lands where it should.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyte

from bastion.recording.codec import Event

_HISTORY = 100_000


def _line_text(line: object, columns: int) -> str:
    return "".join(line[x].data for x in range(columns)).rstrip()  # type: ignore[index]


def render_text(width: int, height: int, events: Iterable[Event]) -> str:
    screen = pyte.HistoryScreen(width, height, history=_HISTORY, ratio=0.5)
    stream = pyte.Stream(screen)
    for event in events:
        if event.code == "o":
            stream.feed(event.data)
        elif event.code == "r":
            w, _, h = event.data.partition("x")
            if w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0:
                screen.resize(int(h), int(w))
    lines = [_line_text(line, screen.columns) for line in screen.history.top]
    lines += [line.rstrip() for line in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + ("\n" if lines else "")
