"""End to end: a service principal's token becomes a certificate that a stock ssh uses through
the bastion; a revoked certificate is refused at the next login."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from support.bastion import start_bastion, target_block
from support.certs_view import validity_seconds

from bastion.app import build_runtime
from bastion.cli import main
from bastion.testing.certs import Agent
from bastion.testing.sshd import SshdTarget

POLICY = Path(__file__).resolve().parents[2] / "config" / "policy.toml"
AUDIENCE = "api://bastion"


def bastion_config(directory: Path, provider, tls, sshd: SshdTarget) -> Path:  # type: ignore[no-untyped-def]
    path = directory / "bastion.toml"
    path.write_text(
        f"""
[server]
listen = "127.0.0.1:0"
host_key = "ssh_host_ed25519_key"
state_dir = "state"

[auth]
trusted_user_ca_keys = ["user_ca.pub"]
max_cert_validity = "1h"

[policy]
file = "{POLICY}"

[http]
listen = "127.0.0.1:0"

[ca]
key = "user_ca"

[oidc]
cert_validity = "15m"
ca_bundle = "{tls.ca_file}"

[[oidc.issuers]]
issuer = "{provider.issuer_v2}"
audience = "{AUDIENCE}"
tenants = ["{provider.tenant}"]

[[oidc.grants]]
claim = "roles"
value = "Bastion.Agent"
principals = ["agents"]

{target_block(sshd)}
[[access]]
principals = ["agents"]
targets = ["web-*"]
logins = ["{sshd.login}"]
"""
    )
    return path


async def test_token_to_certificate_to_ssh_and_revocation(
    tmp_path: Path, provider, tls, sshd: SshdTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    """msal client credentials -> `bastion login` -> 15-minute certificate -> ssh works;
    after `bastion cert revoke` the same certificate is refused."""
    config = bastion_config(tmp_path, provider, tls, sshd)
    assert await asyncio.to_thread(main, ["ca", "init", "--config", str(config)]) == 0
    running = await asyncio.to_thread(start_bastion, config, build_runtime)
    try:
        assert running.runtime.http is not None
        http_port = running.runtime.http.address[1]
        client_id, secret = provider.register_app("Build Agent", roles=["Bastion.Agent"])
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_file))
        monkeypatch.setenv("TEST_SP_SECRET", secret)
        key = tmp_path / "agent"
        status = await asyncio.to_thread(
            main,
            [
                "login", "--url", f"http://127.0.0.1:{http_port}", "--key", str(key),
                "--client-id", client_id, "--client-secret-env", "TEST_SP_SECRET",
                "--authority", provider.authority, "--ssh-port", str(running.port),
                "--target", "web-01",
            ],
        )  # fmt: skip
        assert status == 0
        for path in (key, Path(f"{key}.pub"), Path(f"{key}-cert.pub")):
            assert path.stat().st_mode & 0o077 == 0
        shown = await asyncio.to_thread(
            subprocess.run,
            ["ssh-keygen", "-L", "-f", f"{key}-cert.pub"],
            capture_output=True,
            text=True,
        )
        listing = shown.stdout
        assert "agents" in listing
        assert validity_seconds(listing) <= 15 * 60 + 60

        agent = Agent(key, Path(f"{key}-cert.pub"))
        ok = await asyncio.to_thread(running.ssh, agent, "web-01", "echo via-oidc; exit 4")
        assert (ok.stdout, ok.returncode) == (b"via-oidc\n", 4), ok.stderr

        serial = next(
            line.split(":", 1)[1].strip()
            for line in listing.splitlines()
            if line.strip().startswith("Serial:")
        )
        revoke = ["cert", "revoke", "--serial", serial, "--config", str(config)]
        assert await asyncio.to_thread(main, revoke) == 0
        refused = await asyncio.to_thread(running.ssh, agent, "web-01", "echo should-not-run")
        assert refused.returncode == 255
        assert b"certificate has been revoked" in refused.stderr
    finally:
        await asyncio.to_thread(running.stop)


async def test_a_fresh_runner_checks_the_bastion_host_key_from_login(
    tmp_path: Path, provider, tls, sshd: SshdTarget
) -> None:
    """CI from the docs alone: `bastion login` on a runner with no ~/.ssh pins the bastion's
    host key, and the stock ssh through the written snippet verifies it (StrictHostKeyChecking
    yes, BatchMode); a different key in that file is refused."""
    config = bastion_config(tmp_path, provider, tls, sshd)
    assert await asyncio.to_thread(main, ["ca", "init", "--config", str(config)]) == 0
    running = await asyncio.to_thread(start_bastion, config, build_runtime)
    try:
        assert running.runtime.http is not None
        http_port = running.runtime.http.address[1]
        token = tmp_path / "token"
        await asyncio.to_thread(token.write_text, provider.mint())
        key = tmp_path / "runner"
        status = await asyncio.to_thread(main, [
            "login", "--url", f"http://127.0.0.1:{http_port}", "--key", str(key),
            "--token-file", str(token), "--ssh-host", "127.0.0.1",
            "--ssh-port", str(running.port), "--target", "web-01",
        ])  # fmt: skip
        assert status == 0
        known = Path(f"{key}.known_hosts")
        host_pub = (await asyncio.to_thread((tmp_path / "ssh_host_ed25519_key.pub").read_text))
        pinned = f"[127.0.0.1]:{running.port} {' '.join(host_pub.split()[:2])}\n"
        assert await asyncio.to_thread(known.read_text) == pinned
        home = tmp_path / "empty-home"
        await asyncio.to_thread(home.mkdir)
        env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
        ssh = ["ssh", "-F", f"{key}.ssh_config", "-o", "BatchMode=yes", "web-01.bastion",
               "echo pinned"]
        ok = await asyncio.to_thread(subprocess.run, ssh, capture_output=True, env=env,
                                     timeout=60)
        assert (ok.returncode, ok.stdout) == (0, b"pinned\n"), ok.stderr
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")]
        await asyncio.to_thread(subprocess.run, keygen, check=True)
        wrong = await asyncio.to_thread((tmp_path / "other.pub").read_text)
        await asyncio.to_thread(
            known.write_text, f"[127.0.0.1]:{running.port} {' '.join(wrong.split()[:2])}\n"
        )
        refused = await asyncio.to_thread(subprocess.run, ssh, capture_output=True, env=env,
                                          timeout=60)
        assert refused.returncode == 255
        assert b"Host key verification failed" in refused.stderr
    finally:
        await asyncio.to_thread(running.stop)
