"""The shape of ``bastion.toml``: which sections exist and which keys each may hold.

One declarative table, used by ``load_config`` (so ``bastion serve`` refuses what it would
ignore) and by ``bastion check-config`` (which lists every problem, one line each), and checked
against ``docs/configuration.md`` and against the keys the parsers really read
(``tests/ops/test_ops_config_docs.py``).

A section either lists its keys here, or names the module that parses it and refuses unknown
keys itself (``keys=None``): those parsers know keys that depend on other keys (a notifier's
``type``), so duplicating them here would only drift.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from bastion.errors import ConfigError


@dataclass(frozen=True)
class Section:
    name: str
    keys: frozenset[str] | None  # None: ``parser`` refuses unknown keys itself
    parser: str  # the module that reads it
    array: bool = False  # [[name]] blocks rather than one [name] table
    free_form: frozenset[str] = field(default_factory=frozenset)  # sub-tables of user keys


def _keys(*names: str) -> frozenset[str]:
    return frozenset(names)


SCHEMA: tuple[Section, ...] = (
    Section("server", _keys("listen", "host_key", "state_dir", "login_timeout", "kex", "workers"),
            "bastion.config"),
    Section("auth", _keys("trusted_user_ca_keys", "max_cert_validity", "clock_skew",
                          "signature_algorithms"),
            "bastion.config"),
    Section("targets", _keys("name", "host", "port", "login", "identity_file", "host_key",
                             "known_hosts", "labels", "connect_timeout", "max_sessions",
                             "max_handshakes"),
            "bastion.config", array=True, free_form=_keys("labels")),
    Section("access", _keys("principals", "targets", "logins"), "bastion.config", array=True),
    Section("policy", _keys("file"), "bastion.gate"),
    Section("gate", _keys("shells", "shell_reviews", "decision_budget"), "bastion.gate"),
    Section("http", _keys("listen", "public_url", "tls_cert", "tls_key"), "bastion.http"),
    Section("audit", _keys("db"), "bastion.audit.cli"),
    Section("recording", None, "bastion.recording.config"),
    Section("masking", None, "bastion.masking.config"),
    Section("ca", None, "bastion.identity.config"),
    Section("oidc", None, "bastion.identity.config"),
    Section("approvals", None, "bastion.approval.config"),
    Section("limits", None, "bastion.ops.limits"),
    Section("interactive", None, "bastion.interactive.config"),
    Section("notify", None, "bastion.notify.config", array=True),
)  # fmt: skip

SECTIONS: Mapping[str, Section] = {s.name: s for s in SCHEMA}


def problems(raw: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """Every (dotted key, reason) wrong with the shape of ``raw``; nothing when it fits."""
    for name, value in raw.items():
        section = SECTIONS.get(name)
        if section is None:
            yield name, f"unknown section [{name}] (typo?)"
            continue
        if section.array:
            if not isinstance(value, list):
                yield name, f"expected [[{name}]] blocks"
                continue
            tables = [(f"{name}[{i}]", item) for i, item in enumerate(value)]
        else:
            if not isinstance(value, dict):
                yield name, f"expected a [{name}] table"
                continue
            tables = [(name, value)]
        if section.keys is None:
            continue
        for where, table in tables:
            if not isinstance(table, dict):
                yield where, "expected a table"
                continue
            for key in table:
                if key not in section.keys:
                    yield f"{where}.{key}", _unknown(key, section.keys)


def check(raw: Mapping[str, Any], cfg: str) -> None:
    """Raise one ConfigError naming the file and the first key that does not fit."""
    for where, reason in problems(raw):
        raise ConfigError(f"{cfg}: {where}", reason)


def _unknown(key: str, known: frozenset[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
    return f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"
