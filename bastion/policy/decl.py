"""Tool declarations: what each option, operand and script feature of a tool does, as data.

A declaration (``config/tools/*.toml``, see docs/policy.md "Adding a tool") is validated and
precompiled here once at load; ``options.py`` parses argv with it and ``toolgate.py`` turns the
effects into facts the rules judge. Every error names the file, the tool and the key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from bastion.errors import ConfigError
from bastion.policy.model import ACTIONS, Action

# What an option's value, a flag or an operand does. Path effects are judged by path class;
# ``runs-shell`` values go back through the gate as a shell line; ``script`` values go to the
# tool's scanner; ``runs``, ``network`` and ``secrets`` hold the unit for review.
# Network effects (docs/policy.md "Hosts and network effects"): ``url`` is a place the tool
# connects to; ``sends`` a file whose content goes there; ``data`` a request body (curl's
# ``@FILE``, ``name=@FILE``, ``name=<FILE`` forms name a file); ``data-file`` counts only in
# those forms (``-H @FILE``); ``remote-src``/``remote-dst`` are scp/rsync ``[user@]host:path``
# operands (a local one is a read or a write); ``sends-to`` is a URL or ``host:path`` that
# receives the tool's own data (git push URL; a bare word is a configured remote's name).
NET_EFFECTS = frozenset({"url", "sends", "data", "data-file", "remote-src", "remote-dst",
                         "sends-to"})
EFFECTS = frozenset({"none", "reads", "writes", "runs-shell", "runs", "network", "secrets",
                     "chdir", "script", "script-file", "pattern", "changes", "unknown",
                     "setting", "command", "code-file", *NET_EFFECTS})
VALUE_EFFECTS = EFFECTS
FLAG_EFFECTS = frozenset({"none", "runs", "network", "secrets", "changes", "unknown"})
OPERAND_EFFECTS = frozenset({"none", "reads", "writes", "runs-shell", "runs", "network",
                             "secrets", "chdir", "script", "pattern", "changes", "unknown",
                             "setting", "command", "code-file", *NET_EFFECTS})
# What a ``settings`` entry may do (a config key: git -c KEY=VALUE, git config KEY VALUE).
SETTING_EFFECTS = frozenset({"none", "runs", "network", "secrets", "changes", "unknown"})
STYLES = frozenset({"gnu", "posix", "single-dash"})
SCANNERS = frozenset({"sed", "awk", "gawk", "jq", "less", "yq", "dns"})
_TOOL_KEYS = frozenset({"name", "aliases", "style", "unknown", "options", "operands", "scanner",
                        "commands", "inherit_options", "reason", "words", "bundled",
                        "assignments", "examples", "tags", "settings", "effect", "without",
                        "options_first", "open_commands", "at_files"})
_OPTION_KEYS = frozenset({"value", "effect", "operands", "sandbox", "values", "tag", "last"})
_OPERAND_KEYS = frozenset({"each", "first", "rest", "last", "max", "values", "none_given"})
_VALUE_KINDS = frozenset({"none", "required", "optional", "pair", "pair-first"})


@dataclass(frozen=True)
class OptionSpec:
    """One option (all its spellings). ``effect`` is the value's effect, or the flag's own."""

    names: tuple[str, ...]
    value: str = "none"  # none | required | optional | pair (NAME VALUE) | pair-first (FILE X)
    effect: str = "none"
    operands: str | None = None  # this option turns every operand into this effect
    sandbox: bool = False  # the tool's script features that run or write are disabled
    values: tuple[tuple[str, str], ...] = ()  # (glob, effect) on the LAST value given
    tag: str | None = None  # a unit tag rules can test (tags_any)
    last: bool = False  # every word after this option belongs to what it names (python -c/-m)

    @property
    def canonical(self) -> str:
        return self.names[0]


@dataclass(frozen=True)
class OperandSpec:
    """Effects of operands: by position (``first``), the last one (``last``, when there are at
    least two), every other one (``rest``); ``max`` operands at most (``None``: any number)."""

    first: tuple[str, ...] = ()
    rest: str | None = "unknown"
    last: str | None = None
    max: int | None = None
    values: tuple[tuple[str, str], ...] = ()  # (glob, effect): decides every operand's effect
    # With no operand at all, this effect applies to the working directory `.` (patch
    # without ORIGFILE writes the files its diff names there).
    none_given: str | None = None


@dataclass(frozen=True)
class ToolDecl:
    name: str
    source: str
    style: str = "gnu"
    unknown: Action = "review"
    reason: str = ""
    aliases: tuple[str, ...] = ()
    options: Mapping[str, OptionSpec] = field(default_factory=dict)  # every spelling -> spec
    longs: tuple[str, ...] = ()  # long spellings, for unambiguous abbreviations (gnu)
    words: Mapping[str, OptionSpec] = field(default_factory=dict)  # exact non-dash words
    operands: OperandSpec = OperandSpec()
    scanner: str | None = None
    commands: Mapping[str, ToolDecl] = field(default_factory=dict)
    inherit_options: bool = False  # parent options are also accepted after this subcommand
    bundled: bool = False  # the first word may be a dash-less cluster (`tar xzf a.tgz`)
    assignments: Mapping[str, str] = field(default_factory=dict)  # NAME=value operands (dd)

    def assignment_effect(self, name: str) -> str | None:
        """Effect of a ``NAME=value`` operand: the exact name, else the first glob that matches
        (``"*!"``); make's ``NAME:=``, ``NAME+=``, ``NAME?=`` name NAME."""
        name = name.rstrip(":+?")
        effect = self.assignments.get(name)
        if effect is None:
            effect = next((e for g, e in self.assignments.items()
                           if any(c in g for c in "*?[") and fnmatchcase(name, g)), None)
        return effect
    examples: tuple[tuple[str, str], ...] = ()  # (decision, line), run by `policy test`/load
    tags: tuple[str, ...] = ()  # unit tags every use of this tool (or subcommand) gets
    # Config keys a ``setting`` value or operand may name: (lower-case glob, effect), first
    # match wins, no match is unknown. Subcommands share their tool's table.
    settings: tuple[tuple[str, str], ...] = ()
    options_first: bool = False  # options stop at the first operand (go run PKG ARGS...)
    open_commands: bool = False  # a word that is not a declared subcommand is an operand
    # `@FILE` (or `--opt=@FILE`) anywhere in argv loads that file's content as the value
    # (az CLI): each is a read of FILE, `@-` reads stdin.
    at_files: bool = False
    # (yarn SCRIPT, pnpm SCRIPT: the package's own scripts)
    effect: str = "none"  # what running this (sub)command does, whatever its options
    # (spellings, effect): the effect applies when none of the spellings is given
    # (`git commit` without -m/-F/-C/--no-edit opens an editor).
    without: tuple[tuple[frozenset[str], str], ...] = ()

    def setting_effect(self, key: str) -> str:
        """Effect of setting config key ``key`` (case-insensitive, as git compares keys)."""
        low = key.lower()
        for glob, effect in self.settings:
            if fnmatchcase(low, glob):
                return effect
        return "unknown"

    def resolve_long(self, name: str) -> OptionSpec | str | None:
        """Exact long option, or its unique abbreviation (gnu); 'ambiguous' when several match."""
        spec = self.options.get(name)
        if spec is not None or self.style != "gnu":
            return spec
        hits = {self.options[n].canonical for n in self.longs if n.startswith(name)}
        if len(hits) == 1:
            return self.options[next(n for n in self.longs if n.startswith(name))]
        return "ambiguous" if hits else None


@dataclass(frozen=True)
class ToolTable:
    """Every declared tool by program name (aliases included)."""

    tools: Mapping[str, ToolDecl] = field(default_factory=dict)

    def get(self, program: str) -> ToolDecl | None:
        return self.tools.get(program)


# -- loading ---------------------------------------------------------------------------------
def load_tool_files(paths: list[Path], where: str) -> ToolTable:
    """Load every declaration file; a name declared twice is an error."""
    tools: dict[str, ToolDecl] = {}
    for path in paths:
        src = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(where, f"tool declaration file not found: {src}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(src, f"cannot read: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(src, f"not valid TOML: {exc}") from None
        extra = set(data) - {"tool"}
        if extra:
            raise ConfigError(src, f"unknown top-level key(s): {', '.join(sorted(extra))} "
                                   "(expected [[tool]] tables)")
        raw_tools = data.get("tool", [])
        if not isinstance(raw_tools, list):
            raise ConfigError(src, "tool: expected [[tool]] tables")
        for n, raw in enumerate(raw_tools):
            decl = parse_tool(raw, f"{src}: tool[{n}]", src)
            for name in (decl.name, *decl.aliases):
                if name in tools:
                    raise ConfigError(f"{src}: tool {decl.name}",
                                      f"{name!r} is already declared in {tools[name].source}")
                tools[name] = decl
    return ToolTable(tools)


def parse_tool(raw: Any, where: str, source: str, parent: str = "",
               parent_style: str = "gnu",
               parent_settings: tuple[tuple[str, str], ...] = ()) -> ToolDecl:
    if not isinstance(raw, dict):
        raise ConfigError(where, "expected a table")
    name = raw.get("name")
    if not isinstance(name, str) or not name or " " in name:
        raise ConfigError(where, "every tool needs a name (one word)")
    full = f"{parent} {name}".strip()
    where = f"{source}: tool {full}"
    unknown_keys = set(raw) - _TOOL_KEYS
    if unknown_keys:
        raise ConfigError(where, f"unknown key(s): {', '.join(sorted(unknown_keys))}")
    aliases = _strs(raw.get("aliases", []), f"{where}: aliases")
    style = raw.get("style", parent_style)  # a subcommand inherits its tool's style
    if style not in STYLES:
        raise ConfigError(f"{where}: style", f"expected one of {', '.join(sorted(STYLES))}, "
                                             f"got {style!r}")
    unknown = raw.get("unknown", "review")
    if unknown not in ACTIONS or unknown == "allow":
        raise ConfigError(f"{where}: unknown", f"expected 'review' or 'deny', got {unknown!r}")
    reason = raw.get("reason", "")
    if not isinstance(reason, str):
        raise ConfigError(f"{where}: reason", "expected a string")
    scanner = raw.get("scanner")
    if scanner is not None and scanner not in SCANNERS:
        raise ConfigError(f"{where}: scanner",
                          f"expected one of {', '.join(sorted(SCANNERS))}, got {scanner!r}")
    options, longs = _options(raw.get("options", {}), f"{where}: options", style)
    words, _ = _options(raw.get("words", {}), f"{where}: words", style, words=True)
    operands = _operands(raw.get("operands", {}), f"{where}: operands")
    inherit = raw.get("inherit_options", False)
    if not isinstance(inherit, bool):
        raise ConfigError(f"{where}: inherit_options", "expected true or false")
    bundled = raw.get("bundled", False)
    if not isinstance(bundled, bool):
        raise ConfigError(f"{where}: bundled", "expected true or false")
    assignments = raw.get("assignments", {})
    if not isinstance(assignments, dict) or not all(
        isinstance(v, str) and v in OPERAND_EFFECTS for v in assignments.values()
    ):
        raise ConfigError(f"{where}: assignments", "expected a table of NAME = effect")
    examples_raw = raw.get("examples", {})
    if not isinstance(examples_raw, dict) or not set(examples_raw) <= set(ACTIONS):
        raise ConfigError(f"{where}: examples", "expected a table allow/review/deny = [lines]")
    examples = tuple((action, line) for action, lines in examples_raw.items()
                     for line in _strs(lines, f"{where}: examples.{action}"))
    tags = _strs(raw.get("tags", []), f"{where}: tags")
    options_first = raw.get("options_first", False)
    if not isinstance(options_first, bool):
        raise ConfigError(f"{where}: options_first", "expected true or false")
    open_commands = raw.get("open_commands", False)
    if not isinstance(open_commands, bool):
        raise ConfigError(f"{where}: open_commands", "expected true or false")
    at_files = raw.get("at_files", False)
    if not isinstance(at_files, bool) or (at_files and parent):
        raise ConfigError(f"{where}: at_files", "expected true or false, on a tool only")
    effect = raw.get("effect", "none")
    if effect not in FLAG_EFFECTS:
        raise ConfigError(f"{where}: effect", f"{effect!r} is not an effect of a command "
                                              f"(one of {', '.join(sorted(FLAG_EFFECTS))})")
    without_raw = raw.get("without", {})
    if not isinstance(without_raw, dict) or not all(
        isinstance(v, str) and v in FLAG_EFFECTS for v in without_raw.values()
    ):
        raise ConfigError(f"{where}: without", 'expected a table of "SPELLINGS" = effect')
    without = tuple((frozenset(k.split()), v) for k, v in without_raw.items())
    settings = parent_settings
    if "settings" in raw:
        if parent:
            raise ConfigError(f"{where}: settings", "only a tool (not a subcommand) has settings")
        settings = _settings(raw["settings"], f"{where}: settings")
    commands_raw = raw.get("commands", [])
    if not isinstance(commands_raw, list):
        raise ConfigError(f"{where}: commands", "expected [[tool.commands]] tables")
    commands: dict[str, ToolDecl] = {}
    for n, sub in enumerate(commands_raw):
        child = parse_tool(sub, f"{where}: commands[{n}]", source, full, style, settings)
        for cname in (child.name, *child.aliases):
            if cname in commands:
                raise ConfigError(f"{where}: commands", f"subcommand {cname!r} declared twice")
            commands[cname] = child
    return ToolDecl(name=name, source=source, style=style, unknown=unknown, reason=reason,
                    aliases=aliases, options=options, longs=longs, words=words,
                    operands=operands, scanner=scanner, commands=commands,
                    inherit_options=inherit, bundled=bundled, assignments=assignments,
                    examples=examples, tags=tags, settings=settings, effect=effect, without=without,
                    options_first=options_first, open_commands=open_commands,
                    at_files=at_files)


def _settings(raw: Any, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict):
        raise ConfigError(where, 'expected a table of "key glob" = effect')
    out: list[tuple[str, str]] = []
    for glob, effect in raw.items():
        if not isinstance(effect, str) or effect not in SETTING_EFFECTS:
            raise ConfigError(f"{where}.{glob!r}", f"{effect!r} is not an effect of a setting "
                                                   f"(one of {', '.join(sorted(SETTING_EFFECTS))})")
        out.append((glob.lower(), effect))
    return tuple(out)


def _options(raw: Any, where: str, style: str, *, words: bool = False
             ) -> tuple[dict[str, OptionSpec], tuple[str, ...]]:
    if not isinstance(raw, dict):
        raise ConfigError(where, 'expected a table of "SPELLINGS" = "flag" | "value" | {...}')
    out: dict[str, OptionSpec] = {}
    for key, value in raw.items():
        names = tuple(key.split())
        here = f"{where}.{key!r}"
        if not names:
            raise ConfigError(here, "empty option name")
        for n in names:
            if words:
                if n.startswith("-"):
                    raise ConfigError(here, f"{n!r}: words are exact non-option words")
            elif not n.startswith(("-", "+")) or n in ("-", "--"):
                raise ConfigError(here, f"{n!r} is not an option spelling (-x, --name, +)")
            elif style == "gnu" and n != "+" and not n.startswith("--") and len(n) != 2:
                raise ConfigError(here, f"{n!r}: a gnu short option is one letter (-x); use "
                                        "style = \"single-dash\" for -name options")
            if n in out:
                raise ConfigError(here, f"{n!r} declared twice")
        spec = _option(value, here, names)
        for n in names:
            out[n] = spec
    longs = tuple(n for n in out if n.startswith("--")) if style == "gnu" else ()
    return out, longs


def _option(value: Any, where: str, names: tuple[str, ...]) -> OptionSpec:
    if isinstance(value, str):
        shorthand = {"flag": "none", "value": "required", "optional": "optional"}
        if value not in shorthand:
            raise ConfigError(where, f"expected \"flag\", \"value\", \"optional\" or a table, "
                                     f"got {value!r}")
        return OptionSpec(names, shorthand[value])
    if not isinstance(value, dict):
        raise ConfigError(where, "expected \"flag\", \"value\", \"optional\" or a table")
    extra = set(value) - _OPTION_KEYS
    if extra:
        raise ConfigError(where, f"unknown key(s): {', '.join(sorted(extra))}")
    kind = value.get("value", "none")
    if kind not in _VALUE_KINDS:
        raise ConfigError(f"{where}.value",
                          f"expected one of {', '.join(sorted(_VALUE_KINDS))}, got {kind!r}")
    effect = value.get("effect", "none")
    allowed = VALUE_EFFECTS if kind != "none" else FLAG_EFFECTS
    if effect not in allowed:
        raise ConfigError(f"{where}.effect", f"{effect!r} is not an effect of "
                                             f"{'a value' if kind != 'none' else 'a flag'} "
                                             f"(one of {', '.join(sorted(allowed))})")
    operands = value.get("operands")
    if operands is not None and operands not in OPERAND_EFFECTS:
        raise ConfigError(f"{where}.operands", f"unknown effect {operands!r}")
    sandbox = value.get("sandbox", False)
    if not isinstance(sandbox, bool):
        raise ConfigError(f"{where}.sandbox", "expected true or false")
    values_raw = value.get("values", {})
    if not isinstance(values_raw, dict) or not all(
        isinstance(v, str) and v in EFFECTS for v in values_raw.values()
    ):
        raise ConfigError(f"{where}.values", "expected a table of \"glob\" = effect")
    if values_raw and kind == "none":
        raise ConfigError(f"{where}.values", "a flag without a value cannot map values")
    tag = value.get("tag")
    if tag is not None and not isinstance(tag, str):
        raise ConfigError(f"{where}.tag", "expected a string")
    last = value.get("last", False)
    if not isinstance(last, bool):
        raise ConfigError(f"{where}.last", "expected true or false")
    if effect == "command" or any(v == "command" for v in values_raw.values()):
        last = True  # the command is the value and every word after it
    return OptionSpec(names, kind, effect, operands, sandbox, tuple(values_raw.items()), tag,
                      last)


def _operands(raw: Any, where: str) -> OperandSpec:
    if isinstance(raw, str):
        if raw not in OPERAND_EFFECTS:
            raise ConfigError(where, f"unknown effect {raw!r}")
        return OperandSpec(rest=raw)
    if not isinstance(raw, dict):
        raise ConfigError(where, "expected an effect or a table {first, rest, last, max}")
    extra = set(raw) - _OPERAND_KEYS
    if extra:
        raise ConfigError(where, f"unknown key(s): {', '.join(sorted(extra))}")
    first = _strs(raw.get("first", []), f"{where}.first")
    for e in first:
        if e not in OPERAND_EFFECTS:
            raise ConfigError(f"{where}.first", f"unknown effect {e!r}")
    rest = raw.get("each", raw.get("rest", "unknown"))
    last = raw.get("last")
    for key, eff in (("rest", rest), ("last", last)):
        if eff is not None and eff not in OPERAND_EFFECTS:
            raise ConfigError(f"{where}.{key}", f"unknown effect {eff!r}")
    mx = raw.get("max")
    if mx is not None and (not isinstance(mx, int) or isinstance(mx, bool) or mx < 0):
        raise ConfigError(f"{where}.max", "expected a non-negative integer")
    values = raw.get("values", {})
    if not isinstance(values, dict) or not all(
        isinstance(v, str) and v in OPERAND_EFFECTS for v in values.values()
    ):
        raise ConfigError(f"{where}.values", "expected a table of \"glob\" = effect")
    none_given = raw.get("none_given")
    if none_given is not None and none_given not in ("reads", "writes", "unknown"):
        raise ConfigError(f"{where}.none_given", "expected reads, writes or unknown")
    return OperandSpec(first, rest, last, mx, tuple(values.items()), none_given)


def _strs(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(where, "expected a string or a list of strings")
