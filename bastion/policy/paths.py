"""Path classes: what a path argument or redirect target refers to (root, system, device, secret,
startup file, tmp, workspace, ...). Classification is lexical: the gate never touches the disk.

Every path is first brought to a canonical spelling (``canonical_forms``): ``file:`` URLs give
their path, ``/proc/self/root`` and ``/proc/<pid>/root`` are ``/``, ``/proc/self/cwd`` is the
working directory, ``..`` is resolved component by component (so it cannot climb out of a home
or through a magic link unseen), ``~user`` is that user's home, doubled slashes, ``.`` and
trailing ``/.`` go. A path may have several readings (``file:///etc/shadow`` is ``/etc/shadow``
to curl and a relative file to cat); it belongs to the classes of every reading, so the
canonical form can only add classes, never hide one.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import unquote

from bastion.errors import ConfigError
from bastion.policy import budget

# Classes the engine computes itself; the others come from the policy file's [paths] table.
BUILTIN_CLASSES = (
    "root", "home", "workspace", "workspace-root", "parent", "relative", "absolute", "dynamic"
)
_GLOB_CHARS = frozenset("*?[")
# Classes whose anchored locations also mark the folders that hold them ("secret-dir"), so a
# recursive read of such a folder is caught even though the folder itself is not a secret.
CONTAINER_CLASSES = ("secret",)
# Classes also matched against the lower-cased path: `KEY.PEM` is as much a key as `key.pem`.
CASE_FOLDED_CLASSES = frozenset({"secret"})
# Classes another user's home does not inherit from `~/...` globs (it is not our workspace).
_NOT_INHERITED = frozenset({"workspace", "relative", "workspace-root", "parent"})
# ... nor does a guessed reading of a climbing relative path (`../../etc/shadow` as /etc/shadow).
_NOT_GUESSED = _NOT_INHERITED | {"absolute", "home", "root"}

_FILE_URL = re.compile(r"^file:(?://([^/]*))?(/.*)$", re.I | re.S)
_USER_HOME = re.compile(r"^~([a-z_][a-z0-9_.-]*\$?)(?=/|$)", re.I)
_PID = re.compile(r"^(self|thread-self|[0-9]+)$")
_HOME_DIR = re.compile(r"^(?:/home/([^/]+)|/root)(?=/|$)")
_DIRSTACK = re.compile(r"^~(-|[+-]?[0-9]+)(/|$)")
_SENTINEL_HOME = "/home/\x00"  # the login's home when the login is not known


@dataclass(frozen=True)
class _Form:
    path: str
    other_home: str | None = None  # `~/rest` spelling of a path in someone else's home
    guess: bool = False  # a reading that may be the path (classes other than workspace count)


def _components_walk(absolute: bool, parts: Iterable[str]) -> tuple[str, list[str]]:
    """Resolve ``.``/``..``/empty components; the /proc magic links ``root`` (the process's
    root, i.e. ``/``) and ``cwd`` (its working directory) are followed as the kernel does.
    Returns ("abs" | "rel", components); "rel" after a ``cwd`` link means "relative to the
    working directory"."""
    kind = "abs" if absolute else "rel"
    stack: list[str] = []
    for part in parts:
        if part in ("", "."):
            continue
        if part == "..":
            if stack and stack[-1] != "..":
                stack.pop()
            elif kind == "rel":
                stack.append("..")
            continue
        stack.append(part)
        if kind == "abs" and stack[0] == "proc" and stack[-1] in ("root", "cwd"):
            pid_ok = len(stack) >= 3 and _is_pid(stack[1])
            task_ok = len(stack) == 5 and stack[2] == "task" and _is_pid(stack[3])
            if pid_ok and (len(stack) == 3 or task_ok):
                if stack[-1] == "root":
                    stack = []
                else:
                    kind, stack = "rel", []
        elif kind == "abs" and stack == ["dev", "fd"]:
            stack = ["proc", "self", "fd"]
    if (kind == "abs" and stack[:3] == ["proc", "self", "fd"]) or (
        kind == "abs" and len(stack) >= 3 and stack[0] == "proc" and stack[2] == "fd"
        and _is_pid(stack[1])
    ):
        stack = ["dev", "fd", *stack[3:]]
    return kind, stack


def _is_pid(part: str) -> bool:
    return bool(_PID.match(part)) or not _GLOB_CHARS.isdisjoint(part)


def _home_of(login: str | None) -> str:
    if login is None:
        return _SENTINEL_HOME
    return "/root" if login == "root" else f"/home/{login}"


def _spell(kind: str, stack: list[str], login: str | None) -> _Form:
    if kind == "rel":
        return _Form("/".join(stack) if stack else ".")
    path = "/" + "/".join(stack)
    home = _home_of(login)
    if path == home or path.startswith(home + "/"):
        return _Form("~" + path[len(home):])
    m = _HOME_DIR.match(path)
    if m:
        rest = path[m.end():]
        if login is None:
            return _Form("~" + rest)  # the login is not known: any home may be ours
        return _Form(path, "~" + rest)
    return _Form(path)


def canonical_forms(raw: str, login: str | None = None) -> tuple[_Form, ...]:
    """Every reading of ``raw`` as a path, canonical; the first is the plain shell reading."""
    forms = [_canonical(raw, login)]
    m = _FILE_URL.match(raw)
    if m and (m.group(1) or "").lower() in ("", "localhost", "127.0.0.1"):
        path = unquote(m.group(2))
        forms.append(_canonical(path, login))
        cut = re.split(r"[?#]", path, maxsplit=1)[0]
        if cut != path:
            forms.append(_canonical(cut, login))
    elif m:
        forms.append(_canonical(unquote(m.group(2)), login))  # a host curl refuses: fail closed
    if _cwd_link(raw):
        forms.append(_Form(_plain(raw)))  # /proc/self/cwd/x is x here, and a /proc path too
    climbed = forms[0].path
    if climbed.startswith("../"):
        # The working directory is not known here: `../../etc/shadow` may be /etc/shadow, and
        # `../.bashrc` a home's start-up file. Fail closed: also read the rest as from / and ~.
        rest = climbed
        while rest.startswith("../"):
            rest = rest[3:]
        if rest and rest != "..":
            forms += [replace(_canonical(base + rest, login), guess=True) for base in ("/", "~/")]
    return tuple(dict.fromkeys(forms))


def _cwd_link(raw: str) -> bool:
    return bool(re.search(r"/proc/[^/]+/(task/[^/]+/)?cwd(/|$)", raw))


def _plain(raw: str) -> str:
    """The lexical spelling without following /proc links (kept as an extra reading)."""
    absolute = raw.startswith("/")
    stack: list[str] = []
    for part in raw.split("/"):
        if part in ("", "."):
            continue
        if part == ".." and stack:
            stack.pop()
        elif part != "..":
            stack.append(part)
    return ("/" if absolute else "") + "/".join(stack)


def _canonical(raw: str, login: str | None) -> _Form:
    path = raw
    if path == "":
        return _Form("")
    if path == "~" or path.startswith("~/"):
        path = _home_of(login) + path[1:]
    elif path == "~+" or path.startswith("~+/"):
        path = "." + path[2:]  # bash: ~+ is $PWD
    else:
        m = _USER_HOME.match(path)
        if m:
            user = m.group(1)
            home = "/root" if user == "root" else f"/home/{user}"
            path = home + path[m.end():]
    kind, stack = _components_walk(path.startswith("/"), path.split("/"))
    return _spell(kind, stack, login)


def normalise(raw: str, login: str | None = None) -> str:
    """The canonical shell reading of a path: the login's home as ``~``, ``..`` and ``.``
    resolved (through homes and /proc magic links), doubled and trailing slashes gone."""
    return _canonical(raw, login).path


def expand_braces(glob: str) -> list[str]:
    """``{a,b}`` name families in class globs (nested braces allowed): ``*.{pem,key}``."""
    m = re.search(r"\{([^{}]*)\}", glob)
    if m is None:
        return [glob]
    out: list[str] = []
    for alt in m.group(1).split(","):
        out.extend(expand_braces(glob[: m.start()] + alt + glob[m.end():]))
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class _Class:
    globs: tuple[str, ...]
    regex: re.Pattern[str] | None
    exclude: re.Pattern[str] | None
    # For "could this folder hold a member?": anchored globs by literal prefix, and `**/name/...`
    # globs by their first name, so a path is only tested against globs it can concern.
    anchored: tuple[tuple[str, str], ...] = ()
    named: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Every entry in file order (positive?, glob, regex): where an exclusion matches, the last
    # matching entry decides, as in .gitignore (so a later glob can take a path back in).
    entries: tuple[tuple[bool, str, re.Pattern[str]], ...] = ()

    def member(self, path: str, is_glob: bool) -> bool:
        if self.regex is None:
            return False
        if is_glob:
            if not any(_glob_hits(path, g) for g in self.globs):
                return False
        elif not self.regex.match(path):
            return False
        if self.exclude is None or not self.exclude.match(path):
            return True
        for positive, glob, regex in reversed(self.entries):
            if not positive:
                if regex.match(path):
                    return False
            elif _glob_hits(path, glob) if is_glob else regex.match(path):
                return True
        return False

    def may_hold(self, folder: str) -> bool:
        inside = folder.rstrip("/") + "/"
        for prefix, glob in self.anchored:
            if (prefix.startswith(inside) or inside.startswith(prefix)) and _may_hold(folder, glob):
                return True
        for name in inside.split("/"):
            if any(_may_hold(folder, g) for g in self.named.get(name, ())):
                return True
        return False


_Holders = tuple[tuple[tuple[str, str], ...], dict[str, tuple[str, ...]]]


def _holders(globs: Iterable[str]) -> _Holders:
    anchored: list[tuple[str, str]] = []
    named: dict[str, list[str]] = {}
    for g in globs:
        if g.startswith("**/"):
            first = g[3:].split("/", 1)[0]
            if _GLOB_CHARS.isdisjoint(first) and "/" in g[3:]:
                named.setdefault(first, []).append(g)
        else:
            anchored.append((_literal_prefix(g), g))
    return tuple(anchored), {k: tuple(v) for k, v in named.items()}


def _compile(globs: Iterable[str]) -> re.Pattern[str] | None:
    parts = [_glob_to_regex(g) for g in globs]
    return re.compile("|".join(f"(?:{p})" for p in parts)) if parts else None


@dataclass(frozen=True, eq=False)  # hashed by identity: it keys the classification cache
class PathClassifier:
    """Compiled globs per class name, matched against canonical paths.

    A class entry is a glob (``**`` spans folders, ``*`` and ``?`` stay in one, ``{a,b}`` is a
    family of names) or an exclusion ``!glob`` that takes matching paths out of the class again
    (``"!**/*.pub"``). A path argument that is itself a glob (``~/.ssh/*``, ``/etc/shad*``)
    belongs to every class one of whose globs can match a path the argument can expand to (glob
    intersection), unless every such path is excluded, so wildcards cannot hide a secret.
    """

    classes: Mapping[str, _Class]

    @property
    def globs(self) -> Mapping[str, tuple[str, ...]]:
        return {name: c.globs for name, c in self.classes.items()}

    @classmethod
    def build(cls, table: Mapping[str, Iterable[str]], where: str = "paths") -> PathClassifier:
        classes: dict[str, _Class] = {}
        for name, entries in table.items():
            positive: list[str] = []
            negative: list[str] = []
            ordered: list[tuple[bool, str, re.Pattern[str]]] = []
            for entry in entries:
                if entry.startswith("!"):
                    if not _GLOB_CHARS.isdisjoint(entry[1:].replace("*", "")):
                        raise ConfigError(f"{where}.{name}", f"exclusion {entry!r} may use only "
                                          "* and ** (a ? or [...] could exclude too much)")
                    globs = expand_braces(entry[1:])
                    negative.extend(globs)
                else:
                    globs = expand_braces(entry)
                    positive.extend(globs)
                ordered.extend((not entry.startswith("!"), g, _path_regex(g)) for g in globs)
            anchored, named = _holders(positive)
            classes[name] = _Class(tuple(positive), _compile(positive), _compile(negative),
                                   anchored, named, tuple(ordered))
        return cls(classes)

    def classify(self, raw: str, login: str | None = None) -> frozenset[str]:
        return _classify_cached(self, raw, login)

    def _classify(self, raw: str, login: str | None) -> frozenset[str]:
        found: set[str] = set()
        if _DIRSTACK.match(raw):
            found.add("dynamic")  # ~- is $OLDPWD, ~N / ~+N / ~-N the directory stack
        for form in canonical_forms(raw, login):
            classes = self._classify_path(form.path)
            if form.guess:
                classes -= _NOT_GUESSED
            found |= classes
            if form.other_home is not None:
                found |= self._classify_path(form.other_home) - (
                    _NOT_GUESSED if form.guess else _NOT_INHERITED
                )
        return frozenset(found)

    def _classify_path(self, path: str) -> set[str]:
        is_glob = not _GLOB_CHARS.isdisjoint(path)
        found: set[str] = set()
        if path in ("/", "/*", "/.*"):
            found.add("root")
        if path in ("~", "~/*", "~/.*", "/home", "/home/*", "/root"):
            found.add("home")
        if path in (".", "*", "./*", ".*", "") or path.startswith("$"):
            found.add("workspace-root")
        if path == ".." or path.startswith("../"):
            found.add("parent")
        if path.startswith("/"):
            found.add("absolute")
        elif not path.startswith("~"):
            found.add("relative")
            if "parent" not in found and "workspace-root" not in found:
                found.add("workspace")
        folded = path.lower()
        for name, c in self.classes.items():
            if c.regex is None:
                continue
            hit = c.member(path, is_glob)
            if not hit and name in CASE_FOLDED_CLASSES and folded != path:
                hit = c.member(folded, is_glob)
            if hit:
                found.add(name)
        for name in CONTAINER_CLASSES:
            holder = self.classes.get(name)
            if holder is not None and holder.may_hold(path):
                found.add(f"{name}-dir")
        return found


@functools.lru_cache(maxsize=4096)
def _classify_cached(
    classifier: PathClassifier, raw: str, login: str | None
) -> frozenset[str]:
    return classifier._classify(raw, login)


def _file_type_pattern(name: str) -> bool:
    """A wildcard name with a literal part of two or more characters (`*.ts`, `test_*.py`)."""
    if _GLOB_CHARS.isdisjoint(name):
        return False
    return any(len(run) >= 2 for run in re.split(r"[*?]|\[[^\]]*\]", name))


def _glob_hits(argument: str, class_glob: str) -> bool:
    """Does a glob *argument* name something in a class? Exact intersection, except that a
    single-name pattern (``**/.env``, ``**/*.pem``) counts only when the argument's last name
    spells that name: at least half of its literal characters, with a literal run of three
    or more (or the whole literal name when shorter) that occurs in the pattern (``*/.env``,
    ``.env*``, ``*.pem``, ``id_*``). The gate cannot see folder contents, so ``dist/*``, ``.*``,
    ``*.py`` and ``*.json`` (against ``accessTokens.json``) are left to output masking."""
    if class_glob.startswith("**/") and "/" not in class_glob[3:]:
        last = argument.rsplit("/", 1)[-1]
        if not _GLOB_CHARS.isdisjoint(last):
            name = class_glob[3:]
            literal = "".join(t[1] if t[0] == "lit" else "\0" for t in _tokens(name))
            need = min(3, max(len(p) for p in literal.split("\0")))
            runs = [r for r in "".join(t[1] if t[0] == "lit" else "\0"
                                       for t in _tokens(last)).split("\0") if r]
            spelled = sum(len(r) for r in runs)
            if 2 * spelled < len(literal.replace("\0", "")) or not any(
                len(r) >= need and r in literal for r in runs
            ):
                return False
    elif "**" in argument.split("/") and _file_type_pattern(argument.rsplit("/", 1)[-1]):
        # `src/**/*.ts` or `~/**/*.md` reaches `.../.ssh/id_a.ts` only by coincidence of
        # wildcards: a pattern with folders (`**/.ssh/id_*`, `~/.ssh/*`, `**/.kube/**`) counts
        # for a recursive argument that asks for a kind of file (`*.ts`) only when the argument
        # names those folders (`**/.ssh/*` does). A bare `*` (`/**/*`: every file) or a spelled
        # name (`/**/shadow`) is intersected.
        folders = [c for c in class_glob.split("/")[:-1] if c and _GLOB_CHARS.isdisjoint(c)]
        parts = set(argument.split("/"))
        if any(f not in parts for f in folders if f != "~"):
            return False
    # A leading `**/` also matches no folder at all (`.env` is `**/.env`), which the token
    # intersection below does not model: try the glob without it too.
    return may_intersect(argument, class_glob, True) or (
        class_glob.startswith("**/") and may_intersect(argument, class_glob[3:], True)
    )


@functools.lru_cache(maxsize=4096)
def _literal_prefix(glob: str) -> str:
    cut = min((i for i, c in enumerate(glob) if c in _GLOB_CHARS), default=len(glob))
    return glob[:cut]


def _may_hold(folder: str, glob: str) -> bool:
    """Could something inside ``folder`` match ``glob``? Only anchored globs count, plus the
    ``**/.name/...`` family when ``folder`` is such a ``.name`` folder: every folder may hold a
    ``**/.env``, and holding every recursive read for that would stop ordinary work."""
    inside = folder.rstrip("/") + "/"
    if glob.startswith("**/"):
        first = glob[3:].split("/", 1)[0]
        if f"{first}/" not in inside:
            return False
        if _GLOB_CHARS.isdisjoint(first) and "/" in glob[3:] and (
            inside.endswith(f"/{first}/") or inside == f"{first}/"
        ):
            return may_intersect(inside + "**", inside + glob[3:].split("/", 1)[1])
        return False
    prefix = _literal_prefix(glob)
    if not (prefix.startswith(inside) or inside.startswith(prefix)):
        return False
    return may_intersect(inside + "**", glob)


_Token = tuple[str, str]  # ("lit", c) | ("one", "") | ("star", "") | ("dstar", "")


@functools.lru_cache(maxsize=4096)
def _tokens(glob: str) -> tuple[_Token, ...]:
    out: list[_Token] = []
    i = 0
    while i < len(glob):
        if glob.startswith("**", i):
            out.append(("dstar", ""))
            i += 2
        elif glob[i] == "*":
            out.append(("star", ""))
            i += 1
        elif glob[i] == "?":
            out.append(("one", ""))
            i += 1
        elif glob[i] == "[" and (end := glob.find("]", i + 2)) != -1:
            out.append(("one", ""))  # a bracket class: some one character (over-approximated)
            i = end + 1
        else:
            out.append(("lit", glob[i]))
            i += 1
    return tuple(out)


@functools.lru_cache(maxsize=4096)
def _profile(glob: str) -> tuple[tuple[_Token, ...], str, str, int, bool]:
    """Tokens, literal head and tail, number of literal "/" and whether ``**`` occurs."""
    tokens = _tokens(glob)
    return (tokens, _literal_head(tokens), _literal_head(tokens[::-1])[::-1],
            sum(1 for t in tokens if t == ("lit", "/")), ("dstar", "") in tokens)


def _literal_head(tokens: tuple[_Token, ...]) -> str:
    out: list[str] = []
    for kind, char in tokens:
        if kind != "lit":
            break
        out.append(char)
    return "".join(out)


def _common_char(a: _Token, b: _Token) -> bool:
    if a[0] == "lit" and b[0] == "lit":
        return a[1] == b[1]
    if a[0] == "lit":
        return b[0] == "dstar" or a[1] != "/"
    if b[0] == "lit":
        return a[0] == "dstar" or b[1] != "/"
    return True  # two wildcards share any character other than "/"


@functools.lru_cache(maxsize=16384)
def may_intersect(a: str, b: str, shell_dots: bool = False) -> bool:
    """True if some path matches both globs (``*``/``?`` stay within a component, ``**`` spans
    components, ``[...]`` is any one character). Decided exactly for those forms.

    ``shell_dots``: ``a`` is a glob the shell expands, where a ``*`` or ``?`` that begins a
    component does not match a leading ``.`` (bash without ``dotglob``): ``*.tmp`` never names
    ``.psqlrc-x.tmp``. ``**`` is left as it is (over-approximated)."""
    ta, ha, sa, slashes_a, dstar_a = _profile(a)
    tb, hb, sb, slashes_b, dstar_b = _profile(b)
    # Cheap necessary conditions first: the literal heads and tails must agree, and only `**`
    # absorbs a "/" (without one, a glob needs as many "/" as the other spells).
    if not (ha.startswith(hb) or hb.startswith(ha)) or not (sa.endswith(sb) or sb.endswith(sa)):
        return False
    if (slashes_b > slashes_a and not dstar_a) or (slashes_a > slashes_b and not dstar_b):
        return False
    # With shell_dots: does the component of `a` that token k is in begin with a wildcard?
    wild_start: list[bool] = []
    first = True
    starts_wild = False
    for kind, char in ta:
        if first:
            starts_wild = shell_dots and kind in ("star", "one")
            first = False
        wild_start.append(starts_wild)
        if (kind, char) == ("lit", "/"):
            first = True
    # State: positions in a and b, and whether no character of a's current component has been
    # matched yet (its first character may not be a "." when the component starts with a
    # wildcard, even one that matches nothing: `*.*` never names `.azure`).
    seen: set[tuple[int, int, bool]] = set()
    stack = [(0, 0, True)]
    steps = 0
    while stack:
        steps += 1
        if steps & 1023 == 0:
            budget.check()  # a hostile glob can cost ~1 s here: bounded by the decision budget
        i, j, fresh = stack.pop()
        if (i, j, fresh) in seen:
            continue
        seen.add((i, j, fresh))
        if i == len(ta) and j == len(tb):
            return True
        a_tok = ta[i] if i < len(ta) else None
        b_tok = tb[j] if j < len(tb) else None
        if fresh and b_tok == ("lit", ".") and i < len(ta) and wild_start[i]:
            continue  # the shell's leading-dot rule: this component cannot start with "."
        if a_tok is not None and a_tok[0] in ("star", "dstar"):
            stack.append((i + 1, j, fresh))  # the wildcard matches nothing more
        if b_tok is not None and b_tok[0] in ("star", "dstar"):
            stack.append((i, j + 1, fresh))
        if a_tok is None or b_tok is None or not _common_char(a_tok, b_tok):
            continue
        a_stays = a_tok[0] in ("star", "dstar")
        b_stays = b_tok[0] in ("star", "dstar")
        if a_stays and b_stays:
            # Both absorb a character: the same positions (the skips above cover progress),
            # but the component now has a first character, which both can make a non-dot.
            if fresh:
                stack.append((i, j, False))
            continue
        # A "/" can only be absorbed by "**"; _common_char already excluded star/one with "/".
        slash = ("lit", "/") in (a_tok, b_tok)  # a new component starts after it
        stack.append((i if a_stays else i + 1, j if b_stays else j + 1, slash))
    return False


def _glob_to_regex(glob: str) -> str:
    """Glob to anchored regex: ``**`` spans directories, ``*`` and ``?`` stay inside one."""
    out: list[str] = []
    i = 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            if i < len(glob) and glob[i] == "/":
                out[-1] = "(?:.*/)?"
                i += 1
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out) + r"\Z"


@functools.lru_cache(maxsize=1024)
def _path_regex(glob: str) -> re.Pattern[str]:
    return re.compile(_glob_to_regex(glob))


def path_glob_match(glob: str, path: str) -> bool:
    """Does a canonical path match a class-style glob (``*`` within a folder, ``**`` across)?"""
    return _path_regex(glob).match(path) is not None


def glob_match(pattern: str, value: str) -> bool:
    """Case-sensitive fnmatch (``*`` matches anything, including ``/``)."""
    return fnmatch.fnmatchcase(value, pattern)
