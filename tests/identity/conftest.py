"""A real local OIDC provider over HTTPS (test CA made at set-up) and the issuer under test."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import secrets
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from bastion.identity.ca import init_ca
from bastion.identity.config import parse_identity_config
from bastion.identity.http import SERVER_HANDLER_ARGS, add_routes
from bastion.identity.issuer import CertificateIssuer

AUDIENCE = "api://bastion"


@dataclass
class TestTLS:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def _make_tls(directory: Path) -> TestTLS:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "identity test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    tls = TestTLS(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    tls.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    tls.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tls.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return tls


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TestTLS:
    return _make_tls(tmp_path_factory.mktemp("tls"))


@dataclass
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey

    def jwk(self) -> dict[str, Any]:
        data: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(
            self.private.public_key(), as_dict=True
        )
        data.update(kid=self.kid, use="sig", alg="RS256")
        return data

    def pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def new_signing_key() -> SigningKey:
    return SigningKey(f"k-{uuid.uuid4().hex[:8]}", rsa.generate_private_key(65537, 2048))


@dataclass
class OidcProvider:
    """Entra-shaped OIDC provider: v2 and v1 issuers for one tenant, JWKS, token endpoint."""

    base: str = ""
    tenant: str = field(default_factory=lambda: str(uuid.uuid4()))
    keys: list[SigningKey] = field(default_factory=lambda: [new_signing_key()])
    clients: dict[str, dict[str, Any]] = field(default_factory=dict)  # client_id -> app
    jwks_fetches: int = 0

    @property
    def issuer_v2(self) -> str:
        return f"{self.base}/{self.tenant}/v2.0"

    @property
    def issuer_v1(self) -> str:
        return f"{self.base}/{self.tenant}/"

    @property
    def authority(self) -> str:
        return f"{self.base}/{self.tenant}"

    def register_app(self, name: str, roles: list[str]) -> tuple[str, str]:
        """Register a client app; return (client_id, generated secret)."""
        client_id, secret = str(uuid.uuid4()), secrets.token_urlsafe(24)
        self.clients[client_id] = {"secret": secret, "roles": roles, "name": name}
        self.clients[client_id]["oid"] = str(uuid.uuid4())
        return client_id, secret

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer_v2,
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "tid": self.tenant,
            "oid": "0b5e2b8e-8f6a-4d1e-9d7e-3c2f1a0b9c8d",
            "sub": "0b5e2b8e-8f6a-4d1e-9d7e-3c2f1a0b9c8d",
            "azp": "11111111-2222-3333-4444-555555555555",
            "roles": ["Bastion.Agent"],
            "ver": "2.0",
            "jti": uuid.uuid4().hex,
            "app_displayname": "Build Agent",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def mint(
        self,
        key: SigningKey | None = None,
        *,
        alg: str = "RS256",
        headers: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> str:
        key = key or self.keys[0]
        head = {"kid": key.kid, **(headers or {})}
        return jwt.encode(self.claims(**overrides), key.pem(), algorithm=alg, headers=head)

    def rotate(self) -> SigningKey:
        key = new_signing_key()
        self.keys.insert(0, key)
        return key

    def app(self) -> web.Application:
        app = web.Application()

        def discovery(issuer: str, version: str) -> dict[str, Any]:
            return {
                "issuer": issuer,
                "jwks_uri": f"{self.base}/{self.tenant}/discovery/{version}keys",
                "token_endpoint": f"{self.base}/{self.tenant}/oauth2/{version}token",
                "authorization_endpoint": f"{self.base}/{self.tenant}/oauth2/{version}authorize",
                "id_token_signing_alg_values_supported": ["RS256"],
            }

        async def v2(request: web.Request) -> web.Response:
            return web.json_response(discovery(self.issuer_v2, "v2.0/"))

        async def v1(request: web.Request) -> web.Response:
            return web.json_response(discovery(self.issuer_v1, ""))

        async def jwks(request: web.Request) -> web.Response:
            self.jwks_fetches += 1
            return web.json_response({"keys": [k.jwk() for k in self.keys]})

        async def token(request: web.Request) -> web.Response:
            form = await request.post()
            client = self.clients.get(str(form.get("client_id")))
            if form.get("grant_type") != "client_credentials" or client is None:
                return web.json_response({"error": "unauthorized_client"}, status=400)
            if not secrets.compare_digest(str(form.get("client_secret", "")), client["secret"]):
                return web.json_response(
                    {"error": "invalid_client", "error_description": "bad secret"}, status=401
                )
            scope = str(form.get("scope", "")).split()
            audience = next((s.removesuffix("/.default") for s in scope if "/" in s), AUDIENCE)
            access = self.mint(
                aud=audience,
                azp=str(form["client_id"]),
                oid=client["oid"],
                sub=client["oid"],
                roles=client["roles"],
                app_displayname=client["name"],
            )
            return web.json_response(
                {"access_token": access, "token_type": "Bearer", "expires_in": 3600}
            )

        t = self.tenant
        app.router.add_get(f"/{t}/v2.0/.well-known/openid-configuration", v2)
        app.router.add_get(f"/{t}/.well-known/openid-configuration", v1)
        app.router.add_get(f"/{t}/discovery/v2.0/keys", jwks)
        app.router.add_get(f"/{t}/discovery/keys", jwks)
        app.router.add_post(f"/{t}/oauth2/v2.0/token", token)
        return app


async def serve_https(app: web.Application, tls: TestTLS) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None, **SERVER_HANDLER_ARGS)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.server_context())
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"https://127.0.0.1:{port}"


@pytest.fixture
async def provider(tls: TestTLS) -> AsyncIterator[OidcProvider]:
    oidc = OidcProvider()
    runner, base = await serve_https(oidc.app(), tls)
    oidc.base = base
    yield oidc
    await runner.cleanup()


class MemoryAudit:
    """In-memory AuditSink (test double for the audit seam)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []
        self.fail = False

    async def record(self, kind: str, **fields: object) -> int:
        if self.fail:
            raise RuntimeError("audit store down")
        self.events.append((kind, fields))
        return len(self.events)

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]


def oidc_section(provider: OidcProvider, **extra: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "cert_validity": "15m",
        "jwks_min_refresh": "0s",
        "issuers": [
            {"issuer": provider.issuer_v2, "audience": AUDIENCE, "tenants": [provider.tenant]},
            {
                "issuer": provider.issuer_v1,
                "audience": [AUDIENCE],
                "tenants": [provider.tenant],
                "discovery_url": provider.issuer_v1 + ".well-known/openid-configuration",
            },
        ],
        "grants": [
            {"claim": "roles", "value": "Bastion.Agent", "principals": ["agents"]},
            {"claim": "roles", "value": "Bastion.Admin", "principals": ["admins", "agents"]},
        ],
    }
    section.update(extra)
    return section


@dataclass
class IssuerHarness:
    issuer: CertificateIssuer
    audit: MemoryAudit
    state_dir: Path
    ca_public: Path


async def make_issuer(
    tmp_path: Path, provider: OidcProvider, tls: TestTLS, **oidc_extra: Any
) -> IssuerHarness:
    ca_key = tmp_path / "user_ca"
    if not ca_key.exists():
        init_ca(ca_key)
    config = parse_identity_config(
        {"key": "user_ca"}, oidc_section(provider, **oidc_extra), tmp_path
    )
    audit = MemoryAudit()
    issuer = await CertificateIssuer.create(
        config, tmp_path / "state", audit, ssl_context=tls.client_context()
    )
    return IssuerHarness(issuer, audit, tmp_path / "state", tmp_path / "user_ca.pub")


@pytest.fixture
async def harness(
    tmp_path: Path, provider: OidcProvider, tls: TestTLS
) -> AsyncIterator[IssuerHarness]:
    h = await make_issuer(tmp_path, provider, tls)
    yield h
    await h.issuer.close()


@pytest.fixture
async def bastion_url(harness: IssuerHarness, tls: TestTLS) -> AsyncIterator[str]:
    """The issuer's routes on a real aiohttp HTTPS server on 127.0.0.1."""
    app = web.Application()
    add_routes(app, harness.issuer)
    runner, url = await serve_https(app, tls)
    yield url
    await runner.cleanup()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
async def issuer_factory(
    tmp_path: Path, provider: OidcProvider, tls: TestTLS
) -> AsyncIterator[Any]:
    """Build issuers with extra [oidc] settings; closes them at teardown."""
    made: list[IssuerHarness] = []

    async def make(**oidc_extra: Any) -> IssuerHarness:
        h = await make_issuer(tmp_path, provider, tls, **oidc_extra)
        made.append(h)
        return h

    yield make
    for h in made:
        await h.issuer.close()
