"""``bastion serve``: run the bastion in the foreground."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bastion.app import build_runtime, serve
from bastion.config import DEFAULT_CONFIG_PATH, load_config
from bastion.logs import setup_logging


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="run the bastion in the foreground (logs to stderr)"
    )
    p.add_argument("--config", default=str(DEFAULT_CONFIG_PATH), help="path to bastion.toml")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["json", "text"], default=None)
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    setup_logging(
        args.log_level, json=None if args.log_format is None else args.log_format == "json"
    )
    config = load_config(args.config)
    runtime = build_runtime(config)
    asyncio.run(serve(runtime))
    return 0
