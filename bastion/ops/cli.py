"""``bastion check-config``: print one line per check, exit 1 if any failed."""

from __future__ import annotations

import argparse
import pwd
import sys
from pathlib import Path
from typing import Any

from bastion.config import DEFAULT_CONFIG_PATH
from bastion.errors import BastionError
from bastion.ops.checkconfig import check_config


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "check-config",
        help="validate the config, keys, permissions and policy examples (exit 1 on a problem)",
    )
    p.add_argument("--config", default=str(DEFAULT_CONFIG_PATH), help="path to bastion.toml")
    p.add_argument(
        "--owner",
        metavar="USER",
        help="user the state folder must belong to (default: the user running the check)",
    )
    p.add_argument("--quiet", action="store_true", help="print only failures")
    p.set_defaults(func=_check_config)


def _check_config(args: argparse.Namespace) -> int:
    owner = _uid(args.owner) if args.owner else None
    report = check_config(Path(args.config), owner=owner)
    for finding in report.findings:
        if finding.ok and args.quiet:
            continue
        print(finding.line(), file=sys.stdout if finding.ok else sys.stderr)
    failed = len(report.failed)
    if failed:
        print(f"{failed} problem(s) found", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"config OK ({len(report.findings)} checks)")
    return 0


def _uid(name: str) -> int:
    if name.isdigit():
        return int(name)
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        raise BastionError(f"--owner: no such user {name!r}") from None
