"""The user certificate authority: create the key, load it safely, sign agent keys.

The agent key policy lives here too, since it decides what the CA is willing to sign:
Ed25519, ECDSA (NIST curves), their FIDO ``sk-`` variants and RSA of at least 2048 bits.
DSA, short RSA, certificates and anything unknown are refused.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncssh
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bastion.errors import BastionError

MIN_RSA_BITS = 2048
MAX_PUBLIC_KEY_CHARS = 4096  # an RSA-16384 line is ~2.8k characters
_ACCEPTED_ALGORITHMS = frozenset(
    {
        b"ssh-ed25519",
        b"ecdsa-sha2-nistp256",
        b"ecdsa-sha2-nistp384",
        b"ecdsa-sha2-nistp521",
        b"sk-ssh-ed25519@openssh.com",
        b"sk-ecdsa-sha2-nistp256@openssh.com",
        b"ssh-rsa",
    }
)


class KeyRefused(Exception):
    """The agent's public key is not acceptable; ``str(exc)`` is safe to show the caller."""


def check_agent_key(line: object) -> asyncssh.SSHKey:
    """Parse one OpenSSH public key line and apply the key policy; raise KeyRefused."""
    if not isinstance(line, str) or not line.strip():
        raise KeyRefused("public_key must be an OpenSSH public key line")
    if len(line) > MAX_PUBLIC_KEY_CHARS or "\n" in line.strip() or "\r" in line:
        raise KeyRefused("public_key must be a single OpenSSH public key line")
    kind = line.split(None, 1)[0]
    if kind.endswith("-cert-v01@openssh.com"):
        raise KeyRefused("public_key is a certificate; send the plain public key")
    try:
        key = asyncssh.import_public_key(line.strip())
    except (asyncssh.KeyImportError, ValueError, TypeError):
        raise KeyRefused(f"public_key is not a valid OpenSSH public key ({kind[:40]!r})") from None
    algorithm: bytes = key.algorithm
    if algorithm not in _ACCEPTED_ALGORITHMS:
        raise KeyRefused(f"key type {algorithm.decode('ascii', 'replace')} is not allowed")
    if algorithm == b"ssh-rsa":
        public = serialization.load_ssh_public_key(key.export_public_key("openssh"))
        if not isinstance(public, rsa.RSAPublicKey) or public.key_size < MIN_RSA_BITS:
            bits = public.key_size if isinstance(public, rsa.RSAPublicKey) else 0
            raise KeyRefused(f"RSA keys need at least {MIN_RSA_BITS} bits (got {bits})")
    return key


def init_ca(path: Path) -> Path:
    """Create an Ed25519 CA key at ``path`` (0600) and ``path.pub``; refuse to overwrite."""
    public = public_key_path(path)
    for existing in (path, public):
        if existing.exists():
            raise BastionError(f"{existing} already exists; refusing to overwrite a CA key")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = asyncssh.generate_private_key("ssh-ed25519", comment="bastion user CA")
    private = key.export_private_key("openssh")
    # O_EXCL: a concurrent init (or a file appearing since the check) is refused, not replaced.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BastionError(f"{path} already exists; refusing to overwrite a CA key") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(private)
    try:
        fd = os.open(public, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        path.unlink()
        raise BastionError(f"{public} already exists; refusing to overwrite a CA key") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.export_public_key("openssh"))
    return public


def public_key_path(path: Path) -> Path:
    return path.with_name(path.name + ".pub")


@dataclass(frozen=True)
class CertificateRequest:
    """Everything that goes into one certificate; the CA signs exactly this."""

    public_key: asyncssh.SSHKey
    key_id: str
    principals: tuple[str, ...]
    serial: int
    valid_after: int
    valid_before: int
    source_address: tuple[str, ...] = ()


class CertificateAuthority:
    """Holds the CA private key and signs user certificates."""

    def __init__(self, key: asyncssh.SSHKey) -> None:
        self._key = key

    @classmethod
    def load(cls, path: Path) -> CertificateAuthority:
        """Load the CA key; refuse a key readable by group or others."""
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise BastionError(f"CA key {path} not found; run 'bastion ca init'") from None
        if mode & 0o077:
            raise BastionError(f"CA key {path} is readable by group or others; chmod 600 it")
        try:
            return cls(asyncssh.read_private_key(str(path)))
        except (OSError, asyncssh.KeyImportError, ValueError) as exc:
            raise BastionError(f"cannot read CA key {path}: {exc}") from None

    @property
    def public_key_line(self) -> str:
        line: bytes = self._key.export_public_key("openssh")
        return line.decode("ascii").strip()

    def sign(self, req: CertificateRequest) -> str:
        """Return the OpenSSH certificate line (``<type>-cert-v01@openssh.com <base64>``).

        Only ``permit-pty`` is granted: the bastion refuses forwarding anyway, and a certificate
        that does not ask for it cannot be abused elsewhere if the CA is trusted more widely.
        """
        source: Sequence[str] | None = list(req.source_address) or None
        cert = self._key.generate_user_certificate(
            req.public_key,
            req.key_id,
            serial=req.serial,
            principals=list(req.principals),
            valid_after=req.valid_after,
            valid_before=req.valid_before,
            source_address=source,
            permit_x11_forwarding=False,
            permit_agent_forwarding=False,
            permit_port_forwarding=False,
            permit_pty=True,
            permit_user_rc=False,
            comment=None,
        )
        data: bytes = cert.export_certificate("openssh")
        return data.decode("ascii").strip()
