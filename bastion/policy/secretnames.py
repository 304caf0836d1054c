"""Which environment variable names say "this holds a secret".

``secret_variable(name)`` is the one classifier the gate uses wherever a variable's *value* could
reach the agent: ``printenv NAME``, ``echo $NAME``, ``declare -p NAME``, copying it into a
variable with an innocent name, and (for the tool grammars) ``jq '$ENV.NAME'`` or
``awk 'ENVIRON["NAME"]'``. It judges the name only, by the words it is made of, so it covers
names nobody listed (``STRIPE_API_KEY``, ``MY_SERVICE_PASSWD``, ``githubToken``).
"""

from __future__ import annotations

import functools
import itertools
import re

# A name is secret when one of its words is one of these ...
_SECRET_WORDS = frozenset({
    "TOKEN", "TOKENS", "SECRET", "SECRETS", "PASSWORD", "PASSWORDS", "PASSWD", "PASSPHRASE",
    "APIKEY", "APIKEYS", "CREDENTIAL", "CREDENTIALS", "CREDS", "PAT", "PWD", "PASS",
    "ACCESSTOKEN", "AUTHTOKEN", "SASTOKEN", "PRIVATEKEY", "CLIENTSECRET", "SIGNINGKEY",
    "COOKIE", "SESSIONID", "DSN",
})
# ... or it contains one of these runs (names written without separators: GITHUBTOKEN) ...
_SECRET_RUNS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "APIKEY", "CREDENTIAL",
                "CONNECTIONSTRING", "PRIVATEKEY", "ACCESSKEY")
# ... or its last word is KEY (STRIPE_KEY, AZURE_STORAGE_KEY), unless that key is public.
_PUBLIC_KEY_WORDS = frozenset({"PUBLIC", "PUB", "SORT", "PRIMARY", "FOREIGN", "PARTITION",
                               "ROUTING", "CACHE", "GPG", "IDEMPOTENCY"})
# Two-word phrases that name a secret.
_SECRET_PAIRS = frozenset({("CONNECTION", "STRING"), ("ACCESS", "KEY"), ("PRIVATE", "KEY"),
                           ("ACCOUNT", "KEY"), ("MASTER", "KEY"), ("IDENTITY", "HEADER"),
                           ("DATABASE", "URL"), ("SAS", "URL"), ("WEBHOOK", "URL")})
# Words that contain a secret run without being one (HF's TOKENIZERS_PARALLELISM).
_INNOCENT_WORDS = frozenset({"TOKENIZER", "TOKENIZERS", "PASSTHROUGH", "PASSWORDLESS",
                             "PASSWDFILE"})
# Variables of the shell or of everyday tools that match a rule above but hold no secret.
_NOT_SECRET = frozenset({"PWD", "OLDPWD", "GPG_KEY", "SSH_AUTH_SOCK", "KEYVAULT_NAME",
                         "PASSWORD_STORE_DIR", "GIT_ASKPASS", "SSH_ASKPASS", "SUDO_ASKPASS",
                         "SSH_ASKPASS_REQUIRE", "TOKENIZERS_PARALLELISM"})
# Named in full by the issue and the platforms (Azure managed identity, GitHub Actions, Azure
# Pipelines): always secret, whatever the rules above say.
_ALWAYS = frozenset({"AZURE_CLIENT_SECRET", "ARM_CLIENT_SECRET", "GITHUB_TOKEN", "GH_TOKEN",
                     "ACTIONS_ID_TOKEN_REQUEST_TOKEN", "ACTIONS_RUNTIME_TOKEN",
                     "SYSTEM_ACCESSTOKEN", "IDENTITY_HEADER", "MSI_SECRET",
                     "AZURE_FEDERATED_TOKEN_FILE", "ARM_OIDC_TOKEN", "AWS_SESSION_TOKEN",
                     "AWS_SECRET_ACCESS_KEY", "VAULT_TOKEN", "NPM_TOKEN", "PGPASSWORD",
                     "MYSQL_PWD", "REDISCLI_AUTH", "DOCKER_AUTH_CONFIG", "KUBE_TOKEN"})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[^A-Za-z0-9]+", _CAMEL.sub("_", name).upper()) if w]


@functools.lru_cache(maxsize=4096)
def secret_variable(name: str) -> bool:
    """True when the variable's name says it holds a secret (token, password, key, ...)."""
    upper = name.upper()
    if upper in _ALWAYS:
        return True
    if upper in _NOT_SECRET:
        return False
    words = _words(name)
    if not words:
        return False
    if any(w in _SECRET_WORDS for w in words):
        return True
    if any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words)):
        return True
    if words[-1] in ("KEY", "KEYS") and (len(words) == 1 or words[-2] not in _PUBLIC_KEY_WORDS):
        return True
    joined = "".join(w for w in words if w not in _INNOCENT_WORDS)
    return any(run in joined for run in _SECRET_RUNS)


_REFERENCE = re.compile(r"\$(?:\{(#?)([A-Za-z_][A-Za-z0-9_]*)(:?\+)?|([A-Za-z_][A-Za-z0-9_]*))")
# ${!name} expands the variable named by $name; ${!prefix*} / ${!prefix@} expand names and
# ${!arr[@]} / ${!arr[*]} an array's keys, never a value.
_INDIRECT = re.compile(r"\$\{!(?![A-Za-z_][A-Za-z0-9_]*(?:[*@]|\[[*@]\])\})")
# ${name[$key]}: $key only picks the element (printing ${name[...]} prints name's value).
_SUBSCRIPT = re.compile(r"(\$\{[#!]?[A-Za-z_][A-Za-z0-9_]*)\[[^\]]*\]")


def referenced_variables(text: str) -> list[str]:
    """Names of the variables whose *value* ``text`` expands (``$NAME``, ``${NAME}``,
    ``${NAME:-x}``, quoted or not); ``${#NAME}`` (its length) and ``${NAME:+x}`` (x when set)
    do not expand the value and are left out."""
    out: list[str] = []
    text = _SUBSCRIPT.sub(r"\1[]", text)
    for m in _REFERENCE.finditer(text):
        length, braced, alternate, bare = m.groups()
        if bare:
            out.append(bare)
        elif not length and not alternate:
            out.append(braced)
    return out


def secret_references(text: str) -> list[str]:
    """The secret-named variables that ``text`` expands."""
    return [n for n in referenced_variables(text) if secret_variable(n)]


def indirect_reference(text: str) -> bool:
    """``${!name}`` expands the variable *named by* ``$name``: any variable, secret or not."""
    return _INDIRECT.search(text) is not None
