"""Configuration: TOML -> frozen dataclasses, validated once at load time.

Every problem raises one ``ConfigError`` naming the file, the key and the reason. Relative paths
resolve against the folder of the config file. Sections owned by feature packages (policy,
masking, recording, identity, ...) are kept raw in ``Config.raw`` and parsed by those packages.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from bastion import schema
from bastion.errors import ConfigError
from bastion.ssh.certcheck import parse_signature_algorithms

DEFAULT_CONFIG_PATH = Path("config/bastion.toml")
LEGACY_DEFAULT_CONFIG = str(DEFAULT_CONFIG_PATH)  # what the commands register as --config default
SYSTEM_CONFIG_PATH = Path("/etc/bastion/bastion.toml")
CONFIG_ENV = "BASTION_CONFIG"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_LOGIN_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")


def default_config_path(environ: Mapping[str, str]) -> Path:
    """The config a command uses without ``--config``: ``$BASTION_CONFIG``, else
    ``/etc/bastion/bastion.toml`` if it exists, else ``config/bastion.toml`` if that exists."""
    named = environ.get(CONFIG_ENV, "")
    if named:
        return Path(named)
    if SYSTEM_CONFIG_PATH.exists() or not DEFAULT_CONFIG_PATH.exists():
        return SYSTEM_CONFIG_PATH  # when neither exists, the error names the system path
    return DEFAULT_CONFIG_PATH


def parse_duration(value: object, where: str = "duration") -> float:
    """Parse ``"15m"``, ``"24h"``, ``"500ms"``, ``"30"`` (seconds) or a number into seconds."""
    if isinstance(value, bool):
        raise ConfigError(where, f"expected a duration like '15m', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    else:
        raise ConfigError(where, f"expected a duration like '15m', '24h' or '30s', got {value!r}")
    if seconds < 0:
        raise ConfigError(where, "a duration cannot be negative")
    return seconds


def parse_hostport(value: object, where: str) -> tuple[str, int]:
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(where, f"expected 'HOST:PORT', got {value!r}")
    host, _, port_text = value.rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(where, f"port is not a number in {value!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(where, f"port out of range in {value!r}")
    return host, port


MAX_WORKERS = 64


def default_workers() -> int:
    """One worker per core this process may run on (``[server] workers`` when unset)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))


@dataclass(frozen=True)
class ServerConfig:
    host: str
    port: int
    host_key: Path
    state_dir: Path
    login_timeout: float = 30.0
    kex: str = "default"  # or "post-quantum-only" (needs OpenSSH >= 9.9 clients)
    workers: int = 1  # SSH worker processes; a config file without the key gets one per core


@dataclass(frozen=True)
class AuthConfig:
    trusted_user_ca_keys: tuple[asyncssh.SSHKey, ...]
    trusted_user_ca_files: tuple[Path, ...]
    max_cert_validity: float
    clock_skew: float = 60.0
    # CA and userauth signature algorithms (bastion.ssh.certcheck; never SHA-1 RSA).
    signature_algorithms: tuple[str, ...] = ()


@dataclass(frozen=True)
class TargetConfig:
    name: str
    host: str
    port: int
    login: str
    identity_file: Path
    host_keys: tuple[asyncssh.SSHKey, ...] = ()
    known_hosts: Path | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    connect_timeout: float = 10.0
    # Channels per upstream connection: the target sshd's MaxSessions (OpenSSH default 10).
    max_sessions: int = 10
    # Upstream handshakes in flight to this target from the whole bastion: under the target
    # sshd's MaxStartups start value (OpenSSH default 10:30:100), past which it drops
    # unauthenticated connections at random.
    max_handshakes: int = 8


@dataclass(frozen=True)
class AccessRule:
    principals: tuple[str, ...]
    targets: tuple[str, ...]
    logins: tuple[str, ...]

    def grants(self, principals: Sequence[str], target: str, login: str) -> bool:
        return (
            any(p in self.principals for p in principals)
            and any(fnmatch.fnmatchcase(target, pattern) for pattern in self.targets)
            and any(fnmatch.fnmatchcase(login, pattern) for pattern in self.logins)
        )


@dataclass(frozen=True)
class Config:
    path: Path
    base_dir: Path
    server: ServerConfig
    auth: AuthConfig
    targets: Mapping[str, TargetConfig]
    access: tuple[AccessRule, ...]
    raw: Mapping[str, Any]

    @property
    def state_dir(self) -> Path:
        return self.server.state_dir

    def resolve(self, value: str | Path) -> Path:
        return (self.base_dir / value).resolve()

    def is_granted(self, principals: Sequence[str], target: str, login: str) -> bool:
        """Deny by default: a rule must name one of the principals, the target and the login."""
        return any(rule.grants(principals, target, login) for rule in self.access)


class _Section:
    """Typed accessors over one TOML table that name the key in every error."""

    def __init__(self, cfg_name: str, where: str, table: object) -> None:
        if not isinstance(table, dict):
            raise ConfigError(f"{cfg_name}: {where}", "expected a table")
        self._cfg = cfg_name
        self._where = where
        self._table: dict[str, Any] = table

    def key(self, name: str) -> str:
        return f"{self._cfg}: {self._where}.{name}" if self._where else f"{self._cfg}: {name}"

    def has(self, name: str) -> bool:
        return name in self._table

    def string(self, name: str, default: str | None = None) -> str:
        value = self._table.get(name, default)
        if not isinstance(value, str) or not value:
            raise ConfigError(self.key(name), "expected a non-empty string")
        return value

    def integer(self, name: str, default: int | None = None) -> int:
        value = self._table.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(self.key(name), "expected an integer")
        return value

    def strings(self, name: str, default: Sequence[str] | None = None) -> tuple[str, ...]:
        value = self._table.get(name, default)
        if not isinstance(value, list | tuple) or not value:
            raise ConfigError(self.key(name), "expected a non-empty list of strings")
        if not all(isinstance(v, str) and v for v in value):
            raise ConfigError(self.key(name), "expected a non-empty list of strings")
        return tuple(value)

    def duration(self, name: str, default: str) -> float:
        return parse_duration(self._table.get(name, default), self.key(name))


def _read_public_key(path: Path, where: str) -> asyncssh.SSHKey:
    try:
        return asyncssh.read_public_key(str(path))
    except FileNotFoundError:
        raise ConfigError(where, f"file not found: {path}") from None
    except (OSError, asyncssh.KeyImportError) as exc:
        raise ConfigError(where, f"cannot read public key {path}: {exc}") from None


def _import_public_key(text: str, where: str) -> asyncssh.SSHKey:
    try:
        return asyncssh.import_public_key(text)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise ConfigError(where, f"not a valid OpenSSH public key: {exc}") from None


def _check_private_key_file(path: Path, where: str) -> None:
    if not path.is_file():
        raise ConfigError(where, f"file not found: {path}")
    if path.stat().st_mode & 0o077:
        raise ConfigError(where, f"{path} is readable by group or others; chmod 600 it")


def _parse_target(cfg: str, index: int, table: object, base: Path) -> TargetConfig:
    s = _Section(cfg, f"targets[{index}]", table)
    name = s.string("name")
    if not _TARGET_NAME.match(name):
        raise ConfigError(s.key("name"), "use letters, digits, '.', '_' or '-' (max 63)")
    login = s.string("login")
    if not _LOGIN_NAME.match(login):
        raise ConfigError(s.key("login"), f"not a valid login name: {login!r}")
    port = s.integer("port", 22)
    if not 0 < port < 65536:
        raise ConfigError(s.key("port"), "out of range")
    identity = (base / s.string("identity_file")).resolve()
    _check_private_key_file(identity, s.key("identity_file"))
    host_keys: tuple[asyncssh.SSHKey, ...] = ()
    known_hosts: Path | None = None
    if s.has("host_key"):
        raw = table["host_key"] if isinstance(table, dict) else None
        lines = [raw] if isinstance(raw, str) else raw
        if not isinstance(lines, list) or not lines:
            raise ConfigError(s.key("host_key"), "expected a public key line or a list of them")
        host_keys = tuple(_import_public_key(str(line), s.key("host_key")) for line in lines)
    if s.has("known_hosts"):
        known_hosts = (base / s.string("known_hosts")).resolve()
        if not known_hosts.is_file():
            raise ConfigError(s.key("known_hosts"), f"file not found: {known_hosts}")
    if not host_keys and known_hosts is None:
        raise ConfigError(
            f"{cfg}: targets[{index}]",
            "the target's host key must be pinned: set host_key or known_hosts",
        )
    labels_raw = table.get("labels", {}) if isinstance(table, dict) else {}
    if not isinstance(labels_raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels_raw.items()
    ):
        raise ConfigError(s.key("labels"), "expected a table of string values")
    return TargetConfig(
        name=name,
        host=s.string("host"),
        port=port,
        login=login,
        identity_file=identity,
        host_keys=host_keys,
        known_hosts=known_hosts,
        labels=dict(labels_raw),
        connect_timeout=s.duration("connect_timeout", "10s"),
        max_sessions=_bounded(s, "max_sessions", 10, 1, 1024),
        max_handshakes=_bounded(s, "max_handshakes", 8, 1, 1024),
    )


def _bounded(s: _Section, name: str, default: int, low: int, high: int) -> int:
    value = s.integer(name, default)
    if not low <= value <= high:
        raise ConfigError(s.key(name), f"expected an integer from {low} to {high}")
    return value


def load_config(path: str | Path) -> Config:
    """Read and validate the config; raise ConfigError naming file, key and reason."""
    path = Path(path)
    cfg = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(cfg, "file not found") from None
    except OSError as exc:
        raise ConfigError(cfg, f"cannot read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(cfg, f"not valid TOML: {exc}") from None
    base = path.resolve().parent
    schema.check(raw, cfg)  # unknown sections and keys (bastion/schema.py), before any value

    srv = _Section(cfg, "server", raw.get("server", {}))
    host, port = parse_hostport(srv.string("listen", "127.0.0.1:2222"), srv.key("listen"))
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ConfigError(srv.key("listen"), f"expected an IP address, got {host!r}") from None
    server = ServerConfig(
        host=host,
        port=port,
        host_key=(base / srv.string("host_key", "ssh_host_ed25519_key")).resolve(),
        state_dir=(base / srv.string("state_dir", "state")).resolve(),
        login_timeout=srv.duration("login_timeout", "30s"),
        kex=srv.string("kex", "default"),
        workers=srv.integer("workers", default_workers()),
    )
    if not 1 <= server.workers <= MAX_WORKERS:
        raise ConfigError(srv.key("workers"), f"expected an integer from 1 to {MAX_WORKERS}")
    if server.kex not in ("default", "post-quantum-only"):
        raise ConfigError(srv.key("kex"), "expected 'default' or 'post-quantum-only'")

    auth_s = _Section(cfg, "auth", raw.get("auth", {}))
    ca_files = tuple((base / p).resolve() for p in auth_s.strings("trusted_user_ca_keys"))
    ca_keys = tuple(_read_public_key(p, auth_s.key("trusted_user_ca_keys")) for p in ca_files)
    max_validity = auth_s.duration("max_cert_validity", "24h")
    if max_validity <= 0:
        raise ConfigError(auth_s.key("max_cert_validity"), "must be positive")
    auth = AuthConfig(
        trusted_user_ca_keys=ca_keys,
        trusted_user_ca_files=ca_files,
        max_cert_validity=max_validity,
        clock_skew=auth_s.duration("clock_skew", "60s"),
        signature_algorithms=parse_signature_algorithms(
            raw.get("auth", {}), auth_s.key("signature_algorithms")
        ),
    )

    targets_raw = raw.get("targets", [])
    if not isinstance(targets_raw, list):
        raise ConfigError(f"{cfg}: targets", "expected [[targets]] tables")
    targets: dict[str, TargetConfig] = {}
    for i, table in enumerate(targets_raw):
        target = _parse_target(cfg, i, table, base)
        if target.name in targets:
            raise ConfigError(f"{cfg}: targets[{i}].name", f"duplicate target {target.name!r}")
        targets[target.name] = target

    access_raw = raw.get("access", [])
    if not isinstance(access_raw, list):
        raise ConfigError(f"{cfg}: access", "expected [[access]] tables")
    access = []
    for i, table in enumerate(access_raw):
        a = _Section(cfg, f"access[{i}]", table)
        access.append(
            AccessRule(a.strings("principals"), a.strings("targets"), a.strings("logins"))
        )

    return Config(
        path=path.resolve(),
        base_dir=base,
        server=server,
        auth=auth,
        targets=targets,
        access=tuple(access),
        raw=raw,
    )
