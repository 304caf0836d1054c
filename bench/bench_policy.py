"""Benchmark the policy engine over the labelled corpus: decisions/s and latency percentiles.

Usage: .venv/bin/python bench/bench_policy.py [--rounds N] [--budget-ms MS] [--json PATH]

Decisions run with the gate's decision budget (default 20 ms, as ``[gate] decision_budget``);
``worst_line`` is the corpus line whose fastest round was slowest (its cost without noise);
``cpu_p99_us``/``cpu_max_us`` are the deciding thread's CPU time (steady on a busy machine);
``gate_p50_us``/``gate_p99_us`` time one pass with each decision run in a worker thread and
awaited, as the gate does.
"""

from __future__ import annotations

import argparse
import asyncio
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
    ap.add_argument("--budget-ms", type=float, default=20.0,
                    help="the decision budget the gate applies ([gate] decision_budget)")
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
    cpu: list[float] = []  # thread CPU time: what the decision costs, whatever else runs
    per_line = [0.0] * len(entries)  # each line's fastest round: its cost without noise
    start = time.perf_counter()
    for r in range(args.rounds):
        for k, e in enumerate(entries):
            c = time.thread_time_ns()
            t = time.perf_counter_ns()
            policy.decide(e["cmd"], ctx, args.budget_ms / 1000.0)
            us = (time.perf_counter_ns() - t) / 1000.0
            cpu.append((time.thread_time_ns() - c) / 1000.0)
            samples.append(us)
            per_line[k] = us if r == 0 else min(per_line[k], us)
    wall = time.perf_counter() - start
    samples.sort()
    cpu.sort()
    gate = sorted(asyncio.run(_gate_latencies(policy, [e["cmd"] for e in entries], ctx,
                                              args.budget_ms / 1000.0)))

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
        "cpu_p99_us": round(cpu[min(len(cpu) - 1, int(0.99 * len(cpu)))], 1),
        "cpu_max_us": round(cpu[-1], 1),
        "gate_p50_us": round(gate[len(gate) // 2], 1),
        "gate_p99_us": round(gate[min(len(gate) - 1, int(0.99 * len(gate)))], 1),
        "worst_line_us": round(max(per_line), 1),
        "worst_line": entries[per_line.index(max(per_line))]["cmd"][:100],
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


async def _gate_latencies(
    policy: Policy, lines: list[str], ctx: Context, budget_s: float
) -> list[float]:
    """What the gate adds: each decision handed to a worker thread and awaited (as
    ``PolicyGate.check`` does), one at a time, in microseconds."""
    out: list[float] = []
    for line in lines:
        t = time.perf_counter_ns()
        await asyncio.to_thread(policy.decide, line, ctx, budget_s)
        out.append((time.perf_counter_ns() - t) / 1000.0)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
