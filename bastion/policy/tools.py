"""Tool-aware facts about a normalised command: subcommand path, flags, option values, and tags
that name semantic effects (force push, secret read, destructive SQL, ...).

Option parsing is generic (``--key=value``, ``--key value``, clustered short flags) with per-tool
tables for global options that take a value, so that ``kubectl -n prod delete ...`` has the path
``delete ...`` and ``git -C repo push -f`` is a force push.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bastion.policy import hosts, sql
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
    "sqlite3": ({"-cmd", "--cmd"}, {"-init", "--init", "-A", "--A"}),
    "clickhouse-client": ({"-q", "--query"}, {"--queries-file"}),
    "cqlsh": ({"-e", "--execute"}, {"-f", "--file"}),
}
# Short options that take a value, so a glued value is not read as a cluster of flags.
_SHORT_VALUE_OPTS: dict[str, frozenset[str]] = {
    "kubectl": frozenset({"-o", "-n", "-l", "-f", "-c", "-s", "-L", "-k", "-v"}),
    "oc": frozenset({"-o", "-n", "-l", "-f", "-c", "-s", "-L", "-k", "-v"}),
    "helm": frozenset({"-n", "-o", "-f", "-m"}),
}
_SQLITE_VALUE_OPTS = frozenset({"cmd", "init", "separator", "newline", "nullvalue", "vfs",
                                "maxsize", "mmap", "nonce", "lookaside", "pagecache"})
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
                if "-" + c in _SHORT_VALUE_OPTS.get(program, ()):
                    break  # the rest is this option's value (`-owide`), not more flags
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


# Verbs that print keys, tokens, connection strings or credentials (issue 17 item 6), by the
# shape of the az command: a last word, or the last two words (`keys list`, `secret show`).
_AZ_SECRET_LAST = frozenset({"list-keys", "show-connection-string", "list-connection-strings",
                             "get-credentials", "get-access-token", "list-publishing-profiles",
                             "list-publishing-credentials", "generate-sas", "list-secrets",
                             "list-credentials", "get-keys", "list-key", "show-keys",
                             "create-for-rbac", "list-auth-keys", "get-auth-key"})
_AZ_SECRET_PAIRS = frozenset({("keys", "list"), ("key", "list"), ("keys", "show"), ("key", "show"),
                              ("admin-key", "show"), ("query-key", "list"),
                              ("credential", "show"), ("credential", "list"),
                              ("credential", "reset"), ("secret", "show"),
                              ("secret", "download"), ("secret", "show-deleted"),
                              ("connection-string", "show"), ("connection-string", "list"),
                              ("appsettings", "list"), ("api-key", "create"),
                              ("authorization-rule", "list-keys"), ("secrets", "list")})
# ARM and the other Azure endpoints az rest attaches its token for; Key Vault's data plane.
_AZ_ARM_HOSTS = frozenset({"management.azure.com", "graph.microsoft.com",
                           "management.core.windows.net", "api.loganalytics.io"})
_AZ_VAULT_SUFFIXES = (".vault.azure.net", ".vault.usgovcloudapi.net", ".vault.azure.cn",
                      ".managedhsm.azure.net")


def _az_secret_verb(unit: Unit, f: Facts) -> bool:
    path = f.path
    if path and path[-1] in _AZ_SECRET_LAST:
        return True
    if len(path) >= 2 and (path[-2], path[-1]) in _AZ_SECRET_PAIRS:
        # Key Vault keys never leave the vault: `keyvault key list/show` print only metadata.
        return path[:3] not in (("keyvault", "key", "list"), ("keyvault", "key", "show"))
    if len(path) >= 2 and (path[-2], path[-1]) == ("secret", "list"):
        return "--show-values" in f.flags  # containerapp: names only without it
    return path[:2] == ("acr", "login") and "--expose-token" in f.flags


def _az_rest(unit: Unit, f: Facts) -> None:
    urls = _values(f, "--url", "--uri", "-u")
    if "--body" in f.flags or "-b" in f.flags:
        unit.tags.add("az:write-method")  # a body is sent (the method defaults to POST then)
    for url in urls:
        if url.startswith("/"):
            continue  # relative: az rest prefixes the ARM endpoint
        ep = hosts.parse_endpoint(url, bare_host=True)
        host = ep.host
        if host is None:
            unit.tags.add("az:rest-outside")
        elif host.endswith(_AZ_VAULT_SUFFIXES):
            unit.tags.add("az:rest-vault")
        elif host not in _AZ_ARM_HOSTS:
            unit.tags.add("az:rest-outside")  # with --resource, the token goes to that host
    if not urls:
        unit.tags.add("az:rest-outside")


def _az(unit: Unit, f: Facts) -> None:
    if _az_secret_verb(unit, f):
        unit.tags.add("az:secret-read")
    if f.path[:1] == ("rest",):
        methods = [m.lower() for m in _values(f, "--method", "-m")] or ["get"]
        if any(m not in _READ_METHODS for m in methods):
            unit.tags.add("az:write-method")
        _az_rest(unit, f)
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


_K8S_SAFE_OUTPUTS = frozenset({"name", "wide", ""})


def _kubectl(unit: Unit, f: Facts) -> None:
    # --dry-run takes its value only as `--dry-run=X` (pflag with a default) and the last one
    # wins: `--dry-run=client --dry-run=none` changes the cluster.
    dry: list[str] = []
    for i, a in enumerate(unit.argv[1:], 1):
        if a == "--":
            break
        if a == "--dry-run" or a.startswith("--dry-run="):
            dry.append(a.partition("=")[2].lower() if unit.static[i] else "?")
    if dry and dry[-1] in ("client", "server"):
        unit.tags.add("kubectl:dry-run")
    from_files = bool(f.flags & {"-f", "--filename", "-k", "--kustomize"})  # any kind, secrets too
    if f.path[:1] == ("get",) and (from_files or (len(f.path) > 1 and
                                                  _k8s_secret_resource(f.path[1:]))):
        outputs = [o.lower() for o in _values(f, "-o", "--output")]
        if "--template" in f.flags or any(
            o.split("=", 1)[0] not in _K8S_SAFE_OUTPUTS for o in outputs
        ) or any(not unit.static[i] for i in range(len(unit.argv))):
            unit.tags.add("kubectl:secret-read")


def _k8s_secret_resource(words: tuple[str, ...]) -> bool:
    """A resource list (`pods,secrets`, `secret/db`, `secrets.v1.`) that includes secrets."""
    for word in words:
        for item in word.split(","):
            kind = item.split("/", 1)[0].lower()
            group = kind.split(".", 1)[0]
            if group in ("secret", "secrets"):
                return True
    return False


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
    # The metadata service (in every spelling of its address) is judged by host class in the
    # curl/wget declarations (config/tools/http.toml, netgate.py).


def _ssh_like(unit: Unit, f: Facts) -> None:
    for t in list(unit.tags):
        if t.split(":")[-1] in ("proxycommand", "localcommand", "permitlocalcommand",
                                "knownhostscommand"):
            unit.tags.add("ssh:exec-option")


def _zip(unit: Unit, f: Facts) -> None:
    # -TT/--unzip-command run a program; plain -T runs `unzip -tqq`, a fixed program
    # (config/tools/files.toml declares zip and tags -TT the same way).
    if f.flags & {"-TT", "--unzip-command"}:
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
    if unit.program == "sqlite3":
        # sqlite3 [OPTIONS] FILENAME [SQL...]: every operand after the database is run in turn
        operands = [i for i in range(1, len(unit.argv)) if not unit.argv[i].startswith("-")
                    and unit.argv[i - 1].lstrip("-") not in _SQLITE_VALUE_OPTS]
        for i in operands[1:]:
            texts.append(unit.argv[i])
            dynamic |= not unit.static[i]
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
    "ssh": _ssh_like,
    "scp": _ssh_like,
    "sftp": _ssh_like,
    "zip": _zip,
}
