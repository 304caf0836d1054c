"""``bastion operators add|list|remove`` and ``bastion approvals list|show|approve|deny``."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bastion.approval.broker import ApprovalBroker
from bastion.approval.config import ApprovalsConfig, parse_approvals_config
from bastion.approval.model import ApprovalRequest, iso
from bastion.approval.render import display_text, escape_visible
from bastion.audit.errors import AuditError
from bastion.audit.store import AuditStore
from bastion.errors import BastionError

DEFAULT_CONFIG = "config/bastion.toml"


@dataclass(frozen=True)
class _Setup:
    db_path: Path
    config: ApprovalsConfig


def _setup(config_path: str) -> _Setup:
    from bastion.audit.cli import db_path_from_config
    from bastion.config import load_config

    config = load_config(config_path)
    return _Setup(db_path_from_config(config_path), parse_approvals_config(config.raw))


def _with_broker(args: argparse.Namespace, body: Callable[[ApprovalBroker], Awaitable[int]]) -> int:
    setup = _setup(args.config)

    async def run() -> int:
        try:
            audit = await AuditStore.open(setup.db_path)
        except AuditError as exc:
            raise BastionError(str(exc)) from None
        try:
            broker = await ApprovalBroker.open(audit.db, audit, setup.config)
            return await body(broker)
        except AuditError as exc:
            raise BastionError(str(exc)) from None
        finally:
            await audit.close()

    return asyncio.run(run())


# -- operators ------------------------------------------------------------------------------------


def _operators_add(args: argparse.Namespace) -> int:
    async def body(broker: ApprovalBroker) -> int:
        op = await broker.operators.add(
            args.name,
            groups=args.group or (),
            identities=args.identity or (),
            slack_id=args.slack_id,
            email=args.email,
        )
        import segno

        uri = op.provisioning_uri()
        out = sys.stdout
        out.write(uri + "\n")
        segno.make(uri, error="m").terminal(out=out, compact=True)
        groups = ", ".join(op.groups) or "(none: may approve rules that name no group)"
        out.write(
            f"Enrolled operator {op.name}; groups: {groups}.\n"
            "Scan the code (or paste the otpauth:// line) into an authenticator app now: "
            "the secret is not shown again.\n"
        )
        return 0

    return _with_broker(args, body)


def _operators_list(args: argparse.Namespace) -> int:
    async def body(broker: ApprovalBroker) -> int:
        ops = await broker.operators.list()
        if args.json:
            for op in ops:
                sys.stdout.write(orjson.dumps(op.public()).decode() + "\n")
            return 0
        if not ops:
            sys.stdout.write("no operators enrolled (bastion operators add NAME)\n")
        for op in ops:
            extra = "".join(
                f"  {label}={value}"
                for label, value in (
                    ("identities", ",".join(op.identities)),
                    ("slack", op.slack_id),
                    ("email", op.email),
                )
                if value
            )
            sys.stdout.write(f"{op.name:<20} groups={','.join(op.groups) or '-'}{extra}\n")
        return 0

    return _with_broker(args, body)


def _operators_remove(args: argparse.Namespace) -> int:
    async def body(broker: ApprovalBroker) -> int:
        await broker.operators.remove(args.name)
        sys.stdout.write(f"removed operator {args.name}\n")
        return 0

    return _with_broker(args, body)


# -- approvals ------------------------------------------------------------------------------------


def _v(value: object) -> str:
    """A field another party controls (the CA sets key ids, operators type reasons) made safe
    for a terminal: control characters, newlines and escape sequences shown as escapes."""
    return escape_visible(str(value))


def _summary(r: ApprovalRequest) -> str:
    line = display_text(r.command)
    if len(line) > 60:
        line = line[:57] + "..."
    return (
        f"{r.id}  {r.state:<9} {_v(r.requester_key_id)} -> {_v(r.login)}@{_v(r.target)}  "
        f"[{_v(','.join(r.rules))}]  {r.approvals}/{r.approvals_required}  {line}"
    )


def _details(r: ApprovalRequest) -> str:
    rows: list[tuple[str, Any]] = [
        ("request", r.id),
        ("state", r.state + (f" ({display_text(r.reason)})" if r.reason else "")),
        ("mode", r.mode),
        ("requester", f"{_v(r.requester_key_id)} (serial {r.requester_serial})"),
        ("principals", _v(", ".join(r.principals))),
        ("target", f"{_v(r.login)}@{_v(r.target)}"),
        ("session", _v(r.session_id or "-")),
        ("channel", r.channel_kind),
        ("command", display_text(r.command)),
        ("rules", _v(", ".join(r.rules))),
        ("why held", display_text(r.explanation) or "-"),
        ("approvers", _v(", ".join(r.approvers)) or "any enrolled operator"),
        ("approvals", f"{r.approvals} of {r.approvals_required}"),
        ("created", iso(r.created_at)),
        ("expires", iso(r.expires_at)),
        ("decided", iso(r.decided_at) or "-"),
        ("decided by", _v(", ".join(r.decided_by)) or "-"),
        ("link", r.operator_url or r.approve_url),  # operators only: it can decide
        ("status link", r.approve_url),
    ]
    if r.mode == "defer":
        rows.append(("usable until", iso(r.use_before) or "-"))
        rows.append(("used", iso(r.used_at) or "no"))
    text = "".join(f"{label + ':':<14}{value}\n" for label, value in rows)
    text += "units:\n" + "".join(f"  - {display_text(shlex.join(u))}\n" for u in r.units)
    if r.decisions:
        text += "decisions:\n" + "".join(
            f"  - {_v(d.operator)} {'approved' if d.approve else 'denied'} via {_v(d.via)} at "
            f"{iso(d.at)}{': ' + display_text(d.reason) if d.reason else ''}\n"
            for d in r.decisions
        )
    return text


async def _notifications(broker: ApprovalBroker, request_id: str) -> list[dict[str, Any]]:
    """Chat/webhook delivery status of a request (bastion.notify), if notifications exist."""
    try:
        from bastion.notify.store import load_deliveries
    except ImportError:
        return []
    return [d.to_json() for d in await load_deliveries(broker.db.conn, request_id)]


def _approvals_list(args: argparse.Namespace) -> int:
    async def body(broker: ApprovalBroker) -> int:
        requests = await broker.list(states=() if args.all else ("pending",), limit=args.limit)
        for r in requests:
            if args.json:
                sys.stdout.write(orjson.dumps(r.to_json()).decode() + "\n")
            else:
                sys.stdout.write(_summary(r) + "\n")
        if not requests and not args.json:
            sys.stdout.write("no pending requests\n" if not args.all else "no requests\n")
        # The signed list page, for operators only (valid 24 h); on stderr, so the list stays
        # one line per request for scripts.
        sys.stderr.write(f"operator list page: {broker.list_url()}\n")
        return 0

    return _with_broker(args, body)


def _approvals_show(args: argparse.Namespace) -> int:
    async def body(broker: ApprovalBroker) -> int:
        await broker.expire_due()
        r = await broker.get(args.id)
        if r is None:
            raise BastionError(f"no approval request {args.id}")
        notes = await _notifications(broker, r.id)
        if args.json:
            data = r.to_json()
            data["notifications"] = notes
            sys.stdout.write(orjson.dumps(data).decode() + "\n")
        else:
            sys.stdout.write(_details(r))
            if notes:
                sys.stdout.write(
                    "notifications:\n"
                    + "".join(
                        f"  - {_v(n['notifier'])} {_v(n['event'])}: {_v(n['state'])} after "
                        f"{n['attempts']} attempt(s)"
                        + (f" ({_v(n['error'])})" if n["error"] else "")
                        + f" at {n['updated_at']}\n"
                        for n in notes
                    )
                )
        return 0

    return _with_broker(args, body)


def _decide(approve: bool) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        async def body(broker: ApprovalBroker) -> int:
            outcome = await broker.decide(
                args.id,
                operator=args.operator,
                totp=args.totp,
                approve=approve,
                reason=args.reason or "",
                via="cli",
            )
            if outcome.state == "pending":
                sys.stdout.write(
                    f"{args.id}: approval recorded ({outcome.approvals} of {outcome.required}); "
                    "waiting for another operator\n"
                )
            else:
                sys.stdout.write(f"{args.id}: {outcome.state} by {', '.join(outcome.decided_by)}\n")
            return 0

        return _with_broker(args, body)

    return run


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def config_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", default=DEFAULT_CONFIG, help="bastion config file")

    ops = subparsers.add_parser("operators", help="enrol and list approval operators (TOTP)")
    ops_sub = ops.add_subparsers(dest="operators_command", metavar="ACTION")
    ops_sub.required = True
    add = ops_sub.add_parser("add", help="enrol an operator; prints the otpauth:// URI and a QR")
    add.add_argument("name")
    add.add_argument("--group", action="append", help="approver group (repeatable)")
    add.add_argument(
        "--identity",
        action="append",
        help="agent key ID or principal this operator acts as; they never approve it (repeatable)",
    )
    add.add_argument("--slack-id")
    add.add_argument("--email")
    config_arg(add)
    add.set_defaults(func=_operators_add)
    lst = ops_sub.add_parser("list", help="list operators (never their secrets)")
    lst.add_argument("--json", action="store_true")
    config_arg(lst)
    lst.set_defaults(func=_operators_list)
    rm = ops_sub.add_parser("remove", help="remove an operator")
    rm.add_argument("name")
    config_arg(rm)
    rm.set_defaults(func=_operators_remove)

    apr = subparsers.add_parser("approvals", help="list, show, approve or deny held commands")
    apr_sub = apr.add_subparsers(dest="approvals_command", metavar="ACTION")
    apr_sub.required = True
    a_list = apr_sub.add_parser("list", help="pending requests (--all: every state)")
    a_list.add_argument("--json", action="store_true")
    a_list.add_argument("--all", action="store_true")
    a_list.add_argument("--limit", type=int, default=100)
    config_arg(a_list)
    a_list.set_defaults(func=_approvals_list)
    show = apr_sub.add_parser("show", help="one request in full")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    config_arg(show)
    show.set_defaults(func=_approvals_show)
    for name, approve in (("approve", True), ("deny", False)):
        p = apr_sub.add_parser(name, help=f"{name} a request as a named operator (TOTP)")
        p.add_argument("id")
        p.add_argument("--operator", required=True)
        p.add_argument("--totp", required=True, help="the current code from the authenticator")
        p.add_argument("--reason", default="")
        config_arg(p)
        p.set_defaults(func=_decide(approve))
