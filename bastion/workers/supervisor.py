"""``[server] workers = N`` (N > 1): a supervisor process and N worker processes.

The supervisor checks the config, creates the host key and the recording key, reserves the
listening port (bound with SO_REUSEPORT, never listening, so it receives no connection) and runs
what must exist once: the HTTP server (certificates, approval pages, Slack interactions, health,
``/metrics``), the notifiers, and the shared counts (``coordinator.Coordinator``). Each worker
binds the same port with SO_REUSEPORT, so the kernel spreads agents' connections over them and
every core relays. All processes share the SQLite database (audit rows chain across processes,
approvals are decided by whichever process an operator reaches, revocations are seen at the
next login in every worker).

Signals go to the supervisor (systemd ``KillMode=mixed``): SIGTERM/SIGINT stop the workers
gracefully (each tells its agents and seals its recordings), SIGHUP reloads the config and
then every worker. A worker that dies is logged, its sessions are released, the approval
requests its agents waited on are abandoned, and it is restarted (backing off while it keeps
dying); the other workers keep serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from bastion import portlock
from bastion.app import SHUTDOWN_GRACE, Runtime, build_runtime, ensure_host_key, handle_signals
from bastion.config import Config
from bastion.errors import BastionError
from bastion.logs import ctx
from bastion.ops.sdnotify import watchdog_loop
from bastion.tasks import drain_tasks, spawn
from bastion.workers.coordinator import Coordinator
from bastion.workers.ipc import Handler, Link

log = logging.getLogger("bastion.workers")

START_TIMEOUT = 120.0  # a worker loads the policy and masking engines before it listens
MAX_BACKOFF = 30.0
STABLE_AFTER = 60.0  # a worker that ran this long restarts at once if it dies
_SYSTEMD_ONLY = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (never listen) with SO_REUSEPORT: the port is ours, and ``:0`` picks a number."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise BastionError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


@dataclass
class Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    link: Link | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = 0.0
    crashes: int = 0


class WorkerPool:
    """Starts, watches, signals and restarts the worker processes."""

    def __init__(
        self,
        runtime: Runtime,
        coordinator: Coordinator,
        command: Sequence[str],
        count: int,
        port: int,
    ) -> None:
        self.runtime = runtime
        self.coordinator = coordinator
        self.command = list(command)
        self.port = port
        self.workers = [Worker(i) for i in range(1, count + 1)]
        self.stopping = False
        self._watchers: list[asyncio.Task[None]] = []
        self._env = {k: v for k, v in os.environ.items() if k not in _SYSTEMD_ONLY}

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers if w.process and w.process.returncode is None]

    def serving(self) -> int:
        return sum(1 for w in self.workers if w.ready.is_set())

    async def start(self) -> None:
        """Start every worker and wait until each listens; raise BastionError if one cannot."""
        for worker in self.workers:
            await self._spawn(worker)
        for worker in self.workers:
            await self._wait_ready(worker)
        self._watchers = [
            spawn(self._watch(w), name=f"worker-{w.index}-watch") for w in self.workers
        ]

    async def _spawn(self, worker: Worker) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            worker.process = await asyncio.create_subprocess_exec(
                *self.command,
                "--worker-fd",
                str(child.fileno()),
                "--worker-index",
                str(worker.index),
                "--worker-port",
                str(self.port),
                stdin=asyncio.subprocess.DEVNULL,
                pass_fds=(child.fileno(),),
                env=self._env,
            )
        except OSError as exc:
            parent.close()
            raise BastionError(f"cannot start worker {worker.index}: {exc.strerror}") from None
        finally:
            child.close()
        worker.ready = asyncio.Event()
        worker.started = time.monotonic()
        worker.link = await Link.from_socket(parent)
        spawn(worker.link.serve(self._handler(worker)), name=f"worker-{worker.index}-link")
        log.info("worker.started", extra=ctx(worker=worker.index, pid=worker.process.pid))

    def _handler(self, worker: Worker) -> Handler:
        coordinated = self.coordinator.handler(worker.index)

        async def handle(op: str, args: list[Any]) -> Any:
            if op == "ready":
                worker.ready.set()
                self.runtime.listening = True
                return None
            return await coordinated(op, args)

        return handle

    async def _wait_ready(self, worker: Worker) -> None:
        assert worker.process is not None
        exited = asyncio.ensure_future(worker.process.wait())
        ready = asyncio.ensure_future(worker.ready.wait())
        try:
            await asyncio.wait(
                {exited, ready}, timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
            if not exited.done():
                exited.cancel()
        if not worker.ready.is_set():
            status = worker.process.returncode
            why = "in time" if status is None else f"(exit status {status}; its error is above)"
            raise BastionError(f"worker {worker.index} did not start {why}")

    async def _watch(self, worker: Worker) -> None:
        while True:
            assert worker.process is not None
            status = await worker.process.wait()
            worker.ready.clear()
            if worker.link is not None:
                worker.link.close()
            self.runtime.listening = self.serving() > 0
            await self._release(worker)
            if self.stopping:
                return
            lived = time.monotonic() - worker.started
            worker.crashes = 0 if lived >= STABLE_AFTER else worker.crashes + 1
            delay = 0.0 if worker.crashes == 0 else min(MAX_BACKOFF, 2.0 ** (worker.crashes - 1))
            log.error(
                "worker.exited",
                extra=ctx(worker=worker.index, status=status, restart_in=round(delay, 1)),
            )
            await asyncio.sleep(delay)
            if self.stopping:
                return
            try:
                await self._spawn(worker)
                await self._wait_ready(worker)
            except BastionError as exc:
                log.error("worker.restart_failed", extra=ctx(worker=worker.index, error=str(exc)))
                if worker.process is not None and worker.process.returncode is None:
                    worker.process.kill()

    async def _release(self, worker: Worker) -> None:
        """Give back a dead worker's sessions; abandon the requests its agents waited on."""
        waiting = self.coordinator.worker_gone(worker.index)
        broker = self.runtime.approvals
        if broker is None:
            return
        for request_id in sorted(waiting):
            try:
                request = await broker.get(request_id)
                if request is None or request.mode != "wait":  # deferred: the agent comes back
                    continue
                await broker.abandon(request_id, "the bastion worker serving the agent stopped")
            except Exception as exc:  # logged; the request still expires at its deadline
                log.error("worker.abandon_failed", extra=ctx(request=request_id, error=repr(exc)))

    def signal_all(self, sig: signal.Signals) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    async def stop(self) -> None:
        """SIGTERM every worker (each closes its sessions with a notice); SIGKILL stragglers."""
        self.stopping = True
        self.signal_all(signal.SIGTERM)
        procs = [w.process for w in self.workers if w.process is not None]
        waits = [asyncio.ensure_future(p.wait()) for p in procs]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=SHUTDOWN_GRACE + 5.0)
            if pending:
                log.error("worker.kill", extra=ctx(workers=len(pending)))
                self.signal_all(signal.SIGKILL)
                await asyncio.wait(pending, timeout=5.0)
        for task in self._watchers:
            task.cancel()
        for worker in self.workers:
            if worker.link is not None:
                worker.link.close()
            await self._release(worker)


def worker_command(args: Sequence[str]) -> list[str]:
    """How to start a worker: this Python, the bastion CLI, the supervisor's own options."""
    return [sys.executable, "-m", "bastion.cli", "serve", *args]


async def supervise(config: Config, serve_args: Sequence[str]) -> None:
    """Run the supervisor until SIGTERM/SIGINT; ``serve_args`` are passed on to every worker."""
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ensure_host_key(config.server.host_key)
    runtime = build_runtime(config, role="supervisor")
    host = config.server.host
    # Refuse a port another bastion holds or anything listens on: SO_REUSEPORT alone would
    # silently share it with any process of this user (bastion/portlock.py).
    held = portlock.claim(host, config.server.port) if config.server.port else None
    try:
        reserved = reserve_port(host, config.server.port)
    except BaseException:
        if held is not None:
            held.close()
        raise
    port = int(reserved.getsockname()[1])
    try:
        held = held or portlock.lock(host, port)  # ":0": lock the number the kernel picked
        await runtime.start()
    except BaseException:
        reserved.close()
        if held is not None:
            held.close()
        await runtime.stop()
        raise
    coordinator = Coordinator(runtime.limits, runtime.metrics)

    async def announce(event: str, request_id: str) -> None:
        if runtime.notify and runtime.approvals is not None:
            request = await runtime.approvals.get(request_id)
            if request is not None:
                runtime.notify.on_change(event, request)

    coordinator.on_approval = announce
    count = config.server.workers
    command = worker_command(serve_args)
    if runtime.serves_approval_page:
        assert runtime.approvals is not None
        # The page is on this process's HTTP server: workers link to it (the bound port).
        command += ["--worker-page-url", runtime.approvals.config.public_url]
    pool = WorkerPool(runtime, coordinator, command, count, port)
    stop = asyncio.Event()

    async def reload() -> None:
        if await runtime.reload():
            pool.signal_all(signal.SIGHUP)

    try:
        with handle_signals(stop, lambda: spawn(reload(), name="reload")):
            if not await _until_stopped(pool.start(), stop):
                return  # stopped while the workers were starting
            address = f"{config.server.host}:{port}"
            log.info("listening", extra=ctx(address=address, workers=count, pids=pool.pids))
            runtime.notifier.ready(f"listening on {address} with {count} workers")
            watchdog = spawn(watchdog_loop(runtime.notifier), name="watchdog")
            try:
                await stop.wait()
            finally:
                watchdog.cancel()
    finally:
        log.info("shutdown.begin", extra=ctx(workers=len(pool.pids)))
        runtime.notifier.stopping()
        runtime.listening = False
        await pool.stop()
        reserved.close()
        held.close()
        await drain_tasks(SHUTDOWN_GRACE)
        await runtime.stop()
        log.info("shutdown.done")


async def _until_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run ``work`` unless ``stop`` is set first (then cancel it); True if it finished."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False
    task.result()  # raises what starting raised (a worker that could not start)
    return True
