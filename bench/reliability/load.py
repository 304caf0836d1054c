"""Load: N concurrent agents against ``bastion serve`` as a process, then check the record.

    .venv/bin/python -m bench.reliability.load --agents 200        # the full run (a few min)
    .venv/bin/python -m bench.reliability.load --agents 20 --json out.json

Each agent (own certificate) runs ``--commands`` exec commands over ``--connections`` SSH
connections: allowed, denied and held ones; held ones are approved on the bastion's web page
by a test operator with TOTP. Every ``--shell-every``-th agent also types three lines into a
line-gated PTY shell (allow, deny, held then approved). Afterwards the run checks, with the
operator's own commands: every command has exactly one audit row with the right decision, every
session that ran is recorded and verifies, the audit chain verifies, no generated secret is in
a recording or the audit log, and the bastion's memory is steady: the load runs ``--rounds``
times with new agents, and the RSS of the bastion's process tree (supervisor and workers)
after the last round is within a bound of the RSS after the first (CPython keeps freed memory
for reuse, so RSS stays near its high-water mark; a leak grows it round after round). A
warm-up round (two agents) runs first so the baseline includes loaded code.

Bounded: ``--time-limit`` caps the whole load; everything listens on 127.0.0.1 and is stopped
by PID. Exit status 0 only if every check passed. ``--json`` writes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

import asyncssh

from bench.harness.env import raise_nofile
from bench.reliability.checks import check_run
from bench.reliability.stack import Stack, enrol_operators
from bench.reliability.workload import AgentRun, Approver, Identity, Tally, make_identity

MIB = 1024
WARMUP_FIRST = 990  # agent numbers of the warm-up round (tags are aNNN)


def sample_rss(stack: Stack, samples: int = 5, gap: float = 1.0) -> int:
    """The smallest tree RSS over a few seconds (KiB): lets freed memory settle."""
    seen = []
    for _ in range(samples):
        seen.append(stack.tree_rss_kib())
        time.sleep(gap)
    return min(seen)


class Load:
    def __init__(self, stack: Stack, args: argparse.Namespace) -> None:
        self.stack = stack
        self.args = args
        self.tally = Tally()
        self.ca = asyncssh.read_private_key(str(stack.ca.key))
        self.peak_kib = 0
        # One approver for the whole run: it remembers which time step each operator has
        # spent (a TOTP code counts once), across rounds.
        self.approver = Approver(
            stack.http_url, stack.operators, self.tally, stack.state_dir / "bastion.db"
        )

    async def connect(self, identity: Identity) -> asyncssh.SSHClientConnection:
        return await asyncssh.connect(
            "127.0.0.1", self.stack.port, username="web-01",
            client_keys=identity.keys, known_hosts=str(self.stack.known_hosts),
            config=[], agent_path=None, preferred_auth=["publickey"], connect_timeout=120,
        )  # fmt: skip

    async def round(self, first: int, count: int, ramp: float) -> float:
        """Agents ``first``..``first+count-1`` at once (starts spread over ``ramp`` s)."""
        approver = self.approver
        stop = asyncio.Event()
        approving = asyncio.create_task(approver.run(stop))
        sampling = asyncio.create_task(self._sample_peak())
        identities = [make_identity(self.ca, i) for i in range(first, first + count)]
        began = time.monotonic()

        async def agent(n: int, identity: Identity) -> None:
            await asyncio.sleep(ramp * n / max(count, 1))
            run = AgentRun(
                first + n, identity, self.connect, approver, self.tally,
                commands=self.args.commands, connections=self.args.connections,
                shell=self.args.shell_every > 0 and (first + n) % self.args.shell_every == 0,
            )  # fmt: skip
            await run.run()

        try:
            await asyncio.wait_for(
                asyncio.gather(*(agent(n, ident) for n, ident in enumerate(identities))),
                self.args.time_limit,
            )
        except TimeoutError:
            self.tally.error(f"the round did not finish within {self.args.time_limit} s")
        finally:
            stop.set()
            await asyncio.wait_for(approving, 120)
            sampling.cancel()
        return time.monotonic() - began

    async def measured(self) -> tuple[int, int, list[float], list[int]]:
        """Warm-up (two agents, every path once), baseline RSS, then the load ``--rounds``
        times (new agents each round) with the RSS after each."""
        await self.round(WARMUP_FIRST, 2, 0.0)
        warm_errors = len(self.tally.errors)
        baseline = await asyncio.to_thread(sample_rss, self.stack)
        self.peak_kib = baseline
        seconds, after = [], []
        for n in range(self.args.rounds):
            seconds.append(await self.round(n * self.args.agents, self.args.agents, self.args.ramp))
            after.append(await asyncio.to_thread(sample_rss, self.stack, self.args.settle, 1.0))
        return warm_errors, baseline, seconds, after

    async def _sample_peak(self) -> None:
        while True:
            self.peak_kib = max(self.peak_kib, await asyncio.to_thread(self.stack.tree_rss_kib))
            await asyncio.sleep(0.5)


def run(args: argparse.Namespace) -> dict[str, object]:
    raise_nofile()
    root = Path(args.dir) if args.dir else None
    stack = Stack.create(root, workers=args.workers)
    began = time.monotonic()
    try:
        stack.operators = enrol_operators(stack.config, args.operators)
        stack.start_bastion()
        load = Load(stack, args)
        warm_errors, baseline, seconds, after = asyncio.run(load.measured())
        processes = len(stack.tree_pids())
        status = stack.stop_bastion()
        if status != 0:
            load.tally.error(f"the bastion exited with status {status} on SIGTERM")
        verdict = check_run(stack.config, stack.recordings_dir, load.tally.steps)
        tally = load.tally
        ran = tally.commands["allow"] + tally.commands["review"]  # the denied never ran
        shells = tally.shell_sessions
        exec_ran = sum(1 for s in tally.steps if s.decision != "deny" and not s.shell)
        expected_recordings = exec_ran + shells
        # CPython keeps freed memory in its arenas and malloc's, so RSS after a load stays near
        # the peak it reached. A leak shows as growth from one identical round to the next.
        grown = max(load.peak_kib - baseline, 1)
        growth = after[-1] - after[0]
        limit_kib = max(int(args.max_growth_mib * MIB), int(grown * args.max_growth_share))
        if verdict.recordings != expected_recordings:
            verdict.problems.append(
                f"{verdict.recordings} recordings for {expected_recordings} sessions that ran"
            )
            verdict.unrecorded_sessions = max(expected_recordings - verdict.recordings, 0)
        if verdict.recordings_sealed_rows != verdict.recordings:
            verdict.problems.append(
                f"{verdict.recordings_sealed_rows} recording_sealed rows for "
                f"{verdict.recordings} recordings"
            )
        memory_ok = len(after) > 1 and growth <= limit_kib
        if not memory_ok:
            verdict.problems.append(
                f"memory grew {growth / MIB:.1f} MiB from round 1 to round {len(after)} "
                f"(limit {limit_kib / MIB:.1f} MiB; needs --rounds 2 or more)"
            )
        result: dict[str, object] = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{platform.node()}: {os.cpu_count()} cores, {platform.platform()}",
            "agents": args.agents,
            "commands_per_agent": args.commands,
            "connections": tally.connections,
            "sessions": tally.exec_sessions + tally.shell_sessions,
            "exec_sessions": tally.exec_sessions,
            "shell_sessions": shells,
            "commands": dict(tally.commands),
            "commands_total": sum(tally.commands.values()),
            "commands_ran": ran,
            "sessions_ran": expected_recordings,  # exec sessions not denied, plus the shells
            "approvals": tally.approvals,
            "bastion_processes": processes,
            "rounds": args.rounds,
            "load_seconds": [round(x, 1) for x in seconds],
            "total_seconds": round(time.monotonic() - began, 1),
            "errors": len(tally.errors),
            "warmup_errors": warm_errors,
            "error_examples": tally.errors[:10],
            "rss_baseline_mib": round(baseline / MIB, 1),
            "rss_peak_mib": round(load.peak_kib / MIB, 1),
            "rss_after_rounds_mib": [round(x / MIB, 1) for x in after],
            "rss_growth_between_rounds_mib": round(growth / MIB, 1),
            "memory_steady": memory_ok,
            "check": asdict(verdict),
        }
        result["ok"] = not tally.errors and not verdict.problems and verdict.audit_intact
        return result
    finally:
        stack.stop(keep=args.keep)


def summary(r: dict[str, object]) -> str:
    check = r["check"]
    assert isinstance(check, dict)
    commands = r["commands"]
    assert isinstance(commands, dict)
    lines = [
        f"load: {r['rounds']} rounds of {r['agents']} agents x {r['commands_per_agent']} "
        f"commands, {r['bastion_processes']} bastion process(es), {r['load_seconds']} s "
        f"({r['date']}; {r['machine']})",
        f"  sessions {r['sessions']} (exec {r['exec_sessions']}, pty {r['shell_sessions']}) over "
        f"{r['connections']} connections",
        f"  commands {r['commands_total']} (allow {commands['allow']}, deny {commands['deny']}, "
        f"review {commands['review']}; approved {r['approvals']})",
        f"  errors {r['errors']}   lost audit rows {check['lost_rows']}   wrong decisions "
        f"{check['wrong_decisions']}   unrecorded sessions {check['unrecorded_sessions']}",
        f"  audit {check['audit_rows']} rows, {'intact' if check['audit_intact'] else 'BROKEN'}; "
        f"recordings {check['recordings']}, verified {check['recordings_ok']}; "
        f"secrets in recordings {check['secret_in_recordings']}",
        f"  bastion RSS (all processes) baseline {r['rss_baseline_mib']} MiB, peak "
        f"{r['rss_peak_mib']} MiB, after each round {r['rss_after_rounds_mib']} MiB "
        f"(growth between rounds {r['rss_growth_between_rounds_mib']} MiB)",
        f"  result: {'PASS' if r['ok'] else 'FAIL'}",
    ]
    examples = r["error_examples"]
    assert isinstance(examples, list)
    lines += [f"  error: {e}" for e in examples]
    lines += [f"  problem: {p}" for p in check["problems"][:10]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=200)
    p.add_argument("--commands", type=int, default=20, help="exec commands per agent")
    p.add_argument("--connections", type=int, default=2, help="SSH connections per agent")
    p.add_argument("--shell-every", type=int, default=10, help="every Nth agent opens a PTY")
    p.add_argument("--operators", type=int, default=60, help="operators sharing the approvals")
    p.add_argument("--ramp", type=float, default=5.0, help="seconds over which agents start")
    p.add_argument("--time-limit", type=float, default=1200.0, help="bound on the load (s)")
    p.add_argument("--settle", type=int, default=8, help="seconds of RSS samples after the load")
    p.add_argument("--rounds", type=int, default=2, help="the load again with new agents")
    p.add_argument("--max-growth-mib", type=float, default=16.0,
                   help="RSS growth allowed from the first round's end to the last's")
    p.add_argument("--max-growth-share", type=float, default=0.25,
                   help="... or this share of the first round's peak growth, if larger")
    p.add_argument("--workers", type=int, default=None, help="[server] workers (default: unset)")
    p.add_argument("--dir", help="work folder (default: a new temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    if args.agents * args.rounds > WARMUP_FIRST:
        p.error(f"at most {WARMUP_FIRST} agents over all rounds (tags are aNNN)")
    # A SIGTERM (e.g. from `timeout`) unwinds through run()'s finally: the bastion and the
    # target are stopped by PID rather than left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(args)
    print(summary(result), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
