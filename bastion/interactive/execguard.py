"""Exec channels: pagers and editors off upstream, and the floors the gate adds for exec.

An exec channel with a PTY gives the agent's keystrokes to whatever program runs; a pager or
editor started by an allowed command (``git log``, ``git commit``, ``journalctl``, ``man``)
would turn them into that program's commands, shell escapes included. Two parts close this:

- **The guard** (``guarded_command``): every exec command (PTY or not) reaches the target as
  ``export PAGER=cat GIT_EDITOR=false ... || exit 126; COMMAND``. The prefix is built by the
  bastion after the decision and runs in the login shell after its startup files, so neither
  the client's environment requests nor ``~/.bashrc`` undo it; a login shell that cannot run it
  (csh) exits 126 before the command. ``export`` rather than ``readonly`` so that everyday
  lines such as ``PAGER=cat git log`` keep working.
- **The floors** (``exec_floor``), which never lower a verdict: a line that sets, unsets or
  otherwise touches a guarded name except to a harmless value (``cat``, ``true``, ``false``,
  empty; ``1`` for ``LESSSECURE``), or clears the environment (``env -i``), is review; with a
  PTY, a program that reads the terminal (``pty_interactive``: the shell floor's list, REPLs
  with any arguments, programs with shell escapes, ``read -e``) is review unless configured
  passthrough, and so is anything run through ``sudo``/``doas``/``su``..., whose environment
  reset drops the guard; without a PTY, an editor-capable or interactive program under such a
  wrapper is review (an editor reads its commands from stdin).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bastion.interactive.programs import BARE_REPL, FULL_SCREEN, Floor, interactive_program

# name -> value the bastion sets on every exec command.
GUARD_ENV: tuple[tuple[str, str], ...] = (
    ("PAGER", "cat"),
    ("GIT_PAGER", "cat"),
    ("MANPAGER", "cat"),
    ("SYSTEMD_PAGER", ""),
    ("SYSTEMD_PAGERSECURE", "1"),
    ("LESSSECURE", "1"),
    ("LESSSECURE_ALLOW", ""),  # less >= 643 re-enables secure-mode features listed here
    ("PSQL_PAGER", "cat"),
    ("AWS_PAGER", ""),
    ("GH_PAGER", "cat"),
    ("BAT_PAGER", "cat"),
    ("PERLDOC_PAGER", "cat"),
    ("EDITOR", "false"),
    ("VISUAL", "false"),
    ("GIT_EDITOR", "false"),
    ("GIT_SEQUENCE_EDITOR", "false"),
    ("SUDO_EDITOR", "false"),
    ("SYSTEMD_EDITOR", "false"),
    ("KUBE_EDITOR", "false"),
    ("GH_EDITOR", "false"),
    ("PSQL_EDITOR", "false"),
    ("FCEDIT", "false"),
)
GUARD_NAMES = frozenset(name for name, _ in GUARD_ENV)
_STRICT = {"LESSSECURE": {"1"}, "SYSTEMD_PAGERSECURE": {"1"}, "LESSSECURE_ALLOW": {""}}
_HARMLESS = {"", "cat", "true", "false", ":"}
_HARMLESS |= {d + v for d in ("/bin/", "/usr/bin/") for v in ("cat", "true", "false")}
# Programs that switch user and reset the environment (the guard does not survive them).
PRIVILEGED = frozenset({"sudo", "doas", "su", "runuser", "pkexec", "run0", "setpriv"})
# Programs that may start an editor or pager of their own choosing under a reset environment.
EDITOR_CAPABLE = frozenset({"git", "crontab", "systemctl", "visudo", "vipw", "vigr"})

# On a terminal an exec command's keystrokes go to the program, so more counts as interactive
# than at a shell prompt (where input is frozen while a command runs): REPLs and database
# clients with any arguments (a script can stop in a debugger, a client can prompt), programs
# with a terminal UI or a shell escape of their own, and some that are interactive only when
# started without an operand or with a console subcommand.
PTY_ANY_ARGS = (BARE_REPL - {"bash", "sh", "zsh", "dash", "ksh", "fish"}) | {
    "ipython3", "bpython", "ptpython", "pdb", "gdb", "lldb", "octave", "julia", "R", "irb",
    "pry", "rlwrap", "expect", "ncdu", "k9s", "lazydocker", "gitui", "vifm", "lf", "nmtui",
    "alsamixer", "lynx", "w3m", "links", "elinks", "mutt", "neomutt", "aptitude", "cfdisk",
    "fdisk", "gdisk", "parted", "virsh", "kak", "hx", "helix", "jed", "ne", "zile", "mg",
    "vimtutor", "gnuplot", "lftp", "sftp", "cqlsh", "clickhouse-client", "mongosh",
    # Shell escapes of their own (`!cmd`, `~!`): mail readers, chat, serial terminals.
    "mail", "mailx", "s-nail", "bsd-mailx", "alpine", "pine", "write", "smbclient", "cu",
    "tip", "picocom", "tasksel", "iftop", "nethogs", "bmon", "nload", "zellij", "byobu",
    # More REPLs.
    "maxima", "erl", "iex", "sbcl", "guile", "racket", "ocaml", "utop", "swipl", "scala",
    "groovysh",
    # Debian's alternatives for "the" pager and editor (less, nano, vi...).
    "pager", "sensible-pager", "editor", "sensible-editor", "select-editor",
}
_PTY_BARE = frozenset({"openssl", "nslookup", "nsupdate", "bluetoothctl", "wpa_cli"})
_PTY_SUBCOMMANDS = {
    "terraform": {"console"}, "tofu": {"console"}, "terragrunt": {"console"},
    "az": {"interactive"}, "rails": {"console", "c", "dbconsole"}, "flask": {"shell"},
}


def pty_interactive(argvs: Iterable[Sequence[str]], extra: Iterable[str] = ()) -> str | None:
    """The program that would read an exec channel's terminal, or None."""
    argvs = [a for a in argvs if a]
    for argv in argvs:
        name = argv[0].rsplit("/", 1)[-1]
        if name in PTY_ANY_ARGS:
            return name
        operands = [a for a in argv[1:] if not a.startswith("-") or a == "-"]
        if name in _PTY_BARE and (not operands or operands[0] == "-"):
            return name
        if name == "read" and any(
            a.startswith("-") and not a.startswith("--") and "e" in a for a in argv[1:]
        ):
            return "read -e"  # bash's readline: shell-expand-line runs $(...) in typed text
        sub = _PTY_SUBCOMMANDS.get(name)
        if sub is not None and sub.intersection(argv[1:]):
            return f"{name} {next(a for a in argv[1:] if a in sub)}"
    return interactive_program(argvs, extra)


_NAME = re.compile(
    r"(?<![A-Za-z0-9_])(" + "|".join(sorted(GUARD_NAMES, key=len, reverse=True))
    + r")(?![A-Za-z0-9_])"
)
_PLAIN = re.compile(r"[A-Za-z0-9_./:+,@%-]*")
_END = frozenset(" \t\r\n;&|)<>")


def guard_prefix() -> str:
    parts = [f"{name}={value}" if value else f"{name}=''" for name, value in GUARD_ENV]
    return f"export {' '.join(parts)} || exit 126; "


_PREFIX = guard_prefix()


def guarded_command(command: str) -> str:
    """The command line the target runs: the guard, then the agent's command on the same line
    (so the shell's line numbers in error messages stay what the agent expects)."""
    return _PREFIX + command


def _value(text: str, at: int) -> str | None:
    """The literal value of an assignment starting at ``at`` (None: not a plain literal)."""
    quote = text[at : at + 1]
    if quote in ("'", '"'):
        end = text.find(quote, at + 1)
        if end < 0:
            return None
        value, after = text[at + 1 : end], end + 1
        if quote == '"' and any(c in value for c in "$`\\"):
            return None
    else:
        m = _PLAIN.match(text, at)
        assert m is not None  # the pattern matches the empty string
        value, after = m.group(0), m.end()
    if after < len(text) and text[after] not in _END:
        return None  # concatenated with more (quotes, expansions, escapes)
    return value


_PRINTERS = frozenset({"printenv", "echo"})
_PRINTER_SPAN = re.compile(r"(?:^|(?<=[;&|\n(\s]))(?:printenv|echo)\b[^;&|\n()]*")


def _quiet(span: str) -> bool:
    """A printer's words with nothing in them that expands, runs or redirects."""
    return not any(c in span for c in "$`<>\\'\"=")


def guard_override(texts: Iterable[str]) -> str | None:
    """The guarded name a line touches other than to read it or set it harmlessly, or None."""
    for text in texts:
        for m in _NAME.finditer(text):
            name, start, end = m.group(1), m.start(), m.end()
            if text.endswith("$", 0, start):
                continue  # $NAME: a read
            if text.endswith("${", 0, start) and text[end : end + 1] == "}":
                continue  # ${NAME}: a read (any operator after the name may assign)
            if text[end : end + 1] == "=":
                value = _value(text, end + 1)
                if value is not None and value in _STRICT.get(name, _HARMLESS):
                    continue
            return name
    return None


def clears_environment(texts: Iterable[str]) -> bool:
    """Whether a line runs ``env`` with ``-i``/``-``/``--ignore-environment`` (any spelling)."""
    for text in texts:
        if "env" not in text:
            continue
        words = [w.strip("'\"") for w in text.split()]
        for i, word in enumerate(words):
            if word.rsplit("/", 1)[-1] != "env":
                continue
            j = i + 1
            while j < len(words):
                a = words[j]
                if a == "-" or a.startswith("--i"):
                    return True
                if a.startswith("-") and not a.startswith("--") and len(a) > 1:
                    if a[1] not in "uCS" and "i" in a[1:]:
                        return True
                    j += 2 if a in ("-u", "-C") else 1
                elif a in ("--unset", "--chdir"):
                    j += 2
                elif a.startswith("-") or "=" in a:
                    j += 1
                else:
                    break
    return False


@dataclass(frozen=True)
class ExecContext:
    """What the exec floors need besides the line: the PTY and the ``[interactive]`` lists."""

    pty: bool
    passthrough: tuple[str, ...] = ()
    extra_interactive: tuple[str, ...] = ()


# Lines longer than this that need the wrappers re-parsed are held instead (about 3 ms).
REPARSE_LIMIT = 8 * 1024
_PRIVILEGED_WORD = re.compile(
    r"(?<![\w.-])(?:" + "|".join(sorted(PRIVILEGED)) + r")(?![\w.-])"
)
_UNQUOTE = str.maketrans("", "", "'\"\\")


def _may_name_privileged(texts: Iterable[str]) -> bool:
    """Cheap pre-check before re-parsing: can the line name a privileged wrapper at all?
    Quotes and backslashes are dropped first (``s\\udo``, ``"su"do``); ANSI-C quoting
    (``$'...'``) can spell anything, so it always means yes."""
    return any(
        "$'" in text or _PRIVILEGED_WORD.search(text.translate(_UNQUOTE)) is not None
        for text in texts
    )


def _privileged_units(command: str) -> list[tuple[str, tuple[str, ...]]]:
    """(wrapper, inner argv) of every unit the policy's parser runs through a privileged
    wrapper. Raises on a parser failure (the caller holds the line)."""
    from bastion.policy.syntax import parse
    from bastion.policy.unwrap import normalise_units

    found = []
    for unit in normalise_units(parse(command).units):
        wrapper = next((w for w in unit.wrappers if w in PRIVILEGED), None)
        if wrapper is not None:
            found.append((wrapper, tuple(unit.argv)))
    return found


def exec_floor(
    command: str, argvs: Sequence[Sequence[str]], ctx: ExecContext
) -> Floor | None:
    """The most severe floor for an exec command, or None (the policy verdict stands)."""
    # The raw line and every parsed word (unquoted, nested strings too), one text per unit.
    # A guarded name that `printenv`/`echo` only print (`printenv PAGER`) is a read: those
    # simple commands are left out, in the raw line only where they hold nothing that runs.
    readers = [argv for argv in argvs if not (argv and argv[0] in _PRINTERS)]
    raw = _PRINTER_SPAN.sub(lambda m: "" if _quiet(m.group()) else m.group(), command)
    texts = [raw, "\n".join(" ".join(argv) for argv in readers)]
    name = guard_override(texts)
    if name is not None:
        return Floor("exec-guard-override",
                     f"changes {name}, which the bastion sets so that no pager or editor takes"
                     " over the channel")
    if clears_environment(texts):
        return Floor("exec-guard-override",
                     "clears the environment, which drops the bastion's pager and editor guard")
    if ctx.pty:
        program = pty_interactive(argvs, ctx.extra_interactive)
        if program is not None and program not in ctx.passthrough:
            what = (
                "read -e reads the terminal with readline, which can expand typed command"
                " substitutions" if program == "read -e" else
                f"{program} is an interactive program: on a terminal it reads your keystrokes"
                " as its own commands"
            )
            return Floor("interactive-program", f"{what} (run it without -t, or ask for"
                         " review)", interactive=True)
    interesting = ctx.pty or any(
        argv and (argv[0] in EDITOR_CAPABLE or argv[0] in FULL_SCREEN or argv[0] in BARE_REPL
                  or argv[0] in ctx.extra_interactive)
        for argv in argvs
    )
    if not interesting or not _may_name_privileged(texts):
        return None
    if len(command) > REPARSE_LIMIT:  # bound the second parse on the event loop
        return Floor("exec-privileged-guard", "a long line that may run sudo or the like with a"
                     " program that could start a pager or editor")
    try:
        wrapped = _privileged_units(command)
    except Exception:  # fail closed: the wrappers could not be seen
        return Floor("exec-guard-unchecked", "the line could not be checked for sudo and the"
                     " like")
    for wrapper, argv in wrapped:
        program = argv[0] if argv else ""
        if (ctx.pty or program in EDITOR_CAPABLE
                or interactive_program([argv], ctx.extra_interactive) is not None):
            where = "on a terminal" if ctx.pty else "here"
            return Floor("exec-privileged-guard",
                         f"{wrapper} resets the environment, so {program or 'the command'} could"
                         f" start a pager or editor {where} (run it without -t, or ask for"
                         " review)")
    return None
