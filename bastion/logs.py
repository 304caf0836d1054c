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


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        ctx = getattr(record, "ctx", None)
        if isinstance(ctx, dict):
            doc.update(ctx)
        if record.exc_info and record.levelno >= logging.ERROR:
            doc["exc"] = self.formatException(record.exc_info).splitlines()[-1]
        return orjson.dumps(doc, default=str).decode()


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        parts = [stamp, record.levelname.lower().ljust(7), record.getMessage()]
        ctx = getattr(record, "ctx", None)
        if isinstance(ctx, dict):
            parts.extend(f"{k}={v}" for k, v in ctx.items())
        return " ".join(parts)


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
