"""Tool-aware facts about a normalised command: subcommand path, flags, option values, and tags
that name semantic effects (force push, secret read, destructive SQL, ...).

Option parsing is generic (``--key=value``, ``--key value``, clustered short flags) with per-tool
tables for global options that take a value, so that ``kubectl -n prod delete ...`` has the path
``delete ...`` and ``git -C repo push -f`` is a force push.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bastion.policy import sql
from bastion.policy.unwrap import Unit

# Global options (before the subcommand) that take a separate value, per tool.
_GLOBAL_VALUE_OPTS: dict[str, frozenset[str]] = {
    "git": frozenset({"-C", "-c", "--git-dir", "--work-tree", "--namespace", "--exec-path",
                      "--config-env", "--super-prefix", "--list-cmds"}),
    "kubectl": frozenset({"-n", "--namespace", "--context", "--kubeconfig", "--cluster", "--user",
                          "-s", "--server", "--token", "--as", "--as-group", "--request-timeout",
                          "--cache-dir", "-v", "--v"}),
    "helm": frozenset({"-n", "--namespace", "--kube-context", "--kubeconfig", "--registry-config",
                       "--repository-config", "--repository-cache"}),
    "docker": frozenset({"-H", "--host", "--context", "-c", "--config", "-l", "--log-level"}),
    "systemctl": frozenset({"-H", "--host", "-M", "--machine", "-t", "--type", "-p", "--property",
                            "-n", "--lines", "-o", "--output", "-s", "--signal"}),
    "terraform": frozenset(), "tofu": frozenset(), "terragrunt": frozenset(),
}
# Tools whose options may sit between subcommand words (``systemctl disable --now ssh``).
_INTERLEAVED: dict[str, frozenset[str]] = {
    "systemctl": _GLOBAL_VALUE_OPTS["systemctl"],
    "service": frozenset(),
    "kubectl": _GLOBAL_VALUE_OPTS["kubectl"] | {"-o", "--output", "-l", "--selector", "-f",
                                                "--filename", "-c", "--container", "--sort-by",
                                                "--field-selector", "--tail", "--since"},
}
_SQL_CLIENTS = {
    "psql": ({"-c", "--command"}, {"-f", "--file"}),
    "mysql": ({"-e", "--execute"}, set()),
    "mariadb": ({"-e", "--execute"}, set()),
    "sqlcmd": ({"-Q", "-q", "--query"}, {"-i", "--input-file"}),
    "sqlite3": (set(), set()),
    "clickhouse-client": ({"-q", "--query"}, {"--queries-file"}),
    "cqlsh": ({"-e", "--execute"}, {"-f", "--file"}),
}
_READ_METHODS = frozenset({"get", "head", "options"})


@dataclass
class Facts:
    path: tuple[str, ...] = ()
    flags: frozenset[str] = frozenset()
    options: dict[str, list[str]] = field(default_factory=dict)
    positionals: tuple[int, ...] = ()  # indices into argv


def facts(unit: Unit) -> Facts:
    """Generic option parse plus the tool's subcommand path; adds semantic tags to ``unit``."""
    argv = unit.argv
    program = unit.program
    global_values = _GLOBAL_VALUE_OPTS.get(program, frozenset())
    interleaved = _INTERLEAVED.get(program)
    if interleaved is not None:
        global_values = interleaved
    flags: set[str] = set()
    options: dict[str, list[str]] = {}
    positionals: list[int] = []
    path: list[str] = []
    in_path = True
    seen_dashdash = False
    i = 1
    while i < len(argv):
        a = argv[i]
        if seen_dashdash or not a.startswith("-") or a == "-":
            positionals.append(i)
            if in_path and unit.static[i]:
                path.append(a)
            else:
                in_path = False
            i += 1
            continue
        if a == "--":
            seen_dashdash = True
            in_path = False
            i += 1
            continue
        if path and interleaved is None:
            in_path = False
        key, eq, value = a.partition("=")
        flags.add(key)
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if eq:
            options.setdefault(key, []).append(value)
        elif nxt is not None and not nxt.startswith("-"):
            options.setdefault(key, []).append(nxt)
        if not a.startswith("--") and len(key) > 2:
            options.setdefault(key[:2], []).append(key[2:])  # glued value: -n5, -ojson
            for c in key[1:]:
                flags.add("-" + c)
        if (not path or interleaved is not None) and not eq and key in global_values:
            i += 2  # global option value is not the subcommand
            continue
        i += 1
    f = Facts(tuple(path), frozenset(flags), options, tuple(positionals))
    tagger = _TAGGERS.get(program)
    if tagger is not None:
        tagger(unit, f)
    if program in _SQL_CLIENTS:
        _sql(unit, f)
    return f


def _values(f: Facts, *keys: str) -> list[str]:
    out: list[str] = []
    for k in keys:
        out.extend(f.options.get(k, ()))
    return out


def _git(unit: Unit, f: Facts) -> None:
    # Options and config keys that run programs are judged by git's declaration
    # (config/tools/git.toml); this tags only the pushes that rewrite or delete remote refs.
    sub = f.path[0] if f.path else ""
    if sub == "push":
        refspecs = [unit.argv[i] for i in f.positionals][2:]
        if f.flags & {"-f", "--force", "--force-with-lease", "--force-if-includes", "--mirror",
                      "--delete", "-d", "--prune"} or any(
            r.startswith(("+", ":")) for r in refspecs
        ):
            unit.tags.add("git:force-push")


def _az(unit: Unit, f: Facts) -> None:
    if f.path[:1] == ("rest",):
        methods = [m.lower() for m in _values(f, "--method", "-m")] or ["get"]
        if any(m not in _READ_METHODS for m in methods):
            unit.tags.add("az:write-method")
        if any(not unit.static[i] for i in range(len(unit.argv))):
            unit.tags.add("dynamic-args")
    if "--ids" in f.flags:
        unit.tags.add("az:ids")
    verb = f.path[-1] if f.path else ""
    if verb in ("list", "show", "get", "exists", "version", "what-if", "validate",
                "list-locations", "list-skus", "list-sizes", "wait", "get-instance-view",
                "list-ip-addresses", "list-usage", "list-options", "check-name",
                "get-version", "list-versions", "build", "find", "query") or verb.startswith(
        ("list-", "get-", "show-", "check-")
    ):
        unit.tags.add("az:read-verb")


def _kubectl(unit: Unit, f: Facts) -> None:
    dry = [v.lower() for v in _values(f, "--dry-run")]
    if ("--dry-run" in f.flags and not dry) or any(v in ("client", "server", "true") for v in dry):
        unit.tags.add("kubectl:dry-run")
    if f.path[:1] in (("get",), ("describe",)) and len(f.path) > 1:
        resource = f.path[1].split("/", 1)[0].lower()
        if resource in ("secret", "secrets", "secret.v1") or resource.startswith("secrets"):
            outputs = _values(f, "-o", "--output")
            if f.path[0] == "get" and outputs and any(
                o.startswith(("yaml", "json", "jsonpath", "go-template", "custom-columns"))
                for o in outputs
            ):
                unit.tags.add("kubectl:secret-read")
            elif f.path[0] == "describe":
                pass


def _terraform(unit: Unit, f: Facts) -> None:
    if f.flags & {"-destroy"} or f.path[:1] == ("destroy",):
        unit.tags.add("terraform:destroy")
    if "-auto-approve" in f.flags or "--auto-approve" in f.flags:
        unit.tags.add("terraform:auto-approve")


def _curl(unit: Unit, f: Facts) -> None:
    methods = [m.upper() for m in _values(f, "-X", "--request")]
    if any(m not in ("GET", "HEAD", "OPTIONS") for m in methods):
        unit.tags.add("http:write-method")
    uploads = _values(f, "-d", "--data", "--data-binary", "--data-raw", "--data-urlencode",
                      "-F", "--form", "-T", "--upload-file", "--json")
    if uploads:
        unit.tags.add("http:write-method")
        if any("@" in u for u in uploads) or "-T" in f.flags or "--upload-file" in f.flags:
            unit.tags.add("http:upload-file")
    for a in unit.argv[1:]:
        if "169.254.169.254" in a or "metadata.azure" in a:
            unit.tags.add("http:imds")
            if "identity" in a or "token" in a:
                unit.tags.add("http:imds-token")


def _rsync(unit: Unit, f: Facts) -> None:
    if f.flags & {"-e", "--rsh", "--rsync-path"}:
        unit.tags.add("rsync:exec-option")


def _ssh_like(unit: Unit, f: Facts) -> None:
    for t in list(unit.tags):
        if t.split(":")[-1] in ("proxycommand", "localcommand", "permitlocalcommand",
                                "knownhostscommand"):
            unit.tags.add("ssh:exec-option")


def _zip(unit: Unit, f: Facts) -> None:
    if f.flags & {"-TT", "--unzip-command"} or "-T" in f.flags:
        unit.tags.add("zip:exec-option")


def _sql(unit: Unit, f: Facts) -> None:
    inline_keys, file_keys = _SQL_CLIENTS[unit.program]
    texts: list[str] = []
    dynamic = False
    for i, a in enumerate(unit.argv):
        key = a.split("=", 1)[0]
        if key in inline_keys:
            if "=" in a:
                texts.append(a.split("=", 1)[1])
                dynamic |= not unit.static[i]
            elif i + 1 < len(unit.argv):
                texts.append(unit.argv[i + 1])
                dynamic |= not unit.static[i + 1]
        elif key in file_keys:
            unit.tags.add("sql:unknown")
    if unit.program == "sqlite3" and len(f.positionals) >= 2:
        texts.append(unit.argv[f.positionals[-1]])
        dynamic |= not unit.static[f.positionals[-1]]
    if unit.stdin is not None:
        if unit.payload is None:
            dynamic = True
        else:
            texts.append(unit.payload)
    if dynamic:
        unit.tags.add("sql:unknown")
    if not texts and unit.stdin is None:
        unit.tags.add("sql:interactive")
    for t in texts:
        unit.tags.add("sql:" + sql.classify(t))


_TAGGERS = {
    "git": _git,
    "az": _az,
    "kubectl": _kubectl,
    "oc": _kubectl,
    "terraform": _terraform,
    "tofu": _terraform,
    "terragrunt": _terraform,
    "curl": _curl,
    "wget": _curl,
    "rsync": _rsync,
    "ssh": _ssh_like,
    "scp": _ssh_like,
    "sftp": _ssh_like,
    "zip": _zip,
}
