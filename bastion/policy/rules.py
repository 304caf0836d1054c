"""Rules: parsed once from TOML into frozen objects with precompiled matchers.

A rule matches a unit when every condition it states holds (absent conditions hold trivially).
Within one unit the first matching rule wins; the engine combines units by severity.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from bastion.errors import ConfigError
from bastion.policy.model import ACTIONS, Action, Context

_RULE_KEYS = frozenset(
    {"id", "action", "reason", "program", "subcommand", "flags_any", "flags_all", "flags_none",
     "options", "args_any", "args_none", "argv_regex", "paths_any", "paths_all", "tags_any",
     "tags_all", "tags_none", "wrappers_any", "stdin", "principals", "targets", "target_labels",
     "logins", "channels", "allow_dynamic", "match", "not_match", "approvers", "approvals",
     "timeout", "mode", "kind"}
)
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class UnitView:
    """What a rule looks at: the normalised unit plus derived facts."""

    kind: str
    argv: tuple[str, ...]
    static: tuple[bool, ...]
    path: tuple[str, ...]
    flags: frozenset[str]
    options: Mapping[str, Sequence[str]]
    positionals: tuple[str, ...]
    path_classes: tuple[frozenset[str], ...]  # one set per path-like argument
    tags: frozenset[str]
    wrappers: tuple[str, ...]
    stdin: str | None


@dataclass(frozen=True)
class Rule:
    id: str
    action: Action
    reason: str
    kind: str = "command"
    program: tuple[str, ...] = ()
    subcommand: tuple[tuple[str, ...], ...] = ()
    flags_any: frozenset[str] = frozenset()
    flags_all: frozenset[str] = frozenset()
    flags_none: frozenset[str] = frozenset()
    options: tuple[tuple[str, tuple[str, ...]], ...] = ()
    args_any: tuple[str, ...] = ()
    args_none: tuple[str, ...] = ()
    argv_regex: re.Pattern[str] | None = None
    paths_any: frozenset[str] = frozenset()
    paths_all: frozenset[str] = frozenset()
    tags_any: frozenset[str] = frozenset()
    tags_all: frozenset[str] = frozenset()
    tags_none: frozenset[str] = frozenset()
    wrappers_any: frozenset[str] = frozenset()
    stdin: tuple[str, ...] = ()
    principals: frozenset[str] = frozenset()
    targets: tuple[str, ...] = ()
    target_labels: tuple[tuple[str, str], ...] = ()
    logins: tuple[str, ...] = ()
    channels: frozenset[str] = frozenset()
    allow_dynamic: bool = False
    match: tuple[str, ...] = ()
    not_match: tuple[str, ...] = ()
    approvers: tuple[str, ...] = ()
    approvals: int | None = None
    timeout: float | None = None
    mode: str | None = None
    literal_programs: frozenset[str] = field(default=frozenset())

    def in_scope(self, ctx: Context) -> bool:
        if self.principals and not self.principals.intersection(ctx.principals):
            return False
        if self.targets and not (ctx.target and any(fnmatchcase(ctx.target, t)
                                                    for t in self.targets)):
            return False
        for key, pattern in self.target_labels:
            value = ctx.target_labels.get(key)
            if value is None or not fnmatchcase(value, pattern):
                return False
        if self.logins and not (ctx.login and any(fnmatchcase(ctx.login, g)
                                                  for g in self.logins)):
            return False
        return not (self.channels and ctx.channel not in self.channels)

    def matches(self, u: UnitView) -> bool:
        if u.kind != self.kind:
            return False
        if self.program and not (u.argv and any(fnmatchcase(u.argv[0], p) for p in self.program)):
            return False
        if self.subcommand and not any(_prefix(u.path, s) for s in self.subcommand):
            return False
        if self.flags_any and not (self.flags_any & u.flags):
            return False
        if self.flags_all and not (self.flags_all <= u.flags):
            return False
        if self.flags_none and (self.flags_none & u.flags):
            return False
        for key, patterns in self.options:
            values = u.options.get(key, ())
            if not any(fnmatchcase(v.lower(), p) for v in values for p in patterns):
                return False
        if self.args_any and not any(
            fnmatchcase(a, p) for a in u.argv[1:] for p in self.args_any
        ):
            return False
        if self.args_none and any(fnmatchcase(a, p) for a in u.argv[1:] for p in self.args_none):
            return False
        if self.argv_regex is not None and not self.argv_regex.search(" ".join(u.argv)):
            return False
        if self.paths_any and not any(self.paths_any & c for c in u.path_classes):
            return False
        if self.paths_all and not (
            u.path_classes and all(self.paths_all & c for c in u.path_classes)
        ):
            return False
        if self.tags_any and not (self.tags_any & u.tags):
            return False
        if self.tags_all and not (self.tags_all <= u.tags):
            return False
        if self.tags_none and (self.tags_none & u.tags):
            return False
        if self.wrappers_any and not self.wrappers_any.intersection(u.wrappers):
            return False
        return not (self.stdin and (u.stdin or "none") not in self.stdin)


def _prefix(path: tuple[str, ...], want: tuple[str, ...]) -> bool:
    return len(path) >= len(want) and all(
        fnmatchcase(p, w) for p, w in zip(path, want, strict=False)
    )


# -- parsing -------------------------------------------------------------------------------------
def _strs(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(where, "expected a string or a list of strings")


def parse_rule(raw: Mapping[str, Any], where: str, durations: Any) -> Rule:
    """Build one rule from its TOML table; ``durations`` parses ``timeout`` (e.g. '5m')."""
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise ConfigError(where, f"unknown key(s): {', '.join(sorted(unknown))}")
    rid = raw.get("id")
    if not isinstance(rid, str) or not _ID.match(rid):
        raise ConfigError(where, "every rule needs an id (lower-case letters, digits, . _ -)")
    where = f"{where} ({rid})"
    action = raw.get("action")
    if action not in ACTIONS:
        raise ConfigError(where, f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    reason = raw.get("reason", rid)
    if not isinstance(reason, str):
        raise ConfigError(f"{where}.reason", "expected a string")
    kind = raw.get("kind", "command")
    if kind not in ("command", "redirect", "assign"):
        raise ConfigError(f"{where}.kind", "expected 'command', 'redirect' or 'assign'")

    def s(key: str) -> tuple[str, ...]:
        return _strs(raw[key], f"{where}.{key}") if key in raw else ()

    options_raw = raw.get("options", {})
    if not isinstance(options_raw, dict):
        raise ConfigError(f"{where}.options", "expected a table of option = [globs]")
    options = tuple(
        (k, tuple(p.lower() for p in _strs(v, f"{where}.options.{k}")))
        for k, v in options_raw.items()
    )
    labels_raw = raw.get("target_labels", {})
    if not isinstance(labels_raw, dict) or not all(
        isinstance(v, str) for v in labels_raw.values()
    ):
        raise ConfigError(f"{where}.target_labels", "expected a table of label = glob")
    regex = None
    if "argv_regex" in raw:
        try:
            regex = re.compile(_strs(raw["argv_regex"], f"{where}.argv_regex")[0])
        except re.error as exc:
            raise ConfigError(f"{where}.argv_regex", f"bad regex: {exc}") from None
    approvals = raw.get("approvals")
    if approvals is not None and (not isinstance(approvals, int) or isinstance(approvals, bool)
                                  or approvals < 1):
        raise ConfigError(f"{where}.approvals", "expected a positive integer")
    mode = raw.get("mode")
    if mode is not None and mode not in ("wait", "defer"):
        raise ConfigError(f"{where}.mode", "expected 'wait' or 'defer'")
    timeout = durations(raw["timeout"], f"{where}.timeout") if "timeout" in raw else None
    allow_dynamic = raw.get("allow_dynamic", False)
    if not isinstance(allow_dynamic, bool):
        raise ConfigError(f"{where}.allow_dynamic", "expected true or false")
    programs = s("program")
    return Rule(
        id=rid,
        action=action,
        reason=reason,
        kind=kind,
        program=programs,
        subcommand=tuple(tuple(x.split()) for x in s("subcommand")),
        flags_any=frozenset(s("flags_any")),
        flags_all=frozenset(s("flags_all")),
        flags_none=frozenset(s("flags_none")),
        options=options,
        args_any=s("args_any"),
        args_none=s("args_none"),
        argv_regex=regex,
        paths_any=frozenset(s("paths_any")),
        paths_all=frozenset(s("paths_all")),
        tags_any=frozenset(s("tags_any")),
        tags_all=frozenset(s("tags_all")),
        tags_none=frozenset(s("tags_none")),
        wrappers_any=frozenset(s("wrappers_any")),
        stdin=s("stdin"),
        principals=frozenset(s("principals")),
        targets=s("targets"),
        target_labels=tuple(labels_raw.items()),
        logins=s("logins"),
        channels=frozenset(s("channels")),
        allow_dynamic=allow_dynamic,
        match=s("match"),
        not_match=s("not_match"),
        approvers=s("approvers"),
        approvals=approvals,
        timeout=timeout,
        mode=mode,
        literal_programs=frozenset(p for p in programs if not any(c in p for c in "*?[")),
    )
