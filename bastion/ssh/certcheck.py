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
) -> Identity:
    """Return the identity a valid user certificate proves, or raise CertificateRefused.

    Checks, in order: signed by a trusted user CA (signature verified), user (not host)
    certificate, validity window with ``clock_skew`` allowance, total validity at most
    ``max_validity``, only understood critical options, ``source-address``, at least one
    principal, not revoked. Access to a target is decided later against the principals.
    """
    ca_blob = _wire_blob(cert.signature_key())
    ca = next((c for c in trusted if c.public_bytes == ca_blob), None)
    if ca is None:
        raise CertificateRefused("certificate is not signed by a trusted user CA")
    try:
        cert.verify_cert_signature()
    except (InvalidSignature, ValueError, TypeError):
        raise CertificateRefused("certificate signature is invalid") from None
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
    )


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
