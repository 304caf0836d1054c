"""Benchmark the streaming masker (not a test): throughput, per-feed latency, corpus figures.

    .venv/bin/python bench/bench_masking.py [--size-mib 16] [--chunk 4096] [--repeat 3]
                                            [--json PATH]

Traffic is generated realistic terminal output (ls, journal, nginx, az JSON, git log, gcc,
pip, kubectl, tracebacks); "plain" has no escape sequences and no secrets (the fast path),
"color" adds SGR colour codes, "dense" inserts a corpus record with secrets every 20 lines,
"redraws" is progress bars and prompts redrawn with \r, "json" is pretty az/kubectl JSON,
"mixed" interleaves all of them (a record of either corpus every 200 lines, colour on a
third of the lines, a JSON document and a redraw burst every 50). Each cell is the best of
--repeat runs on one core.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "masking"))

from masking_corpus import Gen, build_corpus, leaked, terminal_traffic  # noqa: E402
from masking_corpus_structure import build_structure_corpus  # noqa: E402

from bastion.masking import StreamMasker  # noqa: E402
from bastion.masking.engine import hyperscan_available  # noqa: E402


def run_stream(data: bytes, engine: str, chunk: int, pty: bool) -> tuple[float, list[float]]:
    m = StreamMasker(engine=engine, pty=pty)
    lat: list[float] = []
    clock = time.process_time  # CPU time of this process: robust on a shared machine
    t0 = clock()
    for i in range(0, len(data), chunk):
        t = clock()
        m.feed(data[i:i + chunk])
        lat.append(clock() - t)
    m.flush()
    return clock() - t0, lat


def _json_doc(g: Gen) -> str:
    rg = "rg-" + g.s("abcdefghijklmnopqrstuvwxyz", 6)
    items = [{"id": f"/subscriptions/{g.guid()}/resourceGroups/{rg}/providers/Microsoft.Compute/"
                    f"virtualMachines/vm{i}", "location": "westeurope", "name": f"vm{i}",
              "properties": {"provisioningState": "Succeeded", "vmId": g.guid(),
                             "hardwareProfile": {"vmSize": "Standard_D4s_v5"}},
              "tags": {"env": "prod", "owner": "platform"}} for i in range(4)]
    return json.dumps(items, indent=2) + "\n"


def _redraws(g: Gen) -> str:
    out = []
    for pct in range(0, 101, 5):
        bar = "#" * (pct // 5) + " " * (20 - pct // 5)
        out.append(f"\r\x1b[K  Downloading layer {g.s('0123456789abcdef', 12)} [{bar}] {pct}%")
    out.append("\r\n")
    word = g.s("abcdefghijklmnopqrstuvwxyz", 8)
    out += [f"\razureuser@vm:~$ {word[:i]}" for i in range(1, len(word) + 1)]
    out.append("\r\n")
    return "".join(out)


def mixed_traffic(seed: int, size: int) -> bytes:
    """Realistic mixed output: plain lines, colour, JSON documents, \\r redraws and a record
    with secrets (either corpus) every 200 lines."""
    g = Gen(seed)
    lines = terminal_traffic(seed, size).decode().splitlines(keepends=True)
    recs = [r.text.decode() for r in (*build_corpus(seed + 1), *build_structure_corpus(seed + 2))
            if r.kind == "pos"]
    out: list[str] = []
    total = 0
    for n, line in enumerate(lines):
        if n % 3 == 0:
            line = f"\x1b[01;3{n % 7}m{line[:-1]}\x1b[0m\n"
        out.append(line)
        if n % 50 == 25:
            out.append(_json_doc(g))
        if n % 50 == 40:
            out.append(_redraws(g))
        if n % 200 == 199:
            rec = recs[(n // 200) % len(recs)]
            out.append(rec if rec.endswith("\n") else rec + "\n")
        total += len(out[-1])
        if total >= size:
            break
    return "".join(out).encode()[:size]


def _redraw_traffic(seed: int, size: int) -> bytes:
    g, out, total = Gen(seed), [], 0
    while total < size:
        out.append(_redraws(g))
        total += len(out[-1])
    return "".join(out).encode()[:size]


def _json_traffic(seed: int, size: int) -> bytes:
    g, out, total = Gen(seed), [], 0
    while total < size:
        out.append(_json_doc(g))
        total += len(out[-1])
    return "".join(out).encode()[:size]


def throughput(size: int, chunk: int, repeat: int, engines: list[str]) -> list[dict[str, object]]:
    sets = {
        "plain (no secrets, no ESC)": terminal_traffic(1, size),
        "color (no secrets, SGR codes)": terminal_traffic(1, size, color=True),
        "redraws (\\r progress, prompts)": _redraw_traffic(1, size),
        "json (az/kubectl documents)": _json_traffic(1, size),
        "dense (secret every 20 lines)": terminal_traffic(1, size, secret_every=20),
        "mixed (all of the above)": mixed_traffic(1, size),
    }
    rows: list[dict[str, object]] = []
    for name, data in sets.items():
        for engine in engines:
            best, best_lat = float("inf"), [0.0]
            for _ in range(repeat):
                dt, lat = run_stream(data, engine, chunk, pty=False)
                if dt < best:
                    best, best_lat = dt, lat
            q = statistics.quantiles(best_lat, n=100)
            rows.append({"traffic": name, "engine": engine, "mb_per_s": len(data) / best / 1e6,
                         "p50_us": q[49] * 1e6, "p99_us": q[98] * 1e6,
                         "max_us": max(best_lat) * 1e6, "bytes": len(data)})
    return rows


def prefilter_only(size: int, chunk: int, engines: list[str]) -> list[dict[str, object]]:
    """The keyword engine alone (no confirmation, no release logic)."""
    from bastion.masking.catalog import DEFAULT_RULES
    from bastion.masking.detect import get_detector

    data = terminal_traffic(1, size)
    rows: list[dict[str, object]] = []
    for engine in engines:
        det = get_detector(DEFAULT_RULES, engine)
        t0 = time.perf_counter()
        for i in range(0, len(data), chunk):
            det.prefilter.all_hits(data[i:i + chunk])
        rows.append({"engine": engine, "mb_per_s": len(data) / (time.perf_counter() - t0) / 1e6})
    return rows


def corpus_figures(engines: list[str]) -> list[dict[str, object]]:
    recs = [*build_corpus(1234), *build_structure_corpus(4321)]
    pos = [r for r in recs if r.kind == "pos"]
    neg = [r for r in recs if r.kind == "neg"]
    rows: list[dict[str, object]] = []
    for engine in engines:
        for pty in (False, True):
            missed = 0
            for r in pos:
                m = StreamMasker(engine=engine, pty=pty)
                out = m.feed(r.text) + m.flush()
                missed += any(leaked(s, out) for s in r.secrets)
            altered = 0
            for r in neg:
                m = StreamMasker(engine=engine, pty=pty)
                altered += (m.feed(r.text) + m.flush()) != r.text
            rows.append({"engine": engine, "mode": "pty" if pty else "label",
                         "positives": len(pos), "recall": 1 - missed / len(pos),
                         "negatives": len(neg), "negatives_altered": altered / len(neg)})
    return rows


def idle_stress(engines: list[str]) -> list[dict[str, object]]:
    """Worst case for the hold-back: release_idle() after 70% of 1-40 byte chunks."""
    import random

    recs = build_corpus(5)
    rows: list[dict[str, object]] = []
    for engine in engines:
        rnd = random.Random(2)
        leaks = {"pos": 0, "neg": 0}
        total = {"pos": 0, "neg": 0}
        for rec in recs:
            m = StreamMasker(engine=engine)
            out, i = bytearray(), 0
            while i < len(rec.text):
                n = rnd.randint(1, 40)
                out += m.feed(rec.text[i:i + n])
                i += n
                if rnd.random() < 0.7:
                    out += m.release_idle()
            out += m.flush()
            total[rec.kind] += 1
            if rec.kind == "pos":
                leaks["pos"] += any(leaked(s, bytes(out)) for s in rec.secrets)
            else:
                leaks["neg"] += bytes(out) != rec.text
        rows.append({"engine": engine, "positives": total["pos"],
                     "positives_leaking": leaks["pos"] / total["pos"],
                     "negatives": total["neg"], "negatives_altered": leaks["neg"] / total["neg"]})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=float, default=16)
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None, help="write results as JSON here")
    args = ap.parse_args()
    engines = (["hyperscan"] if hyperscan_available() else []) + ["python"]
    size = int(args.size_mib * (1 << 20))

    rows = throughput(size, args.chunk, args.repeat, engines)
    print(f"StreamMasker, {args.size_mib:g} MiB per traffic type, {args.chunk} B chunks, "
          f"best of {args.repeat}, one core ({platform.python_version()})")
    print(f"{'traffic':34} {'engine':10} {'MB/s':>8} {'p50 us':>8} {'p99 us':>8} {'max us':>8}")
    for r in rows:
        print(f"{r['traffic']:34} {r['engine']:10} {r['mb_per_s']:8.1f} {r['p50_us']:8.1f} "
              f"{r['p99_us']:8.1f} {r['max_us']:8.1f}")
    pre = prefilter_only(size, args.chunk, engines)
    print("\nkeyword prefilter alone (plain traffic)")
    for r in pre:
        print(f"  {r['engine']:10} {r['mb_per_s']:8.1f} MB/s")
    corp = corpus_figures(engines)
    print("\nlabelled corpora (masking_corpus.py seed 1234, masking_corpus_structure.py 4321)")
    print(f"{'engine':10} {'mode':6} {'positives':>9} {'recall':>8} {'negatives':>9} "
          f"{'altered':>8}")
    for r in corp:
        print(f"{r['engine']:10} {r['mode']:6} {r['positives']:9} {r['recall']:8.2%} "
              f"{r['negatives']:9} {r['negatives_altered']:8.2%}")
    idle = idle_stress(engines)
    print("\nidle stress: release_idle() after 70% of random 1-40 byte chunks (corpus seed 5)")
    for r in idle:
        print(f"  {r['engine']:10} positives leaking 8+ chars: {r['positives_leaking']:.2%} of "
              f"{r['positives']}; negatives altered: {r['negatives_altered']:.2%} of "
              f"{r['negatives']}")
    if args.json:
        args.json.write_text(json.dumps({
            "python": platform.python_version(), "machine": platform.machine(),
            "chunk": args.chunk, "size": size, "throughput": rows, "prefilter": pre,
            "corpus": corp, "idle_stress": idle}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
