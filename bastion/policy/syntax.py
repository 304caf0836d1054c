"""Parse a line with tree-sitter-bash and walk a whitelist of node types into raw units.

A raw unit is one simple command (words still carrying "static or not"), one redirect target, or
one bare assignment. Node types the walker does not know, parse errors and constructs whose effect
cannot be known statically become findings that hold the line for review.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

import tree_sitter_bash
from tree_sitter import Language, Node, Parser

from bastion.policy.model import Finding

_LANGUAGE = Language(tree_sitter_bash.language())
_LOCAL = threading.local()

MAX_UNITS = 64
# Deeper nesting ($( $( ... ) ), ( ( ... ) ), $(( (( ... )) ))) is held for review instead of
# walked: the walker recurses per level and would otherwise hit Python's recursion limit.
MAX_NESTING = 64

_WORD_TYPES = frozenset(
    {
        "word", "string", "raw_string", "ansi_c_string", "concatenation", "number",
        "simple_expansion", "expansion", "command_substitution", "process_substitution",
        "arithmetic_expansion", "brace_expression",
    }
)
_STATIC_VARS = {"HOME": "~", "PWD": "."}
_ANSI_SIMPLE = {
    "n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
    "e": "\x1b", "E": "\x1b", "\\": "\\", "'": "'", '"': '"', "?": "?",
}
_ANSI_ESCAPE = re.compile(
    r"\\(x[0-9a-fA-F]{1,2}|u[0-9a-fA-F]{1,4}|U[0-9a-fA-F]{1,8}|[0-7]{1,3}|c.|.)", re.S
)
_BACKSLASH = re.compile(r"\\(.)", re.S)
_BACKTICK_ESCAPE = re.compile(r"\\([\\$`])")
_DQ_BACKSLASH = re.compile(r"\\([\\$`\"\n])")
_GLOB_CHARS = frozenset("*?[")
_TRANSPARENT = frozenset({"sudo", "command", "nohup", "nice", "time"})  # with no options
_ECHO_OPTION = re.compile(r"^-[neE]+$")


# tree-sitter-bash's scanner hands the lookahead code point to isdigit()/isalpha(), which index
# glibc's 384-entry class table: a code point above U+FFFF reads up to 2 MiB past it and can
# segfault the process ("{" + U+10FFFF crashed 13 of 20 runs). Text holding one is never parsed.
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
UNPARSABLE = Finding("review", "unsupported-char",
                     "a character above U+FFFF: the line is not handed to the shell parser")


def parser_safe(source: str) -> bool:
    """False when ``source`` must not reach tree-sitter (see ``_ASTRAL``)."""
    return _ASTRAL.search(source) is None


def _parser() -> Parser:
    parser: Parser | None = getattr(_LOCAL, "parser", None)
    if parser is None:
        parser = Parser(_LANGUAGE)
        _LOCAL.parser = parser
    return parser


@dataclass
class Word:
    """One shell word after quote removal; ``static`` is False when its value is known only at
    run time (expansions, substitutions, brace expansion)."""

    text: str
    static: bool = True
    glob: bool = False  # unquoted glob characters: the value is a pattern
    quoted: bool = False  # some part was quoted


@dataclass
class RawUnit:
    kind: str  # "command" | "redirect" | "assign"
    words: list[Word]
    text: str
    assigns: list[tuple[str, Word]] = field(default_factory=list)
    stdin: str | None = None  # "pipe" | "heredoc" | "herestring" | "file"
    payload: str | None = None  # statically known stdin content
    op: str = ""  # redirect operator
    in_function: bool = False


@dataclass
class Parsed:
    units: list[RawUnit]
    findings: list[tuple[Finding, str]]  # (finding, offending text)


def _ansi_c(body: str) -> str:
    def sub(m: re.Match[str]) -> str:
        esc = m.group(1)
        head = esc[0]
        if head == "x":
            return chr(int(esc[1:], 16))
        if head in "uU" and len(esc) > 1:
            return chr(min(int(esc[1:], 16), 0x10FFFF))
        if head in "01234567":
            return chr(int(esc, 8) & 0xFF)
        if head == "c" and len(esc) == 2:
            return chr(ord(esc[1].upper()) ^ 0x40)
        return _ANSI_SIMPLE.get(esc, "\\" + esc)

    return _ANSI_ESCAPE.sub(sub, body)


def _text(node: Node) -> str:
    return node.text.decode("utf-8", "replace") if node.text is not None else ""


class Walker:
    """Walks one parse tree; collects raw units and findings."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.units: list[RawUnit] = []
        self.findings: list[tuple[Finding, str]] = []
        self._function_depth = 0
        self._depth = 0  # statement/expression nesting, bounded so Python's stack never is

    # -- findings --------------------------------------------------------------------------
    def flag(self, rule: str, reason: str, node: Node | None, action: str = "review") -> None:
        text = _text(node) if node is not None else ""
        self.findings.append((Finding(action, rule, reason), text[:200]))  # type: ignore[arg-type]

    def add(self, unit: RawUnit) -> RawUnit:
        unit.in_function = self._function_depth > 0
        if len(self.units) == MAX_UNITS:
            self.flag("too-complex", f"more than {MAX_UNITS} commands in one line", None)
        self.units.append(unit)
        return unit

    # -- statements ------------------------------------------------------------------------
    def statements(self, node: Node, stdin: str | None = None, payload: str | None = None) -> None:
        for child in node.named_children:
            self.statement(child, stdin, payload)

    def statement(
        self, node: Node, stdin: str | None = None, payload: str | None = None
    ) -> RawUnit | None:
        """Walk one statement; returns the raw unit when it is a simple command."""
        if self._depth >= MAX_NESTING:
            self.flag("too-complex", f"nested more than {MAX_NESTING} levels deep", None)
            return None
        self._depth += 1
        try:
            return self._statement(node, stdin, payload)
        finally:
            self._depth -= 1

    def _statement(self, node: Node, stdin: str | None, payload: str | None) -> RawUnit | None:
        t = node.type
        if node.is_error or node.is_missing or t == "ERROR":
            self.flag("parse-error", "the line does not parse as shell", node)
            return None
        if t == "command":
            return self.command(node, stdin, payload)
        if t in ("program", "list", "do_group", "else_clause", "elif_clause", "subshell"):
            self.statements(node, stdin, payload)
        elif t == "pipeline":
            self.pipeline(node, stdin, payload)
        elif t == "redirected_statement":
            return self.redirected(node, stdin, payload)
        elif t == "compound_statement":
            if node.child_count and node.children[0].type == "((":
                self.scan_expression(node)
            else:
                self.statements(node, stdin, payload)
        elif t in ("if_statement", "while_statement", "negated_command"):
            self.statements(node, stdin, payload)
        elif t in ("for_statement", "c_style_for_statement"):
            for child in node.named_children:
                if child.type == "do_group":
                    self.statements(child)
                elif child.type in _WORD_TYPES:
                    self.word(child)
                elif child.type != "variable_name":
                    self.scan_expression(child)
        elif t == "case_statement":
            for child in node.named_children:
                if child.type == "case_item":
                    for item in child.named_children:
                        if item.type in _WORD_TYPES:
                            self.word(item)
                        else:
                            self.statement(item)
                elif child.type in _WORD_TYPES:
                    self.word(child)
                else:
                    self.statement(child)
        elif t == "function_definition":
            self.flag("function-definition", "defines a shell function", node)
            self._function_depth += 1
            for child in node.named_children:
                if child.type != "word":
                    self.statement(child)
            self._function_depth -= 1
        elif t == "variable_assignment":
            self.assignment_unit([node], node)
        elif t == "variable_assignments":
            self.assignment_unit(list(node.named_children), node)
        elif t in ("declaration_command", "unset_command"):
            return self.declaration(node)
        elif t == "test_command":
            self.scan_expression(node)
            return self.add(RawUnit("command", [Word("[[")], _text(node)))
        elif t == "comment":
            pass
        else:
            self.flag("unknown-node", f"shell construct '{t}' is not understood", node)
        return None

    def pipeline(self, node: Node, stdin: str | None, payload: str | None) -> None:
        producer: RawUnit | None = None
        first = True
        for child in node.children:
            if not child.is_named:
                continue
            if first:
                producer = self.statement(child, stdin, payload)
                first = False
            else:
                producer = self.statement(child, "pipe", static_stdout(producer))

    def redirected(self, node: Node, stdin: str | None, payload: str | None) -> RawUnit | None:
        outer = (stdin, payload)
        body: Node | None = None
        redirects: list[Node] = []
        for child in node.named_children:
            if child.type in ("file_redirect", "heredoc_redirect", "herestring_redirect"):
                redirects.append(child)
            elif body is None:
                body = child
            else:
                self.flag("unknown-node", "unexpected statement layout", child)
        continuations: list[Node] = []
        for r in redirects:
            if r.type == "file_redirect":
                kind = self.file_redirect(r)
                if kind == "<":
                    stdin, payload = "file", None
            elif r.type == "herestring_redirect":
                stdin, payload = "herestring", self.herestring(r)
            else:
                stdin, payload, more = self.heredoc(r)
                continuations.extend(more)
        unit = self.redirect_body(body, (stdin, payload), outer) if body is not None else None
        for cont in continuations:
            if cont.type == "pipeline" and cont.children and cont.children[0].type in ("|", "|&"):
                producer = unit
                for child in cont.named_children:
                    producer = self.statement(child, "pipe", static_stdout(producer))
            else:
                self.statement(cont)
        return unit

    def redirect_body(
        self, body: Node, own: tuple[str | None, str | None], outer: tuple[str | None, str | None]
    ) -> RawUnit | None:
        """tree-sitter hangs a here-document (and the ``| next`` after it) on a whole list or
        pipeline (``a && cat <<EOF | sh``) where bash binds it to the last command only: give
        that command the redirected stdin and return it as the producer of the continuation."""
        kids = [c for c in body.named_children if c.type != "comment"]
        if own == outer or body.type not in ("list", "pipeline") or len(kids) < 2:
            return self.statement(body, *own)
        if self._depth >= MAX_NESTING:
            return self.statement(body, *own)  # flags too-complex
        self._depth += 1
        try:
            producer: RawUnit | None = None
            for i, child in enumerate(kids[:-1]):
                if body.type == "list" or i == 0:
                    producer = self.statement(child, *outer)
                else:
                    producer = self.statement(child, "pipe", static_stdout(producer))
            return self.redirect_body(kids[-1], own, outer)
        finally:
            self._depth -= 1

    def file_redirect(self, node: Node) -> str:
        op = ""
        targets: list[Node] = []
        for child in node.children:
            if not child.is_named:
                op += child.type
            elif child.type == "file_descriptor":
                continue
            elif child.type == "ERROR":
                self.flag("parse-error", "unparsable redirect", node)
            else:
                targets.append(child)  # tree-sitter may glue the next fd on: judge every word
        if not targets:
            self.flag("parse-error", "redirect without a target", node)
            return op
        kind = "<" if op in ("<", "<&") else ">"
        for target in targets:
            word = self.word(target)
            if op in (">&", "<&", ">&-", "<&-") and word.static and (
                word.text.isdigit() or word.text == "-"
            ):
                continue  # fd duplication, no file involved
            self.add(RawUnit("redirect", [Word(kind), word], _text(node), op=op))
        return kind

    def herestring(self, node: Node) -> str | None:
        for child in node.named_children:
            if child.type in _WORD_TYPES:
                w = self.word(child)
                return w.text + "\n" if w.static else None
        return None

    def heredoc(self, node: Node) -> tuple[str, str | None, list[Node]]:
        quoted = False
        body: Node | None = None
        more: list[Node] = []
        for child in node.named_children:
            if child.type == "heredoc_start":
                quoted = any(q in _text(child) for q in "'\"\\")
            elif child.type == "heredoc_body":
                body = child
            elif child.type in ("heredoc_end", "file_descriptor"):
                pass
            elif child.type in ("file_redirect", "herestring_redirect"):
                self.file_redirect(child) if child.type == "file_redirect" else None
            else:
                more.append(child)
        if body is None:
            return "heredoc", "", more
        text = _text(body)
        if quoted:
            return "heredoc", text, more
        static = True
        for part in body.named_children:
            if part.type == "heredoc_content":
                continue
            static = False
            if part.type in _WORD_TYPES:
                self.word(part)
            else:
                self.flag("unknown-node", f"'{part.type}' in a here-document", part)
        if "\\" in text or "`" in text:
            static = False
        return "heredoc", (text if static else None), more

    # -- commands --------------------------------------------------------------------------
    def command(self, node: Node, stdin: str | None, payload: str | None) -> RawUnit:
        words: list[Word] = []
        assigns: list[tuple[str, Word]] = []
        for child in node.children:
            t = child.type
            if t == "variable_assignment":
                assigns.append(self.assignment(child))
            elif t == "command_name":
                inner = child.named_children
                if len(inner) != 1:
                    self.flag("unknown-node", "unusual command name", child)
                for n in inner:
                    words.append(self.word(n))
            elif t in _WORD_TYPES:
                words.append(self.word(child))
            elif t == "herestring_redirect":
                stdin, payload = "herestring", self.herestring(child)
            elif t == "file_redirect":
                if self.file_redirect(child) == "<":
                    stdin, payload = "file", None
            elif t == "comment":
                pass
            elif child.is_named or t not in ("\n",):
                self.flag("unknown-node", f"'{t}' inside a command", child)
        return self.add(RawUnit("command", words, _text(node), assigns, stdin, payload))

    def assignment(self, node: Node) -> tuple[str, Word]:
        name = ""
        value = Word("")
        for child in node.children:
            if child.type in ("variable_name", "subscript") and not name:
                name = _text(child)
                if child.type == "subscript":
                    self.scan_expression(child)
            elif child.type in _WORD_TYPES:
                value = self.word(child)
            elif child.type == "array":
                parts = [self.word(c) for c in child.named_children if c.type in _WORD_TYPES]
                value = Word(" ".join(p.text for p in parts), static=False)
            elif child.type in ("=", "+="):
                continue
            else:
                self.flag("unknown-node", f"'{child.type}' in an assignment", child)
        raw = _text(node)
        if any(s in raw for s in ("$(", "`", "${")) and value.static:
            # A static string holding substitution syntax runs later when expanded as arithmetic
            # or by eval: treat as an opaque payload.
            self.flag("deferred-expansion", "assigned text contains substitution syntax", node)
        return name, value

    def assignment_unit(self, nodes: list[Node], whole: Node) -> None:
        assigns = [self.assignment(n) for n in nodes if n.type == "variable_assignment"]
        self.add(RawUnit("assign", [], _text(whole), assigns))

    def declaration(self, node: Node) -> RawUnit:
        words: list[Word] = []
        assigns: list[tuple[str, Word]] = []
        for child in node.children:
            t = child.type
            if t == "variable_assignment":
                name, value = self.assignment(child)
                assigns.append((name, value))
                words.append(Word(f"{name}={value.text}", value.static))
            elif t in _WORD_TYPES:
                w = self.word(child)
                if any(s in _text(child) for s in ("$(", "`", "${")):
                    self.flag("deferred-expansion", "builtin evaluates quoted substitution", child)
                words.append(w)
            elif t == "variable_name":
                words.append(Word(_text(child)))
            elif not child.is_named:
                words.append(Word(t))
            else:
                self.flag("unknown-node", f"'{t}' in a declaration", child)
        return self.add(RawUnit("command", words, _text(node), assigns))

    def scan_expression(self, node: Node) -> None:
        """Arithmetic and test expressions: find substitutions; quoted substitution syntax is
        evaluated by these builtins (e.g. ``[[ -v 'a[$(cmd)]' ]]``)."""
        if self._depth >= MAX_NESTING:
            self.flag("too-complex", f"nested more than {MAX_NESTING} levels deep", None)
            return
        self._depth += 1
        try:
            self._scan_expression(node)
        finally:
            self._depth -= 1

    def _scan_expression(self, node: Node) -> None:
        for child in node.named_children:
            t = child.type
            if t in ("command_substitution", "process_substitution"):
                self.statements(child)
            elif t in ("raw_string", "string", "word") and any(
                s in _text(child) for s in ("$(", "`", "${")
            ):
                self.flag("deferred-expansion", "expression evaluates substitution syntax", child)
                self.scan_expression(child)
            elif t == "ERROR":
                self.flag("parse-error", "unparsable expression", child)
            else:
                self.scan_expression(child)

    def backticks(self, raw: str) -> None:
        """Old-style `...` with backslashes: bash drops the backslash before $ ` and \\ and then
        parses the body, so `echo \\`cmd\\`` runs cmd. tree-sitter keeps the escaped backticks
        as word text; walk the unescaped body as a nested line instead."""
        body = raw[1:-1] if len(raw) >= 2 and raw.endswith("`") else raw[1:]
        inner = _BACKTICK_ESCAPE.sub(r"\1", body)
        if self._depth >= MAX_NESTING:
            self.flag("too-complex", f"nested more than {MAX_NESTING} levels deep", None)
            return
        if not parser_safe(inner):
            self.findings.append((UNPARSABLE, inner[:200]))
            return
        tree = _parser().parse(inner.encode("utf-8", "surrogatepass"))
        nested = Walker(inner)
        nested._depth = self._depth + 1
        nested._function_depth = self._function_depth
        if tree.root_node.has_error:
            nested.flag("parse-error", "the `...` substitution does not parse as shell", None)
        nested.statement(tree.root_node)
        for unit in nested.units:
            self.add(unit)
        self.findings.extend(nested.findings)

    # -- words -----------------------------------------------------------------------------
    def word(self, node: Node) -> Word:
        t = node.type
        if t == "word":
            raw = _text(node)
            glob = any(c in _GLOB_CHARS for c in _BACKSLASH.sub("", raw))
            return Word(_BACKSLASH.sub(r"\1", raw), glob=glob, quoted="\\" in raw)
        if t == "number":
            return Word(_text(node))
        if t == "raw_string":
            return Word(_text(node)[1:-1], quoted=True)
        if t == "ansi_c_string":
            return Word(_ansi_c(_text(node)[2:-1]), quoted=True)
        if t == "string":
            parts: list[str] = []
            static = True
            inner = node.children[1:-1] if node.child_count >= 2 else []
            data = node.text or b""
            base = node.start_byte
            pos = node.children[0].end_byte if node.child_count else base
            for child in inner:
                if child.start_byte > pos:
                    # tree-sitter leaves some literal text (e.g. blanks) out of the tree
                    gap = data[pos - base : child.start_byte - base].decode("utf-8", "replace")
                    parts.append(_DQ_BACKSLASH.sub(r"\1", gap))
                pos = child.end_byte
                if not child.is_named:
                    parts.append(_text(child))  # a lone '$' is literal inside double quotes
                elif child.type == "string_content":
                    parts.append(_DQ_BACKSLASH.sub(r"\1", _text(child)))
                else:
                    w = self.word(child)
                    static = static and w.static
                    parts.append(w.text)
            # The closing quote token may swallow preceding blanks; the quote is the last byte.
            end = node.end_byte - 1 if data.endswith(b'"') else node.children[-1].start_byte
            if end > pos:
                gap = data[pos - base : end - base].decode("utf-8", "replace")
                parts.append(_DQ_BACKSLASH.sub(r"\1", gap))
            return Word("".join(parts), static, quoted=True)
        if t == "concatenation":
            pieces = [self.word(c) for c in node.named_children]
            out = Word(
                "".join(p.text for p in pieces),
                all(p.static for p in pieces),
                any(p.glob for p in pieces),
                any(p.quoted for p in pieces),
            )
            unquoted = [_text(c) for c in node.named_children if c.type == "word"]
            if "{" in unquoted and "}" in unquoted and any("," in u or ".." in u for u in unquoted):
                out.static = False  # brace expansion
            return out
        if t in ("simple_expansion", "expansion"):
            names = [c for c in node.named_children]
            if len(names) == 1 and names[0].type == "variable_name":
                value = _STATIC_VARS.get(_text(names[0]))
                if value is not None:
                    return Word(value)
            self.scan_expression(node)
            return Word(_text(node), static=False)
        if t in ("command_substitution", "process_substitution"):
            raw = _text(node)
            if raw.startswith("`") and "\\" in raw:
                self.backticks(raw)
            else:
                self.statements(node)
            return Word(raw, static=False)
        if t == "arithmetic_expansion":
            if _text(node).startswith("$["):
                self.flag("deferred-expansion", "obsolete $[ ] arithmetic", node)
            self.scan_expression(node)
            return Word(_text(node), static=False)
        if t == "brace_expression":
            return Word(_text(node), static=False)
        self.flag("unknown-node", f"word of type '{t}' is not understood", node)
        return Word(_text(node), static=False)


def static_stdout(unit: RawUnit | None) -> str | None:
    """What a producer writes to a pipe, when that is known without running it."""
    if unit is None or unit.kind != "command" or not unit.words:
        return None
    if not all(w.static for w in unit.words):
        return None
    words = [w.text for w in unit.words]
    while len(words) > 1 and words[0] in _TRANSPARENT and not words[1].startswith("-"):
        words = words[1:]  # `sudo cat <<EOF | sh` feeds sh what cat would
    name, args = words[0], words[1:]
    if name == "echo" and not any(_ECHO_OPTION.match(a) for a in args):
        return " ".join(args) + "\n"
    if name == "printf" and len(args) == 1 and "%" not in args[0] and "\\" not in args[0]:
        return args[0]
    if name == "cat" and not args and unit.stdin in ("heredoc", "herestring"):
        return unit.payload
    return None


def parse(source: str) -> Parsed:
    """Parse ``source`` and walk it; never raises for any input string."""
    if not parser_safe(source):
        return Parsed([], [(UNPARSABLE, source[:200])])
    tree = _parser().parse(source.encode("utf-8", "surrogatepass"))
    walker = Walker(source)
    root = tree.root_node
    if root.has_error:
        walker.flag("parse-error", "the line does not parse as shell", None)
    walker.statement(root)
    return Parsed(walker.units, walker.findings)
