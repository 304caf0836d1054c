"""'bastion login' against a real aiohttp HTTPS server running the routes, and real msal."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import time

from bastion.cli import main


async def login(*argv: str) -> int:
    return await asyncio.to_thread(main, ["login", *argv])


def run(*argv: str) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, check=True).stdout


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def ssh_g(config, host: str) -> dict[str, str]:
    out = run("ssh", "-G", "-F", str(config), host)
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


async def test_login_with_token_file_writes_files_and_snippet(
    bastion_url, provider, tls, tmp_path
):
    """--token-file: KEY, KEY.pub, KEY-cert.pub (0600) and an ssh_config that routes web-01."""
    token_file = tmp_path / "token"
    token_file.write_text(provider.mint() + "\n")
    key = tmp_path / "agent"
    status = await login(
        "--url", bastion_url, "--key", str(key), "--token-file", str(token_file),
        "--ca-bundle", str(tls.ca_file), "--ssh-port", "2222", "--target", "web-01",
    )  # fmt: skip
    assert status == 0
    cert = tmp_path / "agent-cert.pub"
    for path in (key, tmp_path / "agent.pub", cert, tmp_path / "agent.ssh_config"):
        assert mode(path) == 0o600, path
    listing = run("ssh-keygen", "-L", "-f", str(cert))
    assert "agents" in listing
    # ssh accepts the key pair: the public key ssh-keygen derives matches KEY.pub
    derived = run("ssh-keygen", "-y", "-f", str(key)).split()[1]
    assert derived == (tmp_path / "agent.pub").read_text().split()[1]
    resolved = ssh_g(tmp_path / "agent.ssh_config", "web-01.bastion")
    assert resolved["user"] == "web-01"
    assert resolved["hostname"] == "127.0.0.1" and resolved["port"] == "2222"
    assert resolved["certificatefile"] == str(cert)


async def test_login_with_msal_client_credentials(
    bastion_url, provider, tls, tmp_path, monkeypatch
):
    """The real msal client-credentials flow against the local provider yields a certificate."""
    client_id, secret = provider.register_app("CI Runner", roles=["Bastion.Agent"])
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_file))
    monkeypatch.setenv("TEST_BASTION_SECRET", secret)
    key = tmp_path / "ci"
    args = [
        "--url", bastion_url, "--key", str(key), "--ca-bundle", str(tls.ca_file),
        "--client-id", client_id, "--client-secret-env", "TEST_BASTION_SECRET",
        "--authority", provider.authority,
    ]  # fmt: skip
    assert await login(*args) == 0
    listing = run("ssh-keygen", "-L", "-f", str(tmp_path / "ci-cert.pub"))
    assert "(CI Runner)" in listing
    # a fresh msal application per call: a second login gets a new token, not a replay
    assert await login(*args) == 0


async def test_login_errors_are_one_line(bastion_url, provider, tls, tmp_path, capsys, monkeypatch):
    """A wrong client secret or a refused token gives exit 2 and one readable line."""
    client_id, _ = provider.register_app("CI Runner", roles=["Bastion.Agent"])
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_file))
    monkeypatch.setenv("TEST_BASTION_SECRET", "wrong-secret-value")
    status = await login(
        "--url", bastion_url, "--key", str(tmp_path / "k"), "--client-id", client_id,
        "--client-secret-env", "TEST_BASTION_SECRET", "--authority", provider.authority,
    )  # fmt: skip
    assert status == 3  # EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("bastion: token request failed") and err.count("\n") == 1
    token_file = tmp_path / "token"
    token_file.write_text(provider.mint(roles=["Nothing"]))
    status = await login(
        "--url", bastion_url, "--key", str(tmp_path / "k"), "--token-file", str(token_file),
        "--ca-bundle", str(tls.ca_file),
    )  # fmt: skip
    assert status == 3  # EXIT_ERROR
    err = capsys.readouterr().err
    assert "no grant matches" in err and "HTTP 403" in err
    assert not (tmp_path / "k").exists()


async def test_renew_before(bastion_url, provider, tls, tmp_path, capsys):
    """--renew-before skips a certificate with enough life left and renews one close to expiry."""
    token_file = tmp_path / "token"
    key = tmp_path / "agent"
    base = ["--url", bastion_url, "--key", str(key), "--token-file", str(token_file),
            "--ca-bundle", str(tls.ca_file)]  # fmt: skip
    token_file.write_text(provider.mint())
    assert await login(*base) == 0
    first = (tmp_path / "agent-cert.pub").read_text()
    assert await login(*base, "--renew-before", "1m") == 0
    assert "not renewed" in capsys.readouterr().out
    assert (tmp_path / "agent-cert.pub").read_text() == first
    token_file.write_text(provider.mint())  # a renewal needs a fresh token (replay guard)
    assert await login(*base, "--renew-before", "20m") == 0
    assert (tmp_path / "agent-cert.pub").read_text() != first


async def test_login_with_managed_identity(bastion_url, provider, tls, tmp_path, monkeypatch):
    """--managed-identity through the real msal ManagedIdentityClient against a local endpoint
    that speaks Azure App Service's managed-identity protocol (IDENTITY_ENDPOINT with the
    X-IDENTITY-HEADER secret): system-assigned and user-assigned (--client-id) both get a
    certificate; the endpoint sees the bastion's resource, never a secret of ours."""
    import secrets

    from aiohttp import web

    header_secret = secrets.token_hex(16)
    user_assigned = "6b0a3c3e-5d4f-4a8e-9c1b-2f3e4d5c6b7a"
    seen: list[dict[str, str]] = []

    async def identity(request: web.Request) -> web.Response:
        if request.headers.get("X-IDENTITY-HEADER") != header_secret:
            return web.json_response({"statusCode": 401, "message": "bad header"}, status=401)
        params = dict(request.query)
        seen.append(params)
        oid = params.get("client_id") or "system-assigned-oid"
        token = provider.mint(oid=oid, sub=oid, roles=["Bastion.Agent"], idtyp="app")
        return web.json_response({"access_token": token, "expires_on": str(int(time.time()) + 3600),
                                  "resource": params.get("resource"), "token_type": "Bearer"})

    app = web.Application()
    app.router.add_get("/msi/token", identity)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{port}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", header_secret)
    try:
        for extra in ([], ["--client-id", user_assigned]):
            key = tmp_path / f"mi{len(extra)}"
            status = await login(
                "--url", bastion_url, "--key", str(key), "--ca-bundle", str(tls.ca_file),
                "--managed-identity", "--scope", "api://bastion/.default", *extra,
            )  # fmt: skip
            assert status == 0
            listing = run("ssh-keygen", "-L", "-f", f"{key}-cert.pub")
            assert "agents" in listing
    finally:
        await runner.cleanup()
    assert [s["resource"] for s in seen] == ["api://bastion", "api://bastion"]
    assert "client_id" not in seen[0] and seen[1]["client_id"] == user_assigned
    assert all(s["api-version"] == "2019-08-01" for s in seen)
