"""Echo latency of one typed character in a PTY shell: line-owning bastion vs the bare relay.

Both bastions run in this process (own threads and loops) in front of one real sshd running
bash; both use the pass-through output filter and no recording, so the difference is the
line-owning controller. With line ownership the bastion echoes the key itself; on the bare
relay the remote readline echoes it. Each keystroke is followed by a Backspace (also waited
for) so the line stays short.

    .venv/bin/python bench/bench_interactive.py [--keys 500] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import asyncssh  # noqa: E402
from support.bastion import (  # noqa: E402
    RunningBastion,
    bare_runtime,
    start_bastion,
    target_block,
    write_config,
)

from bastion.app import Runtime  # noqa: E402
from bastion.config import Config  # noqa: E402
from bastion.gate import build_gate  # noqa: E402
from bastion.interactive import controller_factory  # noqa: E402
from bastion.testing.certs import Agent, CertificateAuthority  # noqa: E402
from bastion.testing.sshd import start_sshd  # noqa: E402

POLICY = ROOT / "config" / "policy.toml"
PROMPT = re.compile(rb"\$ (?:\x1b\[K)?$")


def line_gated(config: Config) -> Runtime:
    return Runtime(config=config, gate=build_gate(config),
                   shell_controller_factory=controller_factory(config))


async def read_until(proc: Any, buf: bytearray, pred: Any, limit: float = 10) -> None:
    async def loop() -> None:
        while not pred(bytes(buf)):
            chunk = await proc.stdout.read(65536)
            if not chunk:
                raise EOFError(bytes(buf[-300:]))
            buf.extend(chunk)

    await asyncio.wait_for(loop(), limit)


async def measure(bastion: RunningBastion, agent: Agent, keys: int) -> list[float]:
    key = asyncssh.read_private_key(str(agent.key))
    cert = asyncssh.read_certificate(str(agent.cert))
    async with asyncssh.connect(
        "127.0.0.1", bastion.port, username="web-01", client_keys=[(key, cert)],
        known_hosts=str(bastion.known_hosts), config=[], agent_path=None,
    ) as conn:
        proc = await conn.create_process(term_type="xterm", term_size=(200, 50), encoding=None)
        buf = bytearray()
        await read_until(proc, buf, lambda b: PROMPT.search(b) is not None, 20)
        samples: list[float] = []
        for i in range(keys):
            ch = b"abcdefghij"[i % 10 : i % 10 + 1]
            buf.clear()
            start = time.perf_counter()
            proc.stdin.write(ch)
            await read_until(proc, buf, lambda b, c=ch: c in b)
            samples.append((time.perf_counter() - start) * 1000)
            buf.clear()
            proc.stdin.write(b"\x7f")
            await read_until(proc, buf, lambda b: b"\b" in b)
        proc.stdin.write(b"exit\r")
        await asyncio.wait_for(proc.wait(), 10)
    return samples


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=500, help="keystrokes per mode (max 5000)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    keys = max(10, min(args.keys, 5000))
    with tempfile.TemporaryDirectory(prefix="bench-interactive-") as tmp:
        base = Path(tmp)
        sshd = start_sshd(base / "sshd")
        ca = CertificateAuthority.create(base)
        agent = Agent.create(base / "agent", ca, principals="agents", key_id="bench")
        results: dict[str, dict[str, float]] = {}
        try:
            for name, make in (("bare relay", bare_runtime), ("line-owning", line_gated)):
                d = base / name.replace(" ", "-")
                d.mkdir()
                cfg = write_config(d, ca, target_block(sshd),
                                   extra=f'[policy]\nfile = "{POLICY}"\n')
                running = start_bastion(cfg, make)
                try:
                    samples = asyncio.run(measure(running, agent, keys))
                finally:
                    running.stop()
                results[name] = {
                    "keys": len(samples), "p50_ms": statistics.median(samples),
                    "p99_ms": pct(samples, 0.99), "max_ms": max(samples),
                }
        finally:
            sshd.stop()
    added = {q: results["line-owning"][q] - results["bare relay"][q] for q in ("p50_ms", "p99_ms")}
    print(f"{'mode':<14}{'keys':>6}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name, r in results.items():
        print(f"{name:<14}{r['keys']:>6.0f}{r['p50_ms']:>10.3f}{r['p99_ms']:>10.3f}"
              f"{r['max_ms']:>10.3f}")
    print(f"line ownership adds p50 {added['p50_ms']:+.3f} ms, p99 {added['p99_ms']:+.3f} ms"
          " (goal: p99 adds <= 1 ms)")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "added": added}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
