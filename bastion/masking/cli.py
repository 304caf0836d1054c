"""``bastion mask``: filter stdin to stdout through the streaming masker."""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from bastion.errors import BastionError
from bastion.masking.config import MaskingConfig, load_masking_config

DEFAULT_CONFIG = Path("config/bastion.toml")
_CHUNK = 65536


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "mask",
        help="mask secrets in stdin, write the result to stdout",
        description="Filter stdin to stdout through the same masker the bastion uses. "
        "Uses the [masking] section of --config when the file exists.",
    )
    p.add_argument("--pty", action="store_true", help="same-length masking (terminal layout)")
    p.add_argument("--config", type=Path, default=None,
                   help=f"config file with a [masking] section (default {DEFAULT_CONFIG})")
    p.add_argument("--engine", choices=("auto", "hyperscan", "python"), default=None,
                   help="force a matching engine (default: config, then auto)")
    p.add_argument("--counts", action="store_true", help="print masks per rule to stderr")
    p.set_defaults(func=run)


def _load(path: Path | None) -> MaskingConfig:
    explicit = path is not None
    path = path or DEFAULT_CONFIG
    if not path.exists():
        if explicit:
            raise BastionError(f"{path}: config file not found")
        return MaskingConfig()
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise BastionError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BastionError(f"{path}: invalid TOML: {exc}") from None
    return load_masking_config(doc.get("masking", {}), path.resolve().parent)


def run(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if args.engine is not None:
        cfg = replace(cfg, engine=None if args.engine == "auto" else args.engine)
    masker = cfg.new_masker(pty=args.pty)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    try:
        fd: int | None = inp.fileno()
    except (OSError, ValueError):  # not a real file (e.g. an in-memory buffer)
        fd = None
    while True:
        chunk = os.read(fd, _CHUNK) if fd is not None else inp.read(_CHUNK)
        if not chunk:
            break
        out.write(masker.feed(chunk))
    out.write(masker.flush())
    out.flush()
    if args.counts:
        for rid, n in sorted(masker.counts.items()):
            print(f"{rid}\t{n}", file=sys.stderr)
    return 0
