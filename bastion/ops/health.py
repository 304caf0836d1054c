"""``/healthz``, ``/readyz`` and ``/metrics`` on the bastion's HTTP server.

- ``/healthz``: the process and its event loop answer (liveness; no I/O, no config).
- ``/readyz``: 200 only when every readiness check is true, else 503; both with the checks as
  JSON. A check that raises or hangs counts as false (fail closed: unknown is not ready).
- ``/metrics``: the Prometheus text exposition of the bastion's private registry.

The routes show counts and booleans only: no identities, commands or paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from bastion.ops.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger("bastion.ops.health")

Readiness = Callable[[], Awaitable[dict[str, bool]]]
READINESS_TIMEOUT = 5.0


def add_routes(app: web.Application, metrics: Metrics, readiness: Readiness) -> None:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        checks = await _run_checks(readiness)
        ready = bool(checks) and all(checks.values())
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

    async def metrics_page(request: web.Request) -> web.Response:
        body = metrics.render()
        # prometheus-client's content type carries a charset, which aiohttp wants separately.
        content_type, _, params = CONTENT_TYPE.partition(";")
        charset = params.partition("charset=")[2].strip() or None
        return web.Response(body=body, content_type=content_type.strip(), charset=charset)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)


async def _run_checks(readiness: Readiness) -> dict[str, bool]:
    try:
        checks = await asyncio.wait_for(readiness(), READINESS_TIMEOUT)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # any failure means "not ready"
        log.warning("readyz.failed", extra={"ctx": {"error": type(exc).__name__}})
        return {"readiness": False}
    return {str(name): value is True for name, value in checks.items()}


# -- building blocks for the readiness callable the app passes in -----------------------------
def dir_writable(path: Path) -> bool:
    """True when a file can be created, written, synced and removed in ``path``."""
    try:
        fd, name = tempfile.mkstemp(prefix=".ready-", dir=path)
    except OSError:
        return False
    try:
        os.write(fd, b"ok")
        os.fsync(fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name)


def database_writable(path: Path, timeout: float = 1.0) -> bool:
    """True when the existing SQLite database at ``path`` takes a write lock within ``timeout``.

    ``BEGIN IMMEDIATE`` takes the same lock a write does, then rolls back: nothing is written,
    yet a read-only file system, a missing database or a writer stuck holding the lock all fail.
    """
    try:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=timeout, isolation_level=None
        )
    except sqlite3.Error:
        return False
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def standard_readiness(
    listening: Callable[[], bool], database: Path, recordings: Path
) -> Readiness:
    """The bastion's readiness: SSH listener up, audit database writable, recordings writable.

    The file checks run in a thread so a hung disk cannot stall the event loop.
    """

    async def readiness() -> dict[str, bool]:
        db_ok, rec_ok = await asyncio.gather(
            asyncio.to_thread(database_writable, database),
            asyncio.to_thread(dir_writable, recordings),
        )
        return {"listening": listening(), "database": db_ok, "recordings": rec_ok}

    return readiness
