"""Option-level gate: a declared tool's effects become facts the rules judge.

For each command unit whose program is declared (``decl.py``), argv is parsed with the tool's
grammar (``options.py``) and its inline programs scanned (``scripts.py``). Then:

* ``writes PATH`` becomes a redirect unit ``> PATH`` and ``reads PATH`` a unit ``< PATH``, so the
  rules that judge redirect targets (devices, secrets, startup and system files) judge them too;
* ``runs-shell`` text goes back through the gate as a nested shell line (``unwrap.reparse``);
* ``unknown`` (an undeclared option, operand or script feature) is a floor at the tool's
  ``unknown`` decision; ``runs``, ``network``, ``secrets`` and a ``chdir`` outside the
  workspace are review floors.

Nothing here lowers a verdict: the command unit is still judged by its rules as before.
"""

from __future__ import annotations

from bastion.policy import netgate
from bastion.policy.decl import NET_EFFECTS, ToolTable
from bastion.policy.hosts import HostClassifier
from bastion.policy.model import Finding
from bastion.policy.options import Effect, parse_argv
from bastion.policy.paths import PathClassifier
from bastion.policy.scripts import SCANNERS
from bastion.policy.unwrap import Unit, reparse, resolve_argv

_MAX_DEPTH = 8  # as unwrap.MAX_DEPTH
_MAX_PATH_UNITS = 256  # per command: more paths than this are held, not judged one by one
_SAFE_DIRS = frozenset({"workspace", "tmp"})
# A code-file here is the agent's own code (like ./Makefile for make); not when it is also a
# startup, system or secret file.
_OWN_CODE = frozenset({"workspace", "workspace-root"})
_NOT_OWN = frozenset({"startup", "system", "secret", "secret-dir", "device", "tmp"})


_NO_HOSTS = HostClassifier()


def expand_units(units: list[Unit], tools: ToolTable, classifier: PathClassifier,
                 login: str | None, depth: int = 0,
                 hosts: HostClassifier = _NO_HOSTS) -> list[Unit]:
    """The units plus the effect units of every declared tool among them."""
    if not tools.tools:
        return units
    out: list[Unit] = []
    for unit in units:
        out.append(unit)
        if unit.kind != "command" or not unit.argv:
            continue
        decl = tools.get(unit.argv[0])
        if decl is None:
            continue
        extra = _effects(unit, decl.scanner, tools, classifier, login, depth, hosts)
        out.extend(extra)
    return out


def effects_of(unit: Unit, tools: ToolTable) -> list[Effect]:
    """Every effect of a declared tool's unit (options, operands and scanned scripts)."""
    decl = tools.get(unit.argv[0])
    if decl is None:
        return []
    parsed = parse_argv(decl, unit.argv, unit.static)
    effects = list(parsed.effects)
    scanner = SCANNERS.get(decl.scanner or "")
    scripts = parsed.scripts
    if decl.scanner in ("sed", "awk", "gawk") and len(scripts) > 1:
        # sed joins its -e scripts with newlines (`-e 'a\' -e 'text'` is one command), and
        # gawk its --source texts: scan them as the one program the tool runs.
        scripts = [("\n".join(t for t, _, _ in scripts), all(s for _, s, _ in scripts),
                    scripts[0][2])]
    for text, static, source in scripts:
        if not static:
            effects.append(Effect("unknown", text, False, f"{source} is only known at run time"))
        elif scanner is None:
            effects.append(Effect("unknown", text, True, f"{source}: no scanner declared"))
        else:
            effects.extend(scanner(text, parsed.sandbox))
    if decl.at_files:
        effects.extend(_at_files(unit))
    unit.tags.update(parsed.tags)
    # The script or pattern operand is code, scanned above, not a file name to classify.
    unit.tags.update(f"not-path:{i}" for i in parsed.not_paths)
    return effects


def _at_files(unit: Unit) -> list[Effect]:
    """`@FILE` words and `--opt=@FILE` values: the tool loads FILE as the value (az CLI)."""
    out: list[Effect] = []
    for word, static in zip(unit.argv[1:], unit.static[1:], strict=False):
        if not static:
            continue
        value = word if word.startswith("@") else word.partition("=")[2]
        if value.startswith("@") and value not in ("@", "@-"):
            out.append(Effect("reads", value[1:], True, f"{unit.argv[0]} {value} loads a file"))
    return out


def _effects(unit: Unit, scanner: str | None, tools: ToolTable, classifier: PathClassifier,
             login: str | None, depth: int, hosts: HostClassifier = _NO_HOSTS) -> list[Unit]:
    program = unit.argv[0]
    extra: list[Unit] = []
    effects = effects_of(unit, tools)
    if any(e.kind in NET_EFFECTS for e in effects):
        # where it connects and what it sends: files become reads, hosts are judged by class
        effects = netgate.judge(program, effects, hosts, unit.findings, unit.tags)
    if sum(e.kind in ("reads", "writes") for e in effects) > _MAX_PATH_UNITS:
        unit.findings.append(Finding("review", "too-complex",
                                     f"{program} names more than {_MAX_PATH_UNITS} paths"))
        return extra
    for e in effects:
        kind = e.kind
        if kind == "unknown":
            decl = tools.get(program)
            action = decl.unknown if decl is not None else "review"
            unit.findings.append(Finding(action, "tool-unknown",
                                         f"not understood: {e.source}"))
        elif kind == "runs":
            unit.findings.append(Finding("review", "tool-runs",
                                         f"{e.source} runs a program the gate cannot see"))
        elif kind == "network":
            unit.findings.append(Finding("review", "tool-network",
                                         f"{e.source} sends data to the network"))
        elif kind == "changes":
            unit.findings.append(Finding("review", "tool-changes",
                                         f"{e.source} changes system state"))
        elif kind == "secrets":
            unit.findings.append(Finding("review", "tool-secrets",
                                         f"{e.source} may print secrets"))
        elif kind == "command":
            if depth + 1 > _MAX_DEPTH:
                unit.findings.append(Finding("review", "too-deep", "commands nested too deeply"))
                continue
            if len(e.argv) == 1 and e.argv_static[0] and any(c.isspace() for c in e.argv[0]):
                # One word holding a whole command line (`submodule foreach 'git pull'`,
                # which runs it with sh): judged as the shell line it is.
                nested = reparse(e.argv[0], True, depth, unit, program)
            else:
                nested = resolve_argv(list(e.argv), list(e.argv_static), unit, program, depth)
            for u in nested:
                u.text = f"{e.source}: {u.text}"
            extra.extend(expand_units(nested, tools, classifier, login, depth + 1, hosts))
        elif kind == "runs-shell":
            if depth + 1 > _MAX_DEPTH:
                unit.findings.append(Finding("review", "too-deep", "commands nested too deeply"))
                continue
            nested = reparse(e.value, e.static, depth, unit, program)
            for u in nested:
                u.text = f"{e.source} runs: {u.text}"
            extra.extend(expand_units(nested, tools, classifier, login, depth + 1, hosts))
        elif kind in ("reads", "writes", "script-file", "chdir", "code-file"):
            op = ">" if kind == "writes" else "<"
            verb = {"reads": "reads", "writes": "writes", "script-file": "reads its program from",
                    "chdir": "changes directory to", "code-file": "runs the code in"}[kind]
            effect = Unit("redirect", [op, e.value], [True, e.static],
                          f"{e.source} {verb} {e.value}", tags={f"effect:{kind}"})
            # Where the command runs (after which cd, in a loop, under env -C) is where its
            # paths resolve: the effect unit takes the command's place in the line.
            effect.serial, effect.guard, effect.in_loop = unit.serial, unit.guard, unit.in_loop
            effect.chdir = list(unit.chdir)
            extra.append(effect)
            if kind == "script-file":
                unit.findings.append(Finding("review", "tool-unknown",
                                             f"{e.source}: the program in {e.value!r} is not "
                                             "known to the gate"))
            elif kind == "code-file" and not _own_code(classifier, e.value, e.static, login):
                unit.findings.append(Finding("review", "tool-runs",
                                             f"{e.source} runs code from {e.value!r}, outside "
                                             "the workspace"))
            elif kind == "chdir" and not _safe_dir(classifier, e.value, e.static, login):
                unit.findings.append(Finding("review", "tool-chdir",
                                             f"{e.source} works in {e.value!r}, outside the "
                                             "workspace"))
    return extra


def _own_code(classifier: PathClassifier, path: str, static: bool, login: str | None) -> bool:
    if not static:
        return False
    classes = classifier.classify(path, login)
    return bool(classes & _OWN_CODE) and not classes & _NOT_OWN


def _safe_dir(classifier: PathClassifier, path: str, static: bool, login: str | None) -> bool:
    if not static:
        return False
    classes = classifier.classify(path, login)
    return bool(classes & _SAFE_DIRS) and not classes & (_NOT_OWN - {"tmp"})
