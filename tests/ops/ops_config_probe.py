"""Which config keys does the bastion read? Run the real parsers on a config whose tables
record every key looked up (``get``, ``[]``, ``in``)."""

from __future__ import annotations

import subprocess
import tomllib
import types
from pathlib import Path
from typing import Any

import pytest

FREE_FORM = frozenset({"targets.labels"})  # tables whose keys are the user's own names


class KeyRecorder(dict[str, Any]):
    def __init__(self, data: dict[str, Any], prefix: str, seen: set[str]) -> None:
        super().__init__({k: _wrap(v, _join(prefix, k), seen) for k, v in data.items()})
        self._prefix = prefix
        self._seen = seen

    def _note(self, key: object) -> None:
        if isinstance(key, str) and self._prefix not in FREE_FORM:
            self._seen.add(_join(self._prefix, key))

    def __getitem__(self, key: str) -> Any:
        self._note(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._note(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self._note(key)
        return super().__contains__(key)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _wrap(value: Any, prefix: str, seen: set[str]) -> Any:
    if isinstance(value, dict):
        return KeyRecorder(value, prefix, seen)
    if isinstance(value, list):
        return [_wrap(v, prefix, seen) for v in value]
    return value


def write_full_config(directory: Path, policy: Path) -> Path:
    """A config that sets every section, so every parser branch that reads a key runs."""

    def keygen(name: str) -> str:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(directory / name)],
            check=True,
        )
        return (directory / f"{name}.pub").read_text().strip()

    keygen("user_ca")
    upstream = keygen("upstream")
    keygen("issuing_ca")
    (directory / "known_values").write_text("k" * 32 + "\n")
    (directory / "known_values").chmod(0o600)
    (directory / "known_hosts").write_text(f"10.0.0.5 {upstream}\n")
    (directory / "policy.toml").write_bytes(policy.read_bytes())
    (directory / "webhook_secret").write_text("w" * 32 + "\n")
    (directory / "webhook_secret").chmod(0o600)
    path = directory / "bastion.toml"
    path.write_text(
        f"""
[server]
listen = "127.0.0.1:0"
host_key = "ssh_host_ed25519_key"
state_dir = "state"
login_timeout = "30s"

[auth]
trusted_user_ca_keys = ["user_ca.pub"]
max_cert_validity = "24h"
clock_skew = "60s"

[policy]
file = "policy.toml"

[gate]
shells = "refuse"

[[targets]]
name = "web-01"
host = "10.0.0.4"
port = 22
login = "azureuser"
host_key = "{upstream}"
identity_file = "upstream"
connect_timeout = "10s"
labels = {{ env = "prod" }}

[[targets]]
name = "web-02"
host = "10.0.0.5"
login = "azureuser"
known_hosts = "known_hosts"
identity_file = "upstream"

[[access]]
principals = ["agents"]
targets = ["web-*"]
logins = ["azureuser"]

[recording]
dir = "state/recordings"
fsync_interval = "1s"
record_input = true
key_file = "state/recording_key"

[masking]
enabled = true
replacement = "label"
engine = "auto"
mask_input = true
hold_timeout_ms = 50
max_hold_bytes = 4096
disable_rules = []
known_values_file = "known_values"

[[masking.rules]]
id = "internal-token"
regex = 'itk_(?P<secret>[A-Za-z0-9]{{20}})'
keywords = ["itk_"]
description = "internal token"
secret_group = "secret"
lookback = 0
ignore_case = false

[[masking.rules]]
id = "internal-prefixed"
prefix = "ipx_"
regex = 'ipx_[A-Za-z0-9]{{20}}'

[ca]
key = "issuing_ca"

[oidc]
cert_validity = "15m"
max_cert_validity = "1h"
clock_skew = "60s"
source_address = ["10.0.0.0/8"]
max_token_bytes = 16384
jwks_cache = "1h"
jwks_min_refresh = "30s"

[[oidc.issuers]]
issuer = "https://login.microsoftonline.com/{{tenantid}}/v2.0"
audience = ["api://bastion"]
tenants = ["00000000-0000-0000-0000-000000000001"]
clients = ["00000000-0000-0000-0000-000000000002"]
algorithms = ["RS256"]
discovery_url = "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration"
subject_claim = "oid"
required_claims = ["oid"]

[[oidc.grants]]
claim = "roles"
value = "Bastion.Agent"
principals = ["agents"]
issuer = "https://login.microsoftonline.com/{{tenantid}}/v2.0"

[http]
listen = "127.0.0.1:0"
public_url = "https://bastion.example.net"

[approvals]
timeout = "15m"
mode = "wait"
defer_validity = "1h"

[interactive]
fallback = "refuse"
integration_timeout = "10s"
confirm_timeout = "10s"
max_unit = 4096
passthrough = []
interactive_programs = []

[[notify]]
type = "webhook"
name = "pager"
url = "https://bot.example.net/bastion"
secret_file = "webhook_secret"
rules = ["az-*"]
targets = ["web-*"]
groups = ["sre"]
timeout = "10s"
retries = 5

[audit]
db = "state/bastion.db"

[limits]
max_connections = 256
max_sessions_per_identity = 8
idle_timeout = "30m"
max_command_length = 16384
auth_failures_per_minute = 10
auth_failures_per_address_per_minute = 100
auth_lockout = "5m"
max_channels_per_connection = 10
max_pending_approvals_per_identity = 5
"""
    )
    return path


def keys_read(config: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[set[str], list[str]]:
    """Run check-config's parsers on ``config``; return the keys read and any FAIL lines."""
    import bastion.config
    from bastion.ops.checkconfig import check_config

    seen: set[str] = set()

    def loads(text: str) -> dict[str, Any]:
        return KeyRecorder(tomllib.loads(text), "", seen)

    shim = types.SimpleNamespace(loads=loads, TOMLDecodeError=tomllib.TOMLDecodeError)
    monkeypatch.setattr(bastion.config, "tomllib", shim)
    report = check_config(config)
    return seen, [f.line() for f in report.failed]
