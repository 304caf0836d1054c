"""``[approvals]`` and ``[http]``: how long a held command may wait and where operators approve.

```toml
[http]
listen = "127.0.0.1:8080"                    # the lead's HTTP server
public_url = "https://bastion.example.net"   # what links in notices point at

[approvals]
timeout = "15m"          # default wait before a held command is denied (expired)
mode = "wait"            # "wait": the agent's channel is held; "defer": exit 75, re-run later
defer_validity = "1h"    # how long a deferred approval may be used (once)
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bastion.config import parse_duration, parse_hostport
from bastion.errors import ConfigError

Mode = Literal["wait", "defer"]
MODES: tuple[Mode, ...] = ("wait", "defer")
MAX_TIMEOUT = 7 * 86400.0


@dataclass(frozen=True)
class ApprovalsConfig:
    timeout: float = 900.0
    mode: Mode = "wait"
    defer_validity: float = 3600.0
    public_url: str = "http://127.0.0.1:8080"
    poll_interval: float = 0.2  # how often a waiter looks for decisions made by other processes
    # [limits] max_pending_approvals_per_identity (set by the runtime; 0 = no cap, for tests)
    max_pending_per_identity: int = 0

    def approve_url(self, request_id: str) -> str:
        return f"{self.public_url}/approvals/{request_id}"


def _table(raw: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = raw.get(name, {})
    if not isinstance(section, dict):
        raise ConfigError(name, "expected a table")
    return section


def _positive(value: object, where: str) -> float:
    seconds = parse_duration(value, where)
    if not 0 < seconds <= MAX_TIMEOUT:
        raise ConfigError(where, "must be more than 0 and at most 7d")
    return seconds


def parse_mode(value: object, where: str) -> Mode:
    for mode in MODES:
        if value == mode:
            return mode
    raise ConfigError(where, f"expected 'wait' or 'defer', got {value!r}")


def parse_approvals_config(raw: Mapping[str, Any], base_dir: Path | None = None) -> ApprovalsConfig:
    """Parse both sections from the whole config dict (``config.raw``); ConfigError names the key.

    ``base_dir`` is accepted for the common section-parser shape; no key here is a path.
    """
    del base_dir
    approvals = _table(raw, "approvals")
    http = _table(raw, "http")
    known = {"timeout", "mode", "defer_validity"}
    for key in approvals:
        if key not in known:
            raise ConfigError(f"approvals.{key}", "unknown key")
    listen = http.get("listen", "127.0.0.1:8080")
    host, port = parse_hostport(listen, "http.listen")
    public = http.get("public_url")
    if public is None:
        shown = f"[{host}]" if ":" in host else host
        public = f"http://{shown}:{port}"
    if not isinstance(public, str) or not public.startswith(("http://", "https://")):
        raise ConfigError("http.public_url", "expected an http:// or https:// URL")
    if any(c in public for c in "\"'<> \t\r\n"):
        raise ConfigError("http.public_url", "contains characters not allowed in a URL")
    return ApprovalsConfig(
        timeout=_positive(approvals.get("timeout", "15m"), "approvals.timeout"),
        mode=parse_mode(approvals.get("mode", "wait"), "approvals.mode"),
        defer_validity=_positive(approvals.get("defer_validity", "1h"), "approvals.defer_validity"),
        public_url=public.rstrip("/"),
    )
