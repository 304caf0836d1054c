"""``bastion audit verify|tail|query|export``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from bastion.audit.export import export_jsonl
from bastion.audit.store import KINDS, AuditRow, AuditStore
from bastion.audit.timeparse import parse_when, to_ts
from bastion.audit.verify import verify_chain
from bastion.errors import BastionError, ConfigError

if TYPE_CHECKING:
    from bastion.config import Config

DEFAULT_CONFIG = "config/bastion.toml"
DB_NAME = "bastion.db"


def db_path_from_config(config_path: str | Path) -> Path:
    """``[audit] db`` if set (relative to the config folder), else ``<state_dir>/bastion.db``."""
    from bastion.config import load_config

    return audit_db_path(load_config(config_path))


def audit_db_path(config: Config) -> Path:
    section = config.raw.get("audit", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{config.path}: audit", "expected a table")
    db = section.get("db")
    if db is None:
        return config.state_dir / DB_NAME
    if not isinstance(db, str) or not db:
        raise ConfigError(f"{config.path}: audit.db", "expected a path string")
    return (config.base_dir / db).resolve()


def _run(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


async def _open(args: argparse.Namespace) -> AuditStore:
    return await AuditStore.open(db_path_from_config(args.config), create=False)


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    filters: dict[str, Any] = {"kinds": tuple(args.kind or ())}
    if getattr(args, "session", None):
        filters["session_id"] = args.session
    if getattr(args, "identity", None):
        filters["identity"] = args.identity
    if getattr(args, "target", None):
        filters["target"] = args.target
    if args.since:
        filters["since"] = to_ts(parse_when(args.since))
    if args.until:
        filters["until"] = to_ts(parse_when(args.until))
    return filters


def _print_rows(rows: list[AuditRow], as_json: bool) -> None:
    out = sys.stdout
    for row in rows:
        if as_json:
            out.write(orjson.dumps(row.to_json(), option=orjson.OPT_SORT_KEYS).decode() + "\n")
            continue
        who = " ".join(
            f"{name}={value}"
            for name, value in (
                ("session", row.session_id),
                ("identity", row.identity),
                ("target", row.target),
                ("login", row.login),
            )
            if value
        )
        fields = orjson.dumps(row.fields, option=orjson.OPT_SORT_KEYS).decode()
        out.write(f"{row.id:>6}  {row.ts}  {row.kind:<16} {who}  {fields}\n")


async def _verify(args: argparse.Namespace) -> int:
    store = await _open(args)
    try:
        report = await verify_chain(store.db)
    finally:
        await store.close()
    if report.ok:
        print(f"audit log intact: {report.rows} rows, head #{report.head_id} {report.head_hash}")
        return 0
    print(f"audit log TAMPERED: {report.problem} ({report.rows} rows verified before it)")
    return 1


async def _check_kinds(store: AuditStore, args: argparse.Namespace) -> None:
    """An unknown ``--kind`` is an error, not an empty answer: it must be a documented kind or
    one the log holds (components may add kinds)."""
    wanted = set(args.kind or ())
    if not wanted - KINDS:
        return
    rows = await store.db.fetchall("SELECT DISTINCT kind FROM audit_log", [])
    known = KINDS | {str(r[0]) for r in rows}
    unknown = sorted(wanted - known)
    if unknown:
        raise BastionError(
            f"--kind: unknown kind {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )


async def _tail(args: argparse.Namespace) -> int:
    store = await _open(args)
    try:
        await _check_kinds(store, args)
        rows = await store.query(limit=args.lines, newest_first=True, **_filters(args))
    finally:
        await store.close()
    _print_rows(list(reversed(rows)), args.json)
    return 0


async def _query(args: argparse.Namespace) -> int:
    store = await _open(args)
    try:
        await _check_kinds(store, args)
        rows = await store.query(limit=args.limit, **_filters(args))
    finally:
        await store.close()
    _print_rows(rows, args.json)
    return 0


async def _export(args: argparse.Namespace) -> int:
    store = await _open(args)
    try:
        await _check_kinds(store, args)
        if args.output == "-":
            count = await export_jsonl(store, sys.stdout.buffer, **_filters(args))
            sys.stdout.flush()
        else:
            try:
                with open(args.output, "wb") as fh:  # noqa: ASYNC230 - a CLI, nothing else runs
                    count = await export_jsonl(store, fh, **_filters(args))
            except OSError as exc:
                raise BastionError(f"cannot write {args.output}: {exc.strerror}") from None
    finally:
        await store.close()
    print(f"exported {count} rows", file=sys.stderr)
    return 0


def _add_filters(p: argparse.ArgumentParser, *, scope: bool = True) -> None:
    p.add_argument("--kind", action="append", help="only this kind (repeatable)")
    if scope:
        p.add_argument("--session", help="only this session id")
        p.add_argument("--identity", help="only this identity")
        p.add_argument("--target", help="only this target")
    p.add_argument("--since", help="from this time: 2025-01-31, 2025-01-31T10:00Z, 2h, 7d")
    p.add_argument("--until", help="before this time (same forms as --since)")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = subparsers.add_parser("audit", help="inspect, verify and export the audit log")
    actions = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    actions.required = True

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help_text)
        p.add_argument("--config", default=DEFAULT_CONFIG, help="bastion config file")
        return p

    p = add("verify", "check the hash chain; exit 1 naming the first bad row")
    p.set_defaults(func=lambda a: _run(_verify(a)))

    p = add("tail", "show the newest rows")
    p.add_argument("-n", "--lines", type=int, default=20, help="how many rows (default 20)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    _add_filters(p)
    p.set_defaults(func=lambda a: _run(_tail(a)))

    p = add("query", "show rows matching filters, oldest first")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--limit", type=int, default=None, help="at most this many rows")
    _add_filters(p)
    p.set_defaults(func=lambda a: _run(_query(a)))

    p = add("export", "export rows for a SIEM")
    p.add_argument("--format", choices=["jsonl"], default="jsonl", help="output format")
    p.add_argument("--output", "-o", default="-", help="file to write (default stdout)")
    _add_filters(p)
    p.set_defaults(func=lambda a: _run(_export(a)))
