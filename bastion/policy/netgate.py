"""Network effects of a declared tool: where it connects and what it sends there.

``toolgate`` hands over the effects of one command; the ``url``/``remote-*`` effects name
endpoints (``hosts.py``), ``sends``/``data`` name payloads. The files involved become ordinary
``reads``/``writes`` effects (so a secret file uploaded anywhere is denied by the redirect rules
as any read of it), and the connection is judged by host class:

* a payload going to any host outside ``internal`` (or to a host the gate cannot read) is held:
  ``tool-network`` "sends FILE to HOST";
* the metadata service: an identity-token path is denied, anything else held;
* Key Vault's data plane (``vault``) prints secrets: ``tool-secrets``;
* a host the gate cannot read, or a scheme that is not a plain transfer: ``tool-network``.

Downloads from readable hosts pass (the rules still judge the command, and ``curl ... | sh`` is
held by the pipe-into-shell floor).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from bastion.policy.hosts import NET_SCHEMES, Endpoint, HostClassifier
from bastion.policy.model import Finding
from bastion.policy.options import Effect

_FORM_FILE = re.compile(r"^[^=@<]*=[@<](.*)$", re.S)  # -F name=@file / name=<file
_URLENC_FILE = re.compile(r"^[A-Za-z0-9_.\[\]-]*@(.+)$", re.S)  # --data-urlencode name@file
_TOKEN_PATH = re.compile(r"identity|token|oauth2|msi", re.I)


def _file_of(value: str) -> str | None:
    """The file a curl-style data value names (``@f``, ``name=@f;type=x``, ``name@f``)."""
    if value.startswith("@"):
        return value[1:]
    m = _FORM_FILE.match(value) or _URLENC_FILE.match(value)
    if m:
        return m.group(1).split(";", 1)[0].strip('"')
    return None


def judge(program: str, effects: list[Effect], hosts: HostClassifier,
          findings: list[Finding], tags: frozenset[str] | set[str] = frozenset()) -> list[Effect]:
    """The effects with network ones resolved into path effects; findings appended.

    ``tags``: ``net:remote-name`` (curl -O/-J, wget without -O) means each URL's last path
    segment is the name of a file written in the working directory, which the gate does not
    know (a login starts in the home directory): a dotfile name (``.bash_login``) is held."""
    out: list[Effect] = []
    endpoints: list[tuple[Endpoint | None, Effect]] = []  # None: not known before run time
    payloads: list[str] = []
    dest_known = False
    for e in effects:
        k = e.kind
        if k not in ("url", "sends", "data", "data-file", "remote-src", "remote-dst", "sends-to"):
            out.append(e)
            continue
        if k == "sends-to":  # git push URL: the tool's own data goes to that endpoint
            where = hosts.classify_url(e.value, scp=True)[0] if e.static else None
            if where is not None and where.kind == "local":
                continue  # a configured remote's name: judged where it was configured
            if where is not None and where.kind == "file":
                out.append(Effect("writes", where.path, True, f"{e.source} (file:// URL)"))
                continue
            endpoints.append((where, e))
            payloads.append(f"{program}'s data")
            dest_known = True
            continue
        if k in ("url", "remote-src", "remote-dst"):
            if not e.static:
                endpoints.append((None, e))
                dest_known |= k != "remote-src"
                continue
            where, _ = hosts.classify_url(e.value, scp=k != "url")
            if where.kind == "file":
                out.append(Effect("reads", where.path, True, f"{e.source} (file:// URL)"))
            elif where.kind == "local":
                out.append(Effect("writes" if k == "remote-dst" else "reads", e.value, True,
                                  e.source))
                if k == "remote-src":
                    payloads.append(e.value)
                dest_known |= k == "remote-dst"  # a local destination: nothing leaves
            else:
                endpoints.append((where, e))
                dest_known |= k != "remote-src"
        elif k == "sends":
            out.append(Effect("reads", e.value, e.static, e.source))
            payloads.append(e.value if e.value != "-" else "stdin")
        else:  # data, data-file
            path = _file_of(e.value) if e.static else None
            if path is not None and path != "-":
                out.append(Effect("reads", path, True, e.source))
                payloads.append(path)
            elif path == "-":
                payloads.append("stdin")
            elif k == "data" or not e.static:
                payloads.append("data" if e.static else "data known only at run time")
    if "net:server-name" in tags:
        findings.append(Finding("review", "tool-writes-remote-name",
                                f"{program} -J: the server names the file it writes"))
    if "net:remote-name" in tags and "net:named-output" not in tags:
        for ep, e in endpoints:
            name = unquote(ep.path.split("?", 1)[0].split("#", 1)[0]).rsplit("/", 1)[-1] \
                if ep is not None else "?"
            if ep is None or name.startswith("."):
                findings.append(Finding("review", "tool-writes-remote-name",
                                        f"{e.source}: saves the download as {name!r} in the "
                                        "working directory (a dotfile, or a name only known at "
                                        "run time)"))
    outside: list[str] = []
    for ep, e in endpoints:
        if ep is None:
            findings.append(Finding("review", "tool-network",
                                    f"{e.source}: the destination is only known at run time"))
            outside.append("a host known only at run time")
            continue
        if ep.host is None:
            findings.append(Finding("review", "tool-network",
                                    f"{e.source}: cannot tell which host {e.value!r} reaches "
                                    f"({ep.why})"))
            outside.append(repr(e.value))
            continue
        classes = hosts.classify(ep.host)
        if ep.scheme is not None and ep.scheme not in NET_SCHEMES:
            findings.append(Finding("review", "tool-network",
                                    f"{e.source}: {ep.scheme}:// is not a plain transfer"))
        if "metadata" in classes:
            if _TOKEN_PATH.search(unquote(ep.path)):
                findings.append(Finding("deny", "imds-token",
                                        f"{e.source} requests an identity token from the "
                                        f"instance metadata service ({ep.host})"))
            else:
                findings.append(Finding("review", "tool-network",
                                        f"{e.source} queries the instance metadata service "
                                        f"({ep.host})"))
        if "vault" in classes:
            findings.append(Finding("review", "tool-secrets",
                                    f"{e.source} talks to Key Vault's data plane ({ep.host}): "
                                    "secret values"))
        if "internal" not in classes and e.kind != "remote-src":
            outside.append(ep.host)
    if payloads:
        what = ", ".join(dict.fromkeys(payloads))
        if outside:
            findings.append(Finding("review", "tool-network",
                                    f"{program} sends {what} to {', '.join(dict.fromkeys(outside))}"
                                    ", outside the host allowlist"))
        elif not dest_known:
            findings.append(Finding("review", "tool-network",
                                    f"{program} sends {what} to a destination the gate cannot "
                                    "see"))
    return out
