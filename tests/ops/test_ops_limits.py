"""Limits: the [limits] parser, the connection limiter and the auth-failure token bucket."""

from __future__ import annotations

import pytest

from bastion.errors import ConfigError
from bastion.ops.limits import (
    AuthFailureLimiter,
    ConnectionLimiter,
    Limits,
    LoginLockout,
    parse_limits,
)


def test_defaults_when_the_section_is_absent() -> None:
    """An empty [limits] section gives the documented defaults."""
    assert parse_limits({}) == Limits()


def test_values_are_parsed_with_durations() -> None:
    """Every key is read; durations accept the usual suffixes."""
    lim = parse_limits(
        {
            "max_connections": 10,
            "max_sessions_per_identity": 2,
            "idle_timeout": "15m",
            "max_command_length": 4096,
            "auth_failures_per_minute": 3,
            "auth_lockout": "1h",
        }
    )
    assert lim == Limits(10, 2, 900.0, 4096, 3, 3600.0)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"max_conections": 5}, "limits.max_conections"),
        ({"max_connections": 0}, "limits.max_connections"),
        ({"max_connections": True}, "limits.max_connections"),
        ({"max_sessions_per_identity": "8"}, "limits.max_sessions_per_identity"),
        ({"idle_timeout": "forever"}, "limits.idle_timeout"),
        ({"idle_timeout": "30d"}, "limits.idle_timeout"),
        ({"max_command_length": 10}, "limits.max_command_length"),
        ({"auth_failures_per_minute": -1}, "limits.auth_failures_per_minute"),
        ({"auth_lockout": "2d"}, "limits.auth_lockout"),
    ],
)
def test_bad_values_name_the_key(section: dict[str, object], key: str) -> None:
    """A typo or out-of-range value is refused with the key in the message."""
    with pytest.raises(ConfigError) as info:
        parse_limits(section)
    assert info.value.where == key


def test_connection_cap() -> None:
    """Connections over the cap are refused until one closes."""
    lim = ConnectionLimiter(max_connections=2, max_sessions_per_identity=5)
    assert lim.open_connection()
    assert lim.open_connection()
    assert not lim.open_connection()
    lim.close_connection()
    assert lim.open_connection()
    assert lim.connections == 2


def test_sessions_per_identity_are_counted_separately() -> None:
    """One identity at its cap does not stop another identity."""
    lim = ConnectionLimiter.from_limits(Limits(max_sessions_per_identity=2))
    assert lim.open_session("agent-a")
    assert lim.open_session("agent-a")
    assert not lim.open_session("agent-a")
    assert lim.open_session("agent-b")
    lim.close_session("agent-a")
    assert lim.open_session("agent-a")
    assert lim.sessions("agent-a") == 2


def test_closed_identities_leave_no_state() -> None:
    """Memory follows live sessions: closing the last session forgets the identity."""
    lim = ConnectionLimiter(10, 10)
    for i in range(100):
        assert lim.open_session(f"id-{i}")
        lim.close_session(f"id-{i}")
    assert lim._sessions == {}
    lim.close_session("never-opened")  # tolerated, never negative
    assert lim.sessions("never-opened") == 0


def test_auth_failures_lock_a_source_out_then_let_it_back() -> None:
    """N failures within a minute lock the source for the lockout; afterwards it may try again."""
    lim = AuthFailureLimiter(per_minute=3, lockout=300)
    src = "203.0.113.7"
    t = 1000.0
    for _ in range(2):
        assert lim.allow(src, t)
        lim.failed(src, t)
    assert lim.allow(src, t)
    lim.failed(src, t)  # the third failure empties the bucket
    assert not lim.allow(src, t)
    assert not lim.allow(src, t + 299)
    assert lim.allow(src, t + 300)
    assert lim.allow("198.51.100.1", t)  # other sources are unaffected


def test_failures_spread_out_refill_and_are_not_locked() -> None:
    """Failures slower than the rate never lock the source out."""
    lim = AuthFailureLimiter(per_minute=3, lockout=300)
    t = 0.0
    for _ in range(50):
        assert lim.allow("10.0.0.1", t)
        lim.failed("10.0.0.1", t)
        t += 21.0  # 3 per minute is one per 20 s
    assert lim.locked_until("10.0.0.1") == 0.0


def test_failures_during_lockout_do_not_extend_it() -> None:
    """The lockout is fixed: hammering while locked does not keep the source locked forever."""
    lim = AuthFailureLimiter(per_minute=1, lockout=60)
    lim.failed("s", 0.0)
    for t in range(1, 60):
        lim.failed("s", float(t))
    assert lim.locked_until("s") == 60.0
    assert lim.allow("s", 60.0)


def test_a_clock_stepping_back_adds_no_tokens() -> None:
    """Time going backwards (clock step) never refills the bucket."""
    lim = AuthFailureLimiter(per_minute=2, lockout=0)
    lim.failed("s", 100.0)
    lim.failed("s", 100.0)
    assert not lim.allow("s", 50.0)
    assert not lim.allow("s", 100.0)
    assert lim.allow("s", 130.0)


def test_memory_is_bounded_by_lru() -> None:
    """Past max_sources, the least recently seen source is dropped first."""
    lim = AuthFailureLimiter(per_minute=1, lockout=600, max_sources=3)
    for src in ("a", "b", "c"):
        lim.failed(src, 0.0)
    assert not lim.allow("a", 1.0)  # touch "a": now "b" is the oldest
    lim.failed("d", 1.0)
    assert len(lim) == 3
    assert lim.allow("b", 2.0)  # forgotten
    assert not lim.allow("a", 2.0)
    assert not lim.allow("c", 2.0)
    assert not lim.allow("d", 2.0)


def test_many_sources_stay_within_the_cap() -> None:
    """A spray from many addresses never grows the table past its cap."""
    lim = AuthFailureLimiter(per_minute=5, lockout=60, max_sources=1000)
    for i in range(20_000):
        lim.failed(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", float(i))
    assert len(lim) == 1000


def test_lockout_is_per_address_and_identity_with_a_higher_bar_per_address() -> None:
    """One identity failing locks itself at that address only; the address as a whole locks
    only past its own, higher bar, and failures without an identity count only there."""
    lock = LoginLockout(per_identity=3, per_address=10, lockout=60)
    for _ in range(3):
        lock.failed("10.0.0.1", "noisy", 0.0)
    assert not lock.allow("10.0.0.1", "noisy", 1.0)
    assert lock.allow("10.0.0.1", "quiet", 1.0)
    assert lock.allow("10.0.0.1", None, 1.0)
    assert lock.allow("10.0.0.2", "noisy", 1.0)
    for _ in range(7):  # 3 + 7 = the address's 10
        lock.failed("10.0.0.1", None, 2.0)
    assert not lock.allow("10.0.0.1", "quiet", 3.0)
    assert not lock.allow("10.0.0.1", None, 3.0)
    assert lock.allow("10.0.0.1", "quiet", 63.0)


def test_new_limits_keys_are_parsed_and_bounded() -> None:
    lim = parse_limits(
        {
            "max_channels_per_connection": 3,
            "max_pending_approvals_per_identity": 4,
            "auth_failures_per_address_per_minute": 50,
        }
    )
    assert (
        lim.max_channels_per_connection,
        lim.max_pending_approvals_per_identity,
        lim.auth_failures_per_address_per_minute,
    ) == (3, 4, 50)
    for key in (
        "max_channels_per_connection",
        "max_pending_approvals_per_identity",
        "auth_failures_per_address_per_minute",
    ):
        with pytest.raises(ConfigError, match=f"limits.{key}: expected an integer"):
            parse_limits({key: 0})
