"""Text bash evaluates although it looks like data: arithmetic, names and subscripts.

Bash evaluates a variable's *value* as an arithmetic expression wherever arithmetic happens
(``$((x))``, ``$[x]``, ``((x))``, ``for ((…))``, ``let``, ``[[ x -eq 0 ]]``, ``${s:x:y}``, array
subscripts, ``declare -i``), recursively, and an array subscript inside it (``a[$(cmd)]``) runs
``cmd``. Builtins that take a variable *name* (``test -v``, ``printf -v``, ``read``, ``unset``,
``declare -n`` …) evaluate a subscript in that name the same way, and ``${x@P}`` expands the
prompt escapes and substitutions in a value. So the gate must know the content: it tracks the
values a line (and, in a gated shell, earlier lines) gave to variables, and holds arithmetic or
prompt expansion of content it cannot see, and names that are not plain identifiers.

``VarState`` is that tracking: per name the set of static values it may hold (``None``: not
known). The walker forks the state where control flow forks (branches, ``&&``/``||``, loop
bodies) and merges the results (a value set is the union; unknown wins); a subshell's assignments
are dropped; ``eval`` and ``source`` forget everything. ``arith_problem`` lexes an expression
the way bash evaluates it and says why it is unsafe, or None.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

NUM = "\x00int"  # the value of an arithmetic result: some integer
MAX_VALUES = 8
MAX_DEPTH = 8
# Variables bash computes as an integer each time they are read, whatever was assigned to them
# (or that are read-only), and the specials $# $? $$ $!. (OPTIND and SHLVL keep the text
# assigned to them, so they are tracked like any other variable.)
BASH_INTEGERS = frozenset({
    "RANDOM", "SRANDOM", "SECONDS", "LINENO", "BASHPID", "PPID", "UID", "EUID", "EPOCHSECONDS",
    "HISTCMD", "#", "?", "$", "!",
})
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IDENT_FULL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|[0-9]+#[0-9A-Za-z@_]+|[0-9]+")
_OPERATOR_CHARS = frozenset("+-*/%<>=!&|^~?:,() \t\n")
_ASSIGN_OPS = ("<<=", ">>=", "*=", "/=", "%=", "+=", "-=", "&=", "^=", "|=")
# Commands whose output is a number by the program's own format, whatever their input: their
# output may stand in arithmetic (`$(( $(nproc) * 2 ))`). Anything else prints data.
_NUMERIC_CMD = re.compile(
    r"\s*(?:nproc(?:\s+--all)?|getconf\s+[A-Z_0-9]+|id\s+-[ugG]r?|id\s+-r[ugG]|date\s+\+%s"
    r"|seq(?:\s+-w)?(?:\s+-?[0-9]+){1,3}"
    r"|wc\s+-[lcwm](?:\s*<\s*[^\s|;&<>()`]+)?|grep\s+-c\s+(?:-[EFiwvx]+\s+)*(?:'[^']*'|\"[^\"$`]*\"|"
    r"[\w.-]+)(?:\s+[\w./~-]+)?)\s*\Z"
)


@dataclass
class VarState:
    """What a line knows about its shell variables while it is walked."""

    known: dict[str, frozenset[str] | None] = field(default_factory=dict)
    integers: set[str] = field(default_factory=set)  # declare -i: assignments are arithmetic
    assoc: set[str] = field(default_factory=set)  # declare -A: subscripts are strings
    weak: int = 0  # > 0: an assignment may not happen (``c ? x=1 : 0`` in arithmetic)
    touched: set[str] = field(default_factory=set)
    forgot: bool = False  # eval/source ran: nothing known from before holds
    # var_problem answers while no assignment happens: values that name each other many times
    # (a='b+b+b', b='c+c+c', …) are judged once per name, not once per path.
    memo: dict[str, str | None] = field(default_factory=dict, repr=False, compare=False)
    # a nameref (declare -n) exists: a write through it changes another name, so no value is
    # known from here on
    aliased: bool = False

    @classmethod
    def start(cls, values: Mapping[str, str] | None = None,
              integers: Iterable[str] = ()) -> VarState:
        state = cls({k: frozenset({v}) for k, v in (values or {}).items()}, set(integers))
        return state

    def values(self, name: str) -> frozenset[str] | None:
        return None if self.aliased else self.known.get(name)

    def assign(self, name: str, values: frozenset[str] | None) -> None:
        self.memo.clear()
        self.touched.add(name)
        if values is not None and len(values) > MAX_VALUES:
            values = None
        if self.weak:
            prior = self.known.get(name)
            values = None if prior is None or values is None else prior | values
            if values is not None and len(values) > MAX_VALUES:
                values = None
        self.known[name] = values

    def copy(self) -> VarState:
        return VarState(dict(self.known), set(self.integers), set(self.assoc), self.weak,
                        set(self.touched), self.forgot, aliased=self.aliased)

    def restore(self, other: VarState) -> None:
        self.memo.clear()
        self.known, self.integers, self.assoc = other.known, other.integers, other.assoc
        self.touched, self.forgot = other.touched, other.forgot
        self.aliased = other.aliased

    def merge(self, others: Iterable[VarState]) -> None:
        """This state becomes what any of ``self`` and ``others`` may be."""
        states = [self, *others]
        names: set[str] = set()
        for s in states:
            names.update(s.known)
        merged: dict[str, frozenset[str] | None] = {}
        for name in names:
            out: frozenset[str] | None = frozenset()
            for s in states:
                v = s.known.get(name)
                out = None if v is None or out is None else out | v
            merged[name] = out if out is None or len(out) <= MAX_VALUES else None
        self.known = merged
        self.memo.clear()
        for s in states[1:]:
            self.integers |= s.integers
            self.assoc |= s.assoc
            self.touched |= s.touched
            self.forgot = self.forgot or s.forgot
            self.aliased = self.aliased or s.aliased

    def forget_all(self) -> None:
        self.memo.clear()
        self.forgot = True
        self.touched.update(self.known)
        self.known = {k: None for k in self.known}

    def snapshot(self) -> dict[str, str | None]:
        """Names this line set: one known value, or None (unknown afterwards)."""
        out: dict[str, str | None] = {}
        for name in self.touched:
            values = self.known.get(name)
            out[name] = next(iter(values)) if values is not None and len(values) == 1 else None
        return out


def plain_name(text: str) -> bool:
    return _IDENT_FULL.match(text) is not None


def name_problem(text: str, state: VarState) -> str | None:
    """A variable name a builtin will evaluate: a plain identifier, or one with a subscript bash
    can evaluate safely. Returns why not, or None."""
    if plain_name(text):
        return None
    m = IDENT.match(text)
    if m is None or not text.endswith("]") or text[m.end():m.end() + 1] != "[":
        return f"{text[:40]!r} is not a plain variable name"
    sub = text[m.end() + 1:-1]
    return subscript_problem(m.group(0), sub, state)


def subscript_problem(array: str, sub: str, state: VarState, depth: int = 0) -> str | None:
    if sub in ("@", "*"):
        return None
    if array in state.assoc:
        return None  # a string key: expanded once (substitutions are walked), not evaluated
    return arith_problem(sub, state, depth + 1)


def numeric_command(text: str) -> bool:
    """The output of ``text`` is a number by its last program's own format (``… | wc -l``):
    the earlier stages are commands the gate judges like any other."""
    last = text.rsplit("|", 1)[-1] if "|" in text and "'" not in text and '"' not in text else text
    return _NUMERIC_CMD.match(last) is not None


def _balanced(text: str, i: int, open_c: str, close_c: str) -> int:
    """Index just past the bracket closing the one at ``text[i]``, or -1."""
    depth = 0
    j = i
    while j < len(text):
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == open_c:
            depth += 1
        elif c == close_c:
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return -1


def var_problem(name: str, state: VarState, depth: int) -> str | None:
    """Reading ``name`` in arithmetic evaluates its value: is that known and safe?"""
    if name in BASH_INTEGERS:
        return None
    if name in state.memo:
        return state.memo[name]
    state.memo[name] = f"arithmetic on ${name} refers back to itself"  # a cycle: unsafe
    why = _var_problem(name, state, depth)
    state.memo[name] = why
    return why


def _var_problem(name: str, state: VarState, depth: int) -> str | None:
    values = state.values(name)
    if values is None:
        return f"arithmetic on ${name}, whose content the gate cannot see"
    for v in values:
        if v == NUM or v == "":
            continue
        if depth >= MAX_DEPTH:
            return f"arithmetic on ${name} nests too deeply"
        why = arith_problem(v, state, depth + 1, assign=False)
        if why is not None:
            # the value stays out of the reason: it may be a secret typed on an earlier line
            return f"${name} holds text that arithmetic would evaluate (a subscript, a"\
                   " substitution or a name whose content is not known)"
    return None


_LENGTH = re.compile(r"#(?:[A-Za-z_][A-Za-z0-9_]*(?:\[[@*]\])?|[0-9]+|[@*#])\Z")
_DEFAULT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):?[-=]")


def expansion_problem(inner: str, state: VarState, depth: int) -> str | None:
    """``${inner}`` inside arithmetic: its value is inserted and evaluated."""
    if _LENGTH.match(inner):
        return None  # a length
    if plain_name(inner) or inner in BASH_INTEGERS:
        return var_problem(inner, state, depth)
    m = _DEFAULT.match(inner)
    if m is not None:  # ${n:-0}, ${n=1}: the value, or the word
        return var_problem(m.group(1), state, depth) or arith_problem(
            inner[m.end():], state, depth + 1, assign=False)
    m = IDENT.match(inner)
    if m and inner[m.end():m.end() + 1] == "[" and inner.endswith("]"):
        why = subscript_problem(m.group(0), inner[m.end() + 1:-1], state, depth)
        return why or var_problem(m.group(0), state, depth)
    return f"arithmetic on ${{{inner[:40]}}}, whose value the gate cannot see"


def arith_problem(text: str, state: VarState, depth: int = 0, assign: bool = True) -> str | None:
    """Why evaluating ``text`` as bash arithmetic could run code, or None when it is safe.

    ``text`` is the expression before expansion (``$x``, ``$(cmd)`` and quotes still in it).
    Assignments in it (``i=0``, ``i++``) give their variable an integer value in ``state``."""
    if depth > MAX_DEPTH:
        return "arithmetic nests too deeply"
    branching = any(op in text for op in ("?", "&&", "||"))
    i = 0
    n = len(text)
    prev_incdec = False
    while i < n:
        c = text[i]
        if c in " \t\n\"":
            i += 1
            continue
        if c == "'":
            end = text.find("'", i + 1)
            if end == -1:
                return "unbalanced quote in arithmetic"
            why = arith_problem(text[i + 1:end], state, depth + 1, assign)
            if why is not None:
                return why
            i = end + 1
            continue
        if "0" <= c <= "9":
            m = _NUMBER.match(text, i)
            assert m is not None
            i = m.end()
            if i < n and (text[i].isalnum() or text[i] in "_#"):
                return f"{text[m.start():i + 1]!r} is not a number"
            continue
        if ("a" <= c <= "z") or ("A" <= c <= "Z") or c == "_":
            m = IDENT.match(text, i)
            assert m is not None
            name = m.group(0)
            i = m.end()
            j = i
            while j < n and text[j] in " \t":
                j += 1
            if j < n and text[j] == "[":
                end = _balanced(text, j, "[", "]")
                if end == -1:
                    return "unbalanced subscript in arithmetic"
                why = subscript_problem(name, text[j + 1:end - 1], state, depth)
                if why is not None:
                    return why
                i = end
                # an array element: its content is evaluated too (the array's known values
                # cover every element); `a[i] = …` only writes
                k = i
                while k < n and text[k] in " \t":
                    k += 1
                if not (text.startswith("=", k) and not text.startswith("==", k)):
                    why = var_problem(name, state, depth)
                    if why is not None:
                        return why
                continue
            rest = text[j:]
            plain_assign = rest.startswith("=") and not rest.startswith("==")
            compound = rest.startswith(_ASSIGN_OPS) or rest.startswith(("++", "--"))
            if not plain_assign:
                why = var_problem(name, state, depth)
                if why is not None:
                    return why
            if assign and (plain_assign or compound or prev_incdec):
                if branching:
                    state.weak += 1
                    state.assign(name, frozenset({NUM}))
                    state.weak -= 1
                else:
                    state.assign(name, frozenset({NUM}))
            prev_incdec = False
            continue
        if c == "$":
            nxt = text[i + 1:i + 2]
            if text.startswith("$((", i):
                end = _balanced(text, i + 1, "(", ")")
                if end == -1:
                    return "unbalanced $(( in arithmetic"
                why = arith_problem(text[i + 3:end - 2], state, depth + 1, assign)
                if why is not None:
                    return why
                i = end
                continue
            if nxt == "(":
                end = _balanced(text, i + 1, "(", ")")
                if end == -1:
                    return "unbalanced $( in arithmetic"
                if not numeric_command(text[i + 2:end - 1]):
                    return "arithmetic on the output of a command, which the gate cannot see"
                i = end
                continue
            if nxt == "[":
                end = _balanced(text, i + 1, "[", "]")
                if end == -1:
                    return "unbalanced $[ in arithmetic"
                why = arith_problem(text[i + 2:end - 1], state, depth + 1, assign)
                if why is not None:
                    return why
                i = end
                continue
            if nxt == "{":
                end = _balanced(text, i + 1, "{", "}")
                if end == -1:
                    return "unbalanced ${ in arithmetic"
                why = expansion_problem(text[i + 2:end - 1], state, depth)
                if why is not None:
                    return why
                i = end
                continue
            m = IDENT.match(text, i + 1)
            if m is not None:
                why = var_problem(m.group(0), state, depth)
                if why is not None:
                    return why
                i = m.end()
                continue
            if nxt and nxt in "#?$!":
                i += 2
                continue
            return f"arithmetic on ${nxt}, whose value the gate cannot see"
        if c == "`":
            return "arithmetic on the output of a command, which the gate cannot see"
        if c in _OPERATOR_CHARS:
            prev_incdec = text.startswith(("++", "--"), i)
            i += 2 if prev_incdec else 1
            continue
        return f"{c!r} in arithmetic"
    return None


def prompt_problem(name: str, state: VarState) -> str | None:
    """``${name@P}`` expands prompt escapes and substitutions in the value."""
    values = state.values(name)
    if values is None:
        return f"${{{name}@P}} expands substitutions in a value the gate cannot see"
    for v in values:
        if any(ch in v for ch in "$`\\") and v != NUM:
            return f"${{{name}@P}} would expand a substitution or escape in its value"
    return None


def indirect_problem(name: str, state: VarState) -> str | None:
    """``${!name}`` uses the value of name as a variable name (a subscript in it is evaluated)."""
    values = state.values(name)
    if values is None:
        return f"${{!{name}}} names a variable through a value the gate cannot see"
    for v in values:
        if v != NUM and name_problem(v, state) is not None:
            return f"${{!{name}}} names something that is not a plain variable name"
    return None


def split_slice(op: str) -> list[str] | None:
    """``:offset[:length]`` of ``${s:offset:length}`` (``op`` starts after the name), or None
    when ``op`` is another operator (``:-``, ``:=``, ``:?``, ``:+``)."""
    if not op.startswith(":") or op[1:2] in ("-", "=", "?", "+"):
        return None
    parts: list[str] = []
    depth = 0
    cur = ""
    for ch in op[1:]:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == ":" and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    parts.append(cur)
    return parts
