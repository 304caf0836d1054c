"""Floors the gate applies to lines typed into a PTY shell (never lower a policy verdict).

- interactive programs (editors, pagers, REPLs, DB shells, monitors) take over the terminal,
  so what the agent types next is not a shell line: review, unless the config lets them run
  with input passed through;
- a line that mentions the names the shell integration relies on (prompt, history, pager
  variables, ``__bst*``) could switch verification off: review;
- names defined as functions or aliases in this session mean something the gate cannot see:
  review.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field

# Programs that own the terminal whatever their arguments.
FULL_SCREEN = frozenset({
    "less", "more", "most", "pg", "man", "info", "vi", "vim", "nvim", "view", "vimdiff", "rvim",
    "nano", "pico", "emacs", "emacsclient", "ed", "ex", "joe", "micro", "mcedit", "mc", "top",
    "htop", "btop", "atop", "iotop", "nmon", "glances", "watch", "tmux", "screen", "tig",
    "lazygit", "fzf", "ranger", "nnn", "dialog", "whiptail", "vipw", "vigr", "visudo",
    "sudoedit", "crontab", "passwd", "su", "ftp", "telnet", "minicom", "irssi", "weechat",
})
# Programs that are interactive when started without arguments (a REPL or a client prompt).
BARE_REPL = frozenset({
    "python", "python2", "python3", "ipython", "node", "nodejs", "irb", "ghci", "lua", "php",
    "psql", "mysql", "mariadb", "sqlite3", "mongo", "mongosh", "redis-cli", "sqlcmd", "bc",
    "dc", "bash", "sh", "zsh", "dash", "ksh", "fish", "ssh", "ftp",
})
RESERVED = re.compile(
    r"__bst|\b(?:PS[0-4]|PROMPT_COMMAND|PROMPT_DIRTRIM|HIST[A-Z]*|BASH_ENV|ENV|INPUTRC|"
    r"PAGER|GIT_PAGER|MANPAGER|SYSTEMD_PAGER|LESS[A-Z]*|EDITOR|VISUAL|BASH_COMMAND|IGNOREEOF|"
    r"TMOUT)\b"
)
_FUNC = re.compile(r"(?:^|[\s;&|(){}])(?:function\s+([^\s(){};&|]+)|([^\s(){};&|=]+)\s*\(\s*\))")
_ALIAS = re.compile(r"\balias\s+(?:-p\s+)?([^\s=]+)=")
# Words that may set $OLDPWD: one cd between two prompts sets it to the first prompt's cwd;
# anything more (two cds, `cd .`, eval, a function) leaves it unknown.
_OLDPWD_SETTERS = re.compile(r"\b(?:cd|pushd|popd|OLDPWD|eval|source)\b|(?:^|[\s;&|(])\.\s")


_MAX_VARIABLES = 512
_MAX_VALUE = 256  # longer values are not kept (unknown): bounded memory per session
_LEARN_BUDGET = 0.02  # CPU seconds to follow one unit's assignments


@dataclass
class ShellState:
    """What the controller knows about one shell session, for the gate to use.

    ``variables`` holds the static values earlier units gave shell variables (a variable not
    in it is unknown: the environment, ``read``, a command's output...); ``integers`` the
    names declared ``-i``; ``cdpath`` whether CDPATH may be set. ``cwd`` is what the shell
    reports at each prompt, ``oldpwd`` the directory before the last change."""

    cwd: str | None = None
    oldpwd: str | None = None
    defined: set[str] = field(default_factory=set)
    passthrough: tuple[str, ...] = ()
    extra_interactive: tuple[str, ...] = ()
    variables: dict[str, str] = field(default_factory=dict)
    integers: set[str] = field(default_factory=set)
    cdpath: bool = False
    # values the running unit gives variables; they count only once it finished normally
    pending: dict[str, str | None] | None = None
    dir_changes: int = 0  # words in the last unit that may move the cwd or set $OLDPWD
    aliased: bool = False  # a nameref was declared: a write through it changes another name

    def learn(self, unit: str) -> None:
        """When a unit starts: remember the functions and aliases it may define, and forget
        the variables it assigns until it has finished (``finished``): a unit interrupted
        half-way (Ctrl-C in `sleep 9; n=5`) leaves the old, unknown value in place."""
        for m in _FUNC.finditer(unit):
            self.defined.add(m.group(1) or m.group(2))
        for m in _ALIAS.finditer(unit):
            self.defined.add(m.group(1))
        self.dir_changes = len(_OLDPWD_SETTERS.findall(unit))
        from bastion.policy import budget
        from bastion.policy.syntax import parse

        try:  # this runs on the event loop: a huge unit is not followed, only forgotten
            with budget.bounded(_LEARN_BUDGET):
                state = parse(unit, self.variables, tuple(sorted(self.integers))).state
        except budget.BudgetExceeded:
            self.variables.clear()
            self.cdpath = True
            return
        if state.forgot or state.aliased:
            self.variables.clear()
        self.aliased = self.aliased or state.aliased
        if self.aliased:
            return  # a nameref exists in this shell: values are not followed any more
        self.pending = state.snapshot()
        for name in self.pending:
            self.variables.pop(name, None)
        self.integers |= state.integers
        if "CDPATH" in unit:
            self.cdpath = True

    def finished(self, exit_status: int | None) -> None:
        """The unit ended. Its values hold only when it ran to its end: not when a signal
        stopped it (status 128+N, e.g. 130 after Ctrl-C) or the status is unknown."""
        pending, self.pending = self.pending, None
        if pending is None or exit_status is None or exit_status >= 128:
            return
        for name, value in pending.items():
            if value is None or len(value) > _MAX_VALUE:
                self.variables.pop(name, None)
            elif name in self.variables or len(self.variables) < _MAX_VARIABLES:
                self.variables[name] = value
        if "CDPATH" in pending:
            self.cdpath = pending["CDPATH"] != ""

    def moved_to(self, cwd: str | None) -> None:
        """The shell reported its directory at a prompt; ``$OLDPWD`` is the previous one only
        when the unit in between changed directory with a single cd."""
        changes, self.dir_changes = self.dir_changes, 0
        if cwd != self.cwd and self.cwd is not None and changes == 1:
            self.oldpwd = self.cwd
        elif cwd != self.cwd or changes:
            self.oldpwd = None
        self.cwd = cwd


# Set by the controller around ``host.decide`` (same task), read by the gate.
SHELL_STATE: ContextVar[ShellState | None] = ContextVar("bastion_shell_state", default=None)


@dataclass(frozen=True)
class Floor:
    rule: str
    reason: str
    interactive: bool = False  # the unit starts a program that takes over the terminal


def _base(word: str) -> str:
    return word.rsplit("/", 1)[-1]


def interactive_program(argvs: Iterable[Sequence[str]], extra: Iterable[str] = ()) -> str | None:
    extra_set = set(extra)
    for argv in argvs:
        if not argv:
            continue
        name = _base(argv[0])
        if name in FULL_SCREEN or name in extra_set or (name in BARE_REPL and len(argv) == 1):
            return name
    return None


def shell_floor(
    line: str, argvs: Sequence[Sequence[str]], state: ShellState | None
) -> Floor | None:
    """The most severe floor for a PTY line, or None (the policy verdict stands)."""
    from bastion.interactive.execguard import guard_override

    if RESERVED.search(line) or guard_override([line, *(w for a in argvs for w in a)]):
        return Floor("shell-integration-names",
                     "mentions a prompt, history, pager or editor setting the bastion's shell"
                     " integration relies on")
    if state is not None:
        for argv in argvs:
            if argv and argv[0] in state.defined:
                return Floor("shell-defined-name",
                             f"{argv[0]!r} was defined as a function or alias in this session")
    program = interactive_program(argvs, state.extra_interactive if state else ())
    if program is not None:
        if state is not None and program in state.passthrough:
            return None
        return Floor("interactive-program",
                     f"{program} is an interactive program (it would read the terminal, not"
                     " the shell)", interactive=True)
    return None
