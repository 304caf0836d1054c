"""Command-aware output profiles: which parts of a command's output are secret.

The bastion sees the command before its output. ``profile_for_argv(argv)`` maps a command's
argv (the gate's normalised unit, ``Decision.units[i].argv``, or a command line echoed after a
shell prompt in the stream itself) to an ``OutputProfile``:

* ``whole``: every output line is the secret (``az keyvault secret show --query value -o
  tsv``, ``terraform output -raw NAME``, ``gh auth token``);
* ``fields``: JSON/YAML keys and table columns whose values are secret (``value`` of ``az
  storage account keys list``, ``password`` of ``az ad sp create-for-rbac``);
* ``all_values``: the value of every ``NAME=value`` line (``printenv``, ``env``, ``cat .env``);
* ``k8s_secret``: Kubernetes Secret ``data``/``stringData`` without needing ``apiVersion``.

Unknown commands get ``None`` (the default rules only). The table is data (``PROFILES``) and
tests/masking/test_masking_profiles.py checks it row by row.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from bastion.masking.names import is_secret_name


@dataclass(frozen=True)
class OutputProfile:
    name: str
    whole: bool = False
    fields: frozenset[bytes] = frozenset()
    all_values: bool = False
    k8s_secret: bool = False


@dataclass(frozen=True)
class ProfileRule:
    """``words``: argv words (after the program) that must appear in this order, e.g.
    ``("keyvault", "secret", "show")``; ``whole_if``: option sets, any of which makes the whole
    output secret (each set must be present entirely, ``-o tsv`` given as ``"-o=tsv"``)."""

    program: str
    words: tuple[str, ...]
    name: str
    fields: tuple[str, ...] = ()
    whole: bool = False
    whole_if: tuple[tuple[str, ...], ...] = ()
    all_values: bool = False
    k8s_secret: bool = False


_TSV = ("-o=tsv",)
_QUERY_TSV = ("--query", "-o=tsv")
_KEY_FIELDS = ("value", "key1", "key2", "primaryKey", "secondaryKey", "primaryMasterKey",
               "secondaryMasterKey", "primaryReadonlyMasterKey", "secondaryReadonlyMasterKey",
               "primaryConnectionString", "secondaryConnectionString", "connectionString",
               "primaryAccessKey", "secondaryAccessKey", "accessKey", "key")

PROFILES: tuple[ProfileRule, ...] = (
    ProfileRule("az", ("keyvault", "secret", "show"), "az-keyvault-secret", ("value",),
                whole_if=(_QUERY_TSV, ("-o=tsv",))),
    ProfileRule("az", ("keyvault", "secret", "download"), "az-keyvault-secret-download",
                whole=True),
    ProfileRule("az", ("keys", "list"), "az-keys-list", _KEY_FIELDS, whole_if=(_QUERY_TSV,)),
    ProfileRule("az", ("list-keys",), "az-keys-list", _KEY_FIELDS, whole_if=(_QUERY_TSV,)),
    ProfileRule("az", ("keys", "renew"), "az-keys-list", _KEY_FIELDS, whole_if=(_QUERY_TSV,)),
    ProfileRule("az", ("show-connection-string",), "az-connection-string",
                ("connectionString", "value"), whole_if=(_TSV,)),
    ProfileRule("az", ("connection-string", "show"), "az-connection-string",
                ("connectionString", "value"), whole_if=(_TSV,)),
    ProfileRule("az", ("ad", "sp", "create-for-rbac"), "az-sp-credentials",
                ("password", "clientSecret"), whole_if=(_QUERY_TSV,)),
    ProfileRule("az", ("ad", "sp", "credential", "reset"), "az-sp-credentials",
                ("password", "clientSecret"), whole_if=(_QUERY_TSV,)),
    ProfileRule("az", ("ad", "app", "credential", "reset"), "az-sp-credentials",
                ("password", "clientSecret"), whole_if=(_QUERY_TSV,)),
    ProfileRule("az", ("acr", "credential", "show"), "az-acr-credentials",
                ("value", "password", "password2"), whole_if=(_QUERY_TSV,)),
    ProfileRule("az", ("acr", "login", "--expose-token"), "az-acr-token",
                ("accessToken",), whole_if=(_QUERY_TSV,)),
    ProfileRule("az", ("deployment", "list-publishing-profiles"), "az-publishing-profile",
                ("userPWD", "password", "mySQLDBConnectionString",
                 "SQLServerDBConnectionString"), whole_if=(_QUERY_TSV,)),
    ProfileRule("az", ("deployment", "list-publishing-credentials"), "az-publishing-profile",
                ("publishingPassword", "scmUri", "password"), whole_if=(_QUERY_TSV,)),
    ProfileRule("az", ("appsettings", "list"), "az-appsettings", ("value",),
                whole_if=(_QUERY_TSV,)),
    ProfileRule("az", ("connection-string", "list"), "az-appsettings", ("value",),
                whole_if=(_QUERY_TSV,)),
    ProfileRule("az", ("containerapp", "secret", "list"), "az-containerapp-secrets",
                ("value",), whole_if=(_QUERY_TSV,)),
    ProfileRule("az", ("containerapp", "secret", "show"), "az-containerapp-secrets",
                ("value",), whole_if=(_QUERY_TSV, _TSV)),
    ProfileRule("az", ("account", "get-access-token"), "az-access-token",
                ("accessToken", "access_token"), whole_if=(_QUERY_TSV,)),
    ProfileRule("az", ("storage", "account", "generate-sas"), "az-sas", whole=True),
    ProfileRule("az", ("generate-sas",), "az-sas", whole=True),
    ProfileRule("az", ("aks", "get-credentials", "--file"), "az-kubeconfig",
                ("token", "client-key-data", "password")),
    ProfileRule("terraform", ("output", "-raw"), "terraform-output-raw", whole=True),
    ProfileRule("terraform", ("output", "-json"), "terraform-output", ("value",)),
    ProfileRule("terraform", ("state", "pull"), "terraform-state",
                ("password", "value", "private_key_pem", "primary_access_key",
                 "secondary_access_key", "primary_connection_string", "client_secret",
                 "administrator_login_password", "admin_password", "sas")),
    ProfileRule("terraform", ("show", "-json"), "terraform-state",
                ("password", "value", "private_key_pem", "primary_access_key",
                 "secondary_access_key", "primary_connection_string", "client_secret",
                 "administrator_login_password", "admin_password", "sas")),
    ProfileRule("kubectl", ("get", "secret"), "kubectl-secret", k8s_secret=True,
                whole_if=(("-o=jsonpath",), ("-o=go-template",), ("--template",))),
    ProfileRule("kubectl", ("get", "secrets"), "kubectl-secret", k8s_secret=True,
                whole_if=(("-o=jsonpath",), ("-o=go-template",), ("--template",))),
    ProfileRule("kubectl", ("create", "token"), "kubectl-token", whole=True),
    ProfileRule("kubectl", ("config", "view", "--raw"), "kubectl-kubeconfig",
                ("token", "client-key-data", "password")),
    ProfileRule("gh", ("auth", "token"), "gh-token", whole=True),
    ProfileRule("aws", ("ecr", "get-login-password"), "aws-ecr-password", whole=True),
    ProfileRule("aws", ("sts", "get-session-token"), "aws-sts",
                ("SecretAccessKey", "SessionToken")),
    ProfileRule("aws", ("sts", "assume-role"), "aws-sts", ("SecretAccessKey", "SessionToken")),
    ProfileRule("vault", ("kv", "get", "-field"), "vault-field", whole=True),
    ProfileRule("vault", ("read", "-field"), "vault-field", whole=True),
    ProfileRule("printenv", (), "env-dump", all_values=True),
    ProfileRule("env", (), "env-dump", all_values=True),
    ProfileRule("export", ("-p",), "env-dump", all_values=True),
    ProfileRule("declare", ("-x",), "env-dump", all_values=True),
)

_VAR_REF = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
_FILE_READERS = frozenset(("cat", "less", "more", "head", "tail", "bat", "batcat", "view"))
_ENV_FILES = (".env", ".envrc", ".env.local", ".env.production", ".env.development",
              ".flaskenv")


def profile_keywords() -> tuple[bytes, ...]:
    """Literals one of which every command line with a profile holds (prefilter keywords for
    commands echoed after a prompt): the program and its first word, or the program at the
    end of the line: the first two words, as they are written together."""
    out: dict[bytes, None] = {}
    for r in PROFILES:
        if len(r.words) >= 2:
            out[" ".join(r.words[:2]).encode()] = None
        elif r.words:
            w = r.words[0]
            out[(f"{r.program} {w}" if w.startswith("-") else w).encode()] = None
        else:
            out[f"{r.program}\n".encode()] = out[f"{r.program}\r".encode()] = None
    for reader in _FILE_READERS:
        out[f"{reader} .env".encode()] = out[f"{reader} ./.env".encode()] = None
    out[b"/.env"] = out[b"printenv "] = out[b"echo $"] = out[b"echo \"$"] = None
    out[b"printf "] = None
    return tuple(out)


def _program(word: str) -> str:
    return word.rsplit("/", 1)[-1]


def _normalise(argv: Sequence[str]) -> list[str]:
    """``--output tsv``, ``-otsv``, ``-o tsv``, ``--output=tsv`` -> ``-o=tsv``; ``-o yaml`` ->
    ``-o=yaml``; ``-ojsonpath=...``/``-o jsonpath='{..}'`` -> ``-o=jsonpath``."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        val: str | None = None
        if a in ("-o", "--output") and i + 1 < len(argv):
            val, i = argv[i + 1], i + 1
        elif a.startswith("--output="):
            val = a[len("--output="):]
        elif a.startswith("-o") and len(a) > 2 and not a.startswith("--"):
            val = a[2:].lstrip("=")
        if val is not None:
            out.append("-o=" + val.split("=", 1)[0].split("{", 1)[0])
        else:
            out.append(a.split("=", 1)[0] if a.startswith("--") else a)
        i += 1
    return out


def _has_words(args: list[str], words: tuple[str, ...]) -> bool:
    i = 0
    for w in words:
        try:
            i = args.index(w, i) + 1
        except ValueError:
            return False
    return True


def profile_for_argv(argv: Sequence[str]) -> OutputProfile | None:
    """The output profile of one command, or None (default rules only)."""
    if not argv:
        return None
    argv = list(argv)
    while argv and _program(argv[0]) in ("sudo", "command", "exec", "time", "nohup") \
            and len(argv) > 1:
        argv = argv[1:]
        while argv and argv[0].startswith("-") and len(argv) > 1:
            argv = argv[1:]
    prog = _program(argv[0])
    args = _normalise(argv[1:])
    if prog in _FILE_READERS and any(_program(a) in _ENV_FILES or _program(a).startswith(
            ".env.") for a in args):
        return OutputProfile("env-file", all_values=True)
    if prog == "printenv" and any(not a.startswith("-") for a in args):
        return OutputProfile("printenv-var", whole=True)
    if prog in ("echo", "printf") and any(
            is_secret_name(v.encode()) for a in args for v in _VAR_REF.findall(a)):
        return OutputProfile("echo-secret-var", whole=True)  # echo "$DB_PASSWORD"
    if prog == "env" and any(not a.startswith("-") and "=" not in a for a in args):
        return None  # "env X=1 cmd": runs a command, its output is not an env dump
    for rule in PROFILES:
        if rule.program != prog or not _has_words(args, rule.words):
            continue
        whole = rule.whole or any(all(
            (o in args) if not o.startswith("--query") else any(a == "--query" for a in args)
            for o in opts) for opts in rule.whole_if)
        if rule.k8s_secret and any(a in ("-o=name", "-o=wide") for a in args):
            return None
        if rule.k8s_secret and not any(a.startswith("-o=") for a in args):
            return None  # the default table shows names, types and counts only
        return OutputProfile(rule.name, whole=whole,
                             fields=frozenset(f.lower().encode() for f in rule.fields),
                             all_values=rule.all_values, k8s_secret=rule.k8s_secret)
    return None


def profile_for_command(units: Sequence[Sequence[str]], command: str | None
                        ) -> OutputProfile | None:
    """The profile of a channel's command: the first of the gate's normalised units that has
    one (a pipeline ``az … -o tsv | head -1`` prints the secret too); without units (a gate
    that does not report them) the command line's first simple command, split as the shell
    would."""
    for argv in units:
        prof = profile_for_argv(argv)
        if prof is not None:
            return prof
    if units or not command:
        return None
    return _command_line_profile(command, 3)


def _command_line_profile(command: str, depth: int) -> OutputProfile | None:
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    for i, w in enumerate(words):
        if w in ("|", "&&", "||", ";") or w.endswith(";"):
            words = words[:i]
            break
    # "bash -lc 'az keyvault secret show …'": the profile of the inner command line
    if depth and len(words) >= 3 and _program(words[0]) in ("bash", "sh", "zsh", "dash") \
            and words[1].startswith("-") and "c" in words[1]:
        return _command_line_profile(words[2], depth - 1)
    return profile_for_argv(words)
