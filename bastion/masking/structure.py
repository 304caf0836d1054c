"""Line-structure rules: secrets that are recognised by the lines around them.

A small state machine fed one complete line at a time (bounded state: a few integers and at
most a table's column list). It follows:

* PEM/OpenSSH/PGP private key blocks (a BEGIN marker that ends its line; every base64 body
  line until END is masked; a line that is not PEM body ends the block), PuTTY private lines;
* Kubernetes Secret ``data:``/``stringData:`` values (after an ``apiVersion`` line, or always
  under a ``kubectl get secret`` profile), one-line Secret JSON (``last-applied-configuration``);
* the ``"value"`` of a Key Vault secret shown after its ``.vault.azure.net/secrets/`` id;
* a value separated from its key: ``"name": "X_PASSWORD"`` (or ``- name:``, ``"keyName"``,
  terraform's ``"sensitive": true``) then ``"value": …`` within a few lines, and the same
  pairs on one line (app settings lists, ``<add key=… value=…/>``);
* YAML block scalars under a secret key (``tls.key: |``);
* tables and TSV/CSV with a header row: the cells of a column named Value, Password, Key,
  Secret, ConnectionString … (``Secret access key`` in AWS credential CSVs);
* output profiles (profiles.py): whole output, secret fields, every env value; and a command
  echoed after a shell prompt in the stream selects the profile for the lines after it.

A partial line (``partial=True``) is judged with the current state but never changes it, so an
idle release cannot make the stream depend on timing.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from bastion.masking.names import is_benign_name, is_secret_name
from bastion.masking.profiles import OutputProfile, profile_for_argv, profile_keywords
from bastion.masking.rules import is_placeholder

Span = tuple[int, int, str]

PEM_BEGIN = re.compile(
    rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[ \t]*(?:[\"',]?[ \t]*)$")
PEM_END = re.compile(rb"-----END ")
# a body line of a PEM block (base64, or an RFC 1421 header such as Proc-Type/DEK-Info)
PEM_BODY = re.compile(rb"[ \t]*(?:[A-Za-z0-9+/=]{1,120}|[A-Za-z-]{2,20}:[ \t][^\r\n]*|)[ \t]*"
                      rb"[\"',]?[ \t]*")
PUTTY = re.compile(rb"PuTTY-User-Key-File-\d+:")
DATA = re.compile(rb"^([ \t]*)\"?(data|stringData)\"?[ \t]*:[ \t]*(\{)?[ \t]*$")
DATA_ITEM = re.compile(rb"^[ \t]*\"?[^\":\s]+\"?[ \t]*:[ \t]*\"?(?P<v>[^\"\r\n]*?)\"?,?[ \t]*$")
API_VERSION = re.compile(rb"^[ \t]*(?:-[ \t]+)?\"?apiVersion\"?[ \t]*:")
KV_ID = re.compile(rb"\.vault\.azure\.net/secrets/")
KV_VERSIONED = re.compile(rb"[^/\s]+/[0-9a-f]{32}\t")
KV_VALUE = re.compile(
    rb"\"value\"[ \t]*:[ \t]*\"(?P<s>(?:[^\"\\\r\n]|\\.)*)\"?"
    rb"|(?<![A-Za-z0-9_\"])value:[ \t]+(?P<s2>[^\r\n]+)"
)
# "name": "X", - name: X, "keyName": "key1", <name>X</name> is not followed
NAME_LINE = re.compile(
    rb"^(?P<i>[ \t]*)(?:-[ \t]+)?[\"']?(?:name|Name|NAME|key|Key|keyName|KeyName|variable"
    rb"|settingName|ParameterKey|OutputKey)[\"']?[ \t]*[:=][ \t]*[\"']?(?P<n>[^\"'\r\n,{}]{1,128}?)"
    rb"[\"']?[ \t]*,?[ \t]*$")
SENSITIVE_LINE = re.compile(rb"^(?P<i>[ \t]*)[\"']?(?:sensitive[\"']?[ \t]*[:=][ \t]*true|type"
                            rb"[\"']?[ \t]*[:=][ \t]*[\"']?secure(?:string|object)[\"']?)[ \t]*,?"
                            rb"[ \t]*$", re.I)
# "adminPassword": {   (ARM parameters, terraform outputs: the object's "value" is the secret)
OBJECT_LINE = re.compile(rb"^(?P<i>[ \t]*)\"(?P<k>[^\"\r\n]{1,128})\"[ \t]*:[ \t]*\{[ \t]*$")
# objects whose every string value is a secret (az functionapp keys list)
SECRET_OBJECTS = frozenset((b"functionkeys", b"systemkeys", b"hostkeys", b"masterkeys",
                            b"secrets", b"passwords", b"credentials", b"tokens"))
VALUE_LINE = re.compile(
    rb"^(?P<i>[ \t]*)[\"']?(?:value|Value|VALUE|secretValue|ParameterValue|OutputValue)"
    rb"[\"']?[ \t]*[:=][ \t]*(?P<v>[^\r\n]*?)[ \t]*,?[ \t]*$")
BLOCK_KEY = re.compile(rb"^(?P<i>[ \t]*)(?:-[ \t]+)?[\"']?(?P<k>[^\s:\"'#]{1,128})[\"']?[ \t]*:"
                       rb"[ \t]*[|>][-+0-9]*[ \t]*$")
# same-line pairs
INLINE_PAIR = re.compile(
    rb"[\"']?(?:name|Name|key|Key|keyName)[\"']?[ \t]*[:=][ \t]*[\"'](?P<n>[^\"'\r\n]{1,128})[\"']"
    rb"[ \t]*,?[ \t]*(?:[\"']?[A-Za-z]{1,32}[\"']?[ \t]*[:=][ \t]*(?:\"[^\"\r\n]{0,256}\"|'[^'\r\n]"
    rb"{0,256}'|[^,;{}\[\]\"'\s]{0,64})[ \t]*,?[ \t]*){0,4}[\"']?(?:value|Value)[\"']?[ \t]*[:=]"
    rb"[ \t]*(?:\"(?P<v>(?:[^\"\\\r\n]|\\.){1,4096})\"|'(?P<v2>[^'\r\n]{1,4096})')")
INLINE_PAIR_REV = re.compile(
    rb"[\"']?(?:value|Value)[\"']?[ \t]*[:=][ \t]*(?:\"(?P<v>(?:[^\"\\\r\n]|\\.){1,4096})\""
    rb"|'(?P<v2>[^'\r\n]{1,4096})')[ \t]*,?[ \t]*(?:[\"']?[A-Za-z]{1,32}[\"']?[ \t]*[:=][ \t]*"
    rb"(?:\"[^\"\r\n]{0,256}\"|[^,;{}\[\]\"'\s]{0,64})[ \t]*,?[ \t]*){0,4}[\"']?(?:name|Name|key"
    rb"|Key)[\"']?[ \t]*[:=][ \t]*[\"'](?P<n>[^\"'\r\n]{1,128})[\"']")
INLINE_SENSITIVE = re.compile(
    rb"\"sensitive\"[ \t]*:[ \t]*true[ \t]*,[ \t]*(?:\"type\"[ \t]*:[ \t]*(?:\"[^\"\r\n]*\""
    rb"|\[[^\]\r\n]*\])[ \t]*,[ \t]*)?\"value\"[ \t]*:[ \t]*\"(?P<v>(?:[^\"\\\r\n]|\\.){1,4096})\"")
SECRET_KIND = re.compile(rb"\"kind\"[ \t]*:[ \t]*\"Secret\"")
INLINE_DATA = re.compile(rb"\"(?:data|stringData)\"[ \t]*:[ \t]*\{(?P<body>[^{}\r\n]{0,65536})\}")
JSON_STR_VALUE = re.compile(rb"\"[^\"\r\n]{1,253}\"[ \t]*:[ \t]*\"(?P<v>(?:[^\"\\\r\n]|\\.)+)\"")
JSON_FIELD = re.compile(
    rb"[\"']?(?P<k>[A-Za-z0-9_.-]{1,64})[\"']?[ \t]*[:=][ \t]*(?:\"(?P<v>(?:[^\"\\\r\n]|\\.)+)\""
    rb"|'(?P<v2>[^'\r\n]+)'|(?P<v3>[^\s\"',{}\[\]][^\s,{}\[\]]*))")
ENV_LINE = re.compile(rb"^(?:export[ \t]+|declare[ \t]+-x[ \t]+)?[A-Za-z_][A-Za-z0-9_]*="
                      rb"(?P<v>[^\r\n]*?)[ \t]*$")
# a table header: words starting upper-case, separated by 2+ spaces, a tab or a comma
HEADER_FIELD = re.compile(rb"[A-Z][A-Za-z0-9_./()#-]*(?: [A-Za-z][A-Za-z0-9_./()#-]*){0,3}")
_ALIGNED_CELL = re.compile(rb"\S+(?: \S+)*")
DASHES = re.compile(rb"^[ \t]*-{2,}(?:[ \t]+-{2,})+[ \t]*$")
# a shell prompt followed by a command (a transcript of a session)
# a command at the start of a line with no prompt, or traced by "set -x" ("+ az ...")
BARE_CMD = re.compile(rb"^(?P<p>\+{1,3}[ \t]+|)(?P<c>[A-Za-z./~][^\r\n]{0,4096})$")
PROMPT_CMD = re.compile(
    rb"^(?P<p>(?:\([^)\r\n]{1,40}\)[ \t]?)?(?:[\w.-]{1,64}@[\w.-]{1,64}(?::[^\s$#]{0,256})?[ \t]?"
    rb"[$#%>]|\$|#|PS [^>\r\n]{1,256}>|>)[ \t]+)(?P<c>[A-Za-z./~][^\r\n]{0,4096})$")
COLUMN_VALUE = b"value"
# a command line that selects a profile holds one of these ("az keyvault", "cat .env" ...)
PROMPT_KEYWORDS = profile_keywords()
# Lines that can start a state hold one of these (the prefilter finds them; no other line is
# fed to the machine while no state is active).
KEYWORDS = (b"private key", b"putty-user-key-file-", b"data:", b"data\":",
            b".vault.azure.net/secrets/", b"apiversion", b"name\":", b"name:", b"name=",
            b"key\":", b"key:", b"key=", b"sensitive", b": |", b": >", b":|", b"value",
            b"password", b"passwd", b"secret", b"token", b"connectionstring", b"key ", b"key\t",
            b"key,", b"key\n", b"key\r", b"securestring", b"secureobject", b"keys\":",
            b"secrets\":", b"passwords\":", b"credentials\":", b"tokens\":",
            *PROMPT_KEYWORDS)
# keywords of NAME_LINE / INLINE_PAIR: a hit counts only when the name after it is secret
NAME_KEYWORDS = (b"name\":", b"name:", b"name=", b"key\":", b"key:", b"key=")
_NAME_VALUE = re.compile(rb"[ \t]*[\"']?([^\"'\r\n,{}]{1,128})")
_B64 = re.compile(rb"[A-Za-z0-9+/]+={0,2}")
PEM_MAX_LINES = 1000
KV_MAX_LINES = 40
PAIR_LINES = 4
TABLE_MAX_ROWS = 2000
WHOLE_MAX_LINES = 5000
TRANSCRIPT_WHOLE_LINES = 200
K8S_LINES = 8
MAX_COLUMNS = 32


@dataclass
class StructState:
    mode: str = ""  # "", pem, putty, data, kv, k8s, pair, block, table, nested
    lines: int = 0
    indent: int = 0
    json: bool = False
    string_data: bool = False
    putty_private: bool = False
    resume: str = ""  # mode to go back to after a block scalar inside data
    resume_indent: int = 0
    # table: secret column spans [(start, end or -1)], name column, delimiter (b"" = aligned)
    cols: tuple[tuple[int, int, bool], ...] = ()
    name_col: tuple[int, int] | None = None
    sep: bytes = b""
    header: tuple[bytes, ...] = ()
    header_starts: tuple[int, ...] = ()
    # output profile: set by the caller (per command) or by a command seen after a prompt
    profile: OutputProfile | None = None
    fixed_profile: bool = False  # set by the caller: a prompt in the stream does not change it
    prompt: bytes = b""
    profile_lines: int = 0
    bare: bool = False  # the profile came from a command line without a prompt

    @property
    def busy(self) -> bool:
        return bool(self.mode) or self.profile is not None


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


def _indent(line: bytes) -> int:
    return len(line) - len(line.lstrip(b" \t"))


_TRIVIAL = re.compile(rb"(?:true|false|null|none|yes|no|on|off|-?[0-9]+(?:\.[0-9]+)?|\{\}|\[\]"
                      rb"|\{|\[|[|>][-+]?)", re.I)


def _value_span(v: bytes, start: int) -> tuple[int, int] | None:
    """The secret part of a raw value text (quotes and trailing commas off), or None when it is
    empty, a placeholder, a number, a boolean or a Key Vault reference."""
    s, e = 0, len(v)
    while e > s and v[e - 1] in b" \t,;":
        e -= 1
    while s < e and v[s] in b" \t":
        s += 1
    if e - s >= 2 and v[s] in b"\"'" and v[e - 1] == v[s]:
        s, e = s + 1, e - 1
    body = v[s:e]
    if not body or _TRIVIAL.fullmatch(body) or is_placeholder(body) \
            or body.startswith((b"@Microsoft.KeyVault(", b"secretref:", b"@")):
        return None
    return start + s, start + e


def _mask_value(line: bytes, off: int, m: re.Match[bytes], group: str, rid: str) -> list[Span]:
    sp = _value_span(m.group(group), m.start(group))
    return [] if sp is None else [(off + sp[0], off + sp[1], rid)]


def line_spans(st: StructState, line: bytes, off: int, partial: bool) -> list[Span]:
    """Spans to mask in one line (offset ``off`` in the caller's text); updates ``st``."""
    if st.profile is not None:
        out = _profile_line(st, line, off, partial)
        if out is not None:
            return out
    mode = st.mode
    if mode == "pem":
        end = PEM_END.search(line)
        if end is None and PEM_BODY.fullmatch(line) is None:
            if not partial:  # not a key body after all (code or prose mentioning the marker)
                st.mode = ""
                return _enter(st, line, off)
            return []
        if not partial:
            st.lines -= 1
            if end is not None or st.lines <= 0:
                st.mode = ""
        return _content(line[: end.start()] if end else line, off, "pem-private-key")
    if mode == "putty":
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
    if mode == "data":
        return _data_line(st, line, off, partial)
    if mode == "kv":
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
    if mode == "pair":
        return _pair_line(st, line, off, partial)
    if mode == "block":
        return _block_line(st, line, off, partial)
    if mode == "nested":
        return _nested_line(st, line, off, partial)
    if mode == "table":
        return _table_line(st, line, off, partial)
    if mode == "k8s" and not partial:
        st.lines -= 1
        if st.lines <= 0:
            st.mode = ""
    if partial:
        return _inline(st, line, off)
    return _enter(st, line, off)


# --- output profiles ----------------------------------------------------------------------------

def _prompt_command(line: bytes) -> tuple[bytes, OutputProfile | None] | None:
    m = PROMPT_CMD.match(line) or BARE_CMD.match(line)
    if m is None:
        return None
    try:
        argv = shlex.split(m.group("c").decode("utf-8", "replace"))
    except ValueError:
        return None
    # the first simple command of a pipeline decides ("az ... -o tsv | head -1" is secret)
    for i, a in enumerate(argv):
        if a in ("|", "&&", ";", "||"):
            argv = argv[:i]
            break
    return m.group("p"), profile_for_argv(argv)


def _profile_line(st: StructState, line: bytes, off: int, partial: bool) -> list[Span] | None:
    """Apply the output profile; None: the line goes on to the structure machine too."""
    prof = st.profile
    assert prof is not None
    if (st.prompt and line.startswith(st.prompt)) or (
            not st.fixed_profile and PROMPT_CMD.match(line) is not None):
        if not partial and not st.fixed_profile:  # the output ended: back to the defaults
            st.profile, st.prompt = None, b""
        return [] if partial else None
    if not partial and not st.fixed_profile:
        st.profile_lines -= 1
        if st.profile_lines <= 0:
            st.profile = None
    if prof.whole:
        if st.prompt and st.prompt in line:  # "<secret>user@vm:~$ " (no newline after it)
            return _content(line[: line.index(st.prompt)], off, "command-output")
        body = line.strip()
        if st.bare and (len(body) < 8 or b" " in body or b"\t" in body or body[:3] == b"```"):
            return []  # a command quoted in prose or a README: only a token-like line is masked
        return _content(line, off, "command-output")
    out: list[Span] = []
    if prof.all_values:
        m = ENV_LINE.match(line)
        if m is not None:
            out += _mask_value(line, off, m, "v", "command-output")
            return out
    if prof.fields and not st.mode:
        for m in JSON_FIELD.finditer(line):
            if m.group("k").lower() in prof.fields:
                g = "v" if m.start("v") != -1 else "v2" if m.start("v2") != -1 else "v3"
                out += _mask_value(line, off, m, g, "command-output")
    if out:
        return out
    return None


def set_prompt_profile(st: StructState, line: bytes) -> bool:
    """A command echoed after a prompt: select its profile for the following lines."""
    if st.fixed_profile:
        return False
    pc = _prompt_command(line)
    if pc is None:
        return False
    prompt, prof = pc
    bare = not prompt.strip(b"+ \t")
    st.profile, st.prompt = prof, (prompt.rstrip() if prof is not None and not bare else b"")
    st.bare = bare
    # a prompt the stream never shows again must not mask the rest of the session; without a
    # prompt (a command quoted in a log, "set -x" traces) a whole-output profile covers the
    # next line only (the value printed by "gh auth token", "terraform output -raw" ...)
    if prof is not None and prof.whole:
        st.profile_lines = 1 if bare else TRANSCRIPT_WHOLE_LINES
    else:
        st.profile_lines = TRANSCRIPT_WHOLE_LINES if bare else WHOLE_MAX_LINES
    return prof is not None


# --- Kubernetes Secret data ---------------------------------------------------------------------

def _data_line(st: StructState, line: bytes, off: int, partial: bool) -> list[Span]:
    stripped = line.strip()
    if not stripped:
        return []
    indent = _indent(line)
    closing = st.json and stripped.startswith(b"}")
    if not partial and (indent <= st.indent or closing):
        st.mode = ""
        return [] if closing else _enter(st, line, off)
    bk = BLOCK_KEY.match(line)
    if bk is not None and not partial and (st.string_data or is_secret_name(bk.group("k"))):
        # "tls.key: |" inside stringData (Secret data values are one-line base64: a block
        # scalar under data: is a ConfigMap, masked only under a secret name)
        st.resume, st.resume_indent = "data", st.indent
        st.mode, st.indent = "block", len(bk.group("i"))
        return []
    if bk is not None:
        return []
    m = DATA_ITEM.match(line)
    if m is None:
        return _content(line, off, "kubernetes-secret-data") if partial else []
    v = m.group("v")
    masked = partial or (not is_placeholder(v) if st.string_data else _b64_value(v))
    if v and masked:
        return [(off + m.start("v"), off + m.end("v"), "kubernetes-secret-data")]
    return []


# --- name/value pairs, block scalars ------------------------------------------------------------

def _pair_line(st: StructState, line: bytes, off: int, partial: bool) -> list[Span]:
    m = VALUE_LINE.match(line)
    if m is not None:
        v = m.group("v").strip()
        if not partial:
            st.mode = ""
            if v in (b"{", b"[", b"|", b">", b"|-", b">-"):
                st.mode, st.indent, st.lines = "nested", len(m.group("i")), 500
                if v[:1] in b"|>":
                    st.mode = "block"
                return []
        return _mask_value(line, off, m, "v", "separated-secret-value")
    stripped = line.strip()
    if not partial:
        st.lines -= 1
        ind = _indent(line)
        if st.lines <= 0 or (stripped[:1] in (b"}", b"]") and ind <= st.indent) \
                or NAME_LINE.match(line) or (stripped.startswith(b"-") and ind <= st.indent):
            st.mode = ""
            return _enter(st, line, off)
    return []


def _block_line(st: StructState, line: bytes, off: int, partial: bool) -> list[Span]:
    if not line.strip():
        return []
    if _indent(line) <= st.indent:
        if partial:
            return []
        st.mode = st.resume
        st.indent = st.resume_indent
        st.resume = ""
        return line_spans(st, line, off, partial)
    return _content(line, off, "secret-block-scalar")


def _nested_line(st: StructState, line: bytes, off: int, partial: bool) -> list[Span]:
    stripped = line.strip()
    if not stripped:
        return []
    if not partial:
        st.lines -= 1
        if _indent(line) <= st.indent or st.lines <= 0:
            st.mode = ""
            return []
    out: list[Span] = []
    for m in re.finditer(rb"\"(?P<v>(?:[^\"\\\r\n]|\\.)+)\"[ \t]*,?[ \t]*$", line):
        out += _mask_value(line, off, m, "v", "separated-secret-value")
    return out


# --- tables -------------------------------------------------------------------------------------

def _split_header(line: bytes) -> tuple[bytes, list[tuple[int, bytes]]] | None:
    if b"\t" in line:
        sep = b"\t"
    elif b"," in line and b"  " not in line:
        sep = b","
    elif b"  " in line:
        sep = b""
    else:
        return None
    fields: list[tuple[int, bytes]] = []
    if sep:
        p = 0
        for part in line.split(sep):
            fields.append((p, part.strip()))
            p += len(part) + 1
    else:
        for m in re.finditer(rb"\S+(?: \S+)*", line):
            fields.append((m.start(), m.group()))
    if not 2 <= len(fields) <= MAX_COLUMNS:
        return None
    if not all(f and HEADER_FIELD.fullmatch(f) for _, f in fields):
        return None
    return sep, fields


def _is_secret_column(name: bytes, prof: OutputProfile | None) -> bool:
    low = name.lower().replace(b" ", b"")
    return low == COLUMN_VALUE or is_secret_name(name) or (prof is not None and low in prof.fields)


def _enter_table(st: StructState, line: bytes) -> bool:
    hs = _split_header(line)
    if hs is None:
        return False
    sep, fields = hs
    names = [f for _, f in fields]
    secret = [_is_secret_column(f, st.profile) for f in names]
    has_value = any(f.lower() == COLUMN_VALUE for f in names)
    name_idx = None
    for i, f in enumerate(names):
        if f.lower() in (b"name", b"key", b"keyname", b"settingname", b"variable") and has_value:
            name_idx, secret[i] = i, False
    if not any(secret):
        return False
    st.mode, st.lines, st.sep = "table", TABLE_MAX_ROWS, sep
    st.header = tuple(names)
    st.header_starts = tuple(s for s, _ in fields)
    st.cols = tuple((i, 0, True) for i, s in enumerate(secret) if s)
    st.name_col = (name_idx, 0) if name_idx is not None else None
    return True


def _cells(st: StructState, line: bytes) -> list[tuple[int, int]]:
    """(start, end) of each cell of a row."""
    out: list[tuple[int, int]] = []
    if st.sep:
        p = 0
        for part in line.split(st.sep):
            out.append((p, p + len(part)))
            p += len(part) + 1
        return out
    starts = st.header_starts
    fields = [(m.start(), m.end()) for m in _ALIGNED_CELL.finditer(line)]
    if len(fields) == len(starts):  # one field per column: the row's own alignment
        return fields
    for i, s in enumerate(starts):
        e = starts[i + 1] if i + 1 < len(starts) else len(line)
        # a cell wider than its header: extend to the next run of 2 spaces
        if s > len(line):
            break
        out.append((s, min(e, len(line))))
    return out


def _cell_value_secret(value: bytes, name: bytes | None, header: bytes) -> bool:
    if header.lower() != COLUMN_VALUE:
        return len(value) >= 4
    if name is not None and (is_secret_name(name)):
        return True
    if name is not None and is_benign_name(name):
        return False
    # a Value column: short words and numbers are settings, not secrets
    return not (len(value) <= 12 and (value.isalpha() or value.isdigit())) and len(value) >= 6 \
        and not value.startswith((b"http://", b"https://", b"/", b"~"))


def _table_line(st: StructState, line: bytes, off: int, partial: bool) -> list[Span]:
    stripped = line.strip()
    if not stripped or (st.prompt and line.startswith(st.prompt)):
        if not partial:
            st.mode = ""
        return []
    if DASHES.match(line):
        if not partial and not st.sep:  # column starts from the dash runs
            starts = tuple(m.start() for m in re.finditer(rb"-+", line))
            if len(starts) == len(st.header_starts):
                st.header_starts = starts
        return []
    if not partial:
        st.lines -= 1
        if st.lines <= 0:
            st.mode = ""
    cells = _cells(st, line)
    name = None
    if st.name_col is not None and st.name_col[0] < len(cells):
        a, b = cells[st.name_col[0]]
        name = line[a:b].strip()
    out: list[Span] = []
    for idx, _, _ in st.cols:
        if idx >= len(cells):
            continue
        a, b = cells[idx]
        raw = line[a:b]
        v = raw.strip().strip(b"\"")
        if not v or is_placeholder(v) or _TRIVIAL.fullmatch(v):
            continue
        if not _cell_value_secret(v, name, st.header[idx]):
            continue
        lead = raw.find(v)
        out.append((off + a + lead, off + a + lead + len(v), "secret-table-cell"))
    return out


# --- entering a state ---------------------------------------------------------------------------

def _inline(st: StructState, line: bytes, off: int) -> list[Span]:
    """Same-line mechanisms (no state change): pairs, terraform sensitive values, one-line
    Secret JSON."""
    out: list[Span] = []
    if b"alue" in line:
        for rx in (INLINE_PAIR, INLINE_PAIR_REV):
            for m in rx.finditer(line):
                if is_secret_name(m.group("n")):
                    out += _mask_value(line, off, m, "v" if m.start("v") != -1 else "v2",
                                       "separated-secret-value")
        if b"sensitive" in line:
            for m in INLINE_SENSITIVE.finditer(line):
                out += _mask_value(line, off, m, "v", "separated-secret-value")
    if b"ata\"" in line and SECRET_KIND.search(line) is not None:
        for m in INLINE_DATA.finditer(line):
            base = m.start("body")
            for v in JSON_STR_VALUE.finditer(m.group("body")):
                sp = _value_span(v.group("v"), v.start("v"))
                if sp is not None:
                    out.append((off + base + sp[0], off + base + sp[1], "kubernetes-secret-data"))
    return out


def _enter(st: StructState, line: bytes, off: int) -> list[Span]:
    # (substring tests first: most lines fed here hold a keyword but start no state)
    if b"-----BEGIN" in line and PEM_BEGIN.search(line) is not None:
        st.mode, st.lines = "pem", PEM_MAX_LINES
        return []
    if b"PuTTY" in line and PUTTY.search(line):
        st.mode, st.lines, st.putty_private = "putty", 200, False
        return []
    if b"piVersion" in line and API_VERSION.match(line):
        st.mode, st.lines = "k8s", K8S_LINES
        return []
    m = DATA.match(line) if b"ata" in line else None
    if m is not None:
        if st.mode == "k8s" or m.group(2) == b"stringData" or (
                st.profile is not None and st.profile.k8s_secret):
            st.mode, st.indent = "data", len(m.group(1))
            st.json, st.string_data = m.group(3) is not None, m.group(2) == b"stringData"
        return []
    m = KV_ID.search(line) if b".vault." in line else None
    if m is not None:
        v = KV_VALUE.search(line, m.end())
        if v is not None and v.start("s") != -1 and v.end("s") > v.start("s"):
            return [(off + v.start("s"), off + v.end("s"), "azure-key-vault-secret-value")]
        tab = line.rfind(b"\t")
        if tab > m.end() and KV_VERSIONED.match(line, m.end()):
            # "show -o tsv" of one secret version: the value is the last field ("list -o tsv"
            # rows have unversioned ids and end with the name)
            sp = _value_span(line[tab + 1:], tab + 1)
            if sp is not None and line[sp[0]:sp[1]] != b"None":
                return [(off + sp[0], off + sp[1], "azure-key-vault-secret-value")]
            return []
        st.mode, st.lines = "kv", KV_MAX_LINES
        return []
    m = NAME_LINE.match(line)
    if m is not None:
        if is_secret_name(m.group("n").strip()):
            st.mode, st.lines, st.indent = "pair", PAIR_LINES, len(m.group("i"))
        return []
    m = SENSITIVE_LINE.match(line)
    if m is not None:
        st.mode, st.lines, st.indent = "pair", PAIR_LINES, len(m.group("i"))
        return []
    m = OBJECT_LINE.match(line) if line.endswith(b"{") or b"{ " in line else None
    if m is not None:
        k = m.group("k")
        if k.lower() in SECRET_OBJECTS:
            st.mode, st.indent, st.lines = "nested", len(m.group("i")), 500
        elif is_secret_name(k):
            st.mode, st.lines, st.indent = "pair", PAIR_LINES, len(m.group("i"))
        return []
    m = BLOCK_KEY.match(line) if b"|" in line or b">" in line else None
    if m is not None:
        k = m.group("k")
        if is_secret_name(k) or (st.profile is not None and k.lower() in st.profile.fields):
            st.mode, st.indent, st.resume = "block", len(m.group("i")), ""
        return []
    if set_prompt_profile(st, line):
        return []
    out = _inline(st, line, off)
    # a header row starts with an upper-case column name at the line start
    if not out and line and 65 <= line[0] <= 90 and (b"  " in line or b"\t" in line
                                                     or b"," in line):
        _enter_table(st, line)
    return out


def secret_name_at(text: bytes, pos: int) -> bool:
    """Whether the name value starting at ``pos`` (after ``"name":``) is a secret name, or
    could be the start of one (the value runs to the end of the text)."""
    m = _NAME_VALUE.match(text, pos)
    if m is None:
        return True
    return m.end() == len(text) or is_secret_name(m.group(1).strip())


def inline_spans(st: StructState, line: bytes) -> list[Span]:
    """The same-line mechanisms alone (used on decoded views of escaped lines)."""
    return _inline(st, line, 0)
