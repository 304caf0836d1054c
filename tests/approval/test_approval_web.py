"""The approval page on a real aiohttp server: HTTP-level checks and a real Chromium session."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import secrets
import string
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pyotp
import pytest
from aiohttp import web
from approval_env import Env

from bastion.approval.web import add_routes

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
# Screenshots go to docs/img only when asked, so a test run does not dirty the tree.
UPDATE_SCREENSHOTS = os.environ.get("BASTION_UPDATE_SCREENSHOTS") == "1"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def fake_github_token() -> str:
    """A generated value shaped like a GitHub token (not a credential)."""
    alphabet = string.ascii_letters + string.digits
    return "ghp_" + "".join(secrets.choice(alphabet) for _ in range(36))


@pytest.fixture
async def served(live_env: Env) -> AsyncIterator[tuple[Env, str]]:
    """The approval routes on 127.0.0.1:<free port>; the broker's public URL points there."""
    app = web.Application()
    add_routes(app, live_env.broker)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    live_env.broker.config = dataclasses.replace(live_env.broker.config, public_url=base)
    try:
        yield live_env, base
    finally:
        await runner.cleanup()


async def _seed_session(env: Env, token: str) -> None:
    for command, decision in (
        ("az group list -o table", "allow"),
        (f"curl -H 'Authorization: Bearer {token}' https://api.github.com/user", "allow"),
        ("az group show -n rg-web-prod", "allow"),
    ):
        await env.audit.record(
            "command",
            session_id="sess-1",
            identity="ci-agent-1",
            command=command,
            decision=decision,
        )


async def test_page_escapes_masks_and_sets_security_headers(served: tuple[Env, str]) -> None:
    """GET shows the request HTML-escaped, secrets masked, invisibles visible, strict headers."""
    env, base = served
    token = fake_github_token()
    await _seed_session(env, token)
    req = await env.submit(
        command=f"echo '<script>x</script>' {token} \u202e\x1b[2J",
        units=(("echo", "<script>x</script>", token),),
    )
    async with aiohttp.ClientSession() as http:
        async with http.get(req.approve_url) as resp:
            body = await resp.text()
            assert resp.status == 200
            csp = resp.headers["Content-Security-Policy"]
            assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert resp.headers["Referrer-Policy"] == "no-referrer"
            assert "SameSite=Strict" in resp.headers["Set-Cookie"]
        async with http.get(f"{base}/approvals/ZZZZ-ZZZZ-ZZZZ-ZZZZ") as missing:
            assert missing.status == 404
    assert "<script>x</script>" not in body and "&lt;script&gt;x&lt;/script&gt;" in body
    assert token not in body and "[MASKED:github-token]" in body
    assert "\\u202e" in body and "\\x1b[2J" in body and "\u202e" not in body
    assert "az group show -n rg-web-prod" in body  # recent commands of the session


async def test_post_without_csrf_token_is_forbidden(served: tuple[Env, str]) -> None:
    """POSTs lacking the cookie, the token, or from another origin get 403 and change nothing."""
    env, _ = served
    await env.enrol("alice")
    req = await env.submit()
    op = req.operator_url.split("?op=", 1)[1]
    form = {"operator": "alice", "totp": env.code("alice"), "action": "approve", "op": op}
    url = req.operator_url
    # unsafe=True: keep cookies set by an IP-address host (127.0.0.1)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(url, data=form) as resp:
            assert resp.status == 403
        async with http.get(url) as page:  # now the session holds the cookie
            html = await page.text()
        csrf = re.search(r"name='csrf' value='([^']+)'", html)
        assert csrf is not None
        async with http.post(url, data=form) as resp:  # cookie but no token
            assert resp.status == 403
        async with http.post(
            url,
            data={**form, "csrf": csrf.group(1)},
            headers={"Origin": "https://evil.test"},
        ) as resp:
            assert resp.status == 403
        got = await env.broker.get(req.id)
        assert got is not None and got.state == "pending"
        wrong = f"{(int(form['totp']) + 1) % 1_000_000:06d}"
        async with http.post(url, data={**form, "totp": wrong, "csrf": csrf.group(1)}) as resp:
            assert resp.status == 400 and "wrong TOTP code" in await resp.text()
        async with http.post(
            url, data={**form, "csrf": csrf.group(1)}, allow_redirects=False
        ) as resp:
            assert resp.status == 303
    got = await env.broker.get(req.id)
    assert got is not None and got.state == "approved" and got.decisions[0].via == "web"


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed")
async def test_browser_approves_and_wait_returns(served: tuple[Env, str], tmp_path: Path) -> None:
    """In Chromium: open the link, type name and code, Approve; the page and wait() say approved."""
    from playwright.async_api import async_playwright

    env, _ = served
    secret = await env.enrol("alice", groups=["sre"])
    await _seed_session(env, fake_github_token())
    req = await env.submit(
        command="az group delete -n rg-web-prod --yes --no-wait",
        units=(("az", "group", "delete", "-n", "rg-web-prod", "--yes", "--no-wait"),),
        approvers=("sre",),
        timeout=900,
        explanation="deletes an Azure resource group [az-group-delete] in `az group delete`",
    )
    waiter = asyncio.create_task(env.broker.wait(req.id))
    shots = DOCS_IMG if UPDATE_SCREENSHOTS else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1000, "height": 900})
            console: list[str] = []
            page.on("console", lambda msg: console.append(msg.text))
            resp = await page.goto(req.operator_url)  # the operators' link (chat, CLI)
            assert resp is not None and resp.status == 200
            assert "pending" in (await page.locator("h1").inner_text())
            assert "rg-web-prod" in await page.locator("pre").inner_text()
            # the hashed inline script ran under the CSP and ticks the countdown
            first = await page.locator("#countdown").inner_text()
            await page.wait_for_function(
                "t => document.getElementById('countdown').textContent !== t", arg=first
            )
            await page.screenshot(path=str(shots / "approval-pending.png"), full_page=True)
            await page.get_by_label("Operator name").fill("alice")
            await page.get_by_label("Authenticator code (TOTP)").fill(pyotp.TOTP(secret).now())
            await page.get_by_label("Reason (optional)").fill("change CHG-1234, rg is empty")
            async with page.expect_navigation():
                await page.get_by_role("button", name="Approve").click()
            assert "approved" in (await page.locator("h1").inner_text())
            assert "alice approved via web" in await page.content()
            await page.screenshot(path=str(shots / "approval-approved.png"), full_page=True)
            assert not [m for m in console if "Content Security Policy" in m], console
        finally:
            await browser.close()
    assert (shots / "approval-approved.png").read_bytes().startswith(b"\x89PNG")
    outcome = await asyncio.wait_for(waiter, 2)
    assert outcome.state == "approved" and outcome.decided_by == ("alice",)
