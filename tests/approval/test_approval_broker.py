"""ApprovalBroker against a real SQLite database: states, TOTP, four-eyes, groups, defer, audit."""

from __future__ import annotations

import asyncio
import math
import re
import sys
import time
from pathlib import Path

import pyotp
import pytest
from approval_env import Env, FakeClock, open_env

from bastion.approval import ApprovalRefused, parse_request_id
from bastion.approval.broker import AUDIT_GRACE
from bastion.approval.ids import ALPHABET, ID_BITS, new_request_id
from bastion.errors import BastionError

ID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$")


async def test_submit_then_approve_returns_approved(env: Env) -> None:
    """A submitted request is pending with a readable id and link; one approval resolves wait()."""
    await env.enrol("alice")
    req = await env.submit()
    assert ID_RE.match(req.id) and req.state == "pending"
    assert req.approve_url == f"https://bastion.test/approvals/{req.id}"
    waiter = asyncio.create_task(env.broker.wait(req.id))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    out = await env.broker.decide(
        req.id, operator="alice", totp=env.code("alice"), approve=True, reason="ok", via="cli"
    )
    assert out.state == "approved" and out.decided_by == ("alice",)
    final = await asyncio.wait_for(waiter, 1)
    assert final.state == "approved" and final.decided_by == ("alice",)


async def test_deny_is_final_and_later_decisions_refused(env: Env, clock: FakeClock) -> None:
    """A denial closes the request; a later approval of it is refused as already denied."""
    await env.enrol("alice")
    await env.enrol("bob")
    req = await env.submit()
    out = await env.broker.decide(
        req.id, operator="alice", totp=env.code("alice"), approve=False, reason="not today"
    )
    assert (out.state, out.decided_by, out.reason) == ("denied", ("alice",), "not today")
    assert (await env.broker.wait(req.id)).state == "denied"
    with pytest.raises(ApprovalRefused, match="already denied"):
        await env.broker.decide(req.id, operator="bob", totp=env.code("bob"), approve=True)


async def test_deadline_expires_request(live_env: Env) -> None:
    """wait() returns expired at the deadline and an approval after it is refused."""
    await live_env.enrol("alice")
    req = await live_env.submit(timeout=0.3)
    start = time.monotonic()
    out = await live_env.broker.wait(req.id)
    assert out.state == "expired"
    assert 0.25 <= time.monotonic() - start < 1.0
    with pytest.raises(ApprovalRefused, match="already expired"):
        await live_env.broker.decide(
            req.id, operator="alice", totp=live_env.code("alice"), approve=True
        )


async def test_decision_past_deadline_expires_instead(env: Env, clock: FakeClock) -> None:
    """A code typed after the deadline (nobody waiting) expires the request rather than approve."""
    await env.enrol("alice")
    req = await env.submit(timeout=10)
    clock.advance(11)
    with pytest.raises(ApprovalRefused, match="expired"):
        await env.broker.decide(req.id, operator="alice", totp=env.code("alice"), approve=True)
    got = await env.broker.get(req.id)
    assert got is not None and got.state == "expired"


async def test_wait_sees_decision_from_another_process(live_env: Env, config_file: Path) -> None:
    """A decision by `bastion approvals approve` in another process wakes wait() within 1 s."""
    env = live_env
    # the CLI reads the config next to this database: tmp_path/state/bastion.db
    assert env.db_path == config_file.parent / "state" / "bastion.db"
    await env.enrol("alice")
    req = await env.submit()
    waiter = asyncio.create_task(env.broker.wait(req.id))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bastion.cli", "approvals", "approve", req.id,
        "--operator", "alice", "--totp", env.code("alice"), "--config", str(config_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    exited = time.monotonic()
    assert proc.returncode == 0, err.decode()
    assert f"{req.id}: approved by alice" in out.decode()
    final = await asyncio.wait_for(waiter, 1.0)
    assert final.state == "approved" and final.decided_by == ("alice",)
    assert time.monotonic() - exited < 1.0


async def test_self_approval_refused(env: Env) -> None:
    """An operator named like the requester's key ID, or linked to it, cannot approve it."""
    await env.enrol("ci-agent-1")
    await env.enrol("carol", identities=["agents"])
    req = await env.submit()
    with pytest.raises(ApprovalRefused, match="linked to the requester"):
        await env.broker.decide(
            req.id, operator="ci-agent-1", totp=env.code("ci-agent-1"), approve=True
        )
    with pytest.raises(ApprovalRefused, match="linked to the requester"):
        await env.broker.decide(req.id, operator="carol", totp=env.code("carol"), approve=True)
    got = await env.broker.get(req.id)
    assert got is not None and got.state == "pending" and not got.decisions


async def test_wrong_totp_refused_and_locks_after_five(env: Env) -> None:
    """A wrong code is refused; five in a row lock the operator even against the right code."""
    secret = await env.enrol("alice")
    req = await env.submit()
    right = env.code("alice")
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for _ in range(5):
        with pytest.raises(ApprovalRefused, match="wrong TOTP code"):
            await env.broker.decide(req.id, operator="alice", totp=wrong, approve=True)
    with pytest.raises(ApprovalRefused, match="locked"):
        await env.broker.decide(req.id, operator="alice", totp=right, approve=True)
    assert pyotp.TOTP(secret).verify(right, for_time=env.clock())
    with pytest.raises(ApprovalRefused, match="unknown operator"):
        await env.broker.decide(req.id, operator="mallory", totp=right, approve=True)


async def test_reused_totp_refused(env: Env, clock: FakeClock) -> None:
    """A code that was accepted once cannot be used again, even on another request."""
    await env.enrol("alice")
    first = await env.submit()
    second = await env.submit(command="az vm delete -n vm1", units=(("az", "vm", "delete"),))
    code = env.code("alice")
    await env.broker.decide(first.id, operator="alice", totp=code, approve=True)
    with pytest.raises(ApprovalRefused, match="already used"):
        await env.broker.decide(second.id, operator="alice", totp=code, approve=True)
    clock.advance(30)
    out = await env.broker.decide(second.id, operator="alice", totp=env.code("alice"), approve=True)
    assert out.state == "approved"


async def test_two_approvals_need_two_distinct_operators(env: Env, clock: FakeClock) -> None:
    """Four-eyes: the same operator twice stays at 1/2; a second operator approves."""
    await env.enrol("alice")
    await env.enrol("bob")
    req = await env.submit(approvals_required=2)
    waiter = asyncio.create_task(env.broker.wait(req.id))
    out = await env.broker.decide(req.id, operator="alice", totp=env.code("alice"), approve=True)
    assert (out.state, out.approvals, out.required) == ("pending", 1, 2)
    clock.advance(30)
    with pytest.raises(ApprovalRefused, match="already decided"):
        await env.broker.decide(req.id, operator="alice", totp=env.code("alice"), approve=True)
    await asyncio.sleep(0.3)
    assert not waiter.done()
    out = await env.broker.decide(req.id, operator="bob", totp=env.code("bob"), approve=True)
    assert out.state == "approved" and out.decided_by == ("alice", "bob")
    assert (await asyncio.wait_for(waiter, 1)).decided_by == ("alice", "bob")


async def test_group_restriction(env: Env) -> None:
    """Only operators in a listed group may decide; a rule naming no group takes anyone."""
    await env.enrol("dev", groups=["dev"])
    await env.enrol("sre", groups=["sre", "oncall"])
    restricted = await env.submit(approvers=("sre",))
    with pytest.raises(ApprovalRefused, match="not in an approver group"):
        await env.broker.decide(restricted.id, operator="dev", totp=env.code("dev"), approve=True)
    out = await env.broker.decide(restricted.id, operator="sre", totp=env.code("sre"), approve=True)
    assert out.state == "approved"
    env.clock.advance(30)  # type: ignore[attr-defined]
    open_rule = await env.submit(command="x", units=(("x",),), approvers=())
    out = await env.broker.decide(open_rule.id, operator="dev", totp=env.code("dev"), approve=True)
    assert out.state == "approved"


async def test_defer_mode_consumed_once(env: Env, clock: FakeClock) -> None:
    """A deferred approval is used once, only for the identical units, identity and target."""
    await env.enrol("alice")
    units = (("az", "group", "delete", "-n", "rg-test", "--yes"),)
    req = await env.submit(mode="defer", units=units)
    again = await env.submit(mode="defer", units=units)
    assert again.id == req.id  # a retry before the decision does not pile up requests
    lookup = {"requester_key_id": "ci-agent-1", "target": "web-01", "login": "azureuser"}
    assert await env.broker.consume_deferred(**lookup, units=units) is None  # not approved yet
    await env.broker.decide(req.id, operator="alice", totp=env.code("alice"), approve=True)
    assert await env.broker.consume_deferred(**lookup, units=(("az", "group", "list"),)) is None
    assert await env.broker.consume_deferred(**{**lookup, "target": "web-02"}, units=units) is None
    assert await env.broker.consume_deferred(**lookup, units=units) == req.id
    assert await env.broker.consume_deferred(**lookup, units=units) is None
    # a second approval that is never used runs out with its validity window (1h default)
    clock.advance(30)
    other = await env.submit(mode="defer", units=units)
    assert other.id != req.id
    await env.broker.decide(other.id, operator="alice", totp=env.code("alice"), approve=True)
    clock.advance(3601)
    assert await env.broker.consume_deferred(**lookup, units=units) is None
    events = [f["event"] for f in await env.approval_rows() if f.get("request") == req.id]
    assert events == ["submitted", "approved", "used"]


async def test_abandon_orphans_on_restart(tmp_path: Path, clock: FakeClock) -> None:
    """After a restart, pending wait-mode requests are abandoned; deferred ones stay pending."""
    db = tmp_path / "state" / "bastion.db"
    first = await open_env(db, clock)
    held = await first.submit(mode="wait")
    deferred = await first.submit(mode="defer")
    await first.audit.close()
    second = await open_env(db, clock)
    try:
        assert await second.broker.abandon_orphans() == [held.id]
        got_held = await second.broker.get(held.id)
        got_deferred = await second.broker.get(deferred.id)
        assert got_held is not None and got_held.state == "abandoned"
        assert got_deferred is not None and got_deferred.state == "pending"
        assert (await second.broker.wait(held.id)).state == "abandoned"
    finally:
        await second.audit.close()


async def test_cancelled_wait_abandons(env: Env) -> None:
    """When the agent goes away (wait task cancelled) the request is abandoned, not left open."""
    await env.enrol("alice")
    req = await env.submit()
    waiter = asyncio.create_task(env.broker.wait(req.id))
    await asyncio.sleep(0.05)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    got = await env.broker.get(req.id)
    assert got is not None and got.state == "abandoned"
    with pytest.raises(ApprovalRefused, match="already abandoned"):
        await env.broker.decide(req.id, operator="alice", totp=env.code("alice"), approve=True)


async def test_every_state_change_is_audited(env: Env, clock: FakeClock) -> None:
    """submitted, partial approval, approved, denied, expired, abandoned and refusals are rows."""
    await env.enrol("alice")
    await env.enrol("bob")
    a = await env.submit(approvals_required=2)
    await env.broker.decide(a.id, operator="alice", totp=env.code("alice"), approve=True)
    await env.broker.decide(a.id, operator="bob", totp=env.code("bob"), approve=True)
    clock.advance(30)
    d = await env.submit()
    await env.broker.decide(d.id, operator="alice", totp=env.code("alice"), approve=False)
    e = await env.submit(timeout=5)
    clock.advance(6)
    assert await env.broker.expire_due() == [e.id]
    x = await env.submit()
    assert await env.broker.abandon(x.id)
    with pytest.raises(ApprovalRefused):
        await env.broker.decide(x.id, operator="bob", totp="000000", approve=True)
    rows = await env.audit.query(kinds=("approval",))
    seen = [(r.fields["request"], r.fields["event"], r.fields.get("state")) for r in rows]
    assert seen == [
        (a.id, "submitted", "pending"),
        (a.id, "approval_added", "pending"),
        (a.id, "approved", "approved"),
        (d.id, "submitted", "pending"),
        (d.id, "denied", "denied"),
        (e.id, "submitted", "pending"),
        (e.id, "expired", "expired"),
        (x.id, "submitted", "pending"),
        (x.id, "abandoned", "abandoned"),
        (x.id, "refused", None),
    ]
    approved = rows[2]
    assert approved.identity == "ci-agent-1" and approved.session_id == "sess-1"
    assert approved.fields["decided_by"] == ["alice", "bob"]
    assert rows[4].fields["operator"] == "alice"


async def test_stored_line_escapes_invisible_characters(env: Env) -> None:
    """The stored escaped line shows bidi overrides and escape sequences as visible escapes."""
    req = await env.submit(command="echo \u202eabc\x1b[2J")
    assert req.command == "echo \u202eabc\x1b[2J"
    assert req.command_escaped == "echo \\u202eabc\\x1b[2J"


async def test_submit_rejects_bad_values(env: Env) -> None:
    """Values that cannot be held safely are refused with a clear error."""
    with pytest.raises(BastionError, match="approvals required"):
        await env.submit(approvals_required=0)
    with pytest.raises(BastionError, match="mode"):
        await env.submit(mode="later")
    with pytest.raises(BastionError, match="timeout"):
        await env.submit(timeout=-1)


def test_request_ids_are_readable_and_random() -> None:
    """Ids carry at least 60 random bits and parse back from lower case and look-alikes."""
    assert ID_BITS >= 60 and math.log2(len(ALPHABET)) * 16 == ID_BITS
    ids = {new_request_id() for _ in range(2000)}
    assert len(ids) == 2000 and all(ID_RE.match(i) for i in ids)
    one = next(iter(ids))
    assert parse_request_id(one.lower()) == one
    assert parse_request_id("k7qh 2mxd 9pta m3rc".replace("1", "l")) == "K7QH-2MXD-9PTA-M3RC"
    assert parse_request_id("OIL0-0000-0000-0000") == "0110-0000-0000-0000"
    with pytest.raises(BastionError, match="not a request id"):
        parse_request_id("../../etc/passwd")


async def test_unaudited_approval_never_runs(live_env: Env) -> None:
    """An approval committed without its audit row (a crashed decider) does not release wait()."""
    env = live_env
    req = await env.submit(timeout=0.5)
    held = await env.submit(mode="defer", timeout=0.5)
    for r in (req, held):
        await env.audit.db.conn.execute(
            "UPDATE approval_requests SET state = 'approved', decided_at = ?, use_before = ? "
            "WHERE id = ?",
            (time.time() - AUDIT_GRACE, time.time() + 3600, r.id),
        )
    out = await asyncio.wait_for(env.broker.wait(req.id), 3)
    assert (out.state, out.reason) == ("denied", "the approval was not audited")
    lookup = {"requester_key_id": "ci-agent-1", "target": "web-01", "login": "azureuser"}
    assert await env.broker.consume_deferred(**lookup, units=held.units) is None


async def test_operator_link_is_bound_to_request_and_deadline_and_expires(
    env: Env, clock: FakeClock
) -> None:
    """The operator token verifies only for its request, and not past the deadline + grace."""
    from bastion.approval.broker import LINK_GRACE

    req = await env.submit(timeout=60)
    other = await env.submit(command="az vm delete -n vm2 --yes")
    token = req.operator_url.split("?op=", 1)[1]
    assert env.broker.check_link(req, token)
    assert not env.broker.check_link(other, token)
    assert not env.broker.check_link(req, token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert not env.broker.check_link(req, None) and not env.broker.check_link(req, "")
    clock.advance(60 + LINK_GRACE + 1)
    assert not env.broker.check_link(req, token)


async def test_operator_link_key_is_shared_through_the_database(env: Env, tmp_path: Path) -> None:
    """Another process (the CLI, a worker) opening the same database signs the same link."""
    req = await env.submit()
    second = await open_env(env.db_path, env.clock)
    try:
        again = await second.broker.get(req.id)
        assert again is not None and again.operator_url == req.operator_url
    finally:
        await second.audit.close()


async def test_wrong_codes_on_the_page_do_not_lock_the_operator(env: Env) -> None:
    """via="web" failures leave the operator's row alone (the page counts them itself)."""
    await env.enrol("alice")
    req = await env.submit()
    wrong = f"{(int(env.code('alice')) + 1) % 1_000_000:06d}"
    for _ in range(8):
        with pytest.raises(ApprovalRefused) as refused:
            await env.broker.decide(req.id, operator="alice", totp=wrong, approve=True, via="web")
        assert refused.value.kind == "credentials"
    outcome = await env.broker.decide(
        req.id, operator="alice", totp=env.code("alice"), approve=True, via="cli"
    )
    assert outcome.state == "approved"


async def test_held_command_and_units_are_stored_masked(env: Env) -> None:
    """The masker runs before the row is written: a token as an argument, and a value the masker
    recognises only from its flag (``--password VALUE``), never reach the table."""
    token = "ghp_" + "x1Y2z3" * 6
    req = await env.submit(
        command=f"az login --password hunter2-is-long --token {token}",
        units=(("az", "login", "--password", "hunter2-is-long", "--token", token),),
    )
    rows = await env.audit.db.fetchall(
        "SELECT command, command_escaped, units FROM approval_requests WHERE id = ?", (req.id,)
    )
    stored = " ".join(str(v) for v in rows[0])
    assert token not in stored and "[MASKED:github-token]" in stored
    assert "hunter2-is-long" not in stored  # masked in the line by its flag, so in the units too
    got = await env.broker.get(req.id)
    assert got is not None and got.units == (
        ("az", "login", "--password", "[MASKED]", "--token", "[MASKED:github-token]"),
    )


async def test_one_code_decides_a_ticked_batch_bound_to_each_requests_units(
    env: Env, clock: FakeClock
) -> None:
    """decide_batch: one code approves every ticked request whose units digest matches what the
    operator was shown; a stale digest is refused for that request only; the code is spent."""
    await env.enrol("alice")
    one = await env.submit(explanation="deletes an Azure resource group")
    two = await env.submit(command="az group delete -n rg-two --yes",
                           units=(("az", "group", "delete", "-n", "rg-two", "--yes"),))  # fmt: skip
    rg3 = ("az", "group", "delete", "-n", "rg-three", "--yes")
    three = await env.submit(command="az group delete -n rg-three --yes", units=(rg3,))
    assert one.explanation == "deletes an Azure resource group"
    digest = env.broker.units_digest
    assert digest(one) != digest(two)
    code = env.code("alice")
    results = await env.broker.decide_batch(
        [(one.id, digest(one)), (two.id, digest(two)), (three.id, digest(one))],
        operator="alice", totp=code, approve=True,
    )  # fmt: skip
    assert [r if isinstance(r, str) else r.state for _, r in results] == [
        "approved", "approved", f"request {three.id} is not the command you were shown",
    ]  # fmt: skip
    assert (await env.broker.get(three.id)).state == "pending"  # type: ignore[union-attr]
    with pytest.raises(ApprovalRefused, match="already used"):
        await env.broker.decide(three.id, operator="alice", totp=code, approve=True)
    with pytest.raises(ApprovalRefused, match="already used"):
        await env.broker.decide_batch([(three.id, digest(three))], operator="alice", totp=code,
                                      approve=True)  # fmt: skip
    with pytest.raises(ApprovalRefused, match="wrong TOTP"):
        await env.broker.decide_batch([(three.id, digest(three))], operator="alice",
                                      totp="000000", approve=True)  # fmt: skip
    rows = [r for r in await env.approval_rows() if r.get("event") == "approved"]
    assert {r["request"] for r in rows} == {one.id, two.id} and all(r["batch"] == 3 for r in rows)
    clock.advance(31)
    results = await env.broker.decide_batch(
        [(three.id, digest(three))], operator="alice", totp=env.code("alice"), approve=False
    )
    assert results[0][1].state == "denied"  # type: ignore[union-attr]


async def test_list_link_is_signed_and_expires(env: Env, clock: FakeClock) -> None:
    url = env.broker.list_url(valid_for=60)
    token = url.split("?op=", 1)[1]
    assert url.startswith("https://bastion.test/approvals/?op=")
    assert env.broker.check_list_link(token)
    until, _, mac = token.partition(".")
    assert not env.broker.check_list_link(f"{int(until) + 3600}.{mac}")  # a longer life: forged
    assert not env.broker.check_list_link("x" * 32) and not env.broker.check_list_link(None)
    clock.advance(61)
    assert not env.broker.check_list_link(token)
