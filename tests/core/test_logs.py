"""Log lines cannot be forged or corrupted by what agents send."""

from __future__ import annotations

import logging

import orjson

from bastion.logs import _JsonFormatter, _TextFormatter


def _record(**ctx: object) -> logging.LogRecord:
    record = logging.LogRecord("bastion", logging.WARNING, __file__, 1, "auth.refused", None, None)
    record.ctx = ctx
    return record


def test_json_context_cannot_overwrite_record_fields() -> None:
    """A context key named like a record field is kept apart, never replacing it."""
    doc = orjson.loads(_JsonFormatter().format(_record(event="forged", level="debug", peer="x")))
    assert doc["event"] == "auth.refused" and doc["level"] == "warning"
    assert doc["ctx_event"] == "forged" and doc["peer"] == "x"


def test_text_values_with_control_characters_are_quoted() -> None:
    """A user name with a newline cannot start a new, fake log line on a terminal."""
    line = _TextFormatter().format(_record(requested="web-01\n12:00:00 info auth.ok"))
    assert "\n" not in line
    assert "requested='web-01\\n12:00:00 info auth.ok'" in line
