"""One worker process: the full SSH data path on a port it shares with its siblings.

Started by the supervisor as ``bastion serve --worker-fd FD --worker-index I --worker-port P``.
It runs ``app.serve`` with SO_REUSEPORT and asks the supervisor (over the link on FD) for
everything that must be counted for the whole bastion. If the supervisor goes away (the link
closes, or the kernel's parent-death signal arrives), the worker stops like on SIGTERM: it tells
its agents and seals its recordings.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import math
import os
import signal
import socket
from dataclasses import replace

from bastion.app import Runtime, build_runtime, serve
from bastion.config import load_config
from bastion.logs import ctx, set_process_fields
from bastion.ops.sdnotify import Notifier
from bastion.tasks import spawn
from bastion.workers.coordinator import RemoteMetrics
from bastion.workers.ipc import Link

log = logging.getLogger("bastion.workers")

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` when the supervisor dies (even by SIGKILL); no-op elsewhere."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def run_worker(
    config_path: str, fd: int, index: int, port: int, page_url: str | None = None
) -> int:
    die_with_parent()
    if os.getppid() == 1:  # the supervisor died before the signal was armed
        return 1
    set_process_fields(worker=index)
    config = load_config(config_path)
    workers = config.server.workers
    # The supervisor reserved the port (``listen = ...:0`` picks one) and checked the config.
    config = replace(config, server=replace(config.server, port=port))
    runtime = build_runtime(config, role="worker")
    runtime.page_url = page_url  # the supervisor's approval page, for the links agents see
    # Connections are capped per process (before login nothing is known to ask about); each
    # worker takes an equal share of ``[limits] max_connections``.
    share = math.ceil(runtime.limits.max_connections / workers)
    runtime.connections.max_connections = max(1, share)
    runtime.notifier = Notifier(environ={})  # only the supervisor talks to systemd
    asyncio.run(_serve_worker(runtime, socket.socket(fileno=fd), index))
    return 0


async def _serve_worker(runtime: Runtime, sock: socket.socket, index: int) -> None:
    link = await Link.from_socket(sock)
    runtime.link = link
    metrics = RemoteMetrics(link)
    metrics.set_targets(runtime.config.targets)
    runtime.metrics = metrics
    stop = asyncio.Event()
    reader = spawn(link.serve(), name="supervisor-link", background=True)

    def supervisor_gone(_: object) -> None:
        if not stop.is_set():
            log.warning("workers.supervisor_gone", extra=ctx(worker=index))
            stop.set()

    reader.add_done_callback(supervisor_gone)

    def ready(address: tuple[str, int]) -> None:
        link.event("ready", os.getpid())

    await serve(runtime, ready=ready, stop=stop, reuse_port=True)
    link.close()
