"""The operator's list of pending requests in Chromium, with the real ssh client holding three
commands: the list opens only from the signed list link (a plain HTTP client gets 403 and no
request data without it), it shows why each command was held and local time beside UTC, a wrong
code keeps the operator name, one code approves the two ticked requests (both commands then
run), and that code is refused for the third. The request page shows the reason too."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pyotp
import pytest
from support.bastion import start_bastion, target_block, write_config

from bastion.app import build_runtime
from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
POLICY = Path(__file__).resolve().parents[2] / "config" / "policy.toml"
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
UPDATE_SCREENSHOTS = os.environ.get("BASTION_UPDATE_SCREENSHOTS") == "1"


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli", *args, "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def http_status(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed")
async def test_operator_list_batch_approval_in_browser(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent
) -> None:
    from playwright.async_api import async_playwright

    extra = f'[policy]\nfile = "{POLICY}"\n[http]\nlisten = "127.0.0.1:0"\n'
    config = write_config(tmp_path, ca, target_block(sshd), extra=extra)
    enrolled = await asyncio.to_thread(cli, config, "operators", "add", "alice", "--group", "sre")
    assert enrolled.returncode == 0, enrolled.stderr
    totp = pyotp.parse_uri(enrolled.stdout.splitlines()[0])
    running = await asyncio.to_thread(start_bastion, config, build_runtime)
    procs = []
    try:
        held: dict[str, str] = {}
        for name in ("one", "two", "three"):
            proc = await asyncio.create_subprocess_exec(
                *running.ssh_args(agent, "web-01"),
                f"az group delete -n rg-{name} --yes; echo {name}-$((40+2))",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert proc.stderr is not None
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            held[name] = line.split(" as ", 1)[1].split()[0]
            origin = re.match(r"http://127\.0\.0\.1:\d+", line.split(" operator at ", 1)[1])
            assert origin is not None
            procs.append(proc)
        base = origin.group(0)
        listed = await asyncio.to_thread(cli, config, "approvals", "list")
        signed = re.search(r"operator list page: \S+/approvals/\?op=(\S+)", listed.stderr)
        assert signed is not None, listed.stderr
        list_url = f"{base}/approvals/?op={signed.group(1)}"

        # Without the signed link a plain HTTP client learns nothing of the requests.
        for url in (f"{base}/approvals/", f"{base}/approvals/?op=1.x", f"{base}/approvals"):
            status, body = await asyncio.to_thread(http_status, url)
            assert status in (403, 404), (url, status)
            assert not any(rid.encode() in body for rid in held.values())
            assert b"az group delete" not in body
        status, body = await asyncio.to_thread(http_status, list_url)
        assert status == 200 and all(rid.encode() in body for rid in held.values())

        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                context = await browser.new_context(timezone_id="Asia/Kolkata")
                page = await context.new_page()
                await page.goto(list_url)
                assert await page.locator("tbody tr").count() == 3
                text = await page.locator("table").inner_text()
                assert "deletes an Azure resource group" in text  # why held, beside the rules
                assert re.search(r"Z\s*\(local \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\+05:30\)", text)
                shots = DOCS_IMG if UPDATE_SCREENSHOTS else tmp_path
                await page.screenshot(path=str(shots / "approval-list.png"), full_page=True)
                for name in ("one", "two"):
                    await page.locator(f"#pick-{held[name]}").check()
                await page.get_by_label("Operator name").fill("alice")
                await page.get_by_label("Authenticator code (TOTP)").fill(
                    "000000" if totp.now() != "000000" else "111111"
                )
                async with page.expect_navigation():
                    await page.get_by_role("button", name="Approve selected").click()
                assert "wrong TOTP code" in await page.locator("[role=alert]").inner_text()
                assert await page.get_by_label("Operator name").input_value() == "alice"
                for name in ("one", "two"):
                    await page.locator(f"#pick-{held[name]}").check()
                code = totp.now()
                await page.get_by_label("Authenticator code (TOTP)").fill(code)
                async with page.expect_navigation():
                    await page.get_by_role("button", name="Approve selected").click()
                results = await page.locator("ul.results").inner_text()
                assert f"{held['one']}: approved" in results
                assert f"{held['two']}: approved" in results
                assert await page.locator("tbody tr").count() == 1  # only three is pending
                # The request page: the reason the agent was given, and local time.
                shown = await asyncio.to_thread(
                    cli, config, "approvals", "show", held["three"], "--json"
                )
                op = shown.stdout.split('"operator_url":"', 1)[-1].split("?op=", 1)[1]
                op = op.split('"', 1)[0]
                await page.goto(f"{base}/approvals/{held['three']}?op={op}")
                summary = await page.locator("dl").inner_text()
                assert "Why held" in summary and "deletes an Azure resource group" in summary
                assert "UTC+05:30" in summary
                recent = await page.locator("table").inner_text()  # this session's commands
                assert "az group delete" in recent and "UTC+05:30" in recent
            finally:
                await browser.close()
        for name, proc in zip(("one", "two"), procs[:2], strict=True):
            out, err = await asyncio.wait_for(proc.communicate(), 30)
            assert f"{name}-42".encode() in out, err
            assert proc.returncode == 0
        replay = await asyncio.to_thread(
            cli, config, "approvals", "approve", held["three"], "--operator", "alice",
            "--totp", code,
        )  # fmt: skip
        assert replay.returncode != 0 and "already used" in replay.stderr
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await asyncio.to_thread(running.stop)
