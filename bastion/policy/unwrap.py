"""Normalise raw units into the units rules see: program basename, wrappers peeled off, nested
shell strings re-parsed, environment prefixes evaluated.

Only raises severity: a wrapper whose options are not understood, a dynamic string handed to a
shell, or a code-executing variable adds a review finding; nothing here can lower one.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field

from bastion.policy.chars import skeleton
from bastion.policy.model import Finding
from bastion.policy.syntax import RawUnit, Word, parse

MAX_DEPTH = 4
TRUSTED_DIRS = frozenset(
    {"/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/local/sbin", "/snap/bin"}
)
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "csh", "tcsh"})
INTERPRETERS = frozenset(
    {"python", "python3", "python2", "perl", "ruby", "node", "nodejs", "php", "lua", "Rscript",
     "pwsh", "powershell", "deno", "bun", "tclsh", "osascript", "jshell", "irb"}
)
# Variables that make the next program run other code, or switch its identity/context.
CODE_VARS = frozenset(
    {"PATH", "ENV", "BASH_ENV", "PROMPT_COMMAND", "PS0", "PS1", "PS2", "PS4", "IFS",
     "SHELLOPTS", "BASHOPTS", "PAGER", "EDITOR", "VISUAL", "LESSOPEN", "LESSCLOSE", "SSH_ASKPASS",
     "NODE_OPTIONS", "PERL5OPT", "PERL5LIB", "RUBYOPT", "PYTHONSTARTUP", "PYTHONPATH",
     "JAVA_TOOL_OPTIONS", "KUBECONFIG", "AZURE_CONFIG_DIR", "HISTFILE", "HOME", "SUDO_ASKPASS",
     "BROWSER", "MANPAGER", "SYSTEMD_PAGER", "TERMINFO", "GCONV_PATH", "HOSTALIASES"}
)
CODE_VAR_PREFIXES = ("LD_", "DYLD_", "BASH_FUNC_", "GIT_")
SAFE_GIT_VARS = frozenset(
    {"GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL",
     "GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE", "GIT_TERMINAL_PROMPT", "GIT_TRACE", "GIT_PAGER"}
)


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


def _s(values: str = "", flags: str = "", pos: int = 0, strings: str = "", any_flag: bool = False
       ) -> _Spec:
    return _Spec(frozenset(values.split()), frozenset(flags.split()), pos,
                 frozenset(strings.split()), any_flag)


WRAPPERS: dict[str, _Spec] = {
    "sudo": _s("-u --user -g --group -C -D --chdir -h --host -p --prompt -r --role -t --type "
               "-U --other-user -T --command-timeout",
               "-A -b -E -H -k -K -n -P -S -B -N --preserve-env --non-interactive --askpass "
               "--background --set-home --reset-timestamp"),
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
    )
    if raw.kind == "redirect":
        unit.static = [True, raw.words[1].static]
        return [unit]
    if raw.in_function:
        unit.tags.add("in-function")
    extra = _assignments(raw.assigns, unit)
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
    return [*_resolve(unit, depth), *extra]


def _assignments(assigns: list[tuple[str, Word]], unit: Unit) -> list[Unit]:
    for name, _value in assigns:
        upper = name.upper().split("[", 1)[0]
        if upper in CODE_VARS or (
            upper.startswith(CODE_VAR_PREFIXES) and upper not in SAFE_GIT_VARS
        ):
            unit.findings.append(Finding("review", "exec-env",
                                         f"sets {name}, which can make programs run other code"))
    return []


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
                set(unit.tags), [*unit.wrappers, wrapper], unit.stdin, unit.payload)


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
            i += 1 if "=" in opt else 2
            continue
        if not opt.startswith("--") and len(opt) > 2 and opt[:2] in spec.value_opts:
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
        u.text = u.text
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
        elif a in ("-u", "--unset", "-C", "--chdir"):
            i += 2
        elif a.startswith(("--unset=", "--chdir=")) or (a.startswith("-u") and len(a) > 2):
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
            name = a.split("=", 1)[0]
            _assignments([(name, Word(a))], unit)
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
                         [], set(), [*unit.wrappers, "find"], None, None)
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
