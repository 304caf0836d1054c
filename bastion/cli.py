"""Command line: parse arguments, call into the package, turn errors into one line and an exit code.

No business logic lives here. Each feature package offers ``register(subparsers)`` in its own
``cli`` module; that function adds its sub-commands and sets ``func`` on their parsers. ``func``
takes the parsed namespace and returns the process exit status.

What every command gets from here: ``--version``; defaults shown in ``--help``; the config file
found without ``--config`` (``$BASTION_CONFIG``, then ``/etc/bastion/bastion.toml``, then
``config/bastion.toml``); one line and ``EXIT_ERROR`` for a ``BastionError``; a quiet exit when
the reader of the output goes away (``bastion audit query | head``). The exit statuses are in
one table in docs/operations.md ("Command line").
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Iterator, Sequence
from importlib import metadata
from typing import NoReturn

from bastion.config import LEGACY_DEFAULT_CONFIG, default_config_path
from bastion.errors import BastionError

# Exit statuses of the `bastion` command itself (the statuses agents see over SSH are the
# relay's, in bastion/hooks.py). 0, 1 and 2 keep their meaning of `policy check`.
EXIT_OK = 0
EXIT_PROBLEM = 1  # a check found a problem (check-config, audit verify, ...); policy: review
EXIT_DENY = 2  # policy check: deny
EXIT_ERROR = 3  # a one-line error: bad input, config, a missing or unreadable file
EXIT_USAGE = 64  # unknown option, missing argument (sysexits EX_USAGE)
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_PIPE = 141  # the output's reader went away (128 + SIGPIPE, what a shell tool reports)

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

_CONFIG_HELP = (
    "bastion config file (default: $BASTION_CONFIG, else /etc/bastion/bastion.toml, else"
    " config/bastion.toml)"
)


class _Parser(argparse.ArgumentParser):
    """Usage errors exit with EXIT_USAGE, so that 2 only ever means "deny"."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _shows_default(action: argparse.Action) -> bool:
    """An option whose default is worth printing, and whose help does not already say it."""
    default = action.default
    return (
        bool(action.option_strings)
        and action.help is not argparse.SUPPRESS
        and "default" not in (action.help or "")
        and default not in (None, False, True, argparse.SUPPRESS)
        and default != []
    )


class _Formatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to options that have a meaningful default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if not _shows_default(action):
            return action.help
        if not action.help:
            return "(default: %(default)s)"
        return f"{action.help} (default: %(default)s)"


def _version() -> str:
    try:
        return metadata.version("agent-bastion")
    except metadata.PackageNotFoundError:  # running from a source tree without an install
        from bastion import __version__

        return __version__


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bastion",
        description="SSH bastion for AI coding agents on Azure VMs.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"bastion {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):  # feature not built yet
                continue
            raise
        module.register(subparsers)
    for sub in _parsers(parser):
        if sub.formatter_class is argparse.HelpFormatter:
            sub.formatter_class = _Formatter
        for action in sub._actions:
            if action.help is None and _shows_default(action):
                action.help = "(default: %(default)s)"  # argparse prints no help line without
            # The features register `--config` with the old fixed default; look it up instead.
            if action.dest == "config" and str(action.default) == LEGACY_DEFAULT_CONFIG:
                action.default = None
                action.help = _CONFIG_HELP
                sub.set_defaults(_find_config=True)
    return parser


def _find_config(args: argparse.Namespace) -> None:
    if not getattr(args, "_find_config", False) or args.config is not None:
        return
    # Not checked here: some commands need the file only for some options (verify --key).
    args.config = str(default_config_path(os.environ))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _find_config(args)
        status: int = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except BastionError as exc:
        print(f"bastion: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_PIPE
    return status


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
