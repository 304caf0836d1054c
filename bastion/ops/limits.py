"""Limits that protect the bastion itself (sans-IO: callers pass the time, nothing sleeps).

```toml
[limits]
max_connections = 256            # TCP connections open at once (before authentication too)
max_sessions_per_identity = 8    # authenticated connections per certificate key id
idle_timeout = "30m"             # no traffic either way (suspended while approval is pending)
max_command_length = 16384       # bytes in one exec command or one shell line
auth_failures_per_minute = 10    # failed logins per source address and identity before locking
auth_failures_per_address_per_minute = 100  # failed logins per address, all identities together
auth_lockout = "5m"              # how long a source over the rate stays refused
max_channels_per_connection = 10 # channels open at once on one SSH connection
max_pending_approvals_per_identity = 5  # held commands waiting for an operator, per key id
```

A failed login is one connection that never authenticated after a refusal of its key or
certificate; a refusal for ``max_sessions_per_identity`` is not one (the certificate was good).

The login timeout is ``[server] login_timeout`` (bastion/config.py).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bastion.config import parse_duration
from bastion.errors import ConfigError

_KEYS = frozenset(
    {
        "max_connections",
        "max_sessions_per_identity",
        "idle_timeout",
        "max_command_length",
        "auth_failures_per_minute",
        "auth_failures_per_address_per_minute",
        "auth_lockout",
        "max_channels_per_connection",
        "max_pending_approvals_per_identity",
    }
)
MAX_TRACKED_SOURCES = 10_000  # AuthFailureLimiter memory bound (about 1 MB)


@dataclass(frozen=True)
class Limits:
    max_connections: int = 256
    max_sessions_per_identity: int = 8
    idle_timeout: float = 1800.0  # 0 disables
    max_command_length: int = 16384
    auth_failures_per_minute: int = 10  # per source address and certificate identity
    auth_lockout: float = 300.0
    auth_failures_per_address_per_minute: int = 100  # per source address, every identity
    max_channels_per_connection: int = 10
    max_pending_approvals_per_identity: int = 5


def parse_limits(section: Mapping[str, Any], where: str = "limits") -> Limits:
    """Validate ``[limits]`` (``config.raw.get("limits", {})``); unknown keys are errors."""
    if not isinstance(section, Mapping):
        raise ConfigError(where, "expected a table")
    unknown = sorted(set(section) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}", "unknown key")
    d = Limits()

    def integer(key: str, default: int, lo: int, hi: int) -> int:
        value = section.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise ConfigError(f"{where}.{key}", f"expected an integer from {lo} to {hi}")
        return value

    def duration(key: str, default: float, hi: float) -> float:
        seconds = parse_duration(section.get(key, default), f"{where}.{key}")
        if seconds > hi:
            raise ConfigError(f"{where}.{key}", f"at most {int(hi)}s")
        return seconds

    return Limits(
        max_connections=integer("max_connections", d.max_connections, 1, 100_000),
        max_sessions_per_identity=integer(
            "max_sessions_per_identity", d.max_sessions_per_identity, 1, 10_000
        ),
        idle_timeout=duration("idle_timeout", d.idle_timeout, 7 * 86400.0),
        max_command_length=integer("max_command_length", d.max_command_length, 256, 1 << 20),
        auth_failures_per_minute=integer(
            "auth_failures_per_minute", d.auth_failures_per_minute, 1, 10_000
        ),
        auth_failures_per_address_per_minute=integer(
            "auth_failures_per_address_per_minute",
            d.auth_failures_per_address_per_minute,
            1,
            100_000,
        ),
        auth_lockout=duration("auth_lockout", d.auth_lockout, 86400.0),
        max_channels_per_connection=integer(
            "max_channels_per_connection", d.max_channels_per_connection, 1, 1000
        ),
        max_pending_approvals_per_identity=integer(
            "max_pending_approvals_per_identity", d.max_pending_approvals_per_identity, 1, 10_000
        ),
    )


class ConnectionLimiter:
    """Counts open connections and sessions per identity; refuses over either cap.

    ``open_connection``/``close_connection`` bracket every TCP connection;
    ``open_session``/``close_session`` bracket each authenticated one. A refused call changes
    nothing, so callers release only what they were granted.
    """

    def __init__(self, max_connections: int, max_sessions_per_identity: int) -> None:
        self.max_connections = max_connections
        self.max_per_identity = max_sessions_per_identity
        self.connections = 0
        self._sessions: dict[str, int] = {}

    @classmethod
    def from_limits(cls, limits: Limits) -> ConnectionLimiter:
        return cls(limits.max_connections, limits.max_sessions_per_identity)

    def open_connection(self) -> bool:
        if self.connections >= self.max_connections:
            return False
        self.connections += 1
        return True

    def close_connection(self) -> None:
        self.connections = max(0, self.connections - 1)

    def open_session(self, identity: str) -> bool:
        count = self._sessions.get(identity, 0)
        if count >= self.max_per_identity:
            return False
        self._sessions[identity] = count + 1
        return True

    def close_session(self, identity: str) -> None:
        count = self._sessions.get(identity, 0) - 1
        if count > 0:
            self._sessions[identity] = count
        else:
            self._sessions.pop(identity, None)  # no empty entries: memory follows live sessions

    def sessions(self, identity: str) -> int:
        return self._sessions.get(identity, 0)


@dataclass
class _Bucket:
    tokens: float
    updated: float
    locked_until: float = 0.0


class AuthFailureLimiter:
    """Token bucket of failed logins per source address, with a lockout once it runs dry.

    Each source may fail ``per_minute`` times in a burst, refilled at ``per_minute`` per minute.
    The failure that empties the bucket locks the source out for ``lockout`` seconds (during
    which ``allow`` is False and further failures extend nothing: the lock is not a counter an
    attacker can keep alive cheaply). Memory is bounded: at most ``max_sources`` buckets, least
    recently used dropped first. A dropped source starts again with a full bucket, which only
    an attacker spraying from more than ``max_sources`` addresses gains from; the per-source
    limit is not the only defence (certificates are).
    """

    def __init__(
        self, per_minute: int, lockout: float, max_sources: int = MAX_TRACKED_SOURCES
    ) -> None:
        if per_minute < 1 or max_sources < 1:
            raise ValueError("per_minute and max_sources must be positive")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.lockout = lockout
        self.max_sources = max_sources
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @classmethod
    def from_limits(cls, limits: Limits) -> AuthFailureLimiter:
        return cls(limits.auth_failures_per_minute, limits.auth_lockout)

    def allow(self, source: str, now: float) -> bool:
        """May ``source`` try to authenticate now?"""
        bucket = self._buckets.get(source)
        if bucket is None:
            return True
        self._buckets.move_to_end(source)
        if now < bucket.locked_until:
            return False
        self._refill(bucket, now)
        return bucket.tokens >= 1.0

    def failed(self, source: str, now: float) -> None:
        """Record one failed authentication from ``source``."""
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = _Bucket(tokens=self.capacity, updated=now)
            self._buckets[source] = bucket
            while len(self._buckets) > self.max_sources:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(source)
        if now < bucket.locked_until:
            return
        self._refill(bucket, now)
        bucket.tokens = max(0.0, bucket.tokens - 1.0)
        if bucket.tokens < 1.0:
            bucket.locked_until = now + self.lockout

    def locked_until(self, source: str) -> float:
        bucket = self._buckets.get(source)
        return bucket.locked_until if bucket is not None else 0.0

    def __len__(self) -> int:
        return len(self._buckets)

    def _refill(self, bucket: _Bucket, now: float) -> None:
        elapsed = max(0.0, now - bucket.updated)  # a clock that steps back never adds tokens
        bucket.tokens = min(self.capacity, bucket.tokens + elapsed * self.rate)
        bucket.updated = max(bucket.updated, now)


class LoginLockout:
    """Failed logins keyed per source address *and* certificate identity, plus a much higher bar
    per address alone.

    Many agents share an address (a NAT, a CI runner pool): one identity failing again and again
    locks only itself at that address (``auth_failures_per_minute``); the address as a whole is
    refused only past ``auth_failures_per_address_per_minute``, which counts every failure from
    it, including those that never named a trusted certificate (those have no identity, and a
    claimed key id in an untrusted certificate is not one: anyone could claim a victim's).
    """

    def __init__(
        self,
        per_identity: int,
        per_address: int,
        lockout: float,
        max_sources: int = MAX_TRACKED_SOURCES,
    ) -> None:
        self.pairs = AuthFailureLimiter(per_identity, lockout, max_sources)
        self.addresses = AuthFailureLimiter(per_address, lockout, max_sources)

    @classmethod
    def from_limits(cls, limits: Limits) -> LoginLockout:
        return cls(
            limits.auth_failures_per_minute,
            limits.auth_failures_per_address_per_minute,
            limits.auth_lockout,
        )

    @staticmethod
    def _pair(address: str, identity: str) -> str:
        return f"{address}\x00{identity}"

    def allow(self, address: str, identity: str | None, now: float) -> bool:
        """May this address (and, once known, this identity from it) try to log in now?"""
        if not self.addresses.allow(address, now):
            return False
        return identity is None or self.pairs.allow(self._pair(address, identity), now)

    def failed(self, address: str, identity: str | None, now: float) -> None:
        """One failed login from ``address``; ``identity`` is the trusted certificate's key id."""
        self.addresses.failed(address, now)
        if identity:
            self.pairs.failed(self._pair(address, identity), now)
