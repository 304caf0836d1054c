"""Path classes: what a path argument or redirect target refers to (root, system, device, secret,
startup file, tmp, workspace, ...). Classification is lexical: the gate never touches the disk."""

from __future__ import annotations

import fnmatch
import functools
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bastion.policy import budget

# Classes the engine computes itself; the others come from the policy file's [paths] table.
BUILTIN_CLASSES = (
    "root", "home", "workspace", "workspace-root", "parent", "relative", "absolute", "dynamic"
)
_HOME_PREFIX = re.compile(r"^(/home/[^/]+|/root)(?=/|$)")


_GLOB_CHARS = frozenset("*?[")
# Classes whose anchored locations also mark the folders that hold them ("secret-dir"), so a
# recursive read of such a folder is caught even though the folder itself is not a secret.
CONTAINER_CLASSES = ("secret",)


@dataclass(frozen=True, eq=False)  # hashed by identity: it keys the classification cache
class PathClassifier:
    """Compiled glob lists per class name, matched against normalised paths.

    A path argument that is itself a glob (``~/.ssh/*``, ``/etc/shad*``) belongs to every class
    one of whose globs can match a path the argument can expand to (glob intersection), so
    wildcards cannot hide a secret from the gate.
    """

    patterns: Mapping[str, tuple[re.Pattern[str], ...]]
    globs: Mapping[str, tuple[str, ...]]

    @classmethod
    def build(cls, table: Mapping[str, Iterable[str]]) -> PathClassifier:
        globs = {name: tuple(g) for name, g in table.items()}
        compiled = {
            name: tuple(re.compile(_glob_to_regex(g)) for g in items)
            for name, items in globs.items()
        }
        return cls(compiled, globs)

    def classify(self, raw: str, login: str | None = None) -> frozenset[str]:
        return _classify_cached(self, raw, login)

    def _classify(self, raw: str, login: str | None) -> frozenset[str]:
        path = normalise(raw, login)
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
        for name, pats in self.patterns.items():
            if is_glob:
                if any(_glob_hits(path, g) for g in self.globs[name]):
                    found.add(name)
            elif any(p.match(path) for p in pats):
                found.add(name)
        for name in CONTAINER_CLASSES:
            if any(_may_hold(path, g) for g in self.globs.get(name, ())):
                found.add(f"{name}-dir")
        return frozenset(found)


@functools.lru_cache(maxsize=4096)
def _classify_cached(
    classifier: PathClassifier, raw: str, login: str | None
) -> frozenset[str]:
    return classifier._classify(raw, login)


def _glob_hits(argument: str, class_glob: str) -> bool:
    """Does a glob *argument* name something in a class? Exact intersection, except that a
    single-name pattern (``**/.env``, ``**/*.pem``) counts only when the argument spells the
    name (``*/.env``): the gate cannot see folder contents, so ``dist/*`` is left to masking."""
    if class_glob.startswith("**/") and "/" not in class_glob[3:]:
        last = argument.rsplit("/", 1)[-1]
        if not _GLOB_CHARS.isdisjoint(last):
            return False
    return may_intersect(argument, class_glob)


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


def _common_char(a: _Token, b: _Token) -> bool:
    if a[0] == "lit" and b[0] == "lit":
        return a[1] == b[1]
    if a[0] == "lit":
        return b[0] == "dstar" or a[1] != "/"
    if b[0] == "lit":
        return a[0] == "dstar" or b[1] != "/"
    return True  # two wildcards share any character other than "/"


@functools.lru_cache(maxsize=16384)
def may_intersect(a: str, b: str) -> bool:
    """True if some path matches both globs (``*``/``?`` stay within a component, ``**`` spans
    components, ``[...]`` is any one character). Decided exactly for those forms."""
    ta, tb = _tokens(a), _tokens(b)
    seen: set[tuple[int, int]] = set()
    stack = [(0, 0)]
    steps = 0
    while stack:
        steps += 1
        if steps & 1023 == 0:
            budget.check()  # a hostile glob can cost ~1 s here: bounded by the decision budget
        i, j = stack.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == len(ta) and j == len(tb):
            return True
        a_tok = ta[i] if i < len(ta) else None
        b_tok = tb[j] if j < len(tb) else None
        if a_tok is not None and a_tok[0] in ("star", "dstar"):
            stack.append((i + 1, j))  # the wildcard matches nothing more
        if b_tok is not None and b_tok[0] in ("star", "dstar"):
            stack.append((i, j + 1))
        if a_tok is None or b_tok is None or not _common_char(a_tok, b_tok):
            continue
        a_stays = a_tok[0] in ("star", "dstar")
        b_stays = b_tok[0] in ("star", "dstar")
        if a_stays and b_stays:
            continue  # both absorb the character: same state; the skips above cover progress
        # A "/" can only be absorbed by "**"; _common_char already excluded star/one with "/".
        stack.append((i if a_stays else i + 1, j if b_stays else j + 1))
    return False


def normalise(raw: str, login: str | None = None) -> str:
    """Lexical normalisation: home -> ``~``, collapse ``//``, ``/./`` and ``..`` (absolute only)."""
    path = raw
    if path.startswith("~/") or path == "~":
        pass
    else:
        m = _HOME_PREFIX.match(path)
        if m and (login is None or m.group(1) in (f"/home/{login}", "/root")):
            path = "~" + path[m.end() :]
    if path.startswith("/"):
        path = posixpath.normpath(path)
        if path.startswith("//"):
            path = path[1:]
    elif path.startswith("~/"):
        rest = posixpath.normpath(path[2:])
        if rest == ".":
            path = "~"
        elif rest.startswith(".."):
            path = "/home/" + rest[3:] if rest != ".." else "/home"
        else:
            path = "~/" + rest
    elif path not in ("", "."):
        path = posixpath.normpath(path)
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    return path


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


def glob_match(pattern: str, value: str) -> bool:
    """Case-sensitive fnmatch (``*`` matches anything, including ``/``)."""
    return fnmatch.fnmatchcase(value, pattern)
