"""PageGuard, the approval page's limits, on a controlled clock (sans-IO)."""

from __future__ import annotations

from bastion.approval import guard as guard_module
from bastion.approval.guard import GuardLimits, PageGuard


def _fail(
    g: PageGuard, now: float, *, link: bool = True, op: str | None = "alice", req: str = "R1"
):  # type: ignore[no-untyped-def]
    return g.failed(address="10.0.0.1", with_link=link, request_id=req, operator=op, now=now)


def test_a_lock_trips_once_and_ends_after_the_lockout() -> None:
    g = PageGuard(GuardLimits(request_failures=3, operator_failures=100, window=60, lockout=120))
    assert _fail(g, 0) == [] and _fail(g, 1) == []
    tripped = _fail(g, 2)
    assert [(t.scope, t.key, t.failures) for t in tripped] == [("request", "R1", 3)]
    assert g.request_locked("R1", 100) and not g.request_locked("R2", 100)
    assert _fail(g, 110) == []  # failures while locked neither extend nor re-alert
    assert not g.request_locked("R1", 122.1)


def test_failures_spread_over_more_than_the_window_never_lock() -> None:
    g = PageGuard(GuardLimits(request_failures=3, operator_failures=3, window=60))
    for i in range(20):
        assert _fail(g, i * 31.0) == []
    assert not g.request_locked("R1", 700) and not g.operator_locked("alice", 700)


def test_link_less_failures_touch_only_their_own_address_bucket() -> None:
    g = PageGuard(GuardLimits(address_failures=2))
    _fail(g, 0, link=False, op=None)
    tripped = _fail(g, 1, link=False, op=None)
    assert [t.scope for t in tripped] == ["address"]
    assert g.address_locked("10.0.0.1", with_link=False, now=2)
    assert not g.address_locked("10.0.0.1", with_link=True, now=2)
    assert not g.request_locked("R1", 2) and not g.operator_locked("alice", 2)


def test_memory_is_bounded(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(guard_module, "MAX_KEYS", 50)
    g = PageGuard()
    for i in range(500):
        _fail(g, float(i), req=f"R{i}", op=f"op{i}")
    assert all(len(scope._tracks) <= 50 for scope in (g._request, g._operator, g._address))
