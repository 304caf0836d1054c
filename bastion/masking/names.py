"""Whether a field, column, variable or setting name says its value is a secret.

Shared by the name/value pair scanner, table columns, YAML block scalars and output
profiles. A name is split into words (``_ - . space``, camelCase, digits dropped):
``speech-key``, ``DB_PASSWORD``, ``key1``, ``primaryConnectionString`` are secret names;
``KeyVaultName``, ``SecretName``, ``keyId``, ``TOKEN_EXPIRY``, ``publicKey`` are not (the last
word says the value is a name, an id, a date or something public).
"""

from __future__ import annotations

import re
from functools import lru_cache

_SPLIT = re.compile(rb"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# a word that is a secret on its own
_SECRET_WORDS = frozenset(
    w.encode() for w in (
        "password", "passwd", "passphrase", "pwd", "pass", "pw", "secret", "token", "key",
        "credential", "credentials", "cred", "creds", "apikey", "sas", "psk", "pat", "auth",
        "privatekey", "connectionstring", "connstr", "signature", "sig", "cookie", "session",
        "sessionid", "userpwd", "accountkey", "masterkey", "accesskey", "secretkey",
        "sharedkey", "authkey", "presharedkey", "pin", "otp", "hmac", "salt", "jwt",
    )
)
# compounds written as one word: accept these endings
_SECRET_ENDINGS = (b"password", b"passwd", b"secret", b"token", b"apikey", b"accountkey",
                   b"masterkey", b"accesskey", b"secretkey", b"privatekey", b"sharedkey",
                   b"primarykey", b"secondarykey", b"instrumentationkey", b"subscriptionkey",
                   b"signingkey", b"encryptionkey", b"connectionstring", b"pwd")
# a last word that makes the value metadata, not the secret
BENIGN_LAST = frozenset(
    w.encode() for w in (
        "name", "names", "id", "ids", "type", "types", "file", "files", "path", "dir", "url",
        "uri", "urls", "ref", "length", "len", "policy", "policies", "expiry", "expires",
        "expiration", "endpoint", "count", "enabled", "version", "hint", "prompt", "field",
        "at", "on", "kind", "format", "source", "mode", "provider", "store", "header", "limit",
        "size", "usage", "tokens", "ttl", "location", "label", "lifetime", "duration",
        "rotation", "method", "validity", "permissions", "permission", "scope", "scopes",
        "template", "mount", "volume", "class", "status", "state", "reset", "changed", "min",
        "max", "vault", "uuid", "guid", "host", "hostname", "port", "user", "username",
        "login", "email", "account", "region", "time", "date", "timestamp", "created",
        "updated", "level", "required", "set", "exists", "hash", "sha", "thumbprint",
        "fingerprint", "algorithm", "alg", "issuer", "audience", "description", "display",
        "helper", "policy", "bits", "strength", "complexity", "regex", "pattern", "list",
        "secrets", "keys", "passwords", "credentials", "attributes", "properties", "spec",
        "selector", "index", "number", "env", "var", "version", "tag", "tags", "output",
        "outputs", "input", "inputs", "ui", "timeout", "interval", "period", "days", "age",
        "identifier", "keyid", "kid", "vaultname", "cache", "manager", "service", "client",
        "from", "ref", "refs", "def", "schema", "filename", "pathname",
    )
)
# words that make the whole name public ("publicKey", "public_key_path")
_PUBLIC = frozenset((b"public", b"pub", b"cert", b"certificate", b"ca"))


def words(name: bytes) -> list[bytes]:
    """``primaryConnectionString`` -> [primary, connection, string]; digits dropped."""
    return [w.lower() for w in _SPLIT.findall(name) if not w.isdigit()]


@lru_cache(maxsize=4096)
def is_secret_name(name: bytes) -> bool:
    """The value of a field so named is a secret (see the module docstring)."""
    if not name or len(name) > 128:
        return False
    ws = words(name)
    if not ws or ws[-1] in BENIGN_LAST or any(w in _PUBLIC for w in ws):
        return False
    joined = b"".join(ws)
    if joined.endswith(_SECRET_ENDINGS):
        return True
    # "connection string", "client secret", "speech key": the last word decides, or an
    # earlier secret word followed only by digits/qualifiers ("key1", "password_old")
    if ws[-1] in _SECRET_WORDS:
        return True
    return len(ws) >= 2 and ws[-2] in _SECRET_WORDS and ws[-1] in (
        b"old", b"new", b"prod", b"dev", b"test", b"primary", b"secondary", b"value", b"b64",
        b"base", b"enc", b"encoded", b"raw", b"plain", b"text", b"data", b"string", b"str",
    )


@lru_cache(maxsize=4096)
def is_benign_name(name: bytes) -> bool:
    """A name whose value is metadata (ends in name/id/url/version ...)."""
    ws = words(name)
    return bool(ws) and (ws[-1] in BENIGN_LAST or any(w in _PUBLIC for w in ws))
