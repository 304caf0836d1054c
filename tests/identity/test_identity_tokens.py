"""Fail-closed token validation: every bad token is refused with a clear reason and audited."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import asyncssh
import pytest
from cryptography.hazmat.primitives import serialization

from bastion.identity.issuer import IssueRefused

NOW = int(time.time())


def pubkey() -> str:
    return asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode()


def b64(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def refused(harness, token: str) -> IssueRefused:
    with pytest.raises(IssueRefused) as err:
        await harness.issuer.issue(token, pubkey(), source_address="192.0.2.7")
    kind, fields = harness.audit.events[-1]
    assert kind == "cert_refused" and fields["reason"] == err.value.reason
    assert fields["source_address"] == "192.0.2.7"
    return err.value


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": NOW - 3600, "iat": NOW - 7200, "nbf": NOW - 7200}, "token has expired"),
        ({"nbf": NOW + 3600}, "not valid yet"),
        ({"iat": NOW + 3600}, "not valid yet"),
        ({"aud": "api://someone-else"}, "audience is not accepted"),
        ({"iss": "https://login.example.invalid/tenant/v2.0"}, "issuer is not trusted"),
        ({"tid": "8a0c6b1e-0000-4000-8000-000000000000"}, "tenant (tid) is not allowed"),
        ({"oid": None, "sub": None}, "lacks required claim 'sub'"),
        ({"exp": None}, "lacks required claim 'exp'"),
        ({"iss": None}, "no issuer"),
    ],
)
async def test_bad_claims_are_refused(harness, provider, overrides, reason):
    """Expired, not-yet-valid, wrong audience/issuer/tenant and missing claims are refused."""
    err = await refused(harness, provider.mint(**overrides))
    assert err.status == 401 and reason in err.reason


async def test_small_clock_skew_is_tolerated(harness, provider):
    """A token that expired 20s ago still passes within the 60s skew (but not beyond)."""
    now = int(time.time())  # not the import-time NOW: the suite may have run for minutes
    ok = provider.mint(exp=now - 20, iat=now - 600, nbf=now - 600)
    await harness.issuer.issue(ok, pubkey(), source_address="x")
    err = await refused(harness, provider.mint(exp=now - 120, iat=now - 600, nbf=now - 600))
    assert "expired" in err.reason


async def test_wrong_signature_is_refused(harness, provider):
    """A token signed by a key other than the one its kid names is refused."""

    rogue = provider.rotate()
    provider.keys.remove(rogue)  # the provider does not publish it
    token = provider.mint(rogue, headers={"kid": provider.keys[0].kid})
    err = await refused(harness, token)
    assert err.reason == "token signature is invalid"


async def test_unknown_kid_then_rotation(harness, provider):
    """An unpublished kid is refused; once the issuer publishes the key, it is accepted."""
    new = provider.rotate()
    published = provider.keys.pop(0)
    err = await refused(harness, provider.mint(new))
    assert "does not publish" in err.reason
    provider.keys.insert(0, published)
    fetches = provider.jwks_fetches
    await harness.issuer.issue(provider.mint(new), pubkey(), source_address="x")
    assert provider.jwks_fetches == fetches + 1


async def test_jwks_refresh_is_rate_limited(issuer_factory, provider):
    """Tokens with made-up kids trigger at most one JWKS fetch per min_refresh interval."""
    h = await issuer_factory(jwks_min_refresh="1h")
    await h.issuer.issue(provider.mint(), pubkey(), source_address="x")
    before = provider.jwks_fetches
    for i in range(5):
        token = provider.mint(headers={"kid": f"made-up-{i}"})
        with pytest.raises(IssueRefused):
            await h.issuer.issue(token, pubkey(), source_address="x")
    assert provider.jwks_fetches - before <= 1


async def test_alg_none_is_refused(harness, provider):
    """alg=none (with or without a signature part) is never accepted."""
    claims = provider.claims()
    header = {"alg": "none", "kid": provider.keys[0].kid}
    err = await refused(harness, f"{b64(header)}.{b64(claims)}.")
    assert "not a signed JWT" in err.reason
    err = await refused(harness, f"{b64(header)}.{b64(claims)}.{b64(b'x')}")
    assert "algorithm 'none' is not allowed" in err.reason


async def test_hs256_with_public_key_as_secret_is_refused(harness, provider):
    """The classic key-confusion attack (HMAC keyed with the RSA public key) is refused."""
    public_pem = provider.keys[0].private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{b64({'alg': 'HS256', 'kid': provider.keys[0].kid})}.{b64(provider.claims())}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    err = await refused(harness, f"{signing_input}.{b64(mac)}")
    assert "algorithm 'HS256' is not allowed" in err.reason


async def test_replayed_token_is_refused(harness, provider):
    """The same token works once; a second use within its lifetime is refused."""
    token = provider.mint()
    await harness.issuer.issue(token, pubkey(), source_address="x")
    err = await refused(harness, token)
    assert err.reason == "token was already used"


async def test_replay_without_jti_uses_token_hash(harness, provider):
    """Tokens without jti/uti are deduplicated by hash; a re-encoded signature does not help."""
    token = provider.mint(jti=None)
    await harness.issuer.issue(token, pubkey(), source_address="x")
    err = await refused(harness, token)
    assert err.reason == "token was already used"
    # The last base64 character of a 256-byte signature carries 4 unused bits: flip one.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = token[:-1] + alphabet[alphabet.index(token[-1]) ^ 1]
    assert twin != token
    err = await refused(harness, twin)  # refused as replay or as non-canonical encoding
    assert err.status == 401


async def test_malformed_tokens_are_refused(harness):
    """Garbage, bad base64 and non-object JSON are refused as malformed."""
    for token in ("abc", "a.b", "!!!.@@@.###", f"{b64(b'[1]')}.{b64(b'[2]')}.c"):
        err = await refused(harness, token)
        assert err.status == 401


async def test_client_allowlist(issuer_factory, provider):
    """With clients configured, only tokens whose azp/appid is listed are accepted."""
    h = await issuer_factory(
        issuers=[
            {
                "issuer": provider.issuer_v2,
                "audience": "api://bastion",
                "tenants": [provider.tenant],
                "clients": ["allowed-app"],
            }
        ]
    )
    await h.issuer.issue(provider.mint(azp="allowed-app"), pubkey(), source_address="x")
    with pytest.raises(IssueRefused, match="client application"):
        await h.issuer.issue(provider.mint(azp="other-app"), pubkey(), source_address="x")
