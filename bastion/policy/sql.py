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
    r"(\\!|\\o\s*\||\bprogram\b|\blo_export\b|\bxp_cmdshell\b|\binto\s+outfile\b|"
    r"\binto\s+dumpfile\b|\bsystem\s*\(|\\setenv|\bsp_configure\b)",
    re.I,
)


def classify(sql: str) -> str:
    """Return one of 'read', 'write', 'destructive', 'exec', 'unknown' for a batch of SQL."""
    text = _STRING.sub("''", _COMMENT.sub(" ", sql))
    if _EXEC.search(text):
        return "exec"
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
