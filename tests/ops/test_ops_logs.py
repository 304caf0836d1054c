"""Structured logs: JSON lines off a TTY, readable text on one, context carried, one line each."""

from __future__ import annotations

import io
import logging
import os
import pty
import sys
from collections.abc import Iterator

import orjson
import pytest

from bastion.logs import ctx, setup_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _emit_to(stream: io.TextIOBase | object, json: bool | None) -> None:
    old = sys.stderr
    sys.stderr = stream  # type: ignore[assignment]
    try:
        setup_logging("info", json=json)
    finally:
        sys.stderr = old
    log = logging.getLogger("bastion")
    log.info(
        "command.decided",
        extra=ctx(session="s-1", identity="agent-7", target="web-01", decision="deny"),
    )
    log.warning("auth.refused", extra=ctx(session="s-2", reason='bad\nname\r\n{"level":"x"}'))


def test_json_when_stderr_is_not_a_tty(restore_logging: None) -> None:
    """Off a terminal (journald, pipes) each event is one JSON object carrying its context."""
    buf = io.StringIO()
    _emit_to(buf, json=None)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2  # the newlines inside a value did not split the event
    first, second = (orjson.loads(line) for line in lines)
    assert first["event"] == "command.decided"
    assert first["level"] == "info"
    assert (first["session"], first["identity"], first["target"]) == ("s-1", "agent-7", "web-01")
    assert second["level"] == "warning"
    assert second["reason"] == 'bad\nname\r\n{"level":"x"}'


def test_text_on_a_terminal(restore_logging: None) -> None:
    """On a TTY the same events read as 'time level event key=value ...'."""
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            _emit_to(tty, json=None)
            tty.flush()
        text = os.read(master, 65536).decode()
    finally:
        os.close(master)
        os.close(slave)
    first = text.splitlines()[0]
    assert "command.decided" in first
    assert "identity=agent-7" in first and "target=web-01" in first
    assert not first.lstrip().startswith("{")
