"""Issuance end to end against the local OIDC provider: token -> certificate ssh-keygen reads."""

from __future__ import annotations

import asyncio
import subprocess
import time

import asyncssh
import pytest

from bastion.identity.issuer import IssueRefused


def agent_public_key() -> str:
    key = asyncssh.generate_private_key("ssh-ed25519")
    return key.export_public_key("openssh").decode().strip()


def fingerprint(path) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(path)], capture_output=True, text=True)
    return out.stdout.split()[1]


def keygen_list(cert_line: str, tmp_path) -> str:
    path = tmp_path / "agent-cert.pub"
    path.write_text(cert_line + "\n")
    out = subprocess.run(["ssh-keygen", "-L", "-f", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


async def test_valid_token_yields_certificate_ssh_keygen_accepts(harness, provider, tmp_path):
    """A valid Entra v2 token gets a certificate with the granted principals, key ID, 15m life."""
    issued = await harness.issuer.issue(
        provider.mint(), agent_public_key(), source_address="127.0.0.1"
    )
    listing = keygen_list(issued.certificate, tmp_path)
    assert "Type: ssh-ed25519-cert-v01@openssh.com user certificate" in listing
    assert f"Serial: {issued.serial}" in listing
    assert "agents" in listing.split("Principals:")[1].split("Critical")[0]
    oid = "0b5e2b8e-8f6a-4d1e-9d7e-3c2f1a0b9c8d"
    assert f'Key ID: "{provider.tenant}/{oid} (Build Agent)"' in listing
    assert "permit-pty" in listing and "permit-port-forwarding" not in listing
    assert issued.valid_before - time.time() == pytest.approx(900, abs=5)
    ca_fp = fingerprint(harness.ca_public)
    assert ca_fp in listing
    kind, fields = harness.audit.events[-1]
    assert kind == "cert_issued"
    assert fields["serial"] == issued.serial and fields["principals"] == ["agents"]
    assert "token" not in str(fields)


async def test_v1_token_format_and_multiple_grants(harness, provider):
    """An Entra v1 token (sts-style issuer, appid, ver 1.0) is accepted and grants union."""
    token = provider.mint(
        iss=provider.issuer_v1, ver="1.0", azp=None, appid="app-1", roles=["Bastion.Admin"]
    )
    issued = await harness.issuer.issue(token, agent_public_key(), source_address="10.0.0.1")
    assert issued.principals == ("admins", "agents")


async def test_serials_unique_under_concurrency(harness, provider):
    """Concurrent issuance gives distinct, recorded serials."""
    tokens = [provider.mint() for _ in range(8)]
    results = await asyncio.gather(
        *(harness.issuer.issue(t, agent_public_key(), source_address="::1") for t in tokens)
    )
    serials = [r.serial for r in results]
    assert len(set(serials)) == 8
    recorded = await harness.issuer._store.certificates(20)
    assert {c.serial for c in recorded} == set(serials)


async def test_source_address_option_and_validity_from_config(issuer_factory, provider, tmp_path):
    """Configured source-address and validity end up in the certificate."""
    h = await issuer_factory(cert_validity="5m", source_address=["10.1.0.0/16"])
    issued = await h.issuer.issue(provider.mint(), agent_public_key(), source_address="x")
    listing = keygen_list(issued.certificate, tmp_path)
    assert "source-address 10.1.0.0/16" in listing
    assert issued.valid_before - time.time() == pytest.approx(300, abs=5)


async def test_no_grant_means_no_certificate(harness, provider):
    """A valid token whose claims match no grant is refused with 403 and audited."""
    with pytest.raises(IssueRefused) as err:
        await harness.issuer.issue(
            provider.mint(roles=["Other"]), agent_public_key(), source_address="1.2.3.4"
        )
    assert err.value.status == 403
    kind, fields = harness.audit.events[-1]
    assert kind == "cert_refused" and fields["source_address"] == "1.2.3.4"
    assert "no grant" in str(fields["reason"])


async def test_audit_failure_withholds_certificate(harness, provider):
    """If the cert_issued event cannot be recorded the caller gets 503, not a certificate."""
    harness.audit.fail = True
    with pytest.raises(IssueRefused) as err:
        await harness.issuer.issue(provider.mint(), agent_public_key(), source_address="x")
    assert err.value.status == 503


async def test_a_grant_with_several_claims_needs_all_of_them(issuer_factory, provider):
    """`claims = {repository, ref, environment}`: a token from another branch or environment of
    the same repository gets nothing; a list of values allows any one of them."""
    h = await issuer_factory(grants=[{
        "claims": {"repository": "contoso/app", "ref": ["refs/heads/main", "refs/tags/v1"],
                   "environment": "prod"},
        "principals": ["deployers"],
    }])  # fmt: skip
    good = {"repository": "contoso/app", "ref": "refs/heads/main", "environment": "prod"}
    issued = await h.issuer.issue(provider.mint(**good), agent_public_key(), source_address="x")
    assert issued.principals == ("deployers",)
    tagged = await h.issuer.issue(provider.mint(**{**good, "ref": "refs/tags/v1"}),
                                  agent_public_key(), source_address="x")
    assert tagged.principals == ("deployers",)
    for change in ({"ref": "refs/heads/feature"}, {"environment": "dev"},
                   {"repository": "contoso/other"}, {"environment": None}):
        with pytest.raises(IssueRefused) as err:
            await h.issuer.issue(provider.mint(**{**good, **change}), agent_public_key(),
                                 source_address="x")
        assert err.value.status == 403, change


async def test_grant_config_errors_are_one_line(issuer_factory):
    from bastion.errors import ConfigError

    for grant, words in (
        ({"principals": ["a"]}, "needs claim/value or claims"),
        ({"claims": {"ref": []}, "principals": ["a"]}, "claims.ref"),
        ({"claims": {"ref": 3}, "principals": ["a"]}, "claims.ref"),
        ({"claim": "ref", "value": "x", "claims": {"ref": "y"}, "principals": ["a"]},
         "already set"),
    ):
        with pytest.raises(ConfigError, match=words):
            await issuer_factory(grants=[grant])
