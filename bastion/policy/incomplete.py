"""Is an interactive line complete, or does the shell need another line?

Used when the bastion owns the PTY input line: it accumulates lines until the input is complete,
then judges the whole unit. A line is incomplete when the parse fails only because the input ends
early (open quote, trailing backslash or operator, open compound command, unfinished here-doc),
which is tested by checking that some closing suffix makes it parse cleanly.
"""

from __future__ import annotations

import re

from tree_sitter import Node

from bastion.policy.chars import MAX_PARSE_BYTES
from bastion.policy.syntax import _parser, parser_safe

_HEREDOC = re.compile(r"<<-?\s*(?:'([^']*)'|\"([^\"]*)\"|\\?([A-Za-z0-9_]+))")
_PARSE_BUDGET = 48 * 1024  # bytes parsed while looking for a closing suffix
_CLOSERS = ("'", '"', "`", ")", "}", "]]", " x", "\nfi", "\ndone", "\nesac", "\n}", "\n:\n}",
            "\n:", "))")


def _errors_reach_end(node: Node, end: int) -> bool:
    stack = [node]
    while stack:
        n = stack.pop()
        if (n.is_missing or n.type == "ERROR") and n.end_byte >= end:
            return True
        stack.extend(n.children)
    return False


def _clean(source: str) -> bool:
    return not _parser().parse(source.encode("utf-8", "surrogatepass")).root_node.has_error


def is_incomplete(text: str) -> bool:
    """True when ``text`` needs more lines before it can run."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_PARSE_BYTES:
        return False  # too long to parse: the gate holds it for review as it is
    if not parser_safe(text):
        return False  # never parsed (it could crash tree-sitter): the gate holds it for review
    stripped = text.rstrip(" \t")
    trailing = len(stripped) - len(stripped.rstrip("\\"))
    if trailing % 2 == 1:
        return True
    data = text.encode("utf-8", "surrogatepass")
    tree = _parser().parse(data)
    delims = ["\n" + next(g for g in m.groups() if g is not None) for m in _HEREDOC.finditer(text)]
    if not tree.root_node.has_error:
        # An open here-doc parses without error but still waits for its delimiter.
        return bool(delims) and not _heredocs_closed(text, delims)
    body = text.rstrip()
    if not _errors_reach_end(tree.root_node, len(body.encode("utf-8", "surrogatepass"))):
        return False
    closers = (*_CLOSERS, *delims)
    attempts = list(closers) + [a + b for a in closers for b in closers]
    # Each attempt re-parses the whole text, and error recovery costs up to ~10 us a byte: cap
    # the bytes parsed so a long broken line answers fast. Past the cap the line counts as
    # complete, so the gate judges it as it is (a parse error holds it for review).
    budget = _PARSE_BUDGET
    for suffix in attempts:
        budget -= len(data) + len(suffix)
        if budget < 0:
            return False
        if _clean(text + suffix):
            return True
    return False


def _heredocs_closed(text: str, delims: list[str]) -> bool:
    lines = text.split("\n")
    return all(any(line.strip() == d.strip("\n") for line in lines[1:]) for d in delims)
