"""Parse a command's argv the way the tool itself does, with its declaration (``decl.py``).

The result is a list of effects (what each option value, flag, operand and script feature
does) and the words that were not understood. Anything undeclared is an ``unknown`` effect, which
the gate turns into the tool's unknown decision: the parse fails closed, word by word.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from bastion.policy.decl import OptionSpec, ToolDecl


@dataclass(frozen=True)
class Effect:
    kind: str  # an effect name from decl.EFFECTS
    value: str  # the path, program, script or word concerned ("" when none)
    static: bool  # the value is known before run time
    source: str  # which option, operand or script feature produced it, for explanations
    # A ``command`` effect: the argv the gate judges as a command of its own (poetry run CMD).
    argv: tuple[str, ...] = ()
    argv_static: tuple[bool, ...] = ()


@dataclass
class Parsed:
    effects: list[Effect] = field(default_factory=list)
    path: tuple[str, ...] = ()  # the subcommand path taken
    sandbox: bool = False
    tags: set[str] = field(default_factory=set)  # user tags declared with `tag = ...`
    script_given: bool = False  # -e/-f/--expression gave the script: no script operand
    operand_effect: str | None = None  # an option (sed -i, find -delete) set every operand's
    scripts: list[tuple[str, bool, str]] = field(default_factory=list)  # (text, static, source)
    given: list[tuple[OptionSpec, str | None, bool]] = field(default_factory=list)
    not_paths: set[int] = field(default_factory=set)  # argv indices of scripts and patterns
    spelled: set[str] = field(default_factory=set)  # every option spelling given (`without`)
    stop: bool = False  # a `last` option was given: the words after it are not parsed here
    rest_at: int | None = None  # argv index of the first word after that option

    def unknown(self, what: str) -> None:
        self.effects.append(Effect("unknown", what, True, what))


def parse_argv(decl: ToolDecl, argv: list[str], static: list[bool]) -> Parsed:
    """Effects of ``argv`` (argv[0] is the program) under ``decl``."""
    out = Parsed()
    _parse_level(decl, argv, static, 1, out, {}, argv[0])
    _check_values(argv, out)
    _finish(decl, argv, static, out)
    return out


def _finish(decl: ToolDecl, argv: list[str], static: list[bool], out: Parsed) -> None:
    """Resolve ``setting`` effects by config key and complete option-given commands."""
    done: list[Effect] = []
    rest = out.rest_at if out.rest_at is not None else len(argv)
    for e in out.effects:
        if e.kind == "setting":
            key = e.value.partition("=")[0]
            if not e.static:
                done.append(Effect("unknown", e.value, False,
                                   f"{e.source}: the setting is only known at run time"))
                continue
            effect = decl.setting_effect(key)
            if effect == "unknown":
                done.append(Effect("unknown", e.value, True,
                                   f"{e.source}: setting {key!r} is not declared"))
            elif effect != "none":
                done.append(Effect(effect, e.value, True, f"{e.source} {key}"))
        elif e.kind == "command" and not e.argv:  # given by an option: value + the rest
            done.append(Effect("command", e.value, e.static, e.source,
                               (e.value, *argv[rest:]), (e.static, *static[rest:])))
        else:
            done.append(e)
    out.effects = done


def _check_values(argv: list[str], out: Parsed) -> None:
    # Every occurrence of a value-mapped option counts: a later `--x=safe` cannot hide an
    # earlier unsafe value (nor the reverse, for tools where the last one wins).
    for spec, value, vstatic in out.given:
        if not spec.values or value is None:
            continue
        if not vstatic:
            out.unknown(f"{argv[0]} {spec.canonical}: the value is only known at run time")
            continue
        for glob, effect in spec.values:
            if fnmatchcase(value, glob):
                if effect == "command":
                    out.effects.append(Effect("command", value, True,
                                              f"{argv[0]} {spec.canonical}"))
                elif effect != "none":
                    out.effects.append(Effect(effect, value, True, f"{argv[0]} {spec.canonical}"))
                break
        else:
            out.unknown(f"{argv[0]} {spec.canonical}: value {value!r} is not declared")



def _parse_level(decl: ToolDecl, argv: list[str], static: list[bool], start: int, out: Parsed,
                 inherited: Mapping[str, OptionSpec], label: str) -> None:
    options: Mapping[str, OptionSpec] = (
        {**inherited, **decl.options} if inherited else decl.options
    )
    out.tags.update(decl.tags)
    operand_at: list[int] = []
    n = len(argv)
    i = start
    # `--` seen, or a POSIX tool reached its first operand; a level that takes options first
    # but declares none passes every word on (`yarn test --watch`: the script's arguments).
    ended = decl.options_first and not options and not decl.words
    if decl.bundled and i < n and static[i] and argv[i][:1] not in ("-", "") and (
        argv[i].isalpha() and all(f"-{c}" in options for c in argv[i])
    ):
        i = _bundle(options, argv, static, i, out, label)
    while i < n:
        a = argv[i]
        if not ended and a in decl.words:
            _apply(decl.words[a], None, True, a, out, label)
            i += 1
            continue
        if ended or a == "-" or not a.startswith(("-", "+")) or (
            a.startswith("+") and "+" not in options
        ):
            if decl.commands and not operand_at:
                sub = decl.commands.get(a) if static[i] else None
                if sub is None and not (decl.open_commands and static[i]):
                    out.unknown(f"{label}: subcommand {a!r} is not declared")
                    return
                if sub is not None:  # else (open_commands) an operand here: yarn SCRIPT
                    out.path = (*out.path, sub.name)
                    parent = options if sub.inherit_options else {}
                    _parse_level(sub, argv, static, i + 1, out, parent, f"{label} {sub.name}")
                    return
            operand_at.append(i)
            if decl.style == "posix" or decl.options_first:
                ended = True
            i += 1
            continue
        if a == "--":
            ended = True
            i += 1
            continue
        if not static[i]:
            out.unknown(f"{label}: an option word is only known at run time")
            i += 1
            continue
        if a.startswith("+"):
            _apply(options["+"], a[1:], True, "+", out, label)
            i += 1
            continue
        if decl.style == "single-dash" or a.startswith("--"):
            i = _long(decl, options, argv, static, i, out, label)
        else:
            i = _short_cluster(options, argv, static, i, out, label)
        if out.stop:  # python -c CODE ARGS, -m MODULE ARGS: the rest is not ours to parse
            out.rest_at = i
            break
    _operands(decl, argv, static, operand_at, out, label)
    if decl.effect != "none":
        out.effects.append(Effect(decl.effect, label, True, label))
    for names, effect in decl.without:
        if effect != "none" and not names & out.spelled:
            out.effects.append(Effect(effect, label, True,
                                      f"{label} without {' / '.join(sorted(names))}"))


def _long(decl: ToolDecl, options: Mapping[str, OptionSpec], argv: list[str], static: list[bool],
          i: int, out: Parsed, label: str) -> int:
    a = argv[i]
    name, eq, value = a.partition("=")
    spec: OptionSpec | str | None
    if decl.style == "single-dash":
        spec = options.get(name)
        if spec is None and name.startswith("--"):
            spec = options.get(name[1:])  # Go's flag package takes -name and --name alike
        if spec is None and not name.startswith("--"):
            spec = options.get("-" + name)
    elif options is decl.options:
        spec = decl.resolve_long(name)
    else:
        spec = _resolve_merged(options, name)
    if spec == "ambiguous":
        out.unknown(f"{label}: option {name} is an ambiguous abbreviation")
        return i + 1
    if not isinstance(spec, OptionSpec):
        out.unknown(f"{label}: option {name} is not declared")
        return i + 1
    # Say the long name the word stands for (a key may group several options with one spec).
    spelled = name if name in options else next(
        (n for n in options if n.startswith(name) and options[n] is spec), spec.canonical)
    if spec.value == "none":
        if eq:
            out.unknown(f"{label}: option {spelled} takes no value")
        else:
            _apply(spec, None, True, spelled, out, label)
        return i + 1
    if spec.value in ("pair", "pair-first"):  # jq --rawfile NAME FILE, find -fprintf FILE FMT
        if eq or i + 2 >= len(argv):
            out.unknown(f"{label}: option {spelled} needs two words")
            return i + 1
        k = i + 2 if spec.value == "pair" else i + 1
        _apply(spec, argv[k], static[k] and static[i + 1] and static[i + 2], spelled, out, label)
        return i + 3
    if eq:
        _apply(spec, value, static[i], spelled, out, label)
        return i + 1
    if spec.value == "optional":
        _apply(spec, None, True, spelled, out, label)
        return i + 1
    if i + 1 >= len(argv):
        out.unknown(f"{label}: option {spelled} needs a value")
        return i + 1
    _swallowed(options, spec, argv[i + 1], spelled, out, label)
    _apply(spec, argv[i + 1], static[i + 1], spelled, out, label, i + 1)
    return i + 2


def _swallowed(options: Mapping[str, OptionSpec], spec: OptionSpec, word: str, spelled: str,
               out: Parsed, label: str) -> None:
    """A plain value given as the next word that is itself an option with an effect
    (`--foo --ext-diff`): if the declaration took a flag for a value option, the effect would
    be hidden, so the word is unknown (a message such as `-m --ext-diff` is held, not lost)."""
    if spec.effect != "none" or spec.values or not word.startswith("-") or word == "-":
        return
    other = options.get(word.partition("=")[0])
    if other is not None and (other.effect != "none" or other.values or other.operands):
        out.unknown(f"{label}: the value of {spelled} is the option {word}")


def _resolve_merged(options: Mapping[str, OptionSpec], name: str) -> OptionSpec | str | None:
    spec = options.get(name)
    if spec is not None:
        return spec
    hits = {options[n].canonical: options[n] for n in options
            if n.startswith("--") and n.startswith(name)}
    if len(hits) == 1:
        return next(iter(hits.values()))
    return "ambiguous" if hits else None


def _bundle(options: Mapping[str, OptionSpec], argv: list[str], static: list[bool], i: int,
            out: Parsed, label: str) -> int:
    """Old-style first word (`tar czfC out.tgz dir`): letters in order, each value-taking one
    takes the next word."""
    k = i + 1
    for c in argv[i]:
        spec = options["-" + c]
        if spec.value in ("required", "pair", "pair-first"):
            if k >= len(argv):
                out.unknown(f"{label}: option -{c} needs a value")
                return k
            _apply(spec, argv[k], static[k], "-" + c, out, label, k)
            k += 1
        else:
            _apply(spec, None, True, "-" + c, out, label)
    return k


def _short_cluster(options: Mapping[str, OptionSpec], argv: list[str], static: list[bool], i: int,
                   out: Parsed, label: str) -> int:
    a = argv[i]
    j = 1
    while j < len(a):
        spec = options.get("-" + a[j])
        if spec is None:
            out.unknown(f"{label}: option -{a[j]} is not declared")
            return i + 1
        if spec.value == "none":
            _apply(spec, None, True, "-" + a[j], out, label)
            j += 1
            continue
        rest = a[j + 1:]
        if spec.value in ("pair", "pair-first"):
            out.unknown(f"{label}: option -{a[j]} cannot be clustered")
            return i + 1
        if rest:
            _apply(spec, rest, static[i], "-" + a[j], out, label)
            return i + 1
        if spec.value == "optional":
            _apply(spec, None, True, "-" + a[j], out, label)
            return i + 1
        if i + 1 >= len(argv):
            out.unknown(f"{label}: option -{a[j]} needs a value")
            return i + 1
        _swallowed(options, spec, argv[i + 1], "-" + a[j], out, label)
        _apply(spec, argv[i + 1], static[i + 1], "-" + a[j], out, label, i + 1)
        return i + 2
    return i + 1


def _apply(spec: OptionSpec, value: str | None, static: bool, spelled: str, out: Parsed,
           label: str, at: int | None = None) -> None:
    """Record one option; ``at`` is the argv index of a value given as its own word."""
    source = f"{label} {spelled}"
    if at is not None and spec.effect in ("script", "pattern"):
        out.not_paths.add(at)  # code (sed -e SCRIPT, grep -e PATTERN), not a path
    out.given.append((spec, value, static))
    out.spelled.add(spelled)
    if spec.last:
        out.stop = True
    if spec.sandbox:
        out.sandbox = True
    if spec.tag:
        out.tags.add(spec.tag)
    if spec.operands is not None:
        out.operand_effect = spec.operands
    if value is None:
        if spec.effect != "none":
            out.effects.append(Effect(spec.effect, spelled, True, source))
        return
    effect = spec.effect
    if effect in ("script", "script-file", "pattern"):
        out.script_given = True
    if effect == "pattern":
        return
    if effect == "script":
        out.scripts.append((value, static, source))
        return
    if effect != "none":
        out.effects.append(Effect(effect, value, static, source))


def _operands(decl: ToolDecl, argv: list[str], static: list[bool], at: list[int], out: Parsed,
              label: str) -> None:
    words = at
    ops = decl.operands
    first = list(ops.first)
    # A tool whose first operand is its script or pattern (sed, awk, grep) takes it from
    # -e/-f instead when one is given.
    if first and first[0] in ("script", "pattern") and out.script_given:
        first = first[1:]
    override = out.operand_effect
    if ops.max is not None and len(words) > ops.max:
        out.unknown(f"{label}: more than {ops.max} operands")
    skip: set[int] = set()
    for k, idx in enumerate(words):
        if idx in skip:
            continue
        word = argv[idx]
        if override is not None and not (k < len(first) and first[k] == "script"):
            effect = override
        elif ops.values:
            effect = next((e for g, e in ops.values if fnmatchcase(word, g)), "unknown")
        elif k < len(first):
            effect = first[k]
        elif ops.last is not None and k == len(words) - 1 and len(words) - len(first) >= 2:
            effect = ops.last
        else:
            effect = ops.rest or "unknown"
        source = f"{label} operand {word!r}"
        name, eq, value = word.partition("=")
        assigned = decl.assignment_effect(name) if decl.assignments and eq else None
        if assigned is not None:
            effect = assigned
            source, word = f"{label} {name}=", value
        elif decl.assignments and eq and effect == "unknown":
            out.unknown(f"{label}: operand {name}= is not declared")
            continue
        if effect == "unknown":
            out.unknown(f"{label}: operand {word!r} is not declared")
        if effect == "setting":
            # KEY VALUE sets KEY (the next operand is its value); KEY alone looks it up.
            if k + 1 < len(words):
                nxt = words[k + 1]
                skip.add(nxt)
                out.effects.append(Effect("setting", f"{word}={argv[nxt]}",
                                          static[idx] and static[nxt], label))
            continue
        if effect == "command":  # this word and every one after it: a command of its own
            out.effects.append(Effect("command", word, static[idx], f"{label} runs",
                                      tuple(argv[idx:]), tuple(static[idx:])))
            break
        if effect in ("script", "pattern"):
            out.not_paths.add(idx)
        if effect == "script":
            out.scripts.append((word, static[idx], f"{label} script operand"))
        elif effect not in ("none", "pattern") and word != "-":
            out.effects.append(Effect(effect, word, static[idx], source))
    if not words and ops.none_given is not None and out.operand_effect is None:
        if ops.none_given == "unknown":
            out.unknown(f"{label}: no operand given")
        else:
            out.effects.append(Effect(ops.none_given, "./(files the diff names)", True,
                                      f"{label} (no operand: the working directory)"))
    if not out.scripts and not out.script_given and ops.first[:1] == ("script",):
        out.unknown(f"{label}: no script given")
