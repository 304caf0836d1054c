"""``[[notify]]`` blocks: which chat/webhook notifiers run, their scope and their secrets.

```toml
[[notify]]
type = "slack"
channel = "C0123456789"
bot_token_file = "secrets/slack-bot-token"        # or bot_token_env = "SLACK_BOT_TOKEN"
signing_secret_file = "secrets/slack-signing"     # or signing_secret_env = "..."
app_token_file = "secrets/slack-app-token"        # optional: Socket Mode (no inbound port)
rules = ["az-*"]          # optional scope: only requests where one of these rules fired
targets = ["web-*"]       # optional scope: only these targets (globs)
groups = ["sre"]          # optional scope: only requests these approver groups may decide
```

Secrets are never inline: each is read from ``<name>_file`` (not group/world-readable) or the
environment variable named by ``<name>_env``. Every problem raises ConfigError naming the key.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bastion.config import parse_duration
from bastion.errors import ConfigError

TYPES = ("webhook", "slack", "teams")
MAX_SECRET = 8192
DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 5
DEFAULT_API_URL = "https://slack.com/api"
_COMMON = {"type", "name", "rules", "targets", "groups", "timeout", "retries"}
_SECRETS: dict[str, tuple[tuple[str, bool], ...]] = {
    # type -> (secret name, required)
    "webhook": (("secret", True),),
    "slack": (("bot_token", True), ("signing_secret", True), ("app_token", False)),
    "teams": (("webhook_url", True),),
}
_PLAIN: dict[str, set[str]] = {
    "webhook": {"url"},
    "slack": {"channel", "api_url"},
    "teams": set(),
}


@dataclass(frozen=True)
class Scope:
    """Which requests a notifier hears about; an empty list means "all"."""

    rules: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    def matches(self, rules: Sequence[str], target: str, approvers: Sequence[str]) -> bool:
        if self.rules and not any(fnmatch.fnmatchcase(r, p) for r in rules for p in self.rules):
            return False
        if self.targets and not any(fnmatch.fnmatchcase(target, p) for p in self.targets):
            return False
        # A request that names no approver group may be decided by anyone: every scope hears it.
        return not (self.groups and approvers and not set(self.groups) & set(approvers))


@dataclass(frozen=True)
class NotifySpec:
    """One parsed ``[[notify]]`` block; ``secrets`` holds the values read from files/env."""

    type: str
    name: str
    scope: Scope
    timeout: float
    retries: int
    options: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)


def read_secret_file(path: Path, where: str) -> str:
    """A secret's text; refused when the file is group/world-readable, empty or unreadable."""
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError(where, f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(where, f"{path} is not a regular file")
    if info.st_mode & 0o077:
        raise ConfigError(
            where,
            f"{path} is readable by group or others (mode {stat.S_IMODE(info.st_mode):o}); "
            "chmod 600 it",
        )
    if info.st_size > MAX_SECRET:
        raise ConfigError(where, f"{path} is too large for a secret")
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(where, f"cannot read {path}: {exc}") from None
    if not value:
        raise ConfigError(where, f"{path} is empty")
    return value


def _secret(
    block: Mapping[str, Any], name: str, required: bool, base_dir: Path, where: str
) -> str | None:
    if name in block:
        raise ConfigError(
            f"{where}.{name}",
            f"secrets are never inline: use {name}_file (a 0600 file) or {name}_env",
        )
    file_key, env_key = f"{name}_file", f"{name}_env"
    if file_key in block and env_key in block:
        raise ConfigError(where, f"set {file_key} or {env_key}, not both")
    if file_key in block:
        value = block[file_key]
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}.{file_key}", "expected a file path")
        path = Path(value)
        return read_secret_file(
            path if path.is_absolute() else base_dir / path, f"{where}.{file_key}"
        )
    if env_key in block:
        var = block[env_key]
        if not isinstance(var, str) or not var:
            raise ConfigError(f"{where}.{env_key}", "expected an environment variable name")
        text = os.environ.get(var, "").strip()
        if not text:
            raise ConfigError(f"{where}.{env_key}", f"environment variable {var} is not set")
        return text
    if required:
        raise ConfigError(where, f"missing {file_key} (or {env_key})")
    return None


def _names(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(where, "expected a list of names")
    return tuple(value)


def _http_url(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(where, "expected an http:// or https:// URL")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(where, "expected an http:// or https:// URL")
    if any(c in value for c in "\"'<> \t\r\n"):
        raise ConfigError(where, "contains characters not allowed in a URL")
    return value


def _spec(block: object, index: int, base_dir: Path) -> NotifySpec:
    where = f"notify[{index}]"
    if not isinstance(block, dict):
        raise ConfigError(where, "expected a table ([[notify]])")
    kind = block.get("type")
    if kind not in TYPES:
        raise ConfigError(f"{where}.type", f"expected one of {', '.join(TYPES)}, got {kind!r}")
    allowed = _COMMON | _PLAIN[kind]
    for secret, _ in _SECRETS[kind]:
        allowed |= {secret, f"{secret}_file", f"{secret}_env"}
    for key in block:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}", f"unknown key for a {kind} notifier")
    name = block.get("name", f"{kind}-{index}")
    if not isinstance(name, str) or not name or len(name) > 64:
        raise ConfigError(f"{where}.name", "expected a short name")
    timeout = parse_duration(block.get("timeout", DEFAULT_TIMEOUT), f"{where}.timeout")
    if not 0 < timeout <= 120:
        raise ConfigError(f"{where}.timeout", "must be more than 0 and at most 2m")
    retries = block.get("retries", DEFAULT_RETRIES)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 20:
        raise ConfigError(f"{where}.retries", "expected a whole number 0..20")
    options: dict[str, str] = {}
    if kind == "webhook":
        options["url"] = _http_url(block.get("url"), f"{where}.url")
    elif kind == "slack":
        channel = block.get("channel")
        if not isinstance(channel, str) or not channel:
            raise ConfigError(f"{where}.channel", "expected a channel id or name")
        options["channel"] = channel
        options["api_url"] = _http_url(
            block.get("api_url", DEFAULT_API_URL), f"{where}.api_url"
        ).rstrip("/")
    secrets: dict[str, str] = {}
    for secret, required in _SECRETS[kind]:
        value = _secret(block, secret, required, base_dir, where)
        if value is not None:
            secrets[secret] = value
    if kind == "teams":
        _http_url(secrets["webhook_url"], f"{where}.webhook_url_file")
    scope = Scope(
        rules=_names(block.get("rules"), f"{where}.rules"),
        targets=_names(block.get("targets"), f"{where}.targets"),
        groups=_names(block.get("groups"), f"{where}.groups"),
    )
    return NotifySpec(kind, name, scope, timeout, retries, options, secrets)


def parse_notify_config(raw: Mapping[str, Any], base_dir: Path) -> list[NotifySpec]:
    """Every ``[[notify]]`` block of the whole config dict (``config.raw``), in order."""
    blocks = raw.get("notify", [])
    if not isinstance(blocks, list):
        raise ConfigError("notify", "expected [[notify]] blocks (an array of tables)")
    specs = [_spec(block, i, base_dir) for i, block in enumerate(blocks)]
    seen: set[str] = set()
    for i, spec in enumerate(specs):
        if spec.name in seen:
            raise ConfigError(f"notify[{i}].name", f"duplicate notifier name {spec.name!r}")
        seen.add(spec.name)
    return specs
