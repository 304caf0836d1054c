"""Finding 3 of issue 20: an agent holding the approval link can neither guess nor block a decision.

Through the real page (aiohttp server on 127.0.0.1, aiohttp client): the status link the agent is
shown cannot decide even with a right code; the operator link (signed, delivered to operators
only) can; guessing on the page is rate-limited per address, per request and per operator name,
never locks the operator out of the CLI, answers the same for an unknown name and a wrong code,
and raises an alert (log line, metric, audit row).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from approval_env import Env

from bastion.approval import ApprovalRequest
from bastion.approval.guard import GuardLimits, PageGuard
from bastion.approval.model import BAD_CREDENTIALS
from bastion.approval.web import add_routes
from bastion.ops.metrics import Metrics


@dataclasses.dataclass
class Page:
    env: Env
    base: str
    metrics: Metrics


@pytest.fixture
async def page(live_env: Env) -> AsyncIterator[Page]:
    app = web.Application()
    metrics = Metrics()
    add_routes(app, live_env.broker, metrics=metrics, guard=PageGuard(GuardLimits()))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    live_env.broker.config = dataclasses.replace(live_env.broker.config, public_url=base)
    try:
        yield Page(live_env, base, metrics)
    finally:
        await runner.cleanup()


def _client() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def _csrf(http: aiohttp.ClientSession, req: ApprovalRequest) -> str:
    """The CSRF token of this client's cookie (from the operator page, which has the form)."""
    async with http.get(req.operator_url) as resp:
        found = re.search(r"name='csrf' value='([^']+)'", await resp.text())
    assert found is not None
    return found.group(1)


def _op(req: ApprovalRequest) -> str:
    return req.operator_url.split("?op=", 1)[1]


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def _post(http: aiohttp.ClientSession, url: str, form: dict[str, str]) -> tuple[int, str]:
    async with http.post(url, data=form, allow_redirects=False) as resp:
        return resp.status, await resp.text()


def _alert(body: str) -> str:
    found = re.search(r"<p role='alert' class='alert'>([^<]*)</p>", body)
    return found.group(1) if found else ""


def _guessing_total(metrics: Metrics, scope: str) -> float:
    value = metrics.registry.get_sample_value("bastion_approval_guessing_total", {"scope": scope})
    return value or 0.0


async def test_status_link_cannot_decide_even_with_a_right_code(page: Page) -> None:
    """The link the agent sees shows the state but no form; a POST to it with a valid CSRF
    token and the operator's right code is refused (403) and changes nothing."""
    env = page.env
    await env.enrol("alice")
    req = await env.submit()
    assert req.approve_url == f"{page.base}/approvals/{req.id}"
    assert req.operator_url.startswith(req.approve_url + "?op=")
    async with _client() as http:
        async with http.get(req.approve_url) as resp:
            status_page = await resp.text()
        assert resp.status == 200 and "<form" not in status_page
        assert "cannot decide" in status_page and "pending" in status_page
        csrf = await _csrf(http, req)
        form = {"operator": "alice", "totp": env.code("alice"), "action": "approve", "csrf": csrf}
        status, body = await _post(http, req.approve_url, form)
        assert status == 403 and "cannot decide" in body
        status, _ = await _post(http, req.approve_url, {**form, "op": "A" * 32})  # forged link
        assert status == 403
        other = await env.submit(command="az vm delete -n vm2 --yes")
        status, _ = await _post(http, req.approve_url, {**form, "op": _op(other)})  # other's link
        assert status == 403
    got = await env.broker.get(req.id)
    assert got is not None and got.state == "pending" and not got.decisions


async def test_unknown_operator_and_wrong_code_get_the_same_answer(page: Page) -> None:
    env = page.env
    await env.enrol("alice")
    req = await env.submit()
    async with _client() as http:
        csrf = await _csrf(http, req)
        base = {"action": "approve", "csrf": csrf, "op": _op(req)}
        wrong = _wrong(env.code("alice"))
        s1, unknown = await _post(
            http, req.operator_url, {**base, "operator": "mallory", "totp": wrong}
        )
        s2, wrong_code = await _post(
            http, req.operator_url, {**base, "operator": "alice", "totp": wrong}
        )
    assert s1 == s2 == 400
    assert _alert(unknown) == _alert(wrong_code) == BAD_CREDENTIALS
    assert "mallory" not in _alert(unknown)


async def test_guessing_on_the_page_never_locks_the_operator_elsewhere(
    page: Page, caplog: pytest.LogCaptureFixture
) -> None:
    """Five wrong codes for alice on the page lock the page for this request and name, raise
    an alert (log, metric, audit row), and alice still approves at once with the CLI."""
    env = page.env
    await env.enrol("alice")
    req = await env.submit()
    caplog.set_level(logging.WARNING, logger="bastion.approval")
    async with _client() as http:
        csrf = await _csrf(http, req)
        form = {"operator": "alice", "action": "approve", "csrf": csrf, "op": _op(req)}
        for _ in range(5):
            status, _ = await _post(
                http, req.operator_url, {**form, "totp": _wrong(env.code("alice"))}
            )
            assert status == 400
        status, body = await _post(http, req.operator_url, {**form, "totp": env.code("alice")})
        assert status == 429 and "CLI" in body  # even the right code: the page is locked
    op = await env.broker.operators.get("alice")
    assert op is not None and op.failures == 0 and op.locked_until == 0.0
    outcome = await env.broker.decide(
        req.id, operator="alice", totp=env.code("alice"), approve=True, via="cli"
    )
    assert outcome.state == "approved"
    assert _guessing_total(page.metrics, "request") == 1
    assert _guessing_total(page.metrics, "operator") == 1
    rows: list[dict[str, Any]] = [
        r for r in await env.approval_rows() if r.get("event") == "guessing"
    ]
    assert {r["scope"] for r in rows} == {"request", "operator"}
    assert all(r["request"] == req.id and r["source"] == "127.0.0.1" for r in rows)
    assert any(r.getMessage() == "approval.guessing" for r in caplog.records)


async def test_per_request_limit_counts_every_name(page: Page) -> None:
    """Wrong codes under five different names lock the page for that request only."""
    env = page.env
    await env.enrol("alice")
    req = await env.submit()
    other = await env.submit(command="az vm delete -n vm2 --yes")
    async with _client() as http:
        csrf = await _csrf(http, req)
        form = {"action": "approve", "csrf": csrf, "op": _op(req), "totp": "000000"}
        for i in range(5):
            status, _ = await _post(http, req.operator_url, {**form, "operator": f"guess{i}"})
            assert status == 400
        right = {**form, "operator": "alice", "totp": env.code("alice")}
        status, _ = await _post(http, req.operator_url, right)
        assert status == 429
        csrf2 = await _csrf(http, other)
        status, _ = await _post(
            http, other.operator_url, {**right, "csrf": csrf2, "op": _op(other)}
        )
        assert status == 303  # another request is unaffected
    assert _guessing_total(page.metrics, "request") == 1


async def test_address_limit_for_link_less_posts_spares_operators(page: Page) -> None:
    """Ten link-less posts lock link-less posts from the address (429, alert); an operator with
    the link behind the same address still decides."""
    env = page.env
    await env.enrol("alice")
    req = await env.submit()
    async with _client() as http:
        csrf = await _csrf(http, req)
        form = {"operator": "alice", "totp": "123456", "action": "approve", "csrf": csrf}
        for _ in range(10):
            status, _ = await _post(http, req.approve_url, form)
            assert status == 403
        status, _ = await _post(http, req.approve_url, form)
        assert status == 429
        assert _guessing_total(page.metrics, "address") == 1
        status, _ = await _post(
            http, req.operator_url, {**form, "op": _op(req), "totp": env.code("alice")}
        )
        assert status == 303
    got = await env.broker.get(req.id)
    assert got is not None and got.state == "approved"


async def test_decided_page_names_approvers_only_to_operators(page: Page) -> None:
    env = page.env
    await env.enrol("alice")
    req = await env.submit()
    await env.broker.decide(
        req.id, operator="alice", totp=env.code("alice"), approve=True,
        reason="ticket CHG-7", via="cli",
    )  # fmt: skip
    async with _client() as http:
        async with http.get(req.approve_url) as resp:
            public = await resp.text()
        async with http.get(req.operator_url) as resp:
            operator = await resp.text()
    assert "approved" in public and "alice" not in public and "CHG-7" not in public
    assert "alice" in operator and "CHG-7" in operator
