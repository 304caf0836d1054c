"""Reads of the environment: dumps of every variable, and prints of secret-named ones.

``tag(unit, assigns)`` adds tags the rules in ``config/policy.toml`` judge:

* ``env:dump``: the command prints every variable with its value (``printenv``, bare ``env``,
  ``env -0``, ``set``, ``declare -p``/``-xp``, ``export -p``, ``typeset -p``, ``readonly``,
  ``local``), or other processes' environments (``ps e``, ``ps eww``, ``ps auxe``).
  ``compgen -v`` prints names only and is not a dump.
* ``env:secret-print``: a program that prints its input or arguments (``echo``, ``printf``,
  ``cat <<<``, ``printenv NAME``, ``declare -p NAME``, ``base64``, ...) expands a variable whose
  name says secret (``secretnames.secret_variable``).
* ``env:secret-use``: any other command line that expands such a variable (``curl -H "...
  $TOKEN"``): the value leaves the gate's sight.
* ``env:indirect``: ``${!name}`` expands a variable chosen at run time.

``/proc/*/environ`` is a path class (``secret``), not a tag.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING

from bastion.policy.secretnames import indirect_reference, secret_references, secret_variable
from bastion.policy.syntax import Word

if TYPE_CHECKING:
    from bastion.policy.unwrap import Unit

# Builtins that test or set variables without printing a value.
_NON_EXPANDING = frozenset({"test", "[", "[[", ":", "true", "false", "unset", "<assign>"})
# Programs that print what they are given (arguments or stdin).
PRINTERS = frozenset({
    "echo", "printf", "cat", "tac", "printenv", "tee", "base64", "base32", "basenc", "xxd", "od",
    "hexdump", "rev", "tr", "head", "tail", "strings", "fold", "cut", "sed", "awk", "gawk",
    "mawk", "jq", "yq", "nl", "column", "paste", "less", "more", "wc", "md5sum", "sha1sum",
    "sha256sum", "sha512sum", "declare", "typeset", "export", "readonly", "local", "print",
})
_DECLARERS = frozenset({"declare", "typeset", "export", "readonly", "local"})


def tag(unit: Unit, assigns: list[tuple[str, Word]]) -> None:
    if unit.kind != "command" or not unit.argv:
        return
    program = unit.program
    args = unit.argv[1:]
    if program == "printenv":
        names = [a for a in args if not a.startswith("-")]
        if not names:
            unit.tags.add("env:dump")
        elif any(secret_variable(n) for n in names):
            unit.tags.add("env:secret-print")
    elif program == "env":
        # after unwrapping, an `env` unit has no command left: it prints the environment
        unit.tags.add("env:dump")
    elif program in _DECLARERS:
        _declaration(unit, args)
    elif (program == "set" and not args) or (program == "ps" and ps_shows_environment(args)):
        unit.tags.add("env:dump")
    elif program in _JQS or program in _AWKS:
        _program_environment(unit, args, _JQ_ENV if program in _JQS else _AWK_ENV)
    if program in _NON_EXPANDING:
        return
    if all(unit.static) and (unit.stdin != "herestring" or unit.payload is not None):
        return  # every word is literal: a `$NAME` in the text is quoted, not expanded
    text_refs = Counter(secret_references(unit.text))
    for _name, value in assigns:
        text_refs.subtract(secret_references(value.text))  # judged as an assignment instead
    if any(n > 0 for n in text_refs.values()):
        unit.tags.add("env:secret-print" if program in PRINTERS else "env:secret-use")
    if indirect_reference(unit.text):
        unit.tags.add("env:indirect")


def _declaration(unit: Unit, args: list[str]) -> None:
    options = "".join(a[1:] for a in args if a.startswith(("-", "+")) and a not in ("-", "--"))
    operands = [a for a in args if not a.startswith(("-", "+"))]
    if "f" in options or "F" in options:
        return  # functions (bodies or names), not variables
    if not operands:
        unit.tags.add("env:dump")  # bare export/declare/readonly/local/typeset list values
        return
    if "p" in options and any(secret_variable(n.split("=", 1)[0]) for n in operands):
        unit.tags.add("env:secret-print")


# jq's `env`/`$ENV` and awk's `ENVIRON` give a filter or program the whole environment. A
# selection of named variables (`env.HOME`, `$ENV["CI"]`, `ENVIRON["PATH"]`) is judged by the
# names; anything else is a dump. (The tool grammars may read these programs in full; this only
# looks for the environment.)
_JQS = frozenset({"jq", "gojq", "jaq", "yq"})
_AWKS = frozenset({"awk", "gawk", "mawk", "nawk"})
# yq 4 names one variable as env(NAME) or strenv(NAME).
_JQ_ENV = re.compile(r'(?<![.\w$])(?:\$ENV|(?:str)?env)\b'
                     r'(?:\s*\.\s*([A-Za-z_]\w*)|\s*\[\s*"(\w+)"\s*\]|\s*\(\s*([A-Za-z_]\w*)\s*\))?')
_LITERAL = re.compile(r'(?<![\[\w])\s*"(?:[^"\\]|\\.)*"')  # not a subscript: ENVIRON["HOME"]
_AWK_ENV = re.compile(r'\bENVIRON\b(?:\s*\[\s*"(\w+)"\s*\])?')


def _program_environment(unit: Unit, args: list[str], pattern: re.Pattern[str]) -> None:
    for i, a in enumerate(args, 1):
        if not unit.static[i]:
            if "ENV" in a or "env" in a:
                unit.tags.add("env:dump")  # a program only known at run time that names env
            continue
        # String literals are data ("env" is a word, not the environment); a jq string with
        # \( ... ) interpolation is code and stays.
        a = _LITERAL.sub(lambda m: m.group() if "\\(" in m.group() else '""', a)
        for m in pattern.finditer(a):
            name = next((g for g in m.groups() if g), None)
            if name is None:
                unit.tags.add("env:dump")
            elif secret_variable(name):
                unit.tags.add("env:secret-print")


# ps (procps-ng): UNIX options take a dash, BSD options do not; only BSD `e` shows the
# environment. Options that take a value, so that `ps -u eve` or `ps -o pid,user` is not read
# as BSD flags.
_PS_UNIX_VALUE = frozenset("CGgpqstUuoOD")
_PS_BSD_VALUE = frozenset("pqtUOok")
_PS_LONG_VALUE = frozenset({"--group", "--Group", "--pid", "--ppid", "--quick-pid", "--sid",
                            "--tty", "--user", "--User", "--format", "--cols", "--columns",
                            "--lines", "--rows", "--sort", "--width", "--help", "--date-format"})


def ps_shows_environment(args: list[str]) -> bool:
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("--"):
            if a.split("=", 1)[0] in _PS_LONG_VALUE and "=" not in a:
                i += 1
        elif a.startswith("-"):
            for pos, c in enumerate(a[1:], 1):
                if c in _PS_UNIX_VALUE:
                    if pos == len(a) - 1:
                        i += 1  # the value is the next word
                    break
        elif a.isdigit() or ("," in a and all(p.isdigit() for p in a.split(","))):
            pass  # a pid list
        else:
            for pos, c in enumerate(a):
                if c == "e":
                    return True
                if c in _PS_BSD_VALUE:
                    if pos == len(a) - 1:
                        i += 1
                    break
        i += 1
    return False
