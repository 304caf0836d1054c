"""The gate's and the masker's own benchmarks, run through their owners' scripts.

``bench/bench_policy.py`` runs as a subprocess (its figures come back as JSON);
``bench/bench_masking.py``'s ``throughput`` is imported and called on 4 KiB chunks.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.harness.env import ROOT

BENCH = ROOT / "bench"


def gate(rounds: int) -> dict[str, Any]:
    """Policy decisions over the labelled corpus: decisions/s and latency percentiles (µs)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "policy.json"
        done = subprocess.run(
            [sys.executable, str(BENCH / "bench_policy.py"), "--rounds", str(rounds),
             "--json", str(out)],
            capture_output=True, timeout=600, cwd=ROOT,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"bench_policy.py failed: {done.stderr.decode()[-500:]}")
        result: dict[str, Any] = json.loads(out.read_text())
    return result


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def masker(size: int, repeat: int, chunk: int = 4096) -> dict[str, Any]:
    """StreamMasker MB/s and per-feed latency on ``chunk``-byte feeds, per traffic and engine.

    ``engine`` is what ``[masking] engine = "auto"`` (the default) picks.
    """
    bench = _load("bench_masking")
    from bastion.masking.engine import hyperscan_available

    engine = "hyperscan" if hyperscan_available() else "python"
    rows = bench.throughput(size, chunk, repeat, [engine])
    return {"engine": engine, "chunk": chunk, "bytes": size, "rows": rows}


def pick(rows: list[dict[str, Any]], engine: str, traffic_prefix: str) -> dict[str, Any]:
    for row in rows:
        if row["engine"] == engine and str(row["traffic"]).startswith(traffic_prefix):
            return row
    raise KeyError(f"no masking row for {engine} {traffic_prefix}")
