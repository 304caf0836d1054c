"""Plain-text transcript of a recording, rendered through a terminal emulator (pyte).

Rendering (rather than stripping escapes) gives what a person saw: carriage returns overwrite,
backspaces erase, cursor movement lands where it should. What was on the screen when it was
cleared (``clear``, a full reset, a full-screen program redrawing) is kept in the transcript
before the clear, as lines that scrolled off are.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyte

from bastion.recording.codec import Event

_HISTORY = 100_000


def _line_text(line: object, columns: int) -> str:
    return "".join(line[x].data for x in range(columns)).rstrip()  # type: ignore[index]


class _TranscriptScreen(pyte.HistoryScreen):
    """A history screen that files the display into the history before erasing all of it."""

    def __init__(self, columns: int, lines: int, **kwargs: object) -> None:
        self._started = False  # reset() runs inside __init__, before there is a display
        super().__init__(columns, lines, **kwargs)  # type: ignore[arg-type]
        self._started = True

    def _keep_display(self) -> None:
        rows = [self.buffer[y] for y in range(self.lines)]
        while rows and not _line_text(rows[-1], self.columns):
            rows.pop()
        for row in rows:
            kept = type(row)(row.default)  # a copy that still answers blank for empty cells
            kept.update(row)
            self.history.top.append(kept)
        self.buffer.clear()

    def erase_in_display(self, how: int = 0, *args: object, **kwargs: object) -> None:
        if how in (2, 3):
            self._keep_display()
        super().erase_in_display(how, *args, **kwargs)

    def reset(self) -> None:
        if self._started:
            self._keep_display()
        super().reset()


def render_text(width: int, height: int, events: Iterable[Event]) -> str:
    screen = _TranscriptScreen(width, height, history=_HISTORY, ratio=0.5)
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
