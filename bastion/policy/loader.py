"""Load a policy file: TOML -> Policy, validated, with every rule's examples run."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.config import parse_duration
from bastion.errors import ConfigError
from bastion.policy.decl import ToolTable, load_tool_files
from bastion.policy.engine import DEFAULT_POLICY_PATH, Policy, example_context, matched_rules
from bastion.policy.hosts import HostClassifier
from bastion.policy.model import ACTIONS, Context
from bastion.policy.paths import BUILTIN_CLASSES, CONTAINER_CLASSES, PathClassifier
from bastion.policy.rules import Rule, parse_rule

_TOP_KEYS = frozenset({"policy", "paths", "hosts", "rules"})


@dataclass(frozen=True)
class ExampleFailure:
    rule: str
    example: str
    expected: str  # "match" | "not_match"
    got: str

    def __str__(self) -> str:
        if self.expected in ACTIONS:  # a tool declaration's example: the line's decision
            return f"{self.rule}: example {self.example!r} should be {self.expected} ({self.got})"
        want = "match" if self.expected == "match" else "not match"
        return f"rule {self.rule}: example {self.example!r} should {want} ({self.got})"


def load_policy(path: Path, *, check_examples: bool = True) -> Policy:
    """Read and validate a policy file; raises ConfigError naming file, rule and reason."""
    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(where, "policy file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(where, f"cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(where, f"not valid TOML: {exc}") from None
    policy = parse_policy(data, where, path.parent)
    if check_examples:
        failures = run_examples(policy)
        if failures:
            extra = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            raise ConfigError(where, f"{failures[0]}{extra}")
    return policy


def parse_policy(data: Mapping[str, Any], where: str = "<policy>", base: Path | None = None
                 ) -> Policy:
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(where, f"unknown top-level key(s): {', '.join(sorted(unknown))}")
    head = data.get("policy", {})
    if not isinstance(head, dict):
        raise ConfigError(f"{where}: policy", "expected a table")
    default = head.get("default", "review")
    if default not in ACTIONS:
        raise ConfigError(f"{where}: policy.default", f"expected one of {', '.join(ACTIONS)}")
    tools = _tools(head.get("tools", []), where, base or Path.cwd())
    extra = set(head) - {"version", "default", "tools"}
    if extra:
        raise ConfigError(f"{where}: policy", f"unknown key(s): {', '.join(sorted(extra))}")
    paths = data.get("paths", {})
    if not isinstance(paths, dict):
        raise ConfigError(f"{where}: paths", "expected a table of class = [globs]")
    table: dict[str, list[str]] = {}
    for name, globs in paths.items():
        if name in BUILTIN_CLASSES and name != "workspace":
            raise ConfigError(f"{where}: paths.{name}", "is a built-in class")
        if not isinstance(globs, list) or not all(isinstance(g, str) for g in globs):
            raise ConfigError(f"{where}: paths.{name}", "expected a list of glob strings")
        table[name] = globs
    hosts = data.get("hosts", {})
    if not isinstance(hosts, dict) or not all(
        isinstance(g, list) and all(isinstance(x, str) for x in g) for g in hosts.values()
    ):
        raise ConfigError(f"{where}: hosts", "expected a table of class = [host globs]")
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list):
        raise ConfigError(f"{where}: rules", "expected [[rules]] tables")
    rules: list[Rule] = []
    seen: set[str] = set()
    known_classes = (
        set(table)
        | set(BUILTIN_CLASSES)
        | {f"{name}-dir" for name in CONTAINER_CLASSES if name in table}
    )
    for n, raw in enumerate(raw_rules):
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: rules[{n}]", "expected a table")
        rule = parse_rule(raw, f"{where}: rules[{n}]", parse_duration)
        if rule.id in seen:
            raise ConfigError(f"{where}: rules[{n}] ({rule.id})", "duplicate rule id")
        bad = (rule.paths_any | rule.paths_all) - known_classes
        if bad:
            raise ConfigError(f"{where}: rules[{n}] ({rule.id})",
                              f"unknown path class(es): {', '.join(sorted(bad))}")
        seen.add(rule.id)
        rules.append(rule)
    return Policy(tuple(rules), default, PathClassifier.build(table), where, tools=tools,
                  hosts=HostClassifier.build(hosts))


def _tools(raw: Any, where: str, base: Path) -> ToolTable:
    """``[policy] tools = ["tools"]``: files or directories (every ``*.toml`` in them, sorted),
    relative to the policy file; a relative entry missing there is taken from the shipped
    configuration directory (``config/`` next to the shipped policy) when it exists there."""
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ConfigError(f"{where}: policy.tools", "expected a list of files or directories")
    files: list[Path] = []
    for entry in raw:
        p = (base / entry) if not Path(entry).is_absolute() else Path(entry)
        shipped = DEFAULT_POLICY_PATH.parent / entry
        if not p.exists() and not Path(entry).is_absolute() and shipped.exists():
            p = shipped  # a copied policy file without its tools directory: the shipped ones
        if p.is_dir():
            files.extend(sorted(p.glob("*.toml")))
        elif p.is_file():
            files.append(p)
        else:
            raise ConfigError(f"{where}: policy.tools", f"no such file or directory: {p}")
    return load_tool_files(files, where)


def run_examples(policy: Policy) -> list[ExampleFailure]:
    """Run every rule's match/not_match examples; an example 'matches' when the rule is the
    first matching rule for at least one unit of the line."""
    failures: list[ExampleFailure] = []
    for rule in policy.rules:
        ctx = example_context(rule)
        for example in rule.match:
            d = policy.decide(example, ctx)
            if rule.id not in matched_rules(d):
                got = ", ".join(sorted(matched_rules(d))) or "no rule"
                failures.append(ExampleFailure(rule.id, example, "match", f"got {got}"))
        for example in rule.not_match:
            d = policy.decide(example, ctx)
            if rule.id in matched_rules(d):
                failures.append(ExampleFailure(rule.id, example, "not_match", "it matched"))
    seen: set[int] = set()
    ctx = Context(principals=("agents",), target="example-host", login="azureuser")
    for decl in policy.tools.tools.values():
        if id(decl) in seen:
            continue
        seen.add(id(decl))
        for action, line in decl.examples:
            d = policy.decide(line, ctx)
            if d.action != action:
                failures.append(ExampleFailure(f"tool {decl.name} ({decl.source})", line, action,
                                               f"got {d.action}: {d.reason}"))
    return failures


def example_count(policy: Policy) -> int:
    """Rule examples plus tool declaration examples."""
    tools = {id(d): len(d.examples) for d in policy.tools.tools.values()}
    return sum(len(r.match) + len(r.not_match) for r in policy.rules) + sum(tools.values())
