"""The bastion's Ed25519 recording key: created once (0600), public half exported beside it."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from bastion.recording.errors import RecordingError

KEY_FILE = "recording_key"
PUBLIC_SUFFIX = ".pub"
_COMMENT = "bastion-recording"


def _key_id(raw_public: bytes) -> str:
    """OpenSSH-style fingerprint of the raw public key, used to name the signer in seals."""
    digest = hashlib.sha256(raw_public).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


class RecordingPublicKey:
    """A trusted verification key (the ``recording_key.pub`` file)."""

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key
        self._raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = _key_id(self._raw)

    @classmethod
    def from_openssh(cls, text: str) -> RecordingPublicKey:
        try:
            key = serialization.load_ssh_public_key(text.strip().encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise RecordingError(f"not an OpenSSH Ed25519 public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise RecordingError("the recording key must be an Ed25519 key")
        return cls(key)

    @classmethod
    def load(cls, path: Path) -> RecordingPublicKey:
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise RecordingError(f"cannot read public key {path}: {exc}") from None
        return cls.from_openssh(text)

    def openssh(self) -> str:
        body = self._key.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ).decode("ascii")
        return f"{body} {_COMMENT}\n"

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            self._key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


class RecordingKey:
    """The private signing key; ``load_or_create`` is safe when several workers start at once."""

    def __init__(self, private: Ed25519PrivateKey, path: Path | None = None) -> None:
        self._private = private
        self.path = path
        self.public = RecordingPublicKey(private.public_key())
        self.key_id = self.public.key_id

    @classmethod
    def generate(cls) -> RecordingKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, state_dir: Path, name: str = KEY_FILE) -> RecordingKey:
        """Load ``state_dir/name`` or create it (mode 0600) and (re)write ``name.pub`` beside it."""
        path = Path(state_dir) / name
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not path.exists():
                cls._create(path)
            key = cls._load(path)
            pub_path = path.with_name(path.name + PUBLIC_SUFFIX)
            text = key.public.openssh()
            current = pub_path.read_text(encoding="ascii") if pub_path.exists() else None
            if current != text:
                _atomic_write(pub_path, text.encode("ascii"), 0o644)
        except OSError as exc:
            raise RecordingError(f"cannot create or read recording key {path}: {exc}") from None
        return key

    @staticmethod
    def _create(path: Path) -> None:
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            # link() is atomic and refuses to replace: a worker that loses the race keeps the
            # winner's key instead of overwriting it.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink()

    @classmethod
    def _load(cls, path: Path) -> RecordingKey:
        mode = path.stat().st_mode
        if mode & 0o077:
            raise RecordingError(
                f"recording key {path} is readable by group or others; chmod 600 it"
            )
        try:
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise RecordingError(f"recording key {path} is not a valid key: {exc}") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise RecordingError(f"recording key {path} is not an Ed25519 key")
        return cls(private, path)

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_trusted_keys(paths: Iterable[Path]) -> Sequence[RecordingPublicKey]:
    """Read every trusted public key; at least one is needed to verify anything."""
    keys = [RecordingPublicKey.load(p) for p in paths]
    if not keys:
        raise RecordingError("no trusted recording public key given")
    return keys
