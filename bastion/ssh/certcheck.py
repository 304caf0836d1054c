"""Pure checks of an agent's OpenSSH user certificate.

asyncssh validates certificates against the SSH user name, but here the user name is a *target*,
not a principal, and asyncssh has no clock-skew allowance or maximum validity. So the bastion
decodes the certificate itself (cryptography's public OpenSSH certificate API) and decides here.
Every refusal carries a short reason that is safe to show to the client.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncssh
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import SSHCertificate, SSHCertificateType

from bastion.model import Identity

# Critical options we understand; any other critical option means "refuse" (OpenSSH does the same).
_KNOWN_CRITICAL = {b"force-command", b"source-address", b"verify-required"}

# Signature algorithms accepted for the CA's signature on a certificate and for the userauth
# signature. SHA-1 RSA (``ssh-rsa``) is not among them, as in OpenSSH >= 8.8; ``[auth]
# signature_algorithms`` may only narrow this set (never add to it).
SECURE_SIGNATURE_ALGORITHMS = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
_SK_PREFIX = b"sk-"
# FIDO authenticator flags in an sk-* signature (OpenSSH PROTOCOL.u2f).
SK_USER_PRESENCE = 0x01
SK_USER_VERIFICATION = 0x04


class CertificateRefused(Exception):
    """The certificate may not log in; ``str(exc)`` is a reason safe to show to the client."""


@dataclass(frozen=True)
class TrustedCA:
    fingerprint: str
    public_bytes: bytes  # OpenSSH wire encoding of the CA public key

    @classmethod
    def from_key(cls, key: asyncssh.SSHKey) -> TrustedCA:
        return cls(fingerprint=key.get_fingerprint("sha256"), public_bytes=key.public_data)


def _wire_blob(public_key: object) -> bytes:
    line = public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return base64.b64decode(line.split()[1])


def decode_certificate(algorithm: bytes, blob: bytes) -> SSHCertificate:
    """Parse an OpenSSH certificate blob as sent in SSH userauth; raise CertificateRefused."""
    if algorithm.startswith(_SK_PREFIX):
        # Neither cryptography nor asyncssh (without fido2) decodes sk-* certificates; say so
        # rather than "unusable". check_sk_flags is ready for when they do.
        raise CertificateRefused(
            "security-key (sk-*) certificates are not supported by this bastion yet; use an"
            " ed25519, ecdsa or rsa key"
        )
    try:
        cert = serialization.load_ssh_public_identity(algorithm + b" " + base64.b64encode(blob))
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CertificateRefused(f"not a usable OpenSSH certificate ({exc})") from None
    if not isinstance(cert, SSHCertificate):
        raise CertificateRefused("plain public keys are not accepted; use a CA-signed certificate")
    return cert


def check_certificate(
    cert: SSHCertificate,
    *,
    trusted: Sequence[TrustedCA],
    now: float,
    clock_skew: float,
    max_validity: float,
    peer_ip: str,
    is_revoked: Callable[[int, str], bool] | None = None,
    blob: bytes | None = None,
    signature_algorithms: Sequence[str] = SECURE_SIGNATURE_ALGORITHMS,
) -> Identity:
    """Return the identity a valid user certificate proves, or raise CertificateRefused.

    Checks, in order: signed by a trusted user CA (signature verified), user (not host)
    certificate, validity window with ``clock_skew`` allowance, total validity at most
    ``max_validity``, only understood critical options, ``source-address``, at least one
    principal, not revoked. Access to a target is decided later against the principals.
    ``blob`` (the certificate as sent) lets the CA's signature algorithm be checked against
    ``signature_algorithms``; without it the certificate is refused (fail closed).
    """
    ca_blob = _wire_blob(cert.signature_key())
    ca = next((c for c in trusted if c.public_bytes == ca_blob), None)
    if ca is None:
        raise CertificateRefused("certificate is not signed by a trusted user CA")
    try:
        cert.verify_cert_signature()
    except (InvalidSignature, ValueError, TypeError):
        raise CertificateRefused("certificate signature is invalid") from None
    ca_alg = ca_signature_algorithm(blob, ca_blob) if blob is not None else None
    if ca_alg is None:
        raise CertificateRefused("cannot read the CA's signature algorithm from the certificate")
    if ca_alg not in signature_algorithms:
        raise CertificateRefused(refused_algorithm("the CA signed this certificate", ca_alg))
    if cert.type != SSHCertificateType.USER:
        raise CertificateRefused("a host certificate cannot be used as a user certificate")
    if now + clock_skew < cert.valid_after:
        raise CertificateRefused("certificate is not yet valid")
    if now - clock_skew >= cert.valid_before:
        raise CertificateRefused("certificate has expired")
    if cert.valid_before - cert.valid_after > max_validity:
        raise CertificateRefused(
            f"certificate validity exceeds the maximum of {int(max_validity)}s"
        )
    unknown = set(cert.critical_options) - _KNOWN_CRITICAL
    if unknown:
        names = ", ".join(sorted(o.decode("ascii", "replace") for o in unknown))
        raise CertificateRefused(f"certificate has unsupported critical options: {names}")
    source = _check_source_address(cert.critical_options.get(b"source-address"), peer_ip)
    try:
        principals = tuple(p.decode("utf-8") for p in cert.valid_principals)
        key_id = cert.key_id.decode("utf-8")
    except UnicodeDecodeError:
        raise CertificateRefused("certificate key ID or principals are not UTF-8") from None
    if not principals:
        # An empty principal list means "any user" to OpenSSH; a bastion must not accept that.
        raise CertificateRefused("certificate names no principals")
    if is_revoked is not None and is_revoked(cert.serial, key_id):
        raise CertificateRefused("certificate has been revoked")
    verify_required = b"verify-required" in cert.critical_options
    if verify_required and not _wire_type(blob).startswith(_SK_PREFIX):
        # OpenSSH checks user verification only on FIDO keys and lets other keys through;
        # a bastion that cannot check what the CA asked for refuses instead.
        raise CertificateRefused(
            "certificate requires FIDO user verification (verify-required) but its key is not"
            " a security key (sk-*); ask for a certificate without verify-required"
        )
    force = cert.critical_options.get(b"force-command")
    return Identity(
        key_id=key_id,
        serial=cert.serial,
        principals=principals,
        ca_fingerprint=ca.fingerprint,
        valid_after=cert.valid_after,
        valid_before=cert.valid_before,
        force_command=force.decode("utf-8", "replace") if force is not None else None,
        source_address=source,
        extensions=frozenset(e.decode("ascii", "replace") for e in cert.extensions),
        verify_required=verify_required,
    )


def _read_string(data: bytes, offset: int) -> tuple[bytes, int] | None:
    if offset + 4 > len(data):
        return None
    n = int.from_bytes(data[offset : offset + 4], "big")
    end = offset + 4 + n
    return (data[offset + 4 : end], end) if end <= len(data) else None


def _wire_type(blob: bytes | None) -> bytes:
    """The key type a wire blob starts with (b"" when unreadable)."""
    first = _read_string(blob or b"", 0)
    return first[0] if first is not None else b""


def ca_signature_algorithm(blob: bytes, ca_blob: bytes) -> str | None:
    """The algorithm of the CA's signature on ``blob`` (an OpenSSH certificate), or None.

    The signature is the last field, right after the CA key: ``string ca_key, string
    signature`` where ``signature`` is ``string algorithm, string sig``; the layout is checked
    exactly (any slack or overlap: None, and the caller refuses).
    """
    field = len(ca_blob).to_bytes(4, "big") + ca_blob
    at = blob.rfind(field)
    if at < 0:
        return None
    sig = _read_string(blob, at + len(field))
    if sig is None or sig[1] != len(blob):
        return None
    alg = _read_string(sig[0], 0)
    if alg is None:
        return None
    try:
        return alg[0].decode("ascii")
    except UnicodeDecodeError:
        return None


def userauth_signature_algorithm(signature: bytes) -> str | None:
    """The algorithm named in a userauth signature blob, or None when unreadable."""
    alg = _read_string(signature, 0)
    if alg is None:
        return None
    try:
        return alg[0].decode("ascii")
    except UnicodeDecodeError:
        return None


def refused_algorithm(what: str, alg: str) -> str:
    if alg == "ssh-rsa":
        return (f"{what} with ssh-rsa (RSA with SHA-1), which this bastion refuses as OpenSSH"
                " >= 8.8 does; use rsa-sha2-256 or rsa-sha2-512")
    return f"{what} with {alg}, which this bastion does not accept"


def check_sk_flags(identity: Identity, key_type: bytes, signature: bytes) -> str | None:
    """For a FIDO (sk-*) key, check the authenticator flags in the userauth signature as sshd
    does: user presence unless the certificate has ``no-touch-required``, user verification
    when it has ``verify-required``. Returns the refusal reason, or None."""
    if not key_type.startswith(_SK_PREFIX):
        return None
    alg = _read_string(signature, 0)
    sig = _read_string(signature, alg[1]) if alg is not None else None
    if sig is None or sig[1] + 5 != len(signature):
        return "the security-key signature is malformed"
    flags = signature[sig[1]]
    if not identity.permits("no-touch-required") and not flags & SK_USER_PRESENCE:
        return "the security key was not touched (user presence is required)"
    if identity.verify_required and not flags & SK_USER_VERIFICATION:
        return "the certificate requires user verification (PIN or biometric) on the security key"
    return None


def parse_signature_algorithms(auth: object, where: str = "auth.signature_algorithms"
                               ) -> tuple[str, ...]:
    """``[auth] signature_algorithms``: a subset of SECURE_SIGNATURE_ALGORITHMS (stricter only)."""
    from bastion.errors import ConfigError

    if not isinstance(auth, dict) or "signature_algorithms" not in auth:
        return SECURE_SIGNATURE_ALGORITHMS
    value = auth["signature_algorithms"]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(where, "expected a non-empty list of signature algorithm names")
    extra = [v for v in value if v not in SECURE_SIGNATURE_ALGORITHMS]
    if extra:
        raise ConfigError(
            where,
            f"{', '.join(extra)} cannot be enabled (only a subset of "
            f"{', '.join(SECURE_SIGNATURE_ALGORITHMS)} may be listed)",
        )
    return tuple(value)


def _check_source_address(value: bytes | None, peer_ip: str) -> str:
    if value is None:
        return ""
    text = value.decode("ascii", "replace")
    try:
        networks = [ipaddress.ip_network(n.strip(), strict=False) for n in text.split(",")]
        ip = ipaddress.ip_address(peer_ip)
    except ValueError:
        raise CertificateRefused("certificate source-address option is malformed") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not any(ip in net for net in networks):
        raise CertificateRefused(f"connections from {peer_ip} are not allowed by this certificate")
    return text
