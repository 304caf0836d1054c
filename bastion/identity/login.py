"""``bastion login``: token -> ephemeral Ed25519 key -> certificate from the bastion -> files.

Writes ``KEY``, ``KEY.pub``, ``KEY-cert.pub`` (all 0600, each replaced atomically), the
bastion's host key as ``KEY.known_hosts`` (learnt over the TLS connection that authenticated the
bastion for the token exchange) and an ssh_config snippet (default ``KEY.ssh_config``) to
``Include`` from ``~/.ssh/config``, so that ``ssh web-01.bastion`` logs in to target ``web-01``
through the bastion with its host key checked, on a fresh runner too.
"""

from __future__ import annotations

import json
import os
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncssh
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import SSHCertificate

from bastion.errors import BastionError
from bastion.identity.tokensource import TokenSource

REQUEST_TIMEOUT = 30.0
MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True)
class SshSettings:
    host: str
    port: int = 22
    suffix: str = ".bastion"
    targets: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoginResult:
    key: Path
    certificate: Path
    ssh_config: Path
    serial: int
    valid_before: int
    principals: tuple[str, ...]
    targets: tuple[str, ...]
    known_hosts: Path | None = None  # None: the bastion sent no host key (older bastion)


def cert_path(key: Path) -> Path:
    return key.with_name(key.name + "-cert.pub")


def remaining_validity(key: Path, now: float | None = None) -> float:
    """Seconds the certificate next to ``key`` stays valid (0 when absent or unreadable)."""
    try:
        cert = serialization.load_ssh_public_identity(cert_path(key).read_bytes())
    except (OSError, ValueError, TypeError):
        return 0.0
    if not isinstance(cert, SSHCertificate):
        return 0.0
    return max(0.0, cert.valid_before - (time.time() if now is None else now))


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600, atomically (temp file + rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def request_certificate(
    url: str, token: str, public_key: str, ssl_context: ssl.SSLContext | None = None
) -> dict[str, object]:
    """POST to ``URL/v1/certificates``; return the JSON answer or raise BastionError."""
    endpoint = url.rstrip("/") + "/v1/certificates"
    parts = urlsplit(endpoint)
    # A bearer token never crosses the network in clear text; plain http only on loopback.
    if parts.scheme != "https" and not (
        parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost")
    ):
        raise BastionError(f"--url must be an https:// URL, got {url!r}")
    body = json.dumps({"public_key": public_key}).encode()
    req = urllib.request.Request(  # noqa: S310 - scheme checked above
        endpoint,
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(  # noqa: S310
            req, timeout=REQUEST_TIMEOUT, context=ssl_context
        ) as resp:
            raw = resp.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise BastionError(f"the bastion refused: {_reason(exc)}") from None
    except (urllib.error.URLError, OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BastionError(f"cannot reach the bastion at {endpoint}: {reason}") from None
    try:
        answer = json.loads(raw[:MAX_RESPONSE_BYTES])
    except ValueError:
        raise BastionError("the bastion's answer is not JSON") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("certificate"), str):
        raise BastionError("the bastion's answer has no certificate")
    return answer


def _reason(exc: urllib.error.HTTPError) -> str:
    try:
        payload = json.loads(exc.read(MAX_RESPONSE_BYTES))
        return f"{payload['error']} (HTTP {exc.code})"
    except (ValueError, KeyError, TypeError, OSError):
        return f"HTTP {exc.code}"


def known_hosts_path(key: Path) -> Path:
    return key.with_name(key.name + ".known_hosts")


def _alias(settings: SshSettings) -> str:
    """The bastion's name as ssh looks it up in known_hosts (``[host]:port`` off port 22)."""
    return settings.host if settings.port == 22 else f"[{settings.host}]:{settings.port}"


def known_hosts_lines(settings: SshSettings, host_keys: tuple[str, ...]) -> str:
    return "".join(f"{_alias(settings)} {line}\n" for line in host_keys)


def _host_keys(answer: dict[str, object]) -> tuple[str, ...]:
    raw = answer.get("host_keys")
    if not isinstance(raw, list):
        return ()
    keys = []
    for line in raw:
        if not isinstance(line, str):
            raise BastionError("the bastion's answer has a host key that is not text")
        try:
            asyncssh.import_public_key(line)
        except (asyncssh.KeyImportError, ValueError):
            raise BastionError("the bastion's answer has a host key that does not parse") from None
        keys.append(" ".join(line.split()[:2]))
    return tuple(keys)


def ssh_config_snippet(
    key: Path, settings: SshSettings, targets: tuple[str, ...], known_hosts: Path | None = None
) -> str:
    """Host blocks: one per target (sets ``User`` = target), then the shared bastion block."""
    lines = [
        "# Written by 'bastion login'. Use it from ~/.ssh/config with:",
        f"#   Include {key.with_name(key.name + '.ssh_config')}",
    ]
    for target in targets:
        lines += [f"Host {target}{settings.suffix}", f"    User {target}"]
    lines += [
        f"Host *{settings.suffix}",
        f"    HostName {settings.host}",
        f"    Port {settings.port}",
        f"    IdentityFile {key}",
        f"    CertificateFile {cert_path(key)}",
        "    IdentitiesOnly yes",
        "    ForwardAgent no",
    ]
    if known_hosts is not None:
        # ssh looks the key up under HostName (and Port), the name known_hosts_lines wrote.
        lines += [f"    UserKnownHostsFile {known_hosts}", "    StrictHostKeyChecking yes"]
    lines.append("")
    return "\n".join(lines)


def login(
    *,
    url: str,
    key: Path,
    source: TokenSource,
    ssh: SshSettings,
    ssh_config: Path | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> LoginResult:
    """Get a token, make a fresh key, get it certified and write the files."""
    key = key.resolve()
    if not key.parent.is_dir():
        raise BastionError(f"directory {key.parent} does not exist")
    token = source.token()
    private = asyncssh.generate_private_key("ssh-ed25519", comment="bastion-agent")
    public_line = private.export_public_key("openssh").decode("ascii").strip()
    answer = request_certificate(url, token, public_line, ssl_context)
    certificate = str(answer["certificate"]).strip()
    try:
        cert = serialization.load_ssh_public_identity(certificate.encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError):
        raise BastionError("the bastion returned something that is not a certificate") from None
    if not isinstance(cert, SSHCertificate) or _public_blob(cert) != public_line.split()[1]:
        raise BastionError("the bastion's certificate is not for the key this login generated")
    # Key first, certificate last: ssh never sees a certificate without its key.
    _write_private(key, private.export_private_key("openssh"))
    _write_private(key.with_name(key.name + ".pub"), (public_line + "\n").encode())
    _write_private(cert_path(key), (certificate + "\n").encode())
    raw_targets = answer.get("targets")
    offered = (
        tuple(t for t in raw_targets if isinstance(t, str)) if isinstance(raw_targets, list) else ()
    )
    targets = tuple(dict.fromkeys(ssh.targets + offered))
    host_keys = _host_keys(answer)
    known = known_hosts_path(key) if host_keys else None
    if known is not None:
        _write_private(known, known_hosts_lines(ssh, host_keys).encode())
    config_path = ssh_config or key.with_name(key.name + ".ssh_config")
    _write_private(config_path, ssh_config_snippet(key, ssh, targets, known).encode())
    return LoginResult(
        key=key,
        certificate=cert_path(key),
        ssh_config=config_path,
        serial=cert.serial,
        valid_before=cert.valid_before,
        principals=tuple(p.decode("utf-8", "replace") for p in cert.valid_principals),
        targets=targets,
        known_hosts=known,
    )


def _public_blob(cert: SSHCertificate) -> str:
    line: bytes = cert.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return line.split()[1].decode("ascii")
