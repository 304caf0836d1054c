"""POST /v1/certificates on a real aiohttp HTTPS server: contract, limits, weak keys."""

from __future__ import annotations

import warnings

import aiohttp
import asyncssh
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, rsa


def ed25519_line() -> str:
    return asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode()


def openssh_line(private) -> str:
    return private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


def dsa_line() -> str:
    with warnings.catch_warnings():  # cryptography deprecates DSA; that is the point here
        warnings.simplefilter("ignore")
        return openssh_line(dsa.generate_private_key(1024))


async def post(url, tls, *, token=None, body=None, raw=None):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    data = raw if raw is not None else None
    async with aiohttp.ClientSession() as s, s.post(
        url + "/v1/certificates",
        headers=headers,
        json=body if raw is None else None,
        data=data,
        ssl=tls.client_context(),
    ) as resp:
        return resp.status, await resp.json()


async def test_contract_success(bastion_url, provider, tls):
    """The endpoint answers certificate, serial and an RFC 3339 valid_before."""
    status, answer = await post(
        bastion_url, tls, token=provider.mint(), body={"public_key": ed25519_line()}
    )
    assert status == 200, answer
    assert answer["certificate"].startswith("ssh-ed25519-cert-v01@openssh.com ")
    assert isinstance(answer["serial"], int) and answer["serial"] > 0
    assert answer["valid_before"].endswith("Z") and "T" in answer["valid_before"]
    assert answer["principals"] == ["agents"]


@pytest.mark.parametrize(
    ("make_key", "reason"),
    [
        (lambda: openssh_line(rsa.generate_private_key(65537, 1024)), "at least 2048 bits"),
        (lambda: dsa_line(), "ssh-dss is not allowed"),
        (lambda: "ssh-foo AAAAB3NzaC1yc2E=", "not a valid OpenSSH public key"),
        (lambda: "not a key", "not a valid OpenSSH public key"),
    ],
)
async def test_weak_or_unknown_keys_are_refused(bastion_url, provider, tls, make_key, reason):
    """RSA < 2048, DSA and unknown key types get 400 with a reason."""
    status, answer = await post(
        bastion_url, tls, token=provider.mint(), body={"public_key": make_key()}
    )
    assert status == 400 and reason in answer["error"]


async def test_rsa_2048_is_accepted(bastion_url, provider, tls):
    """RSA keys of 2048 bits are signed."""
    line = openssh_line(rsa.generate_private_key(65537, 2048))
    status, answer = await post(bastion_url, tls, token=provider.mint(), body={"public_key": line})
    assert status == 200 and answer["certificate"].startswith("ssh-rsa-cert-v01@openssh.com ")


async def test_oversized_token_is_refused(bastion_url, provider, tls, harness):
    """A token over 16 KiB is refused with 413 before any parsing, and audited."""
    status, answer = await post(
        bastion_url, tls, token="a" * (17 * 1024), body={"public_key": ed25519_line()}
    )
    assert status == 413 and "larger than" in answer["error"]
    assert harness.audit.kinds()[-1] == "cert_refused"


async def test_oversized_body_is_refused(bastion_url, provider, tls):
    """A body over 16 KiB is refused with 413."""
    status, answer = await post(
        bastion_url, tls, token=provider.mint(), body={"public_key": "x" * 20000}
    )
    assert status == 413 and "request body is larger" in answer["error"]


async def test_malformed_requests(bastion_url, provider, tls):
    """No bearer token -> 401; malformed JSON or shape -> 400; all with a JSON error."""
    status, answer = await post(bastion_url, tls, body={"public_key": ed25519_line()})
    assert status == 401 and "Bearer" in answer["error"]
    status, answer = await post(bastion_url, tls, token=provider.mint(), raw=b"{not json")
    assert status == 400 and "not valid JSON" in answer["error"]
    status, answer = await post(bastion_url, tls, token=provider.mint(), body=["x"])
    assert status == 400 and "public_key" in answer["error"]
    status, answer = await post(
        bastion_url, tls, token="e30.e30.!!", body={"public_key": ed25519_line()}
    )
    assert status == 401 and "token" in answer["error"]


async def test_issuer_unreachable_fails_closed(issuer_factory, provider, tls):
    """When the issuer's keys cannot be fetched the request is refused with 503."""
    from bastion.identity.issuer import IssueRefused

    h = await issuer_factory(
        issuers=[
            {
                "issuer": provider.issuer_v2,
                "audience": "api://bastion",
                "discovery_url": "https://127.0.0.1:9/.well-known/openid-configuration",
            }
        ]
    )
    with pytest.raises(IssueRefused) as err:
        await h.issuer.issue(provider.mint(), ed25519_line(), source_address="x")
    assert err.value.status == 503 and "cannot check the token now" in err.value.reason


async def test_token_just_under_limit_reaches_validation(bastion_url, provider, tls):
    """With SERVER_HANDLER_ARGS a 15 KiB token reaches validation (401, not a transport 400)."""
    big = provider.mint(padding="p" * (11 * 1024))
    assert 14 * 1024 < len(big) < 16 * 1024
    status, answer = await post(bastion_url, tls, token=big, body={"public_key": ed25519_line()})
    assert status == 200, answer
