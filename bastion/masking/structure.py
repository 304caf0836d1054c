"""Line-structure rules: secrets that are recognised by the lines around them.

A small state machine fed one complete line at a time: PEM/OpenSSH/PGP private key blocks
(every line between BEGIN and END is masked), PuTTY private lines, Kubernetes Secret
``data:``/``stringData:`` values, and the ``"value"`` of a Key Vault secret shown after its
``.vault.azure.net/secrets/`` id. A partial line (``partial=True``) is judged with the current
state but never changes it, so an idle release cannot make the stream depend on timing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bastion.masking.rules import is_placeholder

Span = tuple[int, int, str]

PEM_BEGIN = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
PEM_END = re.compile(rb"-----END ")
PUTTY = re.compile(rb"PuTTY-User-Key-File-\d+:")
DATA = re.compile(rb"^([ \t]*)\"?(data|stringData)\"?[ \t]*:[ \t]*(\{)?[ \t]*$")
DATA_ITEM = re.compile(rb"^[ \t]*\"?[^\":\s]+\"?[ \t]*:[ \t]*\"?(?P<v>[^\"\r\n]*?)\"?,?[ \t]*$")
KV_ID = re.compile(rb"\.vault\.azure\.net/secrets/")
KV_VALUE = re.compile(
    rb"\"value\"[ \t]*:[ \t]*\"(?P<s>(?:[^\"\\\r\n]|\\.)*)\"?"
    rb"|(?<![A-Za-z0-9_\"])value:[ \t]+(?P<s2>[^\r\n]+)"
)
# Lines that can start a state; searched only where the prefilter saw a structural keyword.
TRIGGER = re.compile(
    rb"PRIVATE KEY|PuTTY-User-Key-File-|(?:data|stringData)\"?[ \t]*:[ \t]*\{?[ \t]*(?:[\r\n]|$)"
    rb"|\.vault\.azure\.net/secrets/"
)
KEYWORDS = (b"private key", b"putty-user-key-file-", b"data:", b"data\":",
            b".vault.azure.net/secrets/")
_B64 = re.compile(rb"[A-Za-z0-9+/]+={0,2}")
PEM_MAX_LINES = 1000
KV_MAX_LINES = 40


@dataclass
class StructState:
    mode: str = ""  # "", "pem", "putty", "data", "kv"
    lines: int = 0
    indent: int = 0
    json: bool = False
    string_data: bool = False
    putty_private: bool = False


def _content(line: bytes, off: int, rid: str, start: int = 0) -> list[Span]:
    body = line[start:].rstrip()
    lead = len(body) - len(body.lstrip())
    if len(body) <= lead:
        return []
    return [(off + start + lead, off + start + len(body), rid)]


def _b64_value(v: bytes) -> bool:
    return (
        len(v) >= 4 and len(v) % 4 == 0 and _B64.fullmatch(v) is not None
        and not v.isdigit() and not (v.isalpha() and v.islower())
    )


def line_spans(st: StructState, line: bytes, off: int, partial: bool) -> list[Span]:
    """Spans to mask in one line (offset ``off`` in the caller's text); updates ``st``."""
    if st.mode == "pem":
        end = PEM_END.search(line)
        if not partial:
            st.lines -= 1
            if end is not None or st.lines <= 0:
                st.mode = ""
        return _content(line[: end.start()] if end else line, off, "pem-private-key")
    if st.mode == "putty":
        if line.startswith(b"Private-MAC:"):
            if not partial:
                st.mode = ""
            return _content(line, off, "putty-private-key", 12)
        if line.startswith(b"Private-Lines:"):
            if not partial:
                st.putty_private = True
            return []
        if not partial:
            st.lines -= 1
            if st.lines <= 0:
                st.mode = ""
        return _content(line, off, "putty-private-key") if st.putty_private else []
    if st.mode == "data":
        stripped = line.strip()
        if not stripped:
            return []
        indent = len(line) - len(line.lstrip(b" \t"))
        closing = st.json and stripped.startswith(b"}")
        if not partial and (indent <= st.indent or closing):
            st.mode = ""
            if closing:
                return []
        else:
            m = DATA_ITEM.match(line)
            if m is None:
                return _content(line, off, "kubernetes-secret-data") if partial else []
            v = m.group("v")
            masked = partial or (not is_placeholder(v) if st.string_data else _b64_value(v))
            if v and masked:
                return [(off + m.start("v"), off + m.end("v"), "kubernetes-secret-data")]
            return []
    if st.mode == "kv":
        m = KV_VALUE.search(line)
        if m is not None:
            if not partial:
                st.mode = ""
            g = "s" if m.start("s") != -1 else "s2"
            if m.end(g) > m.start(g) and not is_placeholder(m.group(g)):
                return [(off + m.start(g), off + m.end(g), "azure-key-vault-secret-value")]
            return []
        if not partial:
            st.lines -= 1
            if st.lines <= 0:
                st.mode = ""
        return []
    if partial:
        return []
    return _enter(st, line, off)


def _enter(st: StructState, line: bytes, off: int) -> list[Span]:
    m = PEM_BEGIN.search(line)
    if m is not None:
        if PEM_END.search(line, m.end()) is None:
            st.mode, st.lines = "pem", PEM_MAX_LINES
            return _content(line, off, "pem-private-key", m.end())
        return []
    if PUTTY.search(line):
        st.mode, st.lines, st.putty_private = "putty", 200, False
        return []
    m = DATA.match(line)
    if m is not None:
        st.mode, st.indent = "data", len(m.group(1))
        st.json, st.string_data = m.group(3) is not None, m.group(2) == b"stringData"
        return []
    m = KV_ID.search(line)
    if m is not None:
        v = KV_VALUE.search(line, m.end())
        if v is not None and v.start("s") != -1 and v.end("s") > v.start("s"):
            return [(off + v.start("s"), off + v.end("s"), "azure-key-vault-secret-value")]
        st.mode, st.lines = "kv", KV_MAX_LINES
    return []
