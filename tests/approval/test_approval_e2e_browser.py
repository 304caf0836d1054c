"""The operator's real path: the agent's stderr names the status link (it shows the request but
cannot decide); the operator opens the signed operator link (from ``bastion approvals show``, as
chat notices carry it) in Chromium, approves with a TOTP code, and the agent's held command
completes. And a restart of the bastion while a request is pending leaves it abandoned."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyotp
import pytest
from support.bastion import start_bastion, target_block, write_config

from bastion.app import build_runtime
from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget, free_port, wait_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
POLICY = Path(__file__).resolve().parents[2] / "config" / "policy.toml"


def enrol(config: Path, name: str, group: str) -> pyotp.TOTP:
    out = subprocess.run(
        [sys.executable, "-m", "bastion.cli", "operators", "add", name, "--group", group,
         "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return pyotp.parse_uri(out.stdout.splitlines()[0])


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed")
async def test_operator_approves_in_browser_and_command_completes(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent
) -> None:
    """az group delete waits; the link on stderr opens the page; Approve + TOTP runs it."""
    from playwright.async_api import async_playwright

    extra = f'[policy]\nfile = "{POLICY}"\n[http]\nlisten = "127.0.0.1:0"\n'
    config = write_config(tmp_path, ca, target_block(sshd), extra=extra)
    totp = await asyncio.to_thread(enrol, config, "alice", "sre")
    running = await asyncio.to_thread(start_bastion, config, build_runtime)
    try:
        proc = await asyncio.create_subprocess_exec(
            *running.ssh_args(agent, "web-01"), "az group delete -n rg --yes; echo done-after",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stderr is not None
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        url = line.split(" operator at ", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:") and "/approvals/" in url and "?op=" not in url
        request_id = line.split(" as ", 1)[1].split()[0]
        shown = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "bastion.cli", "approvals", "show", request_id, "--json",
             "--config", str(config)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        signed = json.loads(shown.stdout)["operator_url"]
        assert f"/approvals/{request_id}?op=" in signed
        # listen = ":0": only the serving process knows its port; the signature is what counts
        operator_url = url + "?op=" + signed.split("?op=", 1)[1]
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                response = await page.goto(url)  # what the agent saw: status only
                assert response is not None and response.status == 200
                assert "az group delete -n rg --yes" in await page.locator("pre").first.inner_text()
                assert await page.locator("form").count() == 0
                assert "cannot decide" in await page.content()
                response = await page.goto(operator_url)
                assert response is not None and response.status == 200
                await page.get_by_label("Operator name").fill("alice")
                await page.get_by_label("Authenticator code (TOTP)").fill(totp.now())
                async with page.expect_navigation():
                    await page.get_by_role("button", name="Approve").click()
                assert "approved" in await page.locator("h1").inner_text()
                assert "alice approved via web" in await page.content()
                await page.goto(url)  # the status link, decided: no approver named
                assert "approved" in await page.locator("h1").inner_text()
                assert "alice" not in await page.content()
            finally:
                await browser.close()
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert b"done-after" in out, err
        assert proc.returncode == 0
    finally:
        await asyncio.to_thread(running.stop)


def test_restart_while_pending_abandons_the_request(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent
) -> None:
    """A bastion killed with a request pending comes back with that request abandoned."""
    port = free_port()
    config = write_config(tmp_path, ca, target_block(sshd), extra=f'[policy]\nfile = "{POLICY}"\n')
    config.write_text(config.read_text().replace('"127.0.0.1:0"', f'"127.0.0.1:{port}"'))

    def serve() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bastion.cli", "serve", "--config", str(config)],
            stderr=subprocess.DEVNULL,
        )
        wait_port(port, 30)
        return proc

    server = serve()
    try:
        host_pub = (tmp_path / "ssh_host_ed25519_key.pub").read_text().strip()
        known = tmp_path / "known"
        known.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
        held = subprocess.Popen(
            ["ssh", "-F", "/dev/null", "-p", str(port), "-i", str(agent.key),
             "-o", f"CertificateFile={agent.cert}", "-o", f"UserKnownHostsFile={known}",
             "-o", "BatchMode=yes", "web-01@127.0.0.1", "az group delete -n rg --yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert held.stderr is not None
        request_id = held.stderr.readline().decode().split(" as ", 1)[1].split()[0]
        os.kill(server.pid, signal.SIGKILL)
        server.wait(10)
        held.kill()
        held.wait()
        server = serve()
        time.sleep(0.5)
        shown = subprocess.run(
            [sys.executable, "-m", "bastion.cli", "approvals", "show", request_id, "--json",
             "--config", str(config)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert '"state": "abandoned"' in shown.stdout or '"state":"abandoned"' in shown.stdout
    finally:
        server.kill()
        server.wait()
