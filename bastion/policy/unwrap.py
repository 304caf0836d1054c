"""Normalise raw units into the units rules see: program basename, wrappers peeled off, nested
shell strings re-parsed, environment prefixes evaluated.

Only raises severity: a wrapper whose options are not understood, a dynamic string handed to a
shell, or a code-executing variable adds a review finding; nothing here can lower one.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from bastion.policy import envreads, envvars
from bastion.policy.chars import skeleton
from bastion.policy.model import Finding
from bastion.policy.secretnames import secret_variable
from bastion.policy.syntax import RawUnit, Word, parse

MAX_DEPTH = 8  # nested shell strings (bash -c "bash -c ..."); the decision budget bounds the work
TRUSTED_DIRS = frozenset(
    {"/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/local/sbin", "/snap/bin"}
)
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "csh", "tcsh"})
INTERPRETERS = frozenset(
    {"python", "python3", "python2", "perl", "ruby", "node", "nodejs", "php", "lua", "Rscript",
     "pwsh", "powershell", "deno", "bun", "tclsh", "osascript", "jshell", "irb"}
)
# Environment assignments are judged by `envvars` (a value grammar per variable), reads of the
# environment tagged by `envreads`.


@dataclass
class Unit:
    """One command as it would really run, ready for the rules."""

    kind: str  # "command" | "redirect" | "assign"
    argv: list[str]
    static: list[bool]
    text: str
    findings: list[Finding] = field(default_factory=list)
    tags: set[str] = field(default_factory=set)
    wrappers: list[str] = field(default_factory=list)
    stdin: str | None = None
    payload: str | None = None
    chdir: list[tuple[str, bool]] = field(default_factory=list)  # env -C / sudo -D (value, static)
    in_loop: bool = False  # in a loop body: may run more than once
    serial: int = -1  # the raw unit's position (names a cd other units are guarded by)
    guard: int | None = None  # runs only after that cd succeeded

    @property
    def program(self) -> str:
        return self.argv[0] if self.argv else ""


@dataclass
class _Spec:
    """Option grammar of a wrapper: options that take a value, and leading positionals."""

    value_opts: frozenset[str] = frozenset()
    flag_opts: frozenset[str] = frozenset()
    positionals: int = 0
    string_opts: frozenset[str] = frozenset()  # value is a shell string to re-parse
    any_flag: bool = False  # unknown single-dash flags are harmless here
    chdir_opts: frozenset[str] = frozenset()  # value is the directory the command runs in


def _s(values: str = "", flags: str = "", pos: int = 0, strings: str = "", any_flag: bool = False,
       chdir: str = "") -> _Spec:
    return _Spec(frozenset(values.split()), frozenset(flags.split()), pos,
                 frozenset(strings.split()), any_flag, frozenset(chdir.split()))


WRAPPERS: dict[str, _Spec] = {
    "sudo": _s("-u --user -g --group -C -D --chdir -h --host -p --prompt -r --role -t --type "
               "-U --other-user -T --command-timeout",
               "-A -b -E -H -k -K -n -P -S -B -N --preserve-env --non-interactive --askpass "
               "--background --set-home --reset-timestamp", chdir="-D --chdir"),
    "doas": _s("-u -C", "-n -s -L"),
    "command": _s("", "-p"),
    "builtin": _s(),
    "exec": _s("-a", "-c -l"),
    "nohup": _s(),
    "setsid": _s("", "-f -w -c --fork --wait --ctty"),
    "nice": _s("-n --adjustment", "", any_flag=True),
    "ionice": _s("-c -n -p -P -u --class --classdata", "-t"),
    "stdbuf": _s("-i -o -e --input --output --error"),
    "timeout": _s("-s --signal -k --kill-after", "--foreground --preserve-status -v --verbose",
                  pos=1),
    "time": _s("-f -o --format --output", "-p -a -v --portability --append --verbose"),
    "taskset": _s("", "-a -c -p --all-tasks --cpu-list", pos=1),
    "chrt": _s("", "-b -d -f -i -o -r -a -m -R -v", pos=1),
    "chroot": _s("--userspec --groups", "--skip-chdir", pos=1),
    "flock": _s("-w --timeout -E --conflict-exit-code", "-s -x -n -u -o --shared --exclusive "
                "--nonblock --unlock --close", pos=1, strings="-c --command"),
    "strace": _s("-o -e -p -s -P -a -I -b -E -u -O -S -X", "-f -ff -c -C -t -tt -ttt -T -v -x "
                 "-xx -y -yy -q -qq -Z -z -n -k -r -w -i -d -D"),
    "ltrace": _s("-o -e -p -s -a -n -u -l -x -w", "-f -c -C -t -tt -ttt -T -i -S -r -b"),
    "coproc": _s(),
    "noglob": _s(),
    "catchsegv": _s(),
    "unbuffer": _s("", "-p"),
    "su": _s("-s --shell -g --group -G --supp-group -w --whitelist-environment",
             "- -l --login -m -p --preserve-environment -P --pty", strings="-c --command"),
    "runuser": _s("-u --user -s --shell -g --group -G --supp-group -w",
                  "- -l --login -m -p --preserve-environment", strings="-c --command"),
    "watch": _s("-n --interval -q --equexit", "-d --differences -t --no-title -b --beep -e "
                "--errexit -g --chgexit -c --color -p --precise -w --no-wrap -x --exec"),
}


def normalise_units(
    raw_units: list[RawUnit], depth: int = 0, reparse_findings: list[Finding] | None = None
) -> list[Unit]:
    out: list[Unit] = []
    for raw in raw_units:
        out.extend(_normalise(raw, depth))
    return out


def _normalise(raw: RawUnit, depth: int) -> list[Unit]:
    unit = Unit(
        raw.kind,
        [w.text for w in raw.words],
        [w.static for w in raw.words],
        raw.text,
        stdin=raw.stdin,
        payload=raw.payload,
        in_loop=raw.in_loop,
        serial=raw.serial,
        guard=raw.guard,
    )
    if raw.kind == "redirect":
        unit.static = [True, raw.words[1].static]
        return [unit]
    if raw.in_function:
        unit.tags.add("in-function")
    extra = _assignments(raw.assigns, unit, depth)
    if raw.kind == "assign":
        unit.argv = ["<assign>", *(f"{n}={v.text}" for n, v in raw.assigns)]
        unit.static = [True, *(v.static for _, v in raw.assigns)]
        return [unit, *extra]
    if not raw.words:
        return [unit, *extra]
    # The command word is static only if it carried no glob characters or expansions.
    if not raw.words[0].static or raw.words[0].glob:
        unit.findings.append(Finding("review", "dynamic-command",
                                     "the command name is only known at run time"))
        unit.argv[0] = "<dynamic>"
        return [unit, *extra]
    resolved = _resolve(unit, depth)
    for u in resolved:
        envreads.tag(u, raw.assigns)
        extra.extend(_builtin_assignments(u, raw.assigns, depth))
    return [*resolved, *extra]


_DECLARERS = frozenset({"export", "declare", "typeset", "local", "readonly"})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[.*\])?$")
# Builtins that assign a variable named by an argument, with a value the gate cannot see.
_READ_VALUE_OPTS = {"read": frozenset("dinNptu"), "mapfile": frozenset("dnOsuc"),
                    "readarray": frozenset("dnOsuc")}


def _builtin_assignments(unit: Unit, parsed: list[tuple[str, Word]], depth: int) -> list[Unit]:
    """Assignments that bash makes but the parser does not show as such: quoted declaration
    words (``export 'PAGER=sh -c id'``), namerefs (``declare -n r=PAGER``), and builtins that
    assign a named variable (``printf -v``, ``read``, ``mapfile``, ``getopts``, ``wait -p``).
    Each is judged by the variable's grammar; a value the gate cannot see is dynamic."""
    if unit.kind != "command" or not unit.argv:
        return []
    program, argv = unit.program, unit.argv
    seen = {n for n, _ in parsed}
    pairs: list[tuple[str, Word]] = []
    unknown = Word("$(unknown)", static=False)
    if program in _DECLARERS:
        options = "".join(a[1:] for a in argv[1:] if a[:1] in ("-", "+") and len(a) > 1)
        for i, a in enumerate(argv[1:], 1):
            if a[:1] in ("-", "+") or "=" not in a:
                continue
            name, value = a.split("=", 1)
            if "n" in options:
                pairs.append((value, unknown))  # a nameref: assignments through it set `value`
                if secret_variable(value):
                    unit.findings.append(Finding(
                        "review", "exec-env",
                        f"{name} becomes another name for the secret variable {value}"))
            elif name not in seen and _NAME.match(name):
                pairs.append((name, Word(value, unit.static[i])))
    elif program == "printf" and len(argv) > 2 and argv[1].startswith("-v"):
        pairs.append((argv[1][2:] or argv[2], unknown))
    elif program in _READ_VALUE_OPTS:
        value_opts = _READ_VALUE_OPTS[program]
        names: list[str] = []
        i = 1
        while i < len(argv):
            a = argv[i]
            if a.startswith("-") and len(a) > 1 and a != "--":
                if a[1] == "a" or a[1] == "C":
                    if a[1] == "C":
                        unit.findings.append(Finding("review", "exec-env",
                                                     f"{program} -C runs a callback"))
                    target = a[2:] or (argv[i + 1] if i + 1 < len(argv) else "")
                    if a[1] == "a":
                        names.append(target)
                    i += 1 if a[2:] else 2
                    continue
                i += 2 if a[1] in value_opts and len(a) == 2 else 1
                continue
            names.append(a)
            i += 1
        if program != "read":
            names = names[-1:]  # mapfile's one operand is the array
        pairs.extend((n, unknown) for n in names)
    elif program == "getopts" and len(argv) > 2:
        pairs.append((argv[2], unknown))
    elif program == "wait" and "-p" in argv and argv.index("-p") + 1 < len(argv):
        pairs.append((argv[argv.index("-p") + 1], unknown))
    return _assignments(pairs, unit, depth, persists=True) if pairs else []


def _assignments(assigns: list[tuple[str, Word]], unit: Unit, depth: int = 0,
                 persists: bool | None = None) -> list[Unit]:
    """Judge each ``NAME=value`` by its variable's value grammar (``envvars``): floors go on
    ``unit``; command values come back as re-gated units, written files as redirect units.
    An assignment persists (for the rest of a shell) unless it prefixes a command."""
    extra: list[Unit] = []
    if persists is None:
        persists = unit.kind == "assign" or unit.program in _DECLARERS or not unit.argv
    for name, value in assigns:
        j = envvars.judge(name, value.text, value.static, persists)
        unit.findings.extend(j.findings)
        for text, static, how in j.commands:
            for inner in reparse(text, static, depth, unit, name):
                if how == "pager":
                    inner.stdin = inner.stdin or "pipe"
                elif inner.kind == "command":
                    inner.argv.append("<file>")  # editors and helpers get names we cannot see
                    inner.static.append(False)
                    inner.tags.add("dynamic-args")
                extra.append(inner)
        for path, static in j.writes:
            extra.append(Unit("redirect", [">", path], [True, static],
                              f"{name}={value.text}", tags={"env:write"}))
    return extra


def _program_name(unit: Unit) -> None:
    """Basename of the command word; untrusted directories and look-alike letters are findings."""
    name = unit.argv[0]
    if "/" in name:
        directory = posixpath.dirname(posixpath.normpath(name)) if name.startswith("/") else ""
        if directory not in TRUSTED_DIRS:
            unit.findings.append(Finding("review", "untrusted-path",
                                         f"runs {name}, not a program from a system directory"))
        name = posixpath.basename(name)
    if not name.isascii():
        unit.findings.append(Finding("review", "homoglyph",
                                     f"non-ASCII letters in the command name {name!r}"))
        name = skeleton(name)
    unit.argv[0] = name


def _resolve(unit: Unit, depth: int) -> list[Unit]:
    """Peel wrappers one at a time; returns the units that really run (inner first)."""
    out: list[Unit] = []
    for _ in range(16):  # each step removes at least one word
        _program_name(unit)
        name = unit.argv[0]
        handler = _HANDLERS.get(name)
        if handler is not None:
            result = handler(unit, depth, out)
            if result is None:
                break
            unit = result
            continue
        spec = WRAPPERS.get(name)
        if spec is None:
            break
        inner = _strip_wrapper(unit, spec, depth, out)
        if inner is None:
            break
        unit = inner
    else:
        unit.findings.append(Finding("review", "too-complex", "too many nested wrappers"))
    out.append(unit)
    return out


def _child(unit: Unit, start: int, wrapper: str) -> Unit:
    return Unit(unit.kind, unit.argv[start:], unit.static[start:], unit.text, list(unit.findings),
                set(unit.tags), [*unit.wrappers, wrapper], unit.stdin, unit.payload,
                list(unit.chdir), unit.in_loop, unit.serial, unit.guard)


def _strip_wrapper(unit: Unit, spec: _Spec, depth: int, out: list[Unit]) -> Unit | None:
    name = unit.argv[0]
    i = 1
    argv = unit.argv
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        opt = argv[i]
        if opt == "--":
            i += 1
            break
        key = opt.split("=", 1)[0]
        if not unit.static[i]:
            unit.findings.append(Finding("review", "dynamic-argument",
                                         f"{name} option is only known at run time"))
        if key in spec.string_opts:
            value = opt.split("=", 1)[1] if "=" in opt else (argv[i + 1] if i + 1 < len(argv)
                                                               else "")
            static = True if "=" in opt else (i + 1 < len(argv) and unit.static[i + 1])
            out.extend(reparse(value, static, depth, unit, name))
            unit.tags.add(f"{name}:string")
            return None
        if key in spec.value_opts:
            if key in spec.chdir_opts:
                glued = "=" in opt
                at = i if glued else i + 1
                if at < len(argv):
                    value = opt.split("=", 1)[1] if glued else argv[at]
                    unit.chdir.append((value, unit.static[at]))
            i += 1 if "=" in opt else 2
            continue
        if not opt.startswith("--") and len(opt) > 2 and opt[:2] in spec.value_opts:
            if opt[:2] in spec.chdir_opts:
                unit.chdir.append((opt[2:], unit.static[i]))  # sudo -D/dir
            i += 1  # glued value such as -oL
            continue
        if key in spec.flag_opts or (spec.any_flag and opt[1:].isdigit()):
            i += 1
            continue
        # Clustered short flags such as `sudo -En`.
        if not opt.startswith("--") and all(f"-{c}" in spec.flag_opts for c in opt[1:]):
            i += 1
            continue
        if name in ("sudo", "doas") and opt in ("-i", "-s", "--login", "--shell"):
            unit.tags.add("interactive")
            return None
        if name in ("command",) and opt in ("-v", "-V"):
            return None  # a lookup, runs nothing
        unit.findings.append(Finding("review", "wrapper-option",
                                     f"{name} option {opt!r} is not understood"))
        return None
    if name in ("su", "runuser"):
        # `su [-] [user]`: a login shell when there is no -c.
        unit.tags.add("interactive")
        return None
    i += spec.positionals
    if i >= len(argv):
        return None  # the wrapper alone (e.g. `time`, `sudo -l`): judged as itself
    if name == "watch":
        joined = " ".join(argv[i:])
        out.extend(reparse(joined, all(unit.static[i:]), depth, unit, name))
        return None
    return _child(unit, i, name)


def reparse(text: str, static: bool, depth: int, outer: Unit, via: str) -> list[Unit]:
    """Units of a shell string handed to another shell (``bash -c``, ``eval``, ``ssh host``)."""
    if not static:
        outer.findings.append(Finding("review", "dynamic-script",
                                      f"{via} runs a string only known at run time"))
        return []
    if depth + 1 > MAX_DEPTH:
        outer.findings.append(Finding("review", "too-deep", "shell strings nested too deeply"))
        return []
    parsed = parse(text)
    units = normalise_units(parsed.units, depth + 1)
    for finding, _ in parsed.findings:
        outer.findings.append(finding)
    for u in units:
        u.wrappers.insert(0, via)
        u.in_loop = u.in_loop or outer.in_loop
        u.serial, u.guard = -1, outer.guard  # another shell's cds guard nothing here
        u.chdir[:0] = outer.chdir
    return units


def resolve_argv(argv: list[str], static: list[bool], outer: Unit, via: str,
                 depth: int) -> list[Unit]:
    """Units of a command a tool runs from its own argv (``poetry run CMD``, ``npx PKG``):
    normalised and unwrapped like a command typed at the shell."""
    if depth + 1 > MAX_DEPTH:
        outer.findings.append(Finding("review", "too-deep", "commands nested too deeply"))
        return []
    text = " ".join(argv)
    unit = Unit("command", argv, static, text, wrappers=[*outer.wrappers, via],
                stdin=outer.stdin, payload=outer.payload)
    if not argv or not static[0]:
        unit.findings.append(Finding("review", "dynamic-command",
                                     f"{via} runs a command only known at run time"))
        unit.argv = ["<dynamic>", *argv[1:]]
        return [unit]
    return _resolve(unit, depth + 1)


# -- programs that run other programs in their own way ---------------------------------------
Handler = Callable[[Unit, int, list[Unit]], "Unit | None"]


def _shell(unit: Unit, depth: int, out: list[Unit]) -> Unit | None:
    argv = unit.argv
    i = 1
    while i < len(argv):
        a = argv[i]
        if a == "-c" or (a.startswith("-") and not a.startswith("--") and "c" in a[1:]
                         and a[1:].isalpha()):
            if i + 1 >= len(argv):
                unit.findings.append(Finding("review", "parse-error", "-c without a string"))
                return None
            out.extend(reparse(argv[i + 1], unit.static[i + 1], depth, unit, unit.argv[0]))
            unit.tags.add("shell:string")
            if any(not s for s in unit.static[i + 2 :]):
                unit.tags.add("dynamic-args")
            return None
        if a in ("-o", "+o", "-O", "+O", "--rcfile", "--init-file"):
            i += 2
            continue
        if a.startswith(("-", "+")) and a not in ("-", "--", "-s"):
            i += 1
            continue
        break
    rest = argv[i:]
    if not rest or rest[0] in ("-", "-s", "--"):
        if unit.stdin is not None:
            if unit.payload is not None:
                out.extend(reparse(unit.payload, True, depth, unit, unit.argv[0]))
                unit.tags.add("shell:stdin")
            else:
                unit.findings.append(Finding("review", "stdin-to-shell",
                                             "a shell reads commands from a pipe or here-document"))
        else:
            unit.tags.add("interactive")
        return None
    unit.tags.add("shell:script")
    return None


def _eval(unit: Unit, depth: int, out: list[Unit]) -> Unit | None:
    if all(unit.static[1:]):
        unit.tags.add("eval:string")
    out.extend(reparse(" ".join(unit.argv[1:]), all(unit.static[1:]), depth, unit, "eval"))
    return None


def _busybox(unit: Unit, depth: int, out: list[Unit]) -> Unit | None:
    if len(unit.argv) < 2:
        return None
    return _child(unit, 1, "busybox")


def _env(unit: Unit, depth: int, out: list[Unit]) -> Unit | None:
    argv = unit.argv
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in ("-i", "-0", "--ignore-environment", "--null", "-"):
            i += 1
        elif a in ("-C", "--chdir"):
            if i + 1 < len(argv):
                unit.chdir.append((argv[i + 1], unit.static[i + 1]))
            i += 2
        elif a.startswith("--chdir=") or (a.startswith("-C") and len(a) > 2):
            unit.chdir.append((a.split("=", 1)[1] if a.startswith("--") else a[2:],
                               unit.static[i]))
            i += 1
        elif a in ("-u", "--unset"):
            i += 2
        elif a.startswith("--unset=") or (a.startswith("-u") and len(a) > 2):
            i += 1
        elif a in ("-S", "--split-string") or a.startswith(("-S", "--split-string=")):
            text = a.split("=", 1)[1] if "=" in a else (a[2:] if len(a) > 2 and a[1] == "S"
                                                        else " ".join(argv[i + 1 :]))
            out.extend(reparse(text, all(unit.static[i:]), depth, unit, "env"))
            return None
        elif a == "--":
            i += 1
            break
        elif a.startswith("-"):
            unit.findings.append(Finding("review", "wrapper-option",
                                         f"env option {a!r} is not understood"))
            return None
        elif "=" in a and not a.startswith("="):
            name, value = a.split("=", 1)
            out.extend(_assignments([(name, Word(value, unit.static[i]))], unit, depth))
            i += 1
        else:
            break
    if i >= len(argv):
        return None  # bare `env`: prints the environment
    return _child(unit, i, "env")


def _xargs(unit: Unit, depth: int, out: list[Unit]) -> Unit | None:
    value_opts = {"-n", "-L", "-P", "-d", "-a", "-E", "-s", "-I", "-i", "--max-args",
                  "--max-lines", "--max-procs", "--delimiter", "--arg-file", "--eof",
                  "--max-chars", "--replace"}
    flags = {"-0", "-r", "-t", "-p", "-x", "--null", "--no-run-if-empty", "--verbose",
             "--interactive", "--exit", "--open-tty", "-o"}
    argv = unit.argv
    i = 1
    while i < len(argv) and argv[i].startswith("-"):
        a = argv[i]
        key = a.split("=", 1)[0]
        if a == "--":
            i += 1
            break
        if key in value_opts:
            i += 1 if ("=" in a or (len(a) > 2 and not a.startswith("--"))) else 2
        elif key in flags or all(f"-{c}" in flags for c in a[1:]):
            i += 1
        elif len(a) > 2 and a[:2] in value_opts:
            i += 1  # glued value such as -n1 or -I{}
        else:
            unit.findings.append(Finding("review", "wrapper-option",
                                         f"xargs option {a!r} is not understood"))
            return None
    if i >= len(argv):
        return None  # bare xargs runs echo
    inner = _child(unit, i, "xargs")
    inner.argv.append("<input>")
    inner.static.append(False)
    inner.tags.add("dynamic-args")
    return inner


_FIND_EXEC = frozenset({"-exec", "-execdir", "-ok", "-okdir"})


def _find(unit: Unit, depth: int, out: list[Unit]) -> Unit | None:
    argv = unit.argv
    kept: list[int] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in _FIND_EXEC:
            j = i + 1
            while j < len(argv) and argv[j] not in (";", "+"):
                j += 1
            if j == i + 1:
                unit.findings.append(Finding("review", "parse-error", f"{a} without a command"))
                break
            inner = Unit("command", argv[i + 1 : j], list(unit.static[i + 1 : j]), unit.text,
                         [], set(), [*unit.wrappers, "find"], None, None, list(unit.chdir),
                         unit.in_loop, -1, unit.guard)
            if a in ("-execdir", "-okdir"):
                inner.chdir.append(("", False))  # runs in each found file's directory
            inner.static = [s and v != "{}" for s, v in zip(inner.static, inner.argv, strict=True)]
            inner.tags.add("dynamic-args")
            out.extend(_resolve(inner, depth))
            unit.tags.add("find:exec")
            i = j + 1
            continue
        if a == "-delete":
            unit.tags.add("find:delete")
        elif a.startswith(("-fprint", "-fls")):
            unit.tags.add("find:write")
        kept.append(i)
        i += 1
    unit.argv = [argv[k] for k in kept]
    unit.static = [unit.static[k] for k in kept]
    return None


def _az(unit: Unit, depth: int, out: list[Unit]) -> Unit | None:
    argv = unit.argv
    for i, a in enumerate(argv):
        if a == "--scripts" and i + 1 < len(argv):
            out.extend(reparse(" ".join(argv[i + 1 :]).split(" --", 1)[0],
                               all(unit.static[i + 1 :]), depth, unit, "az"))
    return None


def _ssh(unit: Unit, depth: int, out: list[Unit]) -> Unit | None:
    value_opts = set("bcDEeFIiJLlmOopQRSWwB")
    argv = unit.argv
    i = 1
    while i < len(argv) and argv[i].startswith("-"):
        a = argv[i]
        if a == "--":
            i += 1
            break
        last = a[-1]
        if last in value_opts and len(a) == 2:
            if a == "-o" and i + 1 < len(argv):
                unit.tags.add("ssh:option:" + argv[i + 1].split("=", 1)[0].split()[0].lower())
            i += 2
        else:
            if a.startswith("-o"):
                unit.tags.add("ssh:option:" + a[2:].split("=", 1)[0].lower())
            i += 1
    if i + 1 < len(argv):
        unit.tags.add("ssh:remote-command")
        out.extend(reparse(" ".join(argv[i + 1 :]), all(unit.static[i + 1 :]), depth, unit, "ssh"))
    return None


_HANDLERS: dict[str, Handler] = {
    **{s: _shell for s in SHELLS},
    "eval": _eval,
    "env": _env,
    "xargs": _xargs,
    "find": _find,
    "busybox": _busybox,
    "az": _az,
    "ssh": _ssh,
}
