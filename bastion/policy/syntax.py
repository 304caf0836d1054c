"""Parse a line with tree-sitter-bash and walk a whitelist of node types into raw units.

A raw unit is one simple command (words still carrying "static or not"), one redirect target, or
one bare assignment. Node types the walker does not know, parse errors and constructs whose effect
cannot be known statically become findings that hold the line for review.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import tree_sitter_bash
from tree_sitter import Language, Node, Parser

from bastion.policy import budget
from bastion.policy import evaluation as ev
from bastion.policy.evaluation import NUM, VarState
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
_ARITH_TEST_OPS = frozenset({"-eq", "-ne", "-lt", "-le", "-gt", "-ge"})
# Builtins that run text the walker cannot follow: what they do to variables is not known.
_FORGETTING = frozenset({"eval", "source", "."})
_MAX_LOOP_REWALK = 2  # loops nested deeper forget the variables instead of walking twice


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
    in_loop: bool = False  # may run more than once (a cd here can repeat)
    serial: int = -1  # position in the line (names the cd a later unit is guarded by)
    guard: int | None = None  # runs only after the cd with this serial succeeded (`cd d && …`)
    level: int = 0  # subshell depth: a cd in a subshell does not move the line


@dataclass
class Parsed:
    units: list[RawUnit]
    findings: list[tuple[Finding, str]]  # (finding, offending text)
    state: VarState = field(default_factory=VarState)  # variables after the line


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

    def __init__(self, source: str, state: VarState | None = None) -> None:
        self.source = source
        self.units: list[RawUnit] = []
        self.findings: list[tuple[Finding, str]] = []
        self._function_depth = 0
        self._loop_depth = 0
        self._level = 0
        self._guard: int | None = None
        self._depth = 0  # statement/expression nesting, bounded so Python's stack never is
        self.vars = state if state is not None else VarState()
        self._data: bytes | None = None

    @contextmanager
    def maybe(self) -> Iterator[None]:
        """Code that may or may not run (after && or ||)."""
        before = self.vars.copy()
        try:
            yield
        finally:
            self.vars.merge([before])

    @contextmanager
    def isolated(self) -> Iterator[None]:
        """A subshell, substitution or function body: its assignments do not reach the line."""
        before = self.vars.copy()
        self._level += 1
        try:
            yield
        finally:
            self._level -= 1
            self.vars.restore(before)

    def anchor(self, start: int) -> int | None:
        """The cd that the units added since ``start`` leave the line in, when that is sure:
        the last command is that cd (at this subshell level), or ran guarded by one."""
        for unit in reversed(self.units[start:]):
            if unit.kind != "command":
                continue
            if unit.level != self._level:
                return None
            words = [w.text for w in unit.words if w.static]
            while words and words[0] in ("builtin", "command"):
                words = words[1:]
            if words[:1] in (["cd"], ["pushd"]) and len(words) == len(
                [w for w in unit.words if w.text not in ("builtin", "command")]
            ):
                return unit.serial
            return unit.guard
        return None

    def alternatives(self, walks: list[Callable[[], None]], none_taken: bool = True) -> None:
        """Exactly one of ``walks`` runs (or, with ``none_taken``, maybe none): each starts from
        the state here, and afterwards a variable may hold what any of them left."""
        start = self.vars.copy()
        ends: list[VarState] = []
        for walk in walks:
            self.vars.restore(start.copy())
            walk()
            ends.append(self.vars.copy())
        self.vars.restore(start)
        if not ends:
            return
        if not none_taken:
            self.vars.restore(ends[0])
            ends = ends[1:]
        self.vars.merge(ends)

    def eval_flag(self, rule: str, why: str | None, node: Node | None) -> None:
        if why is not None:
            self.flag(rule, why, node)

    def loop(self, walk: Callable[[], None]) -> None:
        """A loop body may run zero or more times, each time after its own assignments: walk it
        once to learn them (dropping what that pass found), then for real from the merge of
        the entry state and what the first pass left; afterwards, either may hold."""
        self._loop_depth += 1
        start = self.vars.copy()
        try:
            if self._loop_depth > _MAX_LOOP_REWALK:
                self.vars.forget_all()
            else:
                units, findings = len(self.units), len(self.findings)
                walk()
                del self.units[units:]
                del self.findings[findings:]
                self.vars.merge([start])
            walk()
            self.vars.merge([start])
        finally:
            self._loop_depth -= 1

    # -- findings --------------------------------------------------------------------------
    def flag(self, rule: str, reason: str, node: Node | None, action: str = "review") -> None:
        text = _text(node) if node is not None else ""
        self.findings.append((Finding(action, rule, reason), text[:200]))  # type: ignore[arg-type]

    def add(self, unit: RawUnit) -> RawUnit:
        unit.in_function = self._function_depth > 0
        unit.in_loop = self._loop_depth > 0
        unit.serial = len(self.units)
        unit.guard = self._guard
        unit.level = self._level
        if len(self.units) == MAX_UNITS:
            self.flag("too-complex", f"more than {MAX_UNITS} commands in one line", None)
        self.units.append(unit)
        return unit

    # -- statements ------------------------------------------------------------------------
    def statements(self, node: Node, stdin: str | None = None, payload: str | None = None) -> None:
        children = node.children
        for k, child in enumerate(children):
            if not child.is_named:
                continue
            if k + 1 < len(children) and children[k + 1].type == "&":
                with self.isolated():  # `cmd &` runs in a background subshell
                    self.statement(child, stdin, payload)
            else:
                self.statement(child, stdin, payload)

    def statement(
        self, node: Node, stdin: str | None = None, payload: str | None = None
    ) -> RawUnit | None:
        """Walk one statement; returns the raw unit when it is a simple command."""
        if self._depth >= MAX_NESTING:
            self.flag("too-complex", f"nested more than {MAX_NESTING} levels deep", None)
            return None
        budget.check()  # a decision's budget bounds the walk of a huge line too
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
        if t in ("program", "do_group", "else_clause", "elif_clause"):
            self.statements(node, stdin, payload)
        elif t == "subshell":
            with self.isolated():
                self.statements(node, stdin, payload)
        elif t == "list":
            # `a && b || c`: only the first command surely runs; after `cd d &&` the rest of
            # the list runs in d
            ops = [c.type for c in node.children if not c.is_named and c.type in ("&&", "||")]
            start = len(self.units)
            for k, child in enumerate(node.named_children):
                if k == 0:
                    self.statement(child, stdin, payload)
                    continue
                saved = self._guard
                if k - 1 < len(ops) and ops[k - 1] == "&&":
                    anchor = self.anchor(start)
                    self._guard = anchor if anchor is not None else saved
                try:
                    with self.maybe():
                        self.statement(child, stdin, payload)
                finally:
                    self._guard = saved
        elif t == "pipeline":
            self.pipeline(node, stdin, payload)
        elif t == "redirected_statement":
            return self.redirected(node, stdin, payload)
        elif t == "compound_statement":
            if node.child_count and node.children[0].type == "((":
                self.scan_expression(node)
                self.arith(self.between(node, "((", "))"), node)
            else:
                self.statements(node, stdin, payload)
        elif t == "if_statement":
            self.if_statement(node, stdin, payload)
        elif t == "negated_command":
            self.statements(node, stdin, payload)
        elif t == "while_statement":
            self.loop(lambda: self.statements(node, stdin, payload))
        elif t == "for_statement":
            self.for_in(node)
        elif t == "c_style_for_statement":
            self.c_for(node)
        elif t == "case_statement":
            self.case(node)
        elif t == "function_definition":
            self.flag("function-definition", "defines a shell function", node)
            self._function_depth += 1
            with self.isolated():
                for child in node.named_children:
                    if child.type != "word":
                        self.statement(child)
            self._function_depth -= 1
            self.vars.forget_all()  # calling it later may assign anything
        elif t == "variable_assignment":
            self.assignment_unit([node], node)
        elif t == "variable_assignments":
            self.assignment_unit(list(node.named_children), node)
        elif t in ("declaration_command", "unset_command"):
            return self.declaration(node)
        elif t == "test_command":
            self.scan_expression(node, test=True)
            return self.add(RawUnit("command", [Word("[[")], _text(node)))
        elif t == "comment":
            pass
        else:
            self.flag("unknown-node", f"shell construct '{t}' is not understood", node)
        return None

    def case(self, node: Node) -> None:
        """The word runs; then at most one item's body."""
        items: list[Callable[[], None]] = []
        for child in node.named_children:
            if child.type == "case_item":
                items.append(functools.partial(self.case_item, child))
            elif child.type in _WORD_TYPES:
                self.word(child)
            else:
                self.statement(child)
        self.alternatives(items)

    def case_item(self, item: Node) -> None:
        for part in item.named_children:
            if part.type in _WORD_TYPES:
                self.word(part)
            else:
                self.statement(part)

    def if_statement(self, node: Node, stdin: str | None, payload: str | None) -> None:
        """The condition runs; then one of the branches (none without ``else``)."""
        then: list[Node] = []
        branches: list[Callable[[], None]] = []
        has_else = False
        seen_then = False
        for child in node.children:
            if child.type == "then":
                seen_then = True
            elif not child.is_named:
                continue
            elif child.type in ("elif_clause", "else_clause"):
                has_else = has_else or child.type == "else_clause"
                branches.append(functools.partial(self.statements, child, stdin, payload))
            elif seen_then:
                then.append(child)
            else:
                self.statement(child, stdin, payload)

        def walk_then() -> None:
            for child in then:
                self.statement(child, stdin, payload)

        self.alternatives([walk_then, *branches], none_taken=not has_else)

    def for_in(self, node: Node) -> None:
        """``for NAME in WORDS``: NAME takes each word (static words give known values)."""
        name = ""
        values: list[Word] = []
        body: Node | None = None
        has_in = any(c.type == "in" for c in node.children)
        for child in node.named_children:
            if child.type == "do_group":
                body = child
            elif child.type == "variable_name" and not name:
                name = _text(child)
            elif child.type in _WORD_TYPES:
                values.append(self.word(child))
            else:
                self.scan_expression(child)
        if node.children and node.children[0].type == "select":
            self.vars.assign("REPLY", None)  # the line the user types
        if name:
            known = has_in and values and all(w.static and not w.glob for w in values)
            numeric = has_in and values and all(_numeric_word(w.text, self.vars) for w in values)
            self.vars.assign(name, frozenset(w.text for w in values) if known
                             else frozenset({NUM}) if numeric else None)
        if body is not None:
            b = body
            self.loop(lambda: self.statements(b))

    def c_for(self, node: Node) -> None:
        """``for ((init; cond; step))``: all three are arithmetic; the body is a loop."""
        header = self.between(node, "((", "))")
        body = next((c for c in node.named_children if c.type == "do_group"), None)
        for child in node.named_children:
            if child.type != "do_group":
                self.scan_expression(child) if child.type not in _WORD_TYPES else self.word(child)
        parts = header.split(";")

        def walk() -> None:
            for part in parts[1:]:
                self.arith(part, node)
            if body is not None:
                self.statements(body)

        self.arith(parts[0], node)
        self.loop(walk)

    def between(self, node: Node, start: str, end: str) -> str:
        """Source text between the first ``start`` token and the last ``end`` token of node."""
        a = next((c.end_byte for c in node.children if c.type == start), None)
        b = next((c.start_byte for c in reversed(node.children) if c.type == end), None)
        if a is None or b is None or b < a:
            return _text(node)
        if self._data is None:
            self._data = self.source.encode("utf-8", "surrogatepass")
        return self._data[a:b].decode("utf-8", "replace")

    def arith(self, text: str, node: Node | None) -> None:
        """``text`` is evaluated as arithmetic: hold it when that could run code."""
        self.eval_flag("eval-arithmetic", ev.arith_problem(text, self.vars), node)

    def pipeline(self, node: Node, stdin: str | None, payload: str | None) -> None:
        """Every element runs in a subshell, except perhaps the last (``shopt -s lastpipe``)."""
        producer: RawUnit | None = None
        elements = [c for c in node.children if c.is_named]
        for k, child in enumerate(elements):
            last = k == len(elements) - 1
            self._level += last  # never an anchor either way
            try:
                with self.maybe() if last else self.isolated():
                    if k == 0:
                        producer = self.statement(child, stdin, payload)
                    else:
                        producer = self.statement(child, "pipe", static_stdout(producer))
            finally:
                self._level -= last

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
        files: list[Node] = []
        for r in redirects:
            if r.type == "file_redirect":
                files.append(r)
                op = "".join(c.type for c in r.children if not c.is_named)
                if op in ("<", "<&"):
                    stdin, payload = "file", None
            elif r.type == "herestring_redirect":
                stdin, payload = "herestring", self.herestring(r)
            else:
                stdin, payload, more = self.heredoc(r)
                continuations.extend(more)
        start = len(self.units)
        unit = self.redirect_body(body, (stdin, payload), outer) if body is not None else None
        # File targets after the body: tree-sitter hangs `a && cd d && cmd > f` on the whole
        # list, bash on cmd, so f resolves where cmd runs (its guard), else where the body
        # may have moved to.
        last = next((u for u in reversed(self.units[start:]) if u.kind == "command"), None)
        saved = self._guard
        if body is not None and body.type == "list" and last is not None:
            self._guard = last.guard
        try:
            for r in files:
                self.file_redirect(r)
        finally:
            self._guard = saved
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
        self.builtin(words, node)
        return self.add(RawUnit("command", words, _text(node), assigns, stdin, payload))

    def builtin(self, words: list[Word], node: Node) -> None:
        """Builtins that evaluate names, subscripts or arithmetic in their arguments, and what
        they do to the line's variables."""
        k = 0
        while k < len(words) and words[k].static and words[k].text in ("builtin", "command"):
            k += 1
            while k < len(words) and words[k].text in ("-p", "--"):
                k += 1
        if k >= len(words):
            return
        if not words[k].static:
            self.vars.forget_all()  # a dynamic command could be eval or read
            return
        name, args = words[k].text, words[k + 1:]
        if name in ("test", "["):
            for j, w in enumerate(args[:-1]):
                if w.static and w.text in ("-v", "-R"):
                    self.name(args[j + 1], node)
        elif name == "printf":
            names, _ = _options(args, "v")
            for w in names:
                self.name(w, node, assigned=True)
        elif name == "read":
            names, rest = _options(args, "adinNptu", keep="a")
            for w in [*names, *rest] or [Word("REPLY")]:
                self.name(w, node, assigned=True)
        elif name in ("mapfile", "readarray"):
            names, rest = _options(args, "dnOsuCc", keep="C")
            if names:
                self.flag("eval-callback", f"{name} -C runs a callback", node)
            for w in rest[:1] or [Word("MAPFILE")]:
                self.name(w, node, assigned=True)
        elif name == "wait":
            names, _ = _options(args, "p")
            for w in names:
                self.name(w, node, assigned=True)
        elif name == "getopts":
            if len(args) >= 2:
                self.name(args[1], node, assigned=True)
            self.vars.assign("OPTARG", None)
        elif name == "let":
            for w in args:
                self.arith(w.text, node)
        if name in _FORGETTING:
            self.vars.forget_all()

    def name(self, w: Word, node: Node, assigned: bool = False) -> None:
        """``w`` is a variable name a builtin evaluates (and, when ``assigned``, sets)."""
        if not w.static:
            self.flag("eval-name", "a variable name known only at run time", node)
            return
        self.eval_flag("eval-name", ev.name_problem(w.text, self.vars), node)
        if assigned:
            self.vars.assign(w.text.split("[", 1)[0], None)

    def assignment(
        self, node: Node, integer: bool = False, track: bool = False
    ) -> tuple[str, Word]:
        """``NAME=value`` / ``NAME[sub]=value``; with ``track`` the line's shell keeps it (not a
        ``NAME=value cmd`` prefix); ``integer``: declared -i, so the value is arithmetic."""
        name = ""
        value = Word("")
        value_node: Node | None = None
        op = "="
        array = False
        elements: frozenset[str] | None = None  # a=(1 2): every element's possible value
        for child in node.children:
            if child.type in ("variable_name", "subscript") and not name:
                name = _text(child)
                if child.type == "subscript":
                    self.scan_expression(child)
                    base, _, sub = name.partition("[")
                    self.eval_flag("eval-name", ev.subscript_problem(base, sub[:-1], self.vars),
                                   child)
            elif child.type in _WORD_TYPES:
                value = self.word(child)
                value_node = child
            elif child.type == "array":
                array = True
                parts = [self.word(c) for c in child.named_children if c.type in _WORD_TYPES]
                value = Word(" ".join(p.text for p in parts), static=False)
                self.array_subscripts(name, child)
                if all(p.static and not p.glob for p in parts) and not any(
                    _text(c).startswith("[") for c in child.named_children
                ):
                    elements = frozenset(p.text for p in parts) or frozenset({""})
            elif child.type in ("=", "+="):
                op = child.type
                continue
            else:
                self.flag("unknown-node", f"'{child.type}' in an assignment", child)
        raw = _text(node)
        if any(s in raw for s in ("$(", "`", "${")) and value.static:
            # A static string holding substitution syntax runs later when expanded as arithmetic
            # or by eval: treat as an opaque payload.
            self.flag("deferred-expansion", "assigned text contains substitution syntax", node)
        base = name.split("[", 1)[0]
        integer = integer or base in self.vars.integers
        vtext = _text(value_node) if value_node is not None else ""
        if integer and not array:
            self.arith(value.text if value.static else vtext, node)
        if track and base:
            values: frozenset[str] | None = None
            kind = value_node.type if value_node is not None else ""
            numeric = kind == "arithmetic_expansion" or (
                kind == "command_substitution" and vtext.startswith("$(")
                and ev.numeric_command(vtext[2:-1])
            )
            if integer or numeric:
                values = frozenset({NUM})
            elif value.static and op == "=" and "[" not in name and not array:
                values = frozenset({value.text})
            elif array and op == "=" and "[" not in name:
                values = elements
            elif "[" in name and not array and value.static:
                prior = self.vars.values(base)  # a[i]=v: one more possible element value
                values = None if prior is None else prior | {value.text}
            self.vars.assign(base, values)
        return name, value

    def array_subscripts(self, name: str, node: Node) -> None:
        """``a=([sub]=v …)``: each ``[sub]`` is arithmetic for an indexed array."""
        for child in node.named_children:
            raw = _text(child)
            if child.type == "concatenation" and raw.startswith("[") and "]=" in raw:
                self.eval_flag("eval-name",
                               ev.subscript_problem(name, raw[1:raw.index("]=")], self.vars),
                               child)

    def assignment_unit(self, nodes: list[Node], whole: Node) -> None:
        assigns = [self.assignment(n, track=True) for n in nodes
                   if n.type == "variable_assignment"]
        self.add(RawUnit("assign", [], _text(whole), assigns))

    def declaration(self, node: Node) -> RawUnit:
        """``declare/typeset/local/export/readonly/unset``: every name must be plain (a subscript
        in it is evaluated), ``-n`` targets too, and ``-i`` values are arithmetic."""
        words: list[Word] = []
        assigns: list[tuple[str, Word]] = []
        letters = ""
        builtin = node.children[0].type if node.child_count else ""
        for child in node.children:
            t = child.type
            if t == "variable_assignment":
                target = _text(child).split("=", 1)[0].split("[", 1)[0].rstrip("+")
                if builtin != "unset" and "i" in letters:
                    self.vars.integers.add(target)
                if "A" in letters:
                    self.vars.assoc.add(target)  # before its (string) subscripts are judged
                name, value = self.assignment(child, integer="i" in letters, track=True)
                assigns.append((name, value))
                words.append(Word(f"{name}={value.text}", value.static))
                if "n" in letters and builtin != "unset":
                    self.nameref(value, child)
                    self.vars.assign(name.split("[", 1)[0], None)
                    self.vars.aliased = True
            elif t in _WORD_TYPES:
                w = self.word(child)
                if any(s in _text(child) for s in ("$(", "`", "${")):
                    self.flag("deferred-expansion", "builtin evaluates quoted substitution", child)
                words.append(w)
                if w.static and w.text[:1] in ("-", "+") and len(w.text) > 1 and not assigns:
                    letters += w.text[1:] if w.text[0] == "-" else ""
                    continue
                self.declared(w, letters, builtin, child)
            elif t == "variable_name":
                w = Word(_text(child))
                words.append(w)
                self.declared(w, letters, builtin, child)
            elif not child.is_named:
                words.append(Word(t))
            else:
                self.flag("unknown-node", f"'{t}' in a declaration", child)
        return self.add(RawUnit("command", words, _text(node), assigns))

    def declared(self, w: Word, letters: str, builtin: str, node: Node) -> None:
        """A name (or ``name=value`` word) given to a declaration builtin."""
        if not w.static:
            self.flag("eval-name", "a variable name known only at run time", node)
            return
        name, eq, value = w.text.partition("=")
        if builtin == "unset" and "f" in letters:
            return  # function names are not evaluated
        self.eval_flag("eval-name", ev.name_problem(name, self.vars), node)
        base = name.split("[", 1)[0]
        if not ev.plain_name(base):
            return
        if "A" in letters:
            self.vars.assoc.add(base)
        if "i" in letters and builtin != "unset":
            self.vars.integers.add(base)
        if builtin == "unset":
            self.vars.assign(base, None if "[" in name else frozenset({""}))
        elif eq:
            if "i" in letters:
                self.arith(value, node)
            if "n" in letters:
                self.nameref(Word(value), node)
            self.vars.assign(base, frozenset({NUM}) if "i" in letters else frozenset({value}))
        if "n" in letters and builtin != "unset":
            self.vars.assign(base, None)
            self.vars.aliased = True

    def nameref(self, target: Word, node: Node) -> None:
        """``declare -n ref=target``: target is a variable name bash will evaluate."""
        if not target.static:
            self.flag("eval-name", "a nameref target known only at run time", node)
            return
        if target.text:
            self.eval_flag("eval-name", ev.name_problem(target.text, self.vars), node)

    def scan_expression(self, node: Node, test: bool = False) -> None:
        """Arithmetic and test expressions: find substitutions; quoted substitution syntax is
        evaluated by these builtins (e.g. ``[[ -v 'a[$(cmd)]' ]]``). In ``[[ ]]`` (``test``),
        the operands of -eq/-lt/… are arithmetic and the operand of -v is a name."""
        if self._depth >= MAX_NESTING:
            self.flag("too-complex", f"nested more than {MAX_NESTING} levels deep", None)
            return
        self._depth += 1
        try:
            if test:
                self.test_operators(node)
            self._scan_expression(node, test)
        finally:
            self._depth -= 1

    def test_operators(self, node: Node) -> None:
        ops = [c for c in node.children if c.type == "test_operator"]
        if not ops:
            return
        operands = [c for c in node.named_children if c.type != "test_operator"]
        op = _text(ops[0])
        if node.type == "binary_expression" and op in _ARITH_TEST_OPS:
            for operand in operands:
                self.arith(_text(operand), operand)
        elif node.type == "unary_expression" and op in ("-v", "-R") and operands:
            text = _text(operands[0])
            if any(c in text for c in "$`"):
                self.flag("eval-name", "a variable name known only at run time", operands[0])
            else:
                self.name(Word(_unquote(text)), operands[0])

    def _scan_expression(self, node: Node, test: bool = False) -> None:
        for child in node.named_children:
            t = child.type
            if t in ("command_substitution", "process_substitution"):
                with self.isolated():
                    self.statements(child)
            elif t in ("raw_string", "string", "word") and any(
                s in _text(child) for s in ("$(", "`", "${")
            ):
                self.flag("deferred-expansion", "expression evaluates substitution syntax", child)
                self.scan_expression(child)
            elif t == "ERROR":
                self.flag("parse-error", "unparsable expression", child)
            else:
                if t == "arithmetic_expansion":  # nested: ${v:-$((x))}
                    raw = _text(child)
                    self.arith(raw[2:-1] if raw.startswith("$[") else raw[3:-2], child)
                elif t == "expansion":
                    self.expansion(_text(child), child)
                self.scan_expression(child, test)

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
            if t == "expansion":
                self.expansion(_text(node), node)
            return Word(_text(node), static=False)
        if t in ("command_substitution", "process_substitution"):
            raw = _text(node)
            with self.isolated():
                if raw.startswith("`") and "\\" in raw:
                    self.backticks(raw)
                else:
                    self.statements(node)
            return Word(raw, static=False)
        if t == "arithmetic_expansion":
            raw = _text(node)
            self.scan_expression(node)
            self.arith(raw[2:-1] if raw.startswith("$[") else raw[3:-2], node)
            return Word(raw, static=False)
        if t == "brace_expression":
            return Word(_text(node), static=False)
        self.flag("unknown-node", f"word of type '{t}' is not understood", node)
        return Word(_text(node), static=False)

    def expansion(self, raw: str, node: Node) -> None:
        """``${…}``: indirection, subscripts, ``:offset:length`` and ``@P`` evaluate text."""
        inner = raw[2:-1]
        indirect = inner.startswith("!")
        body = inner[1:] if inner[:1] in ("!", "#") and len(inner) > 1 else inner
        m = ev.IDENT.match(body) or re.match(r"[0-9]+|[@*#?$!-]", body)
        if m is None:
            return
        name = m.group(0)
        rest = body[m.end():]
        if rest.startswith("["):
            end = _close_bracket(rest)
            if end == -1:
                self.flag("eval-name", "an unbalanced subscript", node)
                return
            self.eval_flag("eval-name", ev.subscript_problem(name, rest[1:end], self.vars), node)
            sub = rest[1:end]
            rest = rest[end + 1:]
            if indirect and sub not in ("@", "*"):
                self.flag("eval-name", f"${{!{name}[…]}} names a variable through an element",
                          node)
        elif indirect and rest not in ("*", "@"):
            self.eval_flag("eval-name", ev.indirect_problem(name, self.vars), node)
        if rest.startswith((":=", "=")) and ev.plain_name(name):
            self.vars.assign(name, None)  # ${x:=word} may assign word (expanded) to x
        if rest == "@P":
            self.eval_flag("eval-prompt", ev.prompt_problem(name, self.vars), node)
        parts = ev.split_slice(rest)
        if parts is not None:
            for part in parts:
                self.arith(part, node)


_BRACE_RANGE = re.compile(r"\{-?[0-9]+\.\.-?[0-9]+(?:\.\.-?[0-9]+)?\}\Z")
_KEYS = re.compile(r"\$\{!([A-Za-z_][A-Za-z0-9_]*)\[[@*]\]\}\Z")


def _numeric_word(text: str, state: VarState) -> bool:
    """A for-loop word whose every value is an integer: ``{1..10}``, ``$(seq 5)``, the keys
    of an indexed array (``"${!a[@]}"``)."""
    if _BRACE_RANGE.match(text):
        return True
    m = _KEYS.match(text)
    if m is not None:
        return m.group(1) not in state.assoc
    return text.startswith("$(") and text.endswith(")") and ev.numeric_command(text[2:-1])


def _close_bracket(text: str) -> int:
    depth = 0
    for i, c in enumerate(text):
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _unquote(text: str) -> str:
    out: list[str] = []
    quote = ""
    for c in text:
        if quote:
            if c == quote:
                quote = ""
            else:
                out.append(c)
        elif c in "'\"":
            quote = c
        elif c != "\\":
            out.append(c)
    return "".join(out)


def _options(
    args: list[Word], values: str, keep: str | None = None
) -> tuple[list[Word], list[Word]]:
    """getopt-style parse of a builtin's options (``values``: the letters that take a value;
    other letters are flags): the values of the options in ``keep`` (default: all) and the
    operands."""
    keep = values if keep is None else keep
    kept: list[Word] = []
    i = 0
    while i < len(args):
        a = args[i]
        if not a.static or not a.text.startswith("-") or a.text == "-":
            break
        i += 1
        if a.text == "--":
            break
        for j, c in enumerate(a.text[1:], 1):
            if c in values:
                if j + 1 < len(a.text):
                    value = Word(a.text[j + 1:])
                elif i < len(args):
                    value = args[i]
                    i += 1
                else:
                    break
                if c in keep:
                    kept.append(value)
                break
    return kept, args[i:]


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


def parse(
    source: str, variables: Mapping[str, str] | None = None, integers: tuple[str, ...] = ()
) -> Parsed:
    """Parse ``source`` and walk it; never raises for any input string. ``variables`` are the
    shell's known static values before the line (a gated shell's earlier lines)."""
    if not parser_safe(source):
        return Parsed([], [(UNPARSABLE, source[:200])])
    tree = _parser().parse(source.encode("utf-8", "surrogatepass"))
    walker = Walker(source, VarState.start(variables, integers))
    root = tree.root_node
    if root.has_error:
        walker.flag("parse-error", "the line does not parse as shell", None)
    walker.statement(root)
    return Parsed(walker.units, walker.findings, walker.vars)
