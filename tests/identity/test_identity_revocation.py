"""Revocation: the CLI writes, RevocationList sees it at once, and fails closed."""

from __future__ import annotations

import asyncio
import os
import stat

import asyncssh
import pytest

from bastion.cli import main
from bastion.identity.issuer import IssueRefused
from bastion.identity.revocation import RevocationList


def pubkey() -> str:
    return asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode()


def write_config(directory, state_dir) -> str:
    path = directory / "bastion.toml"
    path.write_text(f'[server]\nstate_dir = "{state_dir}"\n[ca]\nkey = "user_ca"\n')
    return str(path)


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_revoke_by_serial_seen_by_is_revoked(harness, provider, tmp_path):
    """After 'bastion cert revoke --serial N' the next is_revoked call reports it."""
    issued = await harness.issuer.issue(provider.mint(), pubkey(), source_address="x")
    other = await harness.issuer.issue(provider.mint(), pubkey(), source_address="x")
    revocations = RevocationList.open(harness.state_dir / "identity.db")
    assert not revocations.is_revoked(issued.serial, issued.key_id)
    config = write_config(tmp_path, harness.state_dir)
    assert await cli("cert", "revoke", "--serial", str(issued.serial), "--config", config) == 0
    assert revocations.is_revoked(issued.serial, issued.key_id)
    assert not revocations.is_revoked(other.serial, "someone/else")
    revocations.close()


async def test_revoke_by_key_id_matches_stable_part(harness, provider, tmp_path):
    """Revoking 'tenant/oid' refuses its certificates whatever the display name, and new ones."""
    issued = await harness.issuer.issue(provider.mint(), pubkey(), source_address="x")
    stable = issued.key_id.split(" ")[0]
    config = write_config(tmp_path, harness.state_dir)
    assert await cli("cert", "revoke", "--key-id", stable, "--config", config) == 0
    revocations = harness.issuer.revocations
    assert revocations.is_revoked(issued.serial, issued.key_id)
    assert revocations.is_revoked(99999, stable + " (Renamed App)")
    with pytest.raises(IssueRefused) as err:
        await harness.issuer.issue(provider.mint(), pubkey(), source_address="x")
    assert err.value.status == 403 and "revoked" in err.value.reason


async def test_unreadable_store_counts_as_revoked(tmp_path):
    """If the database disappears or is corrupt, every certificate is reported revoked."""
    db = tmp_path / "identity.db"
    revocations = RevocationList.open(db)
    assert not revocations.is_revoked(1, "a/b")
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"identity.db{suffix}").unlink(missing_ok=True)
    assert revocations.is_revoked(1, "a/b")
    db.write_bytes(b"this is not a sqlite database" * 100)
    assert revocations.is_revoked(1, "a/b")
    revocations.close()


async def test_cert_list_and_revoke_cli_errors(harness, provider, tmp_path, capsys):
    """'cert list' shows issued certificates and marks revoked ones; bad config is one line."""
    issued = await harness.issuer.issue(provider.mint(), pubkey(), source_address="x")
    config = write_config(tmp_path, harness.state_dir)
    await cli("cert", "revoke", "--serial", str(issued.serial), "--config", config)
    capsys.readouterr()
    assert await cli("cert", "list", "--config", config) == 0
    out = capsys.readouterr().out
    assert f"{issued.serial}\t" in out and "REVOKED" in out
    assert await cli("cert", "revoke", "--serial", "1", "--config", str(tmp_path / "no.toml")) == 3
    assert "file not found" in capsys.readouterr().err


async def test_ca_init_creates_0600_key_and_refuses_overwrite(tmp_path, capsys):
    """'bastion ca init' writes the CA key 0600 plus .pub, and never overwrites them."""
    config = write_config(tmp_path, tmp_path / "state")
    assert await cli("ca", "init", "--config", config) == 0
    key = tmp_path / "user_ca"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert (tmp_path / "user_ca.pub").read_text().startswith("ssh-ed25519 ")
    before = key.read_bytes()
    assert await cli("ca", "init", "--config", config) == 3
    assert "refusing to overwrite" in capsys.readouterr().err
    assert key.read_bytes() == before
