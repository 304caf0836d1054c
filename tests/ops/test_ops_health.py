"""/healthz, /readyz and /metrics on a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bastion.ops.health import add_routes, database_writable, dir_writable, standard_readiness
from bastion.ops.metrics import Metrics

Serve = Callable[[Callable[[], Awaitable[dict[str, bool]]]], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []
    metrics = Metrics(targets=["web-01"])
    metrics.session_opened("web-01")

    async def start(readiness: Callable[[], Awaitable[dict[str, bool]]]) -> str:
        app = web.Application()
        add_routes(app, metrics, readiness)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def _get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def test_healthz_answers_ok(serve: Serve) -> None:
    """Liveness answers 200 whatever readiness says."""

    async def never_ready() -> dict[str, bool]:
        return {"database": False}

    base = await serve(never_ready)
    status, _, body = await _get(base + "/healthz")
    assert status == 200
    assert '"ok"' in body


async def test_readyz_is_200_only_when_every_check_passes(serve: Serve) -> None:
    """All checks true gives 200; one false gives 503 with the checks named in JSON."""
    state = {"listening": True, "database": True, "recordings": True}

    async def readiness() -> dict[str, bool]:
        return dict(state)

    base = await serve(readiness)
    async with aiohttp.ClientSession() as session:
        async with session.get(base + "/readyz") as resp:
            assert resp.status == 200
            assert await resp.json() == {"ready": True, "checks": state}
        state["recordings"] = False
        async with session.get(base + "/readyz") as resp:
            assert resp.status == 503
            doc = await resp.json()
            assert doc["ready"] is False
            assert doc["checks"]["recordings"] is False
            assert doc["checks"]["database"] is True


async def test_readyz_fails_closed_when_a_check_raises_or_is_empty(serve: Serve) -> None:
    """A readiness callable that raises, or reports nothing, means not ready (503)."""

    async def broken() -> dict[str, bool]:
        raise RuntimeError("disk on fire")

    async def empty() -> dict[str, bool]:
        return {}

    status, _, body = await _get(await serve(broken) + "/readyz")
    assert status == 503
    assert "disk on fire" not in body
    status, _, _ = await _get(await serve(empty) + "/readyz")
    assert status == 503


async def test_metrics_endpoint_is_parseable_prometheus_text(serve: Serve) -> None:
    """/metrics serves the text format that Prometheus' parser reads back."""

    async def ready() -> dict[str, bool]:
        return {"listening": True}

    status, content_type, body = await _get(await serve(ready) + "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body)}
    active = families["bastion_sessions_active"].samples
    assert [(s.labels, s.value) for s in active] == [({"target": "web-01"}, 1.0)]


async def test_standard_readiness_sees_database_and_recordings(tmp_path: Path) -> None:
    """The stock readiness checks a real SQLite database and recordings folder."""
    db = tmp_path / "bastion.db"
    sqlite3.connect(db).close()
    rec = tmp_path / "recordings"
    rec.mkdir()
    listening = {"up": True}
    readiness = standard_readiness(lambda: listening["up"], db, rec)
    assert await readiness() == {"listening": True, "database": True, "recordings": True}
    listening["up"] = False
    rec.rmdir()
    assert await readiness() == {"listening": False, "database": True, "recordings": False}


async def test_database_not_writable_while_another_writer_holds_the_lock(tmp_path: Path) -> None:
    """A database whose write lock cannot be taken (stuck writer) is reported not writable."""
    db = tmp_path / "bastion.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    assert database_writable(db)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert not await asyncio.to_thread(database_writable, db, 0.1)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert database_writable(db)


def test_missing_database_and_folder_are_not_writable(tmp_path: Path) -> None:
    """A missing database is not created by the check, and a missing folder is not writable."""
    assert not database_writable(tmp_path / "absent.db")
    assert not (tmp_path / "absent.db").exists()
    assert not dir_writable(tmp_path / "absent")
    assert dir_writable(tmp_path)
    assert list(tmp_path.iterdir()) == []  # the probe file is removed
