"""``bastion play`` and ``bastion recordings verify|list|show|export|prune``."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from bastion.config import parse_duration
from bastion.errors import BastionError, ConfigError
from bastion.recording import catalog, layout
from bastion.recording.config import RecordingConfig, parse_recording_config
from bastion.recording.export import asciicast_lines, for_terminal
from bastion.recording.keys import RecordingPublicKey, load_trusted_keys
from bastion.recording.player import build_frames, play
from bastion.recording.transcript import render_text
from bastion.recording.verify import VerifyResult, verify_recording

DEFAULT_CONFIG = "config/bastion.toml"


def load_recording_config(config_path: str | Path) -> RecordingConfig:
    from bastion.config import load_config

    config = load_config(config_path)
    return parse_recording_config(
        config.raw.get("recording", {}), config.base_dir, config.state_dir
    )


def _trusted(args: argparse.Namespace) -> list[RecordingPublicKey]:
    if args.key:
        return list(load_trusted_keys(Path(k) for k in args.key))
    cfg = load_recording_config(args.config)
    if not cfg.public_key_file.exists():
        raise BastionError(f"no recording public key at {cfg.public_key_file}; pass --key")
    return list(load_trusted_keys([cfg.public_key_file]))


def _resolve(args: argparse.Namespace, ref: str, *, single: bool = True) -> list[Path]:
    as_path = Path(ref)
    if as_path.suffix == layout.CAST_SUFFIX:
        if not as_path.is_file():
            raise BastionError(f"no such recording file: {ref}")
        return [as_path]
    found = catalog.find(load_recording_config(args.config).dir, ref)
    if not found:
        raise BastionError(f"no recording {ref!r}")
    if single and len(found) > 1:
        names = ", ".join(p.name.removesuffix(layout.CAST_SUFFIX) for p in found)
        raise BastionError(f"{ref!r} has several channels; pick one of: {names}")
    return found


# -- verify --------------------------------------------------------------------------------------


def _verify_targets(args: argparse.Namespace) -> list[Path]:
    paths: list[Path] = []
    for ref in args.paths:
        path = Path(ref)
        if path.is_dir():
            paths.extend(list(layout.iter_casts(path)) or sorted(path.glob("*.cast")))
        elif path.is_file():
            paths.append(path)
        else:
            paths.extend(_resolve(args, ref, single=False))
    return paths


def _cmd_verify(args: argparse.Namespace) -> int:
    paths = _verify_targets(args)
    if not paths:
        raise BastionError("no recordings to verify")
    trusted = _trusted(args)
    failed = 0
    for path in paths:
        result = verify_recording(path, trusted)
        word = "OK" if result.ok else result.status.upper()
        print(f"{path}: {word}: {result.reason}")
        failed += not result.ok
    return 1 if failed else 0


# -- play ----------------------------------------------------------------------------------------


def _cmd_play(args: argparse.Namespace) -> int:
    if args.speed <= 0:
        raise BastionError("--speed must be positive")
    if args.idle_limit is not None and args.idle_limit < 0:
        raise BastionError("--idle-limit cannot be negative")
    path = _resolve(args, args.recording)[0]
    if not args.no_verify:
        result = verify_recording(path, _trusted(args))
        if result.status == "unsealed":
            print(f"bastion: warning: {result.reason}", file=sys.stderr)
        elif not result.ok:
            raise BastionError(
                f"{path.name} failed verification ({result.reason}); --no-verify to play anyway"
            )
    header, events = catalog.read_events(path)
    play(build_frames(for_terminal(header, events), speed=args.speed,
                      idle_limit=args.idle_limit))
    return 0


# -- list / show / export ------------------------------------------------------------------------


def _since(text: str | None) -> float | None:
    if not text:
        return None
    from bastion.audit.timeparse import parse_when

    return parse_when(text).timestamp()


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))


def _cmd_list(args: argparse.Namespace) -> int:
    root = load_recording_config(args.config).dir
    since = _since(args.since)
    shown = 0
    for info in sorted(catalog.iter_infos(root), key=lambda i: (i.started, i.name)):
        if since is not None and info.started < since:
            continue
        if args.target and info.meta.get("target") != args.target:
            continue
        if args.identity and info.meta.get("identity") != args.identity:
            continue
        if args.json:
            print(orjson.dumps(info.to_json(), option=orjson.OPT_SORT_KEYS).decode())
        else:
            if not shown:
                print(f"{'STARTED (UTC)':<20}  {'ID':<40} {'IDENTITY':<24} {'TARGET':<16} "
                      f"{'STATE':<14} {'SIZE':>11}")
            state = "sealed" if info.sealed else "OPEN/unsealed"
            print(
                f"{_when(info.started)}  {info.name:<40} {info.meta.get('identity', '-')!s:<24} "
                f"{info.meta.get('target', '-')!s:<16} {state:<14} {info.size:>9} B"
            )
        shown += 1
    if not shown and not args.json:
        print("no recordings", file=sys.stderr)
    return 0


def _show_data(path: Path, result: VerifyResult) -> dict[str, Any]:
    info = catalog.read_info(path)
    _, events = catalog.read_events(path)
    markers = [{"time": e.time, "text": e.data} for e in events if e.code == "m"]
    counts = {code: sum(e.code == code for e in events) for code in "oirm"}
    return {
        **info.to_json(),
        "duration": events[-1].time if events else 0.0,
        "events": counts,
        "verification": {"status": result.status, "reason": result.reason},
        "markers": markers,
    }


def _cmd_show(args: argparse.Namespace) -> int:
    path = _resolve(args, args.recording)[0]
    data = _show_data(path, verify_recording(path, _trusted(args)))
    if args.json:
        print(orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode())
        return 0
    print(f"recording   {data['id']}  ({path})")
    print(f"started     {_when(data['started'])}   duration {data['duration']:.1f}s")
    for key in ("identity", "target", "login"):
        print(f"{key:<11} {data.get(key) or '-'}")
    for key in ("key_id", "serial", "principals", "source"):
        if key in data["meta"]:
            print(f"{key:<11} {_plain(data['meta'][key])}")
    print(f"command     {data['command'] or '(interactive shell)'}")
    counts = ", ".join(f"{n} {what}" for what, n in zip(
        ("output", "input", "resize", "marker"), (data["events"][c] for c in "oirm"), strict=True))
    print(f"size        {data['width']}x{data['height']}; events: {counts}")
    print(f"verify      {data['verification']['status']}: {data['verification']['reason']}")
    print("markers (gate decisions, approvals):" if data["markers"] else "markers     none")
    for m in data["markers"]:
        print(f"  {m['time']:>10.3f}s  {m['text']}")
    return 0


def _plain(value: object) -> str:
    """A metadata value as a person reads it: lists comma-separated, no Python reprs."""
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value) or "-"
    return "-" if value is None else str(value)


def _cmd_export(args: argparse.Namespace) -> int:
    path = _resolve(args, args.recording)[0]
    header, events = catalog.read_events(path)
    if args.text or args.format == "text":
        width, height = int(header["width"]), int(header["height"])
        sys.stdout.write(render_text(width, height, for_terminal(header, events)))
        return 0
    out = sys.stdout.buffer
    for line in asciicast_lines(header, events):
        out.write(line)
    out.flush()
    return 0


# -- prune ---------------------------------------------------------------------------------------


async def _prune(args: argparse.Namespace, cfg: RecordingConfig) -> int:
    from bastion.audit.cli import db_path_from_config
    from bastion.audit.store import AuditStore

    cutoff = time.time() - args.older_than * 86400
    old = [
        info
        for info in catalog.iter_infos(cfg.dir)
        if info.started < cutoff and info.path.stat().st_mtime < cutoff
    ]
    if args.dry_run:
        for info in old:
            print(f"would delete {info.path}")
        return 0
    store = await AuditStore.open(db_path_from_config(args.config))
    try:
        for info in old:
            last = catalog.last_seal_record(info.path) or {}
            # audit first: if the deletion cannot be recorded, nothing is deleted
            await store.record(
                "recording_pruned",
                session_id=info.session_id,
                identity=info.meta.get("identity"),
                target=info.meta.get("target"),
                login=info.meta.get("login"),
                path=str(info.path),
                channel=info.channel,
                started=info.started,
                sealed=info.sealed,
                digest=last.get("digest") if info.sealed else None,
                older_than_days=args.older_than,
            )
            info.path.unlink(missing_ok=True)
            layout.seal_path(info.path).unlink(missing_ok=True)
            layout.blob_path(info.path).unlink(missing_ok=True)
            for parent in (info.path.parent, info.path.parent.parent, info.path.parents[2]):
                try:
                    parent.rmdir()
                except OSError:
                    break
            print(f"deleted {info.path}")
    finally:
        await store.close()
    print(f"pruned {len(old)} recordings older than {args.older_than:g} days", file=sys.stderr)
    return 0


def _age_days(text: str) -> float:
    """``--older-than``: a bare number is days (the unit's BASTION_RETENTION_DAYS); with a unit,
    a duration (``7d``, ``36h``)."""
    try:
        days = float(text)
    except ValueError:
        try:
            days = parse_duration(text, "--older-than") / 86400
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(exc.reason) from None
    if not days > 0:
        raise argparse.ArgumentTypeError(f"must be a positive age, got {text!r}")
    return days


def _cmd_prune(args: argparse.Namespace) -> int:
    if args.older_than <= 0:
        raise BastionError("--older-than must be a positive number of days")
    return asyncio.run(_prune(args, load_recording_config(args.config)))


# -- registration --------------------------------------------------------------------------------


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=DEFAULT_CONFIG, help="bastion config file")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("play", help="replay a recording in the terminal")
    p.add_argument("recording", metavar="PATH|SESSION_ID")
    p.add_argument("--speed", type=float, default=1.0, help="playback speed factor")
    p.add_argument("--idle-limit", type=float, default=None, help="cap pauses at S seconds")
    p.add_argument("--no-verify", action="store_true", help="play even if verification fails")
    p.add_argument("--key", action="append", help="trusted recording public key file")
    _config_arg(p)
    p.set_defaults(func=_cmd_play)

    group = subparsers.add_parser("recordings", help="verify, list, show, export, prune")
    actions = group.add_subparsers(dest="recordings_command", metavar="ACTION")
    actions.required = True

    p = actions.add_parser("verify", help="check recordings against their signed seals")
    p.add_argument("paths", nargs="+", metavar="PATH", help=".cast file, folder or id")
    p.add_argument("--key", action="append", help="trusted public key (default: state dir)")
    _config_arg(p)
    p.set_defaults(func=_cmd_verify)

    p = actions.add_parser("list", help="list recordings")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--target", help="only this target")
    p.add_argument("--identity", help="only this identity")
    p.add_argument("--since", help="started at or after: 2025-01-31, 2h, 7d")
    _config_arg(p)
    p.set_defaults(func=_cmd_list)

    p = actions.add_parser("show", help="metadata, verification and markers of a recording")
    p.add_argument("recording", metavar="ID")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("--key", action="append", help="trusted public key (default: state dir)")
    _config_arg(p)
    p.set_defaults(func=_cmd_show)

    p = actions.add_parser(
        "export", help="export a recording as plain asciicast v2 (default) or a text transcript"
    )
    p.add_argument("recording", metavar="ID")
    p.add_argument("--format", choices=("asciicast", "text"), default="asciicast",
                   help="asciicast: plays in any asciicast player, binary output included"
                        " (default); text: the screen text a terminal would show")
    p.add_argument("--text", action="store_true", help="the same as --format text")
    _config_arg(p)
    p.set_defaults(func=_cmd_export)

    p = actions.add_parser("prune", help="delete old recordings (recorded in the audit log)")
    p.add_argument(
        "--older-than",
        type=_age_days,
        required=True,
        metavar="AGE",
        help="age to prune: days as a number (90) or a duration (7d, 36h, 90m)",
    )
    p.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    _config_arg(p)
    p.set_defaults(func=_cmd_prune)
