"""The bash snippet that installs shell integration on the target, and the nonce it carries.

Sent once, as the first input of a line-gated shell, before the agent sees anything. It needs
bash >= 4.4 (PS0); on anything else no marker ever appears and the controller falls back.
What it does, and why:
- ``set +H``: no history expansion (``!!``, ``^a^b``) can change an approved line;
- ``unalias -a``, ``unset -f`` of every function, ``trap - DEBUG``: names mean what the gate saw;
- emacs mode, bracketed paste on, Enter/Ctrl-U bound to their defaults: delivery is literal;
- history on with every line kept (``HISTCONTROL=``, ``lithist``): PS0 reports exactly the line
  the shell read, from ``history 1``;
- pagers set to ``cat`` and editors to ``false`` (the exec guard's list,
  ``bastion.interactive.execguard.GUARD_ENV``) so ``git log`` does not open a full-screen pager
  and ``git commit`` no editor;
- PROMPT_COMMAND prints D (exit status) and A (cwd); PS1 ends with B; PS0 prints C (command).
"""

from __future__ import annotations

import secrets

from bastion.interactive.execguard import GUARD_ENV

NONCE_BYTES = 16
# Shell names the integration owns: a line that mentions one is held (see programs.py).
PREFIX = "__bst"

_SNIPPET = (
    " __bst_i() {"
    " (( BASH_VERSINFO[0] > 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] >= 4) )) || return 1;"
    " builtin unalias -a; builtin unset -f $(builtin compgen -A function);"
    " builtin trap - DEBUG RETURN ERR; builtin set +H +o vi -o emacs -o history;"
    " builtin shopt -s cmdhist lithist; builtin shopt -u extdebug;"
    " __bst_n=@NONCE@; HISTCONTROL=; HISTIGNORE=; HISTTIMEFORMAT=;"
    " builtin export @GUARD@;"
    " __bst_e() { local s=$1; s=${s//\\\\/\\\\\\\\}; s=${s//$'\\n'/\\\\n}; s=${s//$'\\r'/\\\\r};"
    " s=${s//$'\\t'/\\\\t}; s=${s//$'\\e'/\\\\e}; s=${s//$'\\a'/\\\\a}; REPLY=$s; };"
    " __bst_c() { local h; h=$(HISTTIMEFORMAT= builtin history 1); h=${h#*[0-9]  };"
    " __bst_e \"$h\"; builtin printf '\\e]133;C;%s;%s\\a' \"$__bst_n\" \"$REPLY\"; };"
    " __bst_p() { local s=$?; __bst_e \"$PWD\";"
    " builtin printf '\\e]133;D;%s;%s\\a\\e]133;A;%s;%s\\a'"
    " \"$__bst_n\" \"$s\" \"$__bst_n\" \"$REPLY\";"
    " return $s; };"
    " PROMPT_COMMAND=__bst_p; PS0='$(__bst_c)'; PS1=$PS1'\\[\\e]133;B;'$__bst_n'\\a\\]';"
    " builtin bind 'set enable-bracketed-paste on' '\"\\C-m\": accept-line'"
    " '\"\\C-j\": accept-line' '\"\\C-u\": unix-line-discard'; };"
    " __bst_i; builtin unset -f __bst_i;"
    " [[ $(HISTTIMEFORMAT= builtin history 1) == *__bst_i* ]] && builtin history -d -1\r"
)


_GUARD = " ".join(f"{name}={value}" if value else f"{name}=''" for name, value in GUARD_ENV)


def new_nonce() -> str:
    return secrets.token_hex(NONCE_BYTES)


def snippet(nonce: str) -> bytes:
    """The bytes to type into the fresh shell (one line, starting with a space)."""
    if not nonce.isalnum():
        raise ValueError("nonce must be alphanumeric")
    return _SNIPPET.replace("@NONCE@", nonce).replace("@GUARD@", _GUARD).encode()
