"""Path classes: what a path argument or redirect target refers to (root, system, device, secret,
startup file, tmp, workspace, ...). Classification is lexical: the gate never touches the disk."""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Classes the engine computes itself; the others come from the policy file's [paths] table.
BUILTIN_CLASSES = (
    "root", "home", "workspace", "workspace-root", "parent", "relative", "absolute", "dynamic"
)
_HOME_PREFIX = re.compile(r"^(/home/[^/]+|/root)(?=/|$)")


@dataclass(frozen=True)
class PathClassifier:
    """Compiled glob lists per class name, matched against normalised paths."""

    patterns: Mapping[str, tuple[re.Pattern[str], ...]]

    @classmethod
    def build(cls, table: Mapping[str, Iterable[str]]) -> PathClassifier:
        compiled = {
            name: tuple(re.compile(_glob_to_regex(g)) for g in globs)
            for name, globs in table.items()
        }
        return cls(compiled)

    def classify(self, raw: str, login: str | None = None) -> frozenset[str]:
        path = normalise(raw, login)
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
            if any(p.match(path) for p in pats):
                found.add(name)
        return frozenset(found)


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
