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

_UNQUOTE = re.compile(r"['\"\\\\]")
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
    if not tree.root_node.has_error:
        # An open here-doc parses without error only when its end is missing from the tree.
        return _open_heredoc(tree.root_node)
    delims = ["\n" + d for d in _heredoc_delimiters(tree.root_node)]
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


def _walk(node: Node) -> list[Node]:
    out: list[Node] = []
    stack = [node]
    while stack:
        n = stack.pop()
        out.append(n)
        stack.extend(n.children)
    return out


def _open_heredoc(root: Node) -> bool:
    """A here-document (``<<``, not a ``<<<`` here-string, not ``<<`` inside quotes) whose
    delimiter line has not come yet."""
    return any(
        n.type == "heredoc_redirect" and not any(c.type == "heredoc_end" for c in n.children)
        for n in _walk(root)
    )


def _heredoc_delimiters(root: Node) -> list[str]:
    """Delimiter words of the here-documents the parser saw start (quotes removed)."""
    out: list[str] = []
    for n in _walk(root):
        if n.type == "heredoc_start" and n.text is not None:
            word = _UNQUOTE.sub("", n.text.decode("utf-8", "replace"))
            if word and word not in out:
                out.append(word)
    return out
