"""AuditStore against a real SQLite file: chain, tamper detection, export, multi-process writes."""

from __future__ import annotations

import asyncio
import io
import itertools
import sqlite3
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from bastion.audit import AuditError, AuditStore, Database, verify_chain
from bastion.audit.export import export_jsonl


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AuditStore]:
    s = await AuditStore.open(tmp_path / "bastion.db")
    yield s
    await s.close()


async def _fill(store: AuditStore, n: int = 5) -> None:
    await store.record(
        "session_start",
        session_id="s1",
        identity="agent-a",
        target="vm1",
        login="azureuser",
        source="127.0.0.1:5000",
    )
    for i in range(n - 2):
        await store.record(
            "command",
            session_id="s1",
            identity="agent-a",
            target="vm1",
            login="azureuser",
            command=f"echo {i}",
            decision="allow",
            rules=["r1"],
            exit_status=0,
        )
    await store.record("session_end", session_id="s1", bytes_in=10, bytes_out=20, exit_status=0)


def _sql(db: Path, statement: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(statement)


async def test_rows_are_chained_and_verify(store: AuditStore) -> None:
    """Each row links to the previous hash and the whole chain verifies."""
    await _fill(store)
    rows = await store.query()
    assert [r.id for r in rows] == [1, 2, 3, 4, 5]
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    report = await verify_chain(store.db)
    assert report.ok and report.rows == 5 and report.head_hash == rows[-1].hash


async def test_recorded_row_is_durable_and_visible_to_other_connections(
    tmp_path: Path, store: AuditStore
) -> None:
    """When record() returns, a separate connection already sees the committed row."""
    row_id = await store.record("auth_failure", reason="bad certificate", source="10.0.0.9")
    with sqlite3.connect(tmp_path / "bastion.db") as conn:
        kind, fields = conn.execute(
            "SELECT kind, fields FROM audit_log WHERE id = ?", (row_id,)
        ).fetchone()
    assert kind == "auth_failure" and orjson.loads(fields)["reason"] == "bad certificate"


@pytest.mark.parametrize(
    ("statement", "bad_id", "words"),
    [
        ('UPDATE audit_log SET fields = \'{"command":"rm -rf /"}\' WHERE id = 3', 3, "edited"),
        ("UPDATE audit_log SET identity = 'someone-else' WHERE id = 2", 2, "edited"),
        ("DELETE FROM audit_log WHERE id = 3", 4, "deleted"),
        ("UPDATE audit_log SET id = 99 WHERE id = 1", 2, "missing"),
    ],
)
async def test_tampering_names_the_first_bad_row(
    tmp_path: Path, store: AuditStore, statement: str, bad_id: int, words: str
) -> None:
    """Edits, deletions and moved rows made with sqlite3 are found and the row is named."""
    await _fill(store)
    _sql(tmp_path / "bastion.db", statement)
    report = await verify_chain(store.db)
    assert not report.ok and report.bad_id == bad_id
    assert report.problem is not None and words in report.problem


async def test_swapped_rows_are_detected(tmp_path: Path, store: AuditStore) -> None:
    """Swapping the content of two rows (a reorder) breaks the chain at the first of them."""
    await _fill(store)
    db = tmp_path / "bastion.db"
    _sql(db, "UPDATE audit_log SET id = -1 WHERE id = 2")
    _sql(db, "UPDATE audit_log SET id = 2 WHERE id = 3")
    _sql(db, "UPDATE audit_log SET id = 3 WHERE id = -1")
    report = await verify_chain(store.db)
    assert not report.ok and report.bad_id == 2


async def test_export_jsonl_has_stable_fields(store: AuditStore) -> None:
    """Export writes one JSON object per row with the documented field names."""
    await _fill(store, 4)
    out = io.BytesIO()
    count = await export_jsonl(store, out, kinds=["command"])
    lines = out.getvalue().splitlines()
    assert count == 2 and len(lines) == 2
    first = orjson.loads(lines[0])
    assert set(first) == {
        "id",
        "ts",
        "kind",
        "session_id",
        "identity",
        "target",
        "login",
        "fields",
        "prev_hash",
        "hash",
    }
    assert first["kind"] == "command" and first["fields"]["command"] == "echo 0"
    assert first["ts"].endswith("Z")


async def test_unserialisable_fields_fail_only_that_call(store: AuditStore) -> None:
    """A caller passing a non-JSON value gets AuditError; the writer keeps working for others."""
    with pytest.raises(AuditError, match="not JSON"):
        await store.record("command", command=object())
    with pytest.raises(AuditError, match="invalid audit kind"):
        await store.record("Bad Kind")
    assert await store.record("config_reload", path="x.toml", ok=True) == 1


async def test_concurrent_records_in_one_process_keep_the_chain(store: AuditStore) -> None:
    """Hundreds of concurrent record() calls are batched by the writer into one valid chain."""
    ids = await asyncio.gather(*(store.record("command", n=i) for i in range(300)))
    assert sorted(ids) == list(range(1, 301))
    assert (await verify_chain(store.db)).ok


async def test_closed_store_refuses_writes(tmp_path: Path) -> None:
    """After close, record() fails loudly instead of dropping the row."""
    s = await AuditStore.open(tmp_path / "x.db")
    await s.close()
    with pytest.raises(AuditError, match="closed"):
        await s.record("config_reload")


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from bastion.audit import AuditStore

    async def main():
        store = await AuditStore.open(Path(sys.argv[1]))
        print("ready", flush=True)
        go = Path(sys.argv[1] + ".go")
        for _ in range(2000):  # start together so the writes really overlap
            if go.exists():
                break
            await asyncio.sleep(0.001)
        for i in range(int(sys.argv[3])):
            await store.record("command", session_id=sys.argv[2], n=i)
            await asyncio.sleep(0.001)  # like a real session: rows arrive spread out
        await store.close()

    asyncio.run(main())
    """
)


async def test_two_processes_writing_keep_one_valid_chain(tmp_path: Path) -> None:
    """Two real processes appending to the same DB at once produce one unbroken chain."""
    db = tmp_path / "shared.db"
    await (await AuditStore.open(db)).close()  # create the schema once, like a deployed bastion
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, str(script), str(db), name, "150", stdout=asyncio.subprocess.PIPE
        )
        for name in ("p1", "p2")
    ]
    for p in procs:
        assert p.stdout is not None
        assert await asyncio.wait_for(p.stdout.readline(), timeout=60) == b"ready\n"
    Path(str(db) + ".go").touch()  # noqa: ASYNC240
    codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), timeout=120)
    assert codes == [0, 0]
    store = await AuditStore.open(db)
    try:
        report = await verify_chain(store.db)
        assert report.ok and report.rows == 300, report.problem
        sessions = [r.session_id for r in await store.query()]
        assert sessions.count("p1") == 150 and sessions.count("p2") == 150
        # the writers really overlapped: the ids alternate between them at least once
        switches = sum(a != b for a, b in itertools.pairwise(sessions))
        assert switches >= 2
    finally:
        await store.close()


async def test_components_register_their_own_migrations(tmp_path: Path) -> None:
    """Each component's schema version is tracked separately and applied once."""
    db = await Database.open(tmp_path / "m.db")
    try:
        v1 = "CREATE TABLE approvals (id TEXT PRIMARY KEY);"
        v2 = """CREATE TABLE approval_log (id INTEGER PRIMARY KEY, note TEXT);
                CREATE TRIGGER t AFTER INSERT ON approval_log BEGIN SELECT 1; END;"""
        assert await db.migrate("approvals", [v1]) == 1
        assert await db.migrate("approvals", [v1, v2]) == 2
        assert await db.migrate("approvals", [v1, v2]) == 2  # idempotent
        assert await db.version("approvals") == 2 and await db.version("identity") == 0
        with pytest.raises(AuditError, match="newer than this bastion"):
            await db.migrate("approvals", [v1])
    finally:
        await db.close()


async def test_failed_migration_is_rolled_back(tmp_path: Path) -> None:
    """A migration that fails half-way leaves neither its tables nor a bumped version."""
    db = await Database.open(tmp_path / "m.db")
    try:
        bad = "CREATE TABLE a (x INT); CREATE TABLE a (x INT);"
        with pytest.raises(AuditError, match="migrating identity failed"):
            await db.migrate("identity", [bad])
        assert await db.version("identity") == 0
        assert await db.fetchall("SELECT name FROM sqlite_master WHERE name = 'a'") == []
    finally:
        await db.close()
