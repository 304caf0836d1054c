"""A small SQL statement classifier: read, write, destructive, or able to run programs.

It only needs to say "this is certainly read-only"; everything it does not recognise is unknown
(which the shipped policy holds for review).
"""

from __future__ import annotations

import re

_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)
_STRING = re.compile(r"'(?:[^']|'')*'")
_READ = frozenset({"select", "show", "explain", "describe", "desc", "values", "table", "help",
                   "use", "\\d", "\\dt", "\\l", "\\dn", "\\du", "\\df", "\\dv", "\\di",
                   "\\conninfo", "\\x", "\\timing", "\\q", "\\list", "go", "pragma"})
_WRITE = frozenset({"insert", "update", "create", "alter", "grant", "revoke", "merge", "upsert",
                    "replace", "begin", "commit", "rollback", "set", "analyze", "vacuum",
                    "reindex", "comment", "refresh", "call", "exec", "execute", "do", "lock",
                    "copy", "load", "rename", "\\i", "\\ir", "\\copy", "\\set"})
_DESTRUCTIVE = frozenset({"drop", "truncate", "delete", "dropdb", "shutdown", "kill"})
_EXEC = re.compile(
    r"(\\!|\\o\s*\||\\g\w*\s*\||\\w\s*\||\bprogram\b|\blo_export\b|\bxp_cmdshell\b|"
    r"\binto\s+outfile\b|\binto\s+dumpfile\b|\bsystem\s*\(|\\setenv|\bsp_configure\b|"
    # sqlite3 shell functions: writefile() writes, edit() runs $VISUAL, load_extension() runs
    # code; mysql client commands system/pager (and \P) run a program.
    r"\bwritefile\s*\(|\bedit\s*\(|\bload_extension\s*\(|"
    r"(?:^|;|\n)\s*(?:system|pager|\\P)\s)",
    re.I,
)
_READFILE = re.compile(r"\breadfile\s*\(|\bfts3_tokenizer\s*\(", re.I)  # any file: held
# sqlite3 dot-commands (sqlite3 3.40 `.help`), one per line: these only show or format.
_DOT_READ = frozenset({".bail", ".binary", ".changes", ".databases", ".dbinfo", ".dump", ".echo",
                       ".eqp", ".explain", ".fullschema", ".headers", ".help", ".indexes",
                       ".lint", ".mode", ".nullvalue", ".print", ".quit", ".exit", ".schema",
                       ".separator", ".show", ".stats", ".tables", ".timeout", ".timer",
                       ".vfsinfo", ".vfslist", ".vfsname", ".width", ".sha3sum", ".scanstats",
                       ".limit", ".prompt", ".progress"})
_DOT_EXEC = frozenset({".shell", ".system", ".load", ".excel"})
_DOT_OUT = frozenset({".output", ".once", ".read", ".import"})


def classify(sql: str) -> str:
    """Return one of 'read', 'write', 'destructive', 'exec', 'unknown' for a batch of SQL."""
    dots = _dot_commands(sql)
    if dots == "exec":
        return "exec"
    if dots is not None:
        sql = "\n".join(ln for ln in sql.splitlines() if not ln.lstrip().startswith("."))
    text = _STRING.sub("''", _COMMENT.sub(" ", sql))
    if _EXEC.search(text):
        return "exec"
    if _READFILE.search(text):
        return "unknown"
    if dots in ("write", "unknown"):
        return dots
    if dots == "read" and not text.strip():
        return "read"
    worst = "read"
    order = {"read": 0, "write": 1, "unknown": 1, "destructive": 2}
    statements = [s.strip() for s in re.split(r";|\n(?=\\)|\n\s*go\s*\n", text, flags=re.I)]
    seen = False
    for stmt in statements:
        if not stmt:
            continue
        seen = True
        first = stmt.split(None, 1)[0].lower()
        kind = _kind(first, stmt.lower())
        if order[kind] > order[worst] or (kind == "unknown" and worst == "read"):
            worst = kind
    return worst if seen else "unknown"


def _kind(first: str, stmt: str) -> str:
    if first == "with":
        if re.search(r"\b(insert|update|delete|merge)\b", stmt):
            return "destructive" if "delete" in stmt else "write"
        return "read"
    if first == "delete" and " where " in f" {stmt} ":
        return "write"
    if first in _DESTRUCTIVE:
        return "destructive"
    if first == "alter" and re.search(r"\bdrop\b", stmt):
        return "destructive"
    if first == "update" and " where " not in f" {stmt} ":
        return "destructive"
    if first in _READ or first.startswith("\\d"):
        return "read" if not re.search(r"\binto\b", stmt) or first != "select" else "write"
    if first in _WRITE:
        return "write"
    return "unknown"


def _dot_commands(sql: str) -> str | None:
    """The worst sqlite3 dot-command in ``sql`` (None when there is none)."""
    worst: str | None = None
    rank = {"read": 0, "write": 1, "unknown": 2, "exec": 3}
    for line in sql.splitlines():
        word, _, arg = line.strip().partition(" ")
        if not word.startswith(".") or word == ".":
            continue
        word = word.lower()
        arg = arg.strip().strip("'\"")
        if word in _DOT_EXEC or (word in _DOT_OUT and arg.startswith(("|", "-e", "-x"))):
            kind = "exec"
        elif word in _DOT_READ:
            kind = "read"
        elif word in (".output", ".once") and not arg:
            kind = "read"  # back to stdout
        elif word in (".output", ".once", ".import"):
            kind = "write"
        else:
            kind = "unknown"  # .read FILE, .open, .backup, .restore, .cd, .log, .archive, ...
        if worst is None or rank[kind] > rank[worst]:
            worst = kind
    return worst
