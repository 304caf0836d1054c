"""Structured logs: one line per event with session/identity/target context, never payload.

JSON lines when stderr is not a terminal (journald, SIEM); readable ``key=value`` on a TTY.
Callers log an event name as the message and put context in ``extra={"ctx": {...}}``.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

_RESERVED = frozenset({"ts", "level", "logger", "event", "exc"})
_process: dict[str, Any] = {}  # fields on every line of this process (a worker's number)


def set_process_fields(**fields: Any) -> None:
    """Add ``fields`` to every log line this process writes from now on."""
    _process.update(fields)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **_process,
        }
        ctx = getattr(record, "ctx", None)
        if isinstance(ctx, dict):
            for key, value in ctx.items():  # context never overwrites the record's own fields
                doc[f"ctx_{key}" if key in _RESERVED else key] = value
        if record.exc_info and record.levelno >= logging.ERROR:
            doc["exc"] = self.formatException(record.exc_info).splitlines()[-1]
        return orjson.dumps(doc, default=str).decode()


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        parts = [stamp, record.levelname.lower().ljust(7), record.getMessage()]
        parts.extend(f"{k}={v}" for k, v in _process.items())
        ctx = getattr(record, "ctx", None)
        if isinstance(ctx, dict):
            parts.extend(f"{k}={_text_value(v)}" for k, v in ctx.items())
        return " ".join(parts)


def _text_value(value: object) -> str:
    """Quote values with spaces or control characters (a user name could otherwise forge a
    log line on the terminal)."""
    text = str(value)
    if text and all(c.isprintable() and not c.isspace() for c in text):
        return text
    return repr(text)


def setup_logging(level: str = "info", json: bool | None = None) -> None:
    if json is None:
        json = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if json else _TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("asyncssh").setLevel(logging.WARNING)


def ctx(**fields: Any) -> dict[str, Any]:
    return {"ctx": fields}
