"""``bastion serve``: run the bastion in the foreground."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bastion import portlock
from bastion.app import build_runtime, serve
from bastion.config import DEFAULT_CONFIG_PATH, load_config
from bastion.logs import setup_logging
from bastion.memory import tune_malloc


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="run the bastion in the foreground (logs to stderr)"
    )
    p.add_argument("--config", default=str(DEFAULT_CONFIG_PATH), help="path to bastion.toml")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["json", "text"], default=None)
    # Set by the supervisor when it starts a worker process (bastion/workers).
    p.add_argument("--worker-fd", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--worker-port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--worker-page-url", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    setup_logging(
        args.log_level, json=None if args.log_format is None else args.log_format == "json"
    )
    tune_malloc()  # before the relay allocates anything; a no-op outside glibc
    if args.worker_fd is not None:
        from bastion.workers.worker import run_worker

        return run_worker(
            args.config, args.worker_fd, args.worker_index, args.worker_port, args.worker_page_url
        )
    config = load_config(args.config)
    if config.server.workers > 1:
        from bastion.workers.supervisor import supervise

        passed = ["--config", args.config, "--log-level", args.log_level]
        if args.log_format is not None:
            passed += ["--log-format", args.log_format]
        asyncio.run(supervise(config, passed))
        return 0
    # The SSH port is this bastion's alone (bastion/portlock.py); ":0" picks a free one.
    held = portlock.claim(config.server.host, config.server.port) if config.server.port else None
    try:
        asyncio.run(serve(build_runtime(config)))
    finally:
        if held is not None:
            held.close()
    return 0
