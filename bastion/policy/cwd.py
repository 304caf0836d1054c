"""The working directory a unit runs in, so a relative path is judged where it really is.

An exec command starts at the login's home (``~``); a gated shell's line starts where the shell
reported its cwd. Within a line, ``cd``/``pushd``/``popd`` move it, ``env -C``/``sudo -D`` move
one command, and some tools resolve their operands elsewhere (``git -C``, ``make -C``, ``tar -C``:
see ``CHDIR_OPTIONS``). The tracker keeps the *set* of directories the shell may be in: a ``cd``
adds its target instead of replacing the old directory, because the ``cd`` may fail or sit in a
branch or a subshell, and the line may continue in the old one; only what runs after
``cd DIR &&`` (the ``cd`` is its guard) is known to run in DIR. So a path is classified in every
directory it may be relative to, and its classes are the union (``cd ~/.ssh && cat id_rsa``
reads ``~/id_rsa`` or ``~/.ssh/id_rsa``: a secret either way). When the directory cannot be
known (``cd "$dir"``, ``cd -``, ``CDPATH``, a relative ``cd`` in a loop, too many candidates), it
is *unknown*: relative paths whose names could be a sensitive file somewhere are held
(``cwd-unknown``), other relative paths stay workspace paths.
"""

from __future__ import annotations

import fnmatch
import functools
import posixpath
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

Dirs = frozenset[str] | None  # the directories a unit may run in; None: not known
MAX_DIRS = 8
HOME = "~"


@dataclass(frozen=True)
class ChdirOption:
    """A tool option that makes the tool work in another directory.

    ``scope`` is ``"all"`` when every path of the command resolves there (``git -C``,
    ``make -C``), ``"after"`` when only the operands after the option do (``tar -C``).
    ``globals_only``: the option counts only before the tool's subcommand (``git -C``)."""

    names: tuple[str, ...]
    scope: str = "all"
    globals_only: bool = False


# Tool options that change where the tool resolves paths. (The tool declarations may take this
# table over; wrappers such as ``env -C`` and ``sudo -D`` are peeled in ``unwrap``.)
CHDIR_OPTIONS: Mapping[str, ChdirOption] = {
    "git": ChdirOption(("-C",), globals_only=True),
    "make": ChdirOption(("-C", "--directory")),
    "gmake": ChdirOption(("-C", "--directory")),
    "tar": ChdirOption(("-C", "--directory"), scope="after"),
}
# git global options that take a separate value (so the value is not the subcommand).
_GIT_VALUE_GLOBALS = frozenset({"-c", "--git-dir", "--work-tree", "--namespace", "--exec-path",
                                "--config-env", "--super-prefix", "--list-cmds"})
# Classes a relative path in an unknown directory may fall into without being held.
HARMLESS_CLASSES = frozenset({"workspace", "tmp", "null"})


def is_relative(path: str) -> bool:
    """Resolved against the working directory (``~+`` is ``$PWD``, ``~-`` is ``$OLDPWD``)."""
    if path.startswith("/") or path in ("", "-") or "://" in path:
        return False
    return not path.startswith("~") or (path[:2] in ("~+", "~-") and path[2:3] in ("", "/"))


def join(directory: str, path: str) -> str:
    if path[:2] in ("~+", "~-"):
        path = path[2:].lstrip("/") or "."
    if path in (".", "./"):
        return directory
    return directory.rstrip("/") + "/" + path if directory != "/" else "/" + path


def _union(a: Dirs, b: Dirs) -> Dirs:
    if a is None or b is None:
        return None
    out = a | b
    return out if len(out) <= MAX_DIRS else None


def resolve_dirs(base: Dirs, target: str) -> Dirs:
    """Where ``cd target`` from any of ``base`` leads."""
    if not is_relative(target):
        return frozenset({target})
    if base is None:
        return None
    out = frozenset(posixpath.normpath(join(d, target)) if d.startswith("/")
                    else _home_norm(join(d, target)) for d in base)
    return out if len(out) <= MAX_DIRS else None


def _home_norm(path: str) -> str:
    if path == HOME or not path.startswith("~/"):
        return path
    rest = posixpath.normpath(path[2:])
    if rest == ".":
        return HOME
    if rest == ".." or rest.startswith("../"):
        return "/home" + rest[2:] if rest != ".." else "/home"
    return "~/" + rest


class CwdTracker:
    """The directories the line may be in, unit after unit (see the module docstring).

    ``dirs`` is the union over the whole line so far. A unit that runs only after a ``cd``
    succeeded (``cd DIR && cmd``: the walker records the ``cd`` as the unit's *guard*) runs
    exactly where that ``cd`` led: ``strong[guard]``, widened by every later ``cd``."""

    def __init__(self, start: str | None, oldpwd: str | None = None, cdpath: bool = False
                 ) -> None:
        self.dirs: Dirs = frozenset({start}) if start else None
        self.oldpwd: Dirs = frozenset({oldpwd}) if oldpwd else None
        self.cdpath = cdpath  # CDPATH may be set: `cd name` may go elsewhere
        self.moved = False  # a cd ran earlier in this line (its origin is in dirs)
        self.pushed = False
        self.strong: dict[int, Dirs] = {}  # where each cd (by unit serial) surely led

    def tilde_minus(self) -> Dirs:
        """Where ``~-`` (``$OLDPWD``) may point."""
        return self.dirs if self.moved else self.oldpwd

    def here(self, guard: int | None) -> Dirs:
        """The directories a unit guarded by the cd ``guard`` (or by none) may run in."""
        if guard is not None and guard in self.strong:
            return self.strong[guard]
        return self.dirs

    def step(self, argv: list[str], static: list[bool], in_loop: bool,
             serial: int = -1, guard: int | None = None) -> bool:
        """Apply ``cd``/``pushd``/``popd``; returns True when ``argv`` was one of them."""
        name = argv[0] if argv else ""
        if name not in ("cd", "pushd", "popd", "chdir"):
            return False
        args = list(zip(argv[1:], static[1:], strict=False))
        while args and args[0][1] and args[0][0] in ("-L", "-P", "-e", "-@", "-n", "--"):
            stop = args[0][0] == "--"
            if args[0][0] == "-n" and name == "pushd":
                return True  # pushd -n: only the stack changes
            args = args[1:]
            if stop:
                break
        move = self._move(name, args, in_loop)
        base = self.here(guard)
        new = move(base)
        previous = self.dirs
        self.dirs = _union(self.dirs, move(self.dirs) if base is not self.dirs else new)
        for k, where in self.strong.items():  # a later cd may have run in that scope too
            self.strong[k] = _union(where, move(where))
        if serial >= 0:
            self.strong[serial] = new
        if not self.moved:
            self.oldpwd = previous
        self.moved = True
        self.pushed = self.pushed or name == "pushd"
        return True

    def _move(self, name: str, args: list[tuple[str, bool]], in_loop: bool
              ) -> Callable[[Dirs], Dirs]:
        """Where this cd leads from given directories."""
        if name == "popd" or (name == "pushd" and (not args or args[0][0][:1] in "+-")):
            # back to a directory this line pushed (already among dirs), or a stack from before
            pushed = self.pushed
            return lambda base: self.dirs if pushed else None
        if not args:
            return lambda base: frozenset({HOME})
        target, ok = args[0]
        if not ok:
            return lambda base: None
        if target == "-":
            return lambda base: self.dirs if self.moved else self.oldpwd
        if (
            (self.cdpath and not target.startswith(("/", "./", "../", "~"))
             and target not in (".", ".."))
            or (in_loop and is_relative(target))  # may repeat: `cd ..` in a loop climbs anywhere
        ):
            return lambda base: None
        if target[:2] == "~-":
            return lambda base: resolve_dirs(self.tilde_minus(), target)
        return lambda base: resolve_dirs(base, target)


def unit_dirs(
    base: Dirs, program: str, argv: list[str], static: list[bool],
    chdir: Iterable[tuple[str, bool]] = (),
) -> tuple[Dirs, dict[int, Dirs], list[tuple[int, str]]]:
    """The directories one command runs in: the line's, moved by its wrappers' ``-C``/``-D``
    (``chdir``) and by the tool's own options (``CHDIR_OPTIONS``). Returns the directories for
    the whole command, those for argv indices after an ``after``-scoped option (tar), and the
    (index, value) of each directory option value so it can be classified as a path itself."""
    dirs = base
    for where, ok in chdir:
        dirs = resolve_dirs(dirs, where) if ok else None
    spec = CHDIR_OPTIONS.get(program)
    per_index: dict[int, Dirs] = {}
    values: list[tuple[int, str]] = []
    if spec is None:
        return dirs, per_index, values
    i = 1
    after: Dirs = dirs
    moved_after = False
    while i < len(argv):
        a = argv[i]
        value: str | None = None
        at = i
        if spec.globals_only and not a.startswith("-"):
            break
        if a == "--":
            break
        if a in spec.names:
            if i + 1 < len(argv):
                value, at = argv[i + 1], i + 1
                i += 1
        elif a.startswith("--") and "=" in a and a.split("=", 1)[0] in spec.names:
            value = a.split("=", 1)[1]
        elif (a.startswith("-") and not a.startswith("--") and len(a) > 2 and "-C" in spec.names
              and program != "tar" and a[1] == "C"):
            value = a[2:]  # -Cdir
        elif program == "tar" and a.startswith("-") and not a.startswith("--") and a.endswith("C"):
            if i + 1 < len(argv):
                value, at = argv[i + 1], i + 1  # -xzC dir
                i += 1
        elif program == "git" and a in _GIT_VALUE_GLOBALS:
            i += 1
        if value is not None:
            ok = static[at]
            values.append((at, value))
            if spec.scope == "all":
                dirs = resolve_dirs(dirs, value) if ok else None
            else:
                after = resolve_dirs(after, value) if ok else None
                moved_after = True
        elif moved_after and spec.scope == "after":
            per_index[i] = _union(dirs, after)  # an operand there, or an option value (-f)
        i += 1
    return dirs, per_index, values


def _short_flags(argv: list[str]) -> str:
    """Letters of short options (``-xzf`` → ``xzf``), and of tar's old-style first word."""
    out = "".join(a[1:] for a in argv[1:] if a.startswith("-") and not a.startswith("--"))
    if argv[:1] == ["tar"] and len(argv) > 1 and argv[1][:1] not in ("-", ""):
        out += argv[1]  # `tar xzf a.tgz`
    return out


def _has(argv: list[str], *longs: str) -> bool:
    return any(a.split("=", 1)[0] in longs for a in argv[1:])


def _value(argv: list[str], *names: str) -> str | None:
    """The value of the last of ``names`` (``-d DIR``, ``--dir=DIR``, ``-dDIR``)."""
    found: str | None = None
    for i, a in enumerate(argv[1:], 1):
        for n in names:
            if a == n and i + 1 < len(argv):
                found = argv[i + 1]
            elif n.startswith("--") and a.startswith(n + "="):
                found = a.split("=", 1)[1]
            elif not n.startswith("--") and a.startswith(n) and len(a) > len(n):
                found = a[len(n):]
    return found


def implicit_target(program: str, argv: list[str]) -> tuple[bool, str | None]:
    """Does the tool write into its working directory without naming a path (``tar -x``,
    ``unzip``, ``wget URL``, ``curl -O``, ``git clone URL``, ``cpio -i``)? Returns (writes,
    directory option value); the value, when given, is where it writes instead."""
    letters = _short_flags(argv)
    if program == "tar":
        return ("x" in letters or _has(argv, "--extract", "--get")), None  # -C: a path already
    if program == "unzip":
        if any(c in letters for c in "lptvZ"):
            return False, None
        return True, _value(argv, "-d")
    if program == "wget":
        if _has(argv, "--output-document", "--spider") or "O" in letters:
            return False, None
        return True, _value(argv, "-P", "--directory-prefix")
    if program == "curl":
        if "O" in letters or "J" in letters or _has(argv, "--remote-name", "--remote-name-all"):
            return True, _value(argv, "--output-dir")
        return False, None
    if program == "git":
        words = [a for a in argv[1:] if not a.startswith("-")]
        return (words[:1] == ["clone"] and len(words) == 2), None  # clone URL: into ./NAME
    if program == "cpio":
        return ("i" in letters or _has(argv, "--extract")), _value(argv, "-D", "--directory")
    return False, None


def _tail_match(parts: list[str], glob_parts: list[str]) -> bool:
    """Could a file named by the relative ``parts`` under *some* directory match the glob?
    Only when a component of the glob that is not a bare wildcard matched a component of the
    path: ``id_rsa`` may be ``~/.ssh/id_rsa``, but ``README`` is not made suspicious by
    ``/etc/**``."""
    literal = False
    i, j = len(parts) - 1, len(glob_parts) - 1
    while i >= 0:
        if j < 0:
            return False
        g = glob_parts[j]
        if g == "**":
            return literal
        if not fnmatch.fnmatchcase(parts[i], g):
            return False
        literal = literal or g not in ("*", "?")
        i -= 1
        j -= 1
    return literal


@functools.lru_cache(maxsize=4096)
def _sensitive_cached(path: str, table: tuple[tuple[str, tuple[str, ...]], ...]) -> frozenset[str]:
    norm = posixpath.normpath(path[3:] if path.startswith(("~+/", "~-/")) else path)
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if not parts:
        return frozenset()
    if ".." in parts:
        return frozenset({"parent"})
    found: set[str] = set()
    for name, globs in table:
        for g in globs:
            gp = [p for p in g.lstrip("~").split("/") if p]
            if _tail_match(parts, gp):
                found.add(name)
                break
    return frozenset(found)


def sensitive_somewhere(path: str, globs: Mapping[str, tuple[str, ...]]) -> frozenset[str]:
    """The sensitive classes a relative path could belong to in some unknown directory."""
    table = tuple(sorted((k, tuple(v)) for k, v in globs.items() if k not in HARMLESS_CLASSES))
    return _sensitive_cached(path, table)
