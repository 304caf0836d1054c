"""Throughput of the recorder hot path and of audit writes (real files, real SQLite).

Run: .venv/bin/python bench/bench_recording.py [--events N] [--chunk BYTES] [--rows N]
                                                [--data mixed|terminal]

``--data terminal`` records secret-free terminal output (tests/masking/masking_corpus.py, the
benchmark's bulk data) instead of a short ASCII+UTF-8 pattern; ``--chunk 32768`` is the size
of a relayed bulk chunk. CPU s/GB counts every thread of the process (the fsync worker too).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "masking"))

from bastion.audit import AuditStore  # noqa: E402
from bastion.recording import RecordingKey, verify_recording  # noqa: E402
from bastion.recording.store import RecordingStore  # noqa: E402


def chunks_of(kind: str, chunk: int, events: int) -> list[bytes]:
    if kind == "terminal":
        from masking_corpus import terminal_traffic

        text = terminal_traffic(1, min(events * chunk, 64 << 20))
        return [text[i : i + chunk] for i in range(0, len(text) - chunk + 1, chunk)]
    if kind == "zeros":
        return [bytes(chunk)]
    if kind == "random":
        import random

        rnd = random.Random(1)
        return [rnd.randbytes(chunk) for _ in range(64)]
    return [(b"0123456789abcdef\xc3\xa9" * (chunk // 18 + 1))[:chunk]]


async def bench_recorder(root: Path, events: int, chunk: int, kind: str) -> None:
    key = RecordingKey.generate()
    store = RecordingStore(root, key, fsync_interval=1.0)
    await store.start()
    rec = store.create(session_id="bench", channel=0)
    data = chunks_of(kind, chunk, events)
    worst = 0.0
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for i in range(events):
        s = time.perf_counter()
        rec.output(data[i % len(data)])
        worst = max(worst, time.perf_counter() - s)
        if i % 500 == 0:
            await asyncio.sleep(0)  # let the sync task run, as a live relay would
    elapsed = time.perf_counter() - t0
    seal = await rec.close()
    cpu = time.process_time() - cpu0
    await store.stop()
    mb = events * chunk / 1e6
    print(
        f"recorder ({kind}): {events} output events of {chunk} B in {elapsed:.3f}s = "
        f"{events / elapsed:,.0f} events/s, {mb / elapsed:,.1f} MB/s, "
        f"{cpu / (mb / 1e3):.2f} CPU s/GB; slowest output() call {worst * 1e3:.2f} ms; "
        f"file {seal.bytes / 1e6:.1f} MB + binary segments {seal.blob_bytes / 1e6:.1f} MB = "
        f"{(seal.bytes + seal.blob_bytes) / (events * chunk):.3f}x the bytes recorded"
    )
    t0 = time.perf_counter()
    result = verify_recording(seal.path, [key.public])
    elapsed = time.perf_counter() - t0
    total = (seal.bytes + seal.blob_bytes) / 1e6
    print(f"verify: {result.status} in {elapsed:.3f}s = {total / elapsed:,.1f} MB/s")


async def bench_audit(path: Path, rows: int) -> None:
    store = await AuditStore.open(path)
    t0 = time.perf_counter()
    for i in range(rows // 10):
        await store.record("command", session_id="b", command=f"ls {i}", decision="allow")
    sequential = time.perf_counter() - t0
    t0 = time.perf_counter()
    await asyncio.gather(*(store.record("command", n=i) for i in range(rows)))
    concurrent = time.perf_counter() - t0
    await store.close()
    print(
        f"audit: sequential {rows // 10 / sequential:,.0f} rows/s "
        f"({sequential / (rows // 10) * 1e3:.2f} ms per durable row); "
        f"{rows} concurrent record() calls {rows / concurrent:,.0f} rows/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: tmp)")
    parser.add_argument("--data", choices=("mixed", "terminal", "zeros", "random"), default="mixed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        asyncio.run(bench_recorder(Path(tmp) / "rec", args.events, args.chunk, args.data))
        asyncio.run(bench_audit(Path(tmp) / "bench.db", args.rows))


if __name__ == "__main__":
    main()
