"""Command line: parse arguments, call into the package, turn errors into one line and an exit code.

No business logic lives here. Each feature package offers ``register(subparsers)`` in its own
``cli`` module; that function adds its sub-commands and sets ``func`` on their parsers. ``func``
takes the parsed namespace and returns the process exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from bastion.errors import BastionError

# Feature packages that contribute sub-commands, in the order they appear in --help.
_COMMAND_MODULES = (
    "bastion.serve_cli",
    "bastion.demo",
    "bastion.policy.cli",
    "bastion.masking.cli",
    "bastion.recording.cli",
    "bastion.audit.cli",
    "bastion.identity.cli",
    "bastion.approval.cli",
    "bastion.ops.cli",
    "bastion.ops.initconfig",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bastion", description="SSH bastion for AI coding agents on Azure VMs."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):  # feature not built yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except BastionError as exc:
        print(f"bastion: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
