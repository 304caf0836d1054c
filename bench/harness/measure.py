"""One function per figure. Each runs one bounded measurement on one path and returns numbers.

CPU figures are for the process in the middle of the path: the bastion process, the jump
host's sshd (master plus the per-connection processes it has reaped) or, for ``direct``, the
target's sshd. Every subprocess and every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import statistics
import subprocess
import time
from pathlib import Path

from bench.harness.clients import Clients, Opened
from bench.harness.env import BenchEnv
from bench.harness.procs import tree_pss_kib, tree_rss_kib

_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux)
REAP_WAIT = 0.3  # let sshd's per-connection processes finish their last work


class BenchError(RuntimeError):
    """A measurement could not be made (a command failed, a path refused)."""


def _middle_cpu(env: BenchEnv, path: str) -> float:
    return env.cpu_seconds(path)


def _run_ssh(args: list[str], timeout: float) -> None:
    done = subprocess.run(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        timeout=timeout,
    )  # fmt: skip
    if done.returncode != 0:
        raise BenchError(f"{args[-1]!r} exited {done.returncode}: {done.stderr.decode()[-500:]}")


def check_output(env: BenchEnv, path: str, file: Path) -> None:
    """The path delivers the file byte for byte (masking must not touch secret-free data)."""
    out = subprocess.run(env.ssh_args(path, f"cat {file}"), capture_output=True, timeout=120)
    if out.returncode != 0 or out.stdout != file.read_bytes():
        raise BenchError(
            f"{path}: cat {file} returned {len(out.stdout)} bytes (want {file.stat().st_size}),"
            f" exit {out.returncode}: {out.stderr.decode()[-300:]}"
        )


def _drain(args: list[str], timeout: float) -> tuple[int, float, float]:
    """Run ssh and read its stdout into one reused buffer (as cheap as /dev/null).

    Returns bytes read, seconds from start to the first byte, and seconds to EOF.
    """
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    deadline = t0 + timeout
    total, first = 0, 0.0
    try:
        with contextlib.suppress(OSError):
            fcntl.fcntl(proc.stdout.fileno(), _F_SETPIPE_SZ, 1 << 20)
        while True:
            n = proc.stdout.readinto(view)  # type: ignore[attr-defined]
            if not n:
                break
            if not total:
                first = time.perf_counter() - t0
            total += n
            if time.perf_counter() > deadline:
                raise BenchError(f"{args[-1]!r} took longer than {timeout:g}s")
        end = time.perf_counter() - t0
        err = proc.stderr.read()
        status = proc.wait(max(1.0, deadline - time.perf_counter()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    if status != 0:
        raise BenchError(f"{args[-1]!r} exited {status}: {err.decode()[-500:]}")
    return total, first, end


def bulk(env: BenchEnv, path: str, cipher: str, file: Path) -> dict[str, float]:
    """One ``ssh PATH cat FILE``: MB/s from the first byte to EOF (``mb_s``) and including
    connection set-up (``mb_s_end_to_end``), and the middle's CPU seconds per GB."""
    size = file.stat().st_size
    cpu0 = _middle_cpu(env, path)
    rec0 = env.recording_bytes() if path == "bastion" else 0
    got, first, end = _drain(env.ssh_args(path, f"cat {file}", cipher), timeout=600)
    time.sleep(REAP_WAIT)
    cpu = _middle_cpu(env, path) - cpu0
    if got != size:
        raise BenchError(f"{path}: received {got} of {size} bytes")
    out = {
        "mb_s": size / max(end - first, 1e-9) / 1e6,
        "mb_s_end_to_end": size / end / 1e6,
        "cpu_s_per_gb": cpu / (size / 1e9),
        "seconds": end,
    }
    if path == "bastion":  # the recording this transfer added, per byte moved
        out["recording_per_byte"] = (env.recording_bytes() - rec0) / size
    return out


def streams(env: BenchEnv, path: str, count: int, file: Path) -> dict[str, float]:
    """``count`` concurrent ``ssh PATH cat FILE``: aggregate MB/s from first start to last end."""
    size = file.stat().st_size
    cpu0 = _middle_cpu(env, path)
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            env.ssh_args(path, f"cat {file}"), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        for _ in range(count)
    ]
    failed = []
    deadline = time.monotonic() + 600
    for p in procs:
        try:
            _, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        if p.returncode != 0:
            failed.append(err.decode()[-300:])
    wall = time.perf_counter() - t0
    if failed:
        raise BenchError(f"{path}: {len(failed)} of {count} streams failed: {failed[0]}")
    time.sleep(REAP_WAIT)
    cpu = _middle_cpu(env, path) - cpu0
    total = size * count
    return {"mb_s": total / wall / 1e6, "cpu_s_per_gb": cpu / (total / 1e9), "seconds": wall}


def connection_setup(env: BenchEnv, path: str, count: int) -> dict[str, float]:
    """``count`` sequential ``ssh PATH true``: wall ms and the middle's CPU ms per connection."""
    cpu0 = _middle_cpu(env, path)
    t0 = time.perf_counter()
    for _ in range(count):
        _run_ssh(env.ssh_args(path, "true"), timeout=60)
    wall = time.perf_counter() - t0
    time.sleep(REAP_WAIT)
    cpu = _middle_cpu(env, path) - cpu0
    return {"wall_ms": wall / count * 1e3, "cpu_ms": cpu / count * 1e3}


# -- echo round trips with the real ssh client ---------------------------------------------------
ECHO_BLOCK = 50  # round trips per path before the next path takes its turn
ECHO_LINE = b"ping 0123456789\n"


async def _start_cat(env: BenchEnv, path: str, pty: bool) -> asyncio.subprocess.Process:
    ssh, *rest = env.ssh_args(path, "cat")
    return await asyncio.create_subprocess_exec(
        ssh, "-tt" if pty else "-T", *rest,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def _echo_once(proc: asyncio.subprocess.Process, want: int) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(ECHO_LINE)
    got = 0
    while got < want:
        chunk = await proc.stdout.read(65536)
        if not chunk:
            raise BenchError("the echo channel closed")
        got += len(chunk)


async def echo_rtt(
    env: BenchEnv, paths: list[str], pty: bool, samples: int
) -> dict[str, dict[str, float]]:
    """Round trips of one short line through ``cat``, typed into the real ``ssh`` client (as
    an agent would) and read back from its output; exec channel (``ssh -T``) or PTY
    (``ssh -tt``). The paths' clients run at once and take turns in blocks of
    ``ECHO_BLOCK``: a burst of noise on a shared machine (seconds long) then hits every path,
    not whichever happened to be measured during it.

    In a PTY the line comes back twice (the terminal's echo, then cat's copy): the round trip
    ends when cat's copy has arrived.
    """
    want = 2 * (len(ECHO_LINE) + 1) if pty else len(ECHO_LINE)  # the PTY's \n becomes \r\n
    procs: dict[str, asyncio.subprocess.Process] = {}
    try:
        for path in paths:
            procs[path] = proc = await _start_cat(env, path, pty)
            for _ in range(5):  # connection set-up, warm caches and the gate's decision
                await asyncio.wait_for(_echo_once(proc, want), 30)
        times: dict[str, list[float]] = {path: [] for path in paths}
        while len(times[paths[-1]]) < samples:
            for path in paths:
                proc, got = procs[path], times[path]
                for _ in range(min(ECHO_BLOCK, samples - len(got))):
                    t0 = time.perf_counter()
                    await asyncio.wait_for(_echo_once(proc, want), 10)
                    got.append(time.perf_counter() - t0)
    finally:
        for proc in procs.values():
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    result = {}
    for path, got in times.items():
        q = statistics.quantiles(got, n=100)
        result[path] = {"p50_us": q[49] * 1e6, "p99_us": q[98] * 1e6}
    return result


# -- asyncssh clients ------------------------------------------------------------------------
async def commands_per_second(
    clients: Clients, path: str, count: int, concurrency: int
) -> dict[str, float]:
    """``count`` exec channels of ``true`` on one connection, ``concurrency`` at a time."""
    opened = await clients.open(path)
    try:
        todo = iter(range(count))
        statuses: list[int | None] = []

        async def worker() -> None:
            for _ in todo:
                done = await asyncio.wait_for(opened.conn.run("true"), 30)
                statuses.append(done.exit_status)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    finally:
        await opened.close()
    bad = [s for s in statuses if s != 0]
    if bad:
        raise BenchError(f"{path}: {len(bad)} of {count} `true` commands failed (status {bad[0]})")
    return {"per_s": count / wall}


async def _idle_session(clients: Clients, path: str) -> tuple[Opened, object]:
    opened = await clients.open(path)
    try:
        if path == "jump":  # the jump host holds a forwarded TCP connection, nothing more
            return opened, None
        proc = await opened.conn.create_process("cat", encoding=None)
        proc.stdin.write(b"up\n")  # one round trip: the upstream channel is really open
        await asyncio.wait_for(proc.stdout.readexactly(3), 30)
        return opened, proc
    except BaseException:
        await opened.close()
        raise


def _memory_kib(env: BenchEnv, path: str) -> int:
    if path == "bastion":
        return tree_rss_kib(env.bastion.pid)  # the supervisor and its workers
    return tree_pss_kib(env.server_pid(path))  # per-connection sshd processes (PSS)


async def idle_sessions(
    clients: Clients, path: str, steps: list[int], parallel: int = 20
) -> dict[str, dict[str, float]]:
    """Hold 0 -> steps[0] -> steps[1] ... idle sessions; memory of the middle per session.

    A bastion session is an authenticated connection with an exec channel running ``cat``
    (upstream connection, recorder and masker live); the jump host's is a forwarded TCP
    connection. The bastion's figure is VmRSS growth, the jump host's the PSS of its
    per-connection processes.
    """
    env = clients.env
    held: list[tuple[Opened, object]] = []
    gate = asyncio.Semaphore(parallel)
    out: dict[str, dict[str, float]] = {}

    async def one() -> None:
        async with gate:
            held.append(await _idle_session(clients, path))

    await asyncio.sleep(1.0)
    base = _memory_kib(env, path)
    try:
        for n in steps:
            t0 = time.perf_counter()
            results = await asyncio.gather(
                *(one() for _ in range(n - len(held))), return_exceptions=True
            )
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                raise BenchError(f"{path}: {len(errors)} sessions failed to open: {errors[0]!r}")
            opened_s = time.perf_counter() - t0
            await asyncio.sleep(1.0)
            mem = _memory_kib(env, path)
            out[str(n)] = {
                "kib_per_session": (mem - base) / n,
                "total_mib": mem / 1024,
                "open_seconds": opened_s,
            }
    finally:
        await asyncio.gather(*(o.close() for o, _ in held), return_exceptions=True)
    return out
