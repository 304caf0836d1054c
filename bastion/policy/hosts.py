"""Where a network tool connects: parse a URL, an scp-style ``[user@]host:path`` or a bare host,
canonicalise the host and sort it into the policy's host classes (``[hosts]``).

The parse is fail closed: anything a client could read two ways (several ``@``, backslashes,
percent-encoded or globbed hosts, a non-ASCII host, a bad port) has no host, and the gate treats
an endpoint without a host as unknown. IP literals are canonicalised the way ``inet_aton`` reads
them (``2852039166``, ``0xa9fea9fe``, ``0251.0376.0251.0376``, ``169.254.43518``) and IPv4-mapped
IPv6 addresses as their IPv4 address, so every spelling of the metadata address is that address.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from urllib.parse import unquote

# Schemes whose authority is a network host (curl, wget, git, rsync, ssh URLs).
NET_SCHEMES = frozenset({"http", "https", "ftp", "ftps", "ws", "wss", "git", "ssh", "git+ssh",
                         "ssh+git", "rsync", "sftp", "scp"})
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SCP = re.compile(r"^(?:([^@/:]+)@)?([^@/:\[\]]+|\[[0-9A-Fa-f:.]+\]):(?!//)(.*)$", re.S)
_HOSTNAME = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*"
                       r"[a-z0-9_])?)*$")
_IP_WORDS = re.compile(r"^(?:0[xX][0-9A-Fa-f]*|[0-9]+)(?:\.(?:0[xX][0-9A-Fa-f]*|[0-9]+)){0,3}$")


@dataclass(frozen=True)
class Endpoint:
    """One place a tool talks to. ``host`` is canonical, or None when it cannot be known."""

    kind: str  # "url" | "scp" | "file" (a local file:// URL) | "local" (not an endpoint)
    host: str | None = None
    scheme: str | None = None
    port: int | None = None
    path: str = ""
    user: str | None = None
    why: str = ""  # why the host is unknown

    @property
    def remote(self) -> bool:
        return self.kind in ("url", "scp")


def canonical_host(raw: str) -> str | None:
    """Lower-case, IDNA-checked, trailing dot dropped, IP literals in canonical form; None when
    the text is not a host a client would read one way only."""
    h = raw
    if h.startswith("[") and h.endswith("]"):
        try:
            ip6 = ipaddress.IPv6Address(h[1:-1].split("%", 1)[0])
        except ValueError:
            return None
        mapped = ip6.ipv4_mapped
        return str(mapped) if mapped is not None else str(ip6)
    if not h or not h.isascii():
        return None  # IDN: a homograph or a full-width dot; punycode (xn--) is taken as spelled
    h = h.lower()
    if h.endswith("."):
        h = h[:-1]
    if _IP_WORDS.match(h):
        try:
            return socket.inet_ntoa(socket.inet_aton(h))
        except OSError:
            return None  # looks numeric but is not an address: no client reads it as a name
    if len(h) > 253 or not _HOSTNAME.match(h):
        return None
    return h


def _authority(rest: str, scheme: str) -> Endpoint:
    end = len(rest)
    for sep in "/?#":
        k = rest.find(sep)
        if k >= 0:
            end = min(end, k)
    auth, path = rest[:end], rest[end:]
    if "\\" in auth or "%" in auth or any(c in auth for c in "{}\t\n ") or auth.count("@") > 1:
        return Endpoint("url", None, scheme, path=path, why="ambiguous authority")
    user = None
    if "@" in auth:
        user, auth = auth.split("@", 1)
    port: int | None = None
    host = auth
    if auth.startswith("["):
        close = auth.find("]")
        if close < 0:
            return Endpoint("url", None, scheme, path=path, why="unclosed IPv6 literal")
        host, tail = auth[:close + 1], auth[close + 1:]
        if tail and not tail.startswith(":"):
            return Endpoint("url", None, scheme, path=path, why="text after the IPv6 literal")
        ptxt = tail[1:] if tail else ""
    else:
        host, _, ptxt = auth.partition(":")
        if "[" in host or "]" in host:
            return Endpoint("url", None, scheme, path=path, why="globbed host")
    if ptxt:
        if not ptxt.isdigit() or int(ptxt) > 65535:
            return Endpoint("url", None, scheme, path=path, why=f"bad port {ptxt!r}")
        port = int(ptxt)
    canon = canonical_host(host)
    why = "" if canon else f"host {host!r} is not a plain name or address"
    return Endpoint("url", canon, scheme, port, path, user, why)


def parse_endpoint(text: str, *, bare_host: bool = False, scp: bool = False) -> Endpoint:
    """Parse ``text`` as a URL (``scheme://[user@]host[:port]/path``), and, with ``scp``, as
    ``[user@]host:path``; with ``bare_host`` a word without a scheme is a host (curl guesses
    http for ``example.com/x``). Anything else is ``local``."""
    m = _SCHEME.match(text)
    if m:
        scheme = m.group(1).lower()
        rest = text[m.end():]
        if scheme == "file":
            # file://[host]/path: only an empty host or localhost is local (curl refuses others)
            host, slash, path = rest.partition("/")
            if host.lower() not in ("", "localhost"):
                return Endpoint("url", None, scheme, why="file:// URL with a host")
            return Endpoint("file", None, scheme, path=unquote("/" + path) if slash else "/")
        return _authority(rest, scheme)
    if scp:
        if text.startswith(("/", "./", "../", "~")):
            return Endpoint("local", path=text)
        s = _SCP.match(text)
        if s:
            user, host, path = s.group(1), s.group(2), s.group(3)
            canon = canonical_host(host)
            why = "" if canon else f"host {host!r} is not a plain name or address"
            return Endpoint("scp", canon, None, None, path, user, why)
        if ":" in text.split("/", 1)[0]:
            return Endpoint("scp", None, None, path=text, why="unclear remote spec")
        return Endpoint("local", path=text)
    if bare_host:
        ep = _authority(text, "http")
        return Endpoint("url", ep.host, None, ep.port, ep.path, ep.user, ep.why)
    return Endpoint("local", path=text)


@dataclass(frozen=True)
class HostClassifier:
    """Host classes from ``[hosts]``: ``class = ["glob", ...]`` (``*`` spans labels)."""

    classes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @staticmethod
    def build(table: Mapping[str, list[str]]) -> HostClassifier:
        out: dict[str, tuple[str, ...]] = {}
        for name, globs in table.items():
            canon: list[str] = []
            for g in globs:
                c = canonical_host(g) if "*" not in g and "?" not in g else g.lower().rstrip(".")
                canon.append(c if c is not None else g.lower())
            out[name] = tuple(canon)
        return HostClassifier(out)

    def classify(self, host: str | None) -> frozenset[str]:
        if host is None:
            return frozenset({"unknown"})
        hits = {name for name, globs in self.classes.items()
                if any(fnmatchcase(host, g) for g in globs)}
        return frozenset(hits)

    def classify_url(self, text: str, *, scp: bool = False) -> tuple[Endpoint, frozenset[str]]:
        """The endpoint and its host classes: the one function a declaration's effects use
        (curl/wget URLs, rsync/scp ``host:path``, and ``git push URL`` for git's declaration)."""
        ep = parse_endpoint(text, bare_host=not scp, scp=scp)
        return ep, self.classify(ep.host) if ep.remote else frozenset()
