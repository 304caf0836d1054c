"""Rate limits for the approval page (sans-IO: callers pass the time, nothing sleeps).

The page is the one decision channel an agent can reach (it is shown the status link), so its
failed attempts are counted here, in the process that serves it, and never in the operator's
row: guessing on the page cannot lock an operator out of the CLI or Slack.

Three scopes, each a sliding window of failures that, once full, locks that scope for
``lockout`` seconds (the lock is not extended by further failures, so it ends):

- ``address``: per source address. Posts without a valid operator link (anyone holding only the
  status link) and posts with one are counted apart, so an agent behind the same address as an
  operator (a reverse proxy, a NAT) can only lock out link-less posts, which never decide anyway.
- ``request``: failures with a valid operator link on one request; then the page stops taking
  codes for it (the CLI and Slack still decide it).
- ``operator``: failures for the operator name typed on the page (counted whether or not the
  name exists, so the lock reveals nothing); the lock applies to the page only.

A scope that locks is returned by ``failed`` once, so the caller raises one alert per lock.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

MAX_KEYS = 10_000  # per scope; least recently used forgotten first (memory bound)


@dataclass(frozen=True)
class GuardLimits:
    address_failures: int = 10  # per source address (and link/no link) in ``window``
    request_failures: int = 5  # per request (with a valid operator link) in ``window``
    operator_failures: int = 5  # per operator name typed on the page in ``window``
    window: float = 600.0
    lockout: float = 900.0


@dataclass
class _Track:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


class _Scope:
    def __init__(self, limit: int, window: float, lockout: float) -> None:
        self.limit = limit
        self.window = window
        self.lockout = lockout
        self._tracks: OrderedDict[str, _Track] = OrderedDict()

    def locked(self, key: str, now: float) -> bool:
        track = self._tracks.get(key)
        return track is not None and now < track.locked_until

    def failed(self, key: str, now: float) -> int:
        """Count one failure; the number in the window when it just locked, else 0."""
        track = self._tracks.get(key)
        if track is None:
            track = self._tracks[key] = _Track()
            while len(self._tracks) > MAX_KEYS:
                self._tracks.popitem(last=False)
        else:
            self._tracks.move_to_end(key)
        if now < track.locked_until:
            return 0
        track.failures.append(now)
        while track.failures and track.failures[0] <= now - self.window:
            track.failures.popleft()
        if len(track.failures) >= self.limit:
            count = len(track.failures)
            track.failures.clear()
            track.locked_until = now + self.lockout
            return count
        return 0


@dataclass(frozen=True)
class Tripped:
    """A scope that has just locked: what the alert names."""

    scope: str  # "address", "request" or "operator"
    key: str
    failures: int


class PageGuard:
    """Counts the approval page's failed attempts and says what is locked."""

    def __init__(self, limits: GuardLimits | None = None) -> None:
        self.limits = limits or GuardLimits()
        lim = self.limits
        self._address = _Scope(lim.address_failures, lim.window, lim.lockout)
        self._request = _Scope(lim.request_failures, lim.window, lim.lockout)
        self._operator = _Scope(lim.operator_failures, lim.window, lim.lockout)

    @staticmethod
    def _addr(address: str, with_link: bool) -> str:
        return f"{address}|{'link' if with_link else 'nolink'}"

    def address_locked(self, address: str, *, with_link: bool, now: float) -> bool:
        return self._address.locked(self._addr(address, with_link), now)

    def request_locked(self, request_id: str, now: float) -> bool:
        return self._request.locked(request_id, now)

    def operator_locked(self, operator: str, now: float) -> bool:
        return self._operator.locked(operator, now)

    def failed(
        self,
        *,
        address: str,
        with_link: bool,
        request_id: str,
        operator: str | None,
        now: float,
    ) -> list[Tripped]:
        """Record one failed attempt; returns the scopes it locked (usually none)."""
        tripped = []
        if n := self._address.failed(self._addr(address, with_link), now):
            tripped.append(Tripped("address", address, n))
        if with_link:
            if n := self._request.failed(request_id, now):
                tripped.append(Tripped("request", request_id, n))
            if operator and (n := self._operator.failed(operator, now)):
                tripped.append(Tripped("operator", operator, n))
        return tripped
