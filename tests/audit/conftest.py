"""Fixtures shared by the audit tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A minimal valid bastion config whose state dir (and audit DB) is ``tmp_path/state``."""
    ca = Ed25519PrivateKey.generate().public_key()
    (tmp_path / "ca.pub").write_bytes(
        ca.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    path = tmp_path / "bastion.toml"
    path.write_text('[server]\nstate_dir = "state"\n[auth]\ntrusted_user_ca_keys = ["ca.pub"]\n')
    return path
