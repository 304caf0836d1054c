"""Benchmark the policy engine over the labelled corpus: decisions/s and latency percentiles.

Usage: .venv/bin/python bench/bench_policy.py [--rounds N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from bastion.policy import Context, Policy, load_policy
from bastion.policy.model import SEVERITY

CORPORA = sorted((Path(__file__).resolve().parents[1] / "tests" / "policy").glob("corpus*.jsonl"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--policy", type=Path, default=Policy.default_path())
    ap.add_argument("--json", type=Path, help="write the results as JSON to this file")
    args = ap.parse_args()

    t0 = time.perf_counter()
    policy = load_policy(args.policy)
    load_s = time.perf_counter() - t0
    entries = [
        json.loads(x) for c in CORPORA for x in c.read_text(encoding="utf-8").splitlines() if x
    ]
    ctx = Context(principals=("agents",), target="web-01", login="azureuser")

    held = benign_allowed = n_hold = n_benign = 0
    for e in entries:
        action = policy.decide(e["cmd"], ctx).action
        if e["class"] == "benign":
            n_benign += 1
            benign_allowed += action == "allow"
        else:
            n_hold += 1
            held += SEVERITY[action] >= SEVERITY[e["expect"]]

    samples: list[float] = []
    start = time.perf_counter()
    for _ in range(args.rounds):
        for e in entries:
            t = time.perf_counter_ns()
            policy.decide(e["cmd"], ctx)
            samples.append((time.perf_counter_ns() - t) / 1000.0)
    wall = time.perf_counter() - start
    samples.sort()

    def pct(p: float) -> float:
        return samples[min(len(samples) - 1, int(p * len(samples)))]

    result = {
        "corpus_lines": len(entries),
        "must_hold_lines": n_hold,
        "must_hold_held_pct": round(100.0 * held / n_hold, 2),
        "benign_lines": n_benign,
        "benign_allowed_pct": round(100.0 * benign_allowed / n_benign, 2),
        "decisions": len(samples),
        "decisions_per_s": round(len(samples) / wall),
        "mean_us": round(statistics.fmean(samples), 1),
        "p50_us": round(pct(0.50), 1),
        "p95_us": round(pct(0.95), 1),
        "p99_us": round(pct(0.99), 1),
        "max_us": round(samples[-1], 1),
        "policy_load_ms": round(load_s * 1000, 1),
    }
    width = max(len(k) for k in result)
    print(f"{'metric':<{width}}  value")
    print(f"{'-' * width}  -----")
    for k, v in result.items():
        print(f"{k:<{width}}  {v}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
