"""`bastion policy check|test`: explain decisions, batch-classify JSON lines, run rule examples.

Exit status of `check -- COMMAND`: 0 allow, 1 review, 2 deny; a BastionError (e.g. a missing
policy file) is reported by bastion.cli as one line and 3, a usage error as 64.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bastion.errors import BastionError
from bastion.policy.engine import DEFAULT_POLICY_PATH, Policy
from bastion.policy.loader import example_count, load_policy, run_examples
from bastion.policy.model import SEVERITY, Context

EXIT_STATUS = {"allow": 0, "review": 1, "deny": 2}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("policy", help="command gate policy tools")
    sub = parser.add_subparsers(dest="policy_command", metavar="ACTION")
    sub.required = True
    check = sub.add_parser("check", help="explain the decision for a command (exit 0/1/2)")
    check.add_argument("--policy", type=Path, default=DEFAULT_POLICY_PATH)
    check.add_argument("--json", action="store_true", help="print the decision as JSON")
    check.add_argument("--jsonl", action="store_true",
                       help='read {"cmd": ...} JSON lines on stdin, write one decision per line')
    check.add_argument("--principal", action="append", default=[])
    check.add_argument("--target")
    check.add_argument("--login")
    check.add_argument("--channel", choices=("exec", "shell"), default="exec")
    check.add_argument("command", nargs=argparse.REMAINDER)
    check.set_defaults(func=_check)
    test = sub.add_parser("test", help="run every rule's examples")
    test.add_argument("--policy", type=Path, default=DEFAULT_POLICY_PATH)
    test.set_defaults(func=_test)


def _check(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy)
    if args.jsonl:
        return _jsonl(policy, args)
    words = list(args.command)
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        raise BastionError("policy check: give a command after --, or use --jsonl")
    line = " ".join(words)
    ctx = Context(principals=tuple(args.principal) or ("agents",), target=args.target,
                  login=args.login, channel=args.channel)
    d = policy.decide(line, ctx)
    if args.json:
        print(json.dumps(d.to_json(), ensure_ascii=False))
    else:
        print(f"decision: {d.action}")
        print(f"rules:    {', '.join(d.rules) or '-'}")
        print(f"reason:   {d.reason}")
        for u in d.units:
            argv = " ".join(u.argv) if u.argv else "(line)"
            print(f"  - {u.action:6} {u.rule:24} {argv!r}: {u.reason}")
            if u.argv[:1] in ((">",), ("<",)) and len(u.argv) == 2:
                # a redirect, or a path effect of a declared tool's option: say which, and why
                classes = ", ".join(sorted(policy.classifier.classify(u.argv[1], ctx.login)))
                print(f"      {u.text} [path classes: {classes or '-'}]")
        if d.review is not None:
            r = d.review
            print(f"review:   approvers={','.join(r.approvers) or '-'} approvals={r.approvals} "
                  f"timeout={r.timeout} mode={r.mode}")
    return EXIT_STATUS[d.action]


def _jsonl(policy: Policy, args: argparse.Namespace) -> int:
    worst = "allow"
    for n, raw in enumerate(sys.stdin, 1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
            if not isinstance(item, dict) or not isinstance(item.get("cmd"), str):
                raise ValueError('expected an object with a string "cmd"')
            ctx = _context(item, args)
        except (ValueError, TypeError) as exc:
            print(json.dumps({"line": n, "error": str(exc)}), flush=False)
            continue
        d = policy.decide(item["cmd"], ctx)
        out: dict[str, Any] = {"cmd": item["cmd"], "decision": d.action, "rules": list(d.rules),
                               "reason": d.reason}
        if "id" in item:
            out["id"] = item["id"]
        print(json.dumps(out, ensure_ascii=False))
        if SEVERITY[d.action] > SEVERITY[worst]:
            worst = d.action
    sys.stdout.flush()
    return 0


def _context(item: dict[str, Any], args: argparse.Namespace) -> Context:
    principals = item.get("principals", args.principal or ["agents"])
    if isinstance(principals, str):
        principals = [principals]
    if not isinstance(principals, list) or not all(isinstance(p, str) for p in principals):
        raise ValueError("principals must be a list of strings")
    labels = item.get("target_labels", {})
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ValueError("target_labels must be an object of strings")
    channel = item.get("channel", args.channel)
    if channel not in ("exec", "shell"):
        raise ValueError("channel must be 'exec' or 'shell'")
    for key in ("target", "login", "cwd"):
        if item.get(key) is not None and not isinstance(item[key], str):
            raise ValueError(f"{key} must be a string")
    return Context(principals=tuple(principals), target=item.get("target", args.target),
                   target_labels=labels, login=item.get("login", args.login), channel=channel,
                   cwd=item.get("cwd"))


def _test(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy, check_examples=False)
    failures = run_examples(policy)
    total = example_count(policy)
    for f in failures:
        print(f"FAIL {f}")
    tools = len({id(d) for d in policy.tools.tools.values()})
    print(f"{total - len(failures)}/{total} examples passed in {len(policy.rules)} rules and "
          f"{tools} tool declarations")
    return 1 if failures else 0
