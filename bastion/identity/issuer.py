"""The issuance use case: OIDC token + agent public key -> audited OpenSSH user certificate.

Steps, each refusing on failure: validate the token, check the agent key, map claims to
principals (no grant, no certificate), refuse identities revoked by key ID, consume the token
(replay guard), reserve a serial, sign, record, audit. The certificate is returned only after
the ``cert_issued`` audit event is recorded: no audit, no certificate.
"""

from __future__ import annotations

import fnmatch
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bastion.identity.audit import AuditSink
from bastion.identity.ca import (
    CertificateAuthority,
    CertificateRequest,
    KeyRefused,
    check_agent_key,
)
from bastion.identity.config import IdentityConfig
from bastion.identity.grants import key_id_for, principals_for
from bastion.identity.jwks import JwksCache
from bastion.identity.revocation import RevocationList
from bastion.identity.store import IdentityStore, StoreError
from bastion.identity.tokens import IssuerUnavailable, TokenRefused, TokenValidator

if TYPE_CHECKING:
    from bastion.config import Config

log = logging.getLogger("bastion.identity")

DB_NAME = "identity.db"
BACKDATE_MAX = 60  # valid_after = now - min(clock_skew, 60s), for agents whose clock lags


class IssueRefused(Exception):
    """Issuance refused; ``reason`` is safe to show the caller, ``status`` is the HTTP status."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Issued:
    certificate: str  # one OpenSSH certificate line
    serial: int
    key_id: str
    principals: tuple[str, ...]
    valid_after: int
    valid_before: int
    targets: tuple[str, ...] = ()
    host_keys: tuple[str, ...] = ()  # the bastion's SSH host public keys, for known_hosts


TargetLister = Callable[[Sequence[str]], Sequence[str]]
HostKeys = Callable[[], Sequence[str]]


def host_key_lines(public_key: Path) -> HostKeys:
    """The bastion's host public key, read at each issuance (a replaced key is served at once).

    The agent learns it over the same TLS connection that authenticated the bastion for the
    token exchange, so pinning it is as safe as that connection, and a fresh CI runner needs no
    ``ssh-keyscan`` (trust on first use) to verify the bastion."""

    def lines() -> Sequence[str]:
        try:
            text = public_key.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError):
            return ()
        return tuple(" ".join(line.split()[:2]) for line in text.splitlines()
                     if len(line.split()) >= 2)

    return lines


def granted_targets(config: Config) -> TargetLister:
    """Target names some ``[[access]]`` rule grants to the principals (for the ssh_config)."""

    def targets(principals: Sequence[str]) -> Sequence[str]:
        return sorted(
            name
            for name in config.targets
            if any(
                any(p in rule.principals for p in principals)
                and any(fnmatch.fnmatchcase(name, pattern) for pattern in rule.targets)
                for rule in config.access
            )
        )

    return targets


class CertificateIssuer:
    def __init__(
        self,
        *,
        config: IdentityConfig,
        ca: CertificateAuthority,
        validator: TokenValidator,
        store: IdentityStore,
        revocations: RevocationList,
        audit: AuditSink,
        targets: TargetLister | None = None,
        host_keys: HostKeys | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._ca = ca
        self._validator = validator
        self._store = store
        self.revocations = revocations
        self._audit = audit
        self._targets = targets
        self._host_keys = host_keys
        self._clock = clock
        self._jwks: JwksCache | None = None

    @classmethod
    async def create(
        cls,
        config: IdentityConfig,
        state_dir: Path,
        audit: AuditSink,
        *,
        targets: TargetLister | None = None,
        host_keys: HostKeys | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> CertificateIssuer:
        """Load the CA key, open ``state_dir/identity.db``; raise BastionError/StoreError."""
        ca = CertificateAuthority.load(config.ca_key)
        if ssl_context is None:
            ssl_context = ssl.create_default_context(
                cafile=str(config.ca_bundle) if config.ca_bundle else None
            )
        jwks = JwksCache(
            ssl_context=ssl_context, max_age=config.jwks_cache, min_refresh=config.jwks_min_refresh
        )
        validator = TokenValidator(
            config.issuers,
            jwks,
            clock_skew=config.clock_skew,
            max_token_bytes=config.max_token_bytes,
        )
        path = state_dir / DB_NAME
        store = await IdentityStore.open(path)
        issuer = cls(
            config=config,
            ca=ca,
            validator=validator,
            store=store,
            revocations=RevocationList.open(path),
            audit=audit,
            targets=targets,
            host_keys=host_keys,
        )
        issuer._jwks = jwks
        return issuer

    async def close(self) -> None:
        if self._jwks is not None:
            await self._jwks.close()
        await self._store.close()
        self.revocations.close()

    async def issue(self, token: str, public_key: str, *, source_address: str) -> Issued:
        """Issue a certificate or raise IssueRefused (after auditing the refusal)."""
        issuer_name = ""
        try:
            try:
                verified = await self._validator.validate(token)
            except TokenRefused as exc:
                raise IssueRefused(401, str(exc)) from None
            except IssuerUnavailable as exc:
                raise IssueRefused(503, f"cannot check the token now: {exc}") from None
            issuer_name = verified.issuer.issuer
            try:
                agent_key = check_agent_key(public_key)
            except KeyRefused as exc:
                raise IssueRefused(400, str(exc)) from None
            principals = principals_for(verified, self.config.grants)
            if not principals:
                raise IssueRefused(403, "no grant matches the token's claims")
            key_id = key_id_for(verified)
            if self.revocations.is_revoked(-1, key_id):
                raise IssueRefused(403, "certificates for this identity have been revoked")
            now = self._clock()
            expiry = verified.expires_at + self.config.clock_skew
            if not await self._store.remember_token(verified.replay_key, expiry, now):
                raise IssueRefused(401, "token was already used")
            serial = await self._store.reserve_serial(now)
            valid_after = int(now) - int(min(self.config.clock_skew, BACKDATE_MAX))
            valid_before = int(now + self.config.cert_validity)
            line = self._ca.sign(
                CertificateRequest(
                    public_key=agent_key,
                    key_id=key_id,
                    principals=principals,
                    serial=serial,
                    valid_after=valid_after,
                    valid_before=valid_before,
                    source_address=self.config.source_address,
                )
            )
            await self._store.record_issued(
                serial,
                key_id=key_id,
                principals=principals,
                issuer=issuer_name,
                subject=verified.subject,
                key_fingerprint=agent_key.get_fingerprint("sha256"),
                valid_after=valid_after,
                valid_before=valid_before,
            )
        except StoreError as exc:
            log.error("identity store failed during issuance: %s", exc)
            refused = IssueRefused(503, "identity store unavailable")
            await self.record_refusal(refused, source_address, issuer=issuer_name)
            raise refused from None
        except IssueRefused as refused:
            await self.record_refusal(refused, source_address, issuer=issuer_name)
            raise
        try:
            await self._audit.record(
                "cert_issued",
                identity=key_id,
                serial=serial,
                key_id=key_id,
                principals=list(principals),
                valid_after=valid_after,
                valid_before=valid_before,
                validity=valid_before - valid_after,
                issuer=issuer_name,
                subject=verified.subject,
                source_address=source_address,
            )
        except Exception as exc:  # the audit store is a required sink: no record, no certificate
            log.error("audit failed for certificate serial %d, withholding it: %s", serial, exc)
            raise IssueRefused(503, "audit log unavailable; certificate withheld") from None
        targets = tuple(self._targets(principals)) if self._targets else ()
        host_keys = tuple(self._host_keys()) if self._host_keys else ()
        return Issued(line, serial, key_id, principals, valid_after, valid_before, targets,
                      host_keys)

    async def record_refusal(
        self, refused: IssueRefused, source_address: str, *, issuer: str = ""
    ) -> None:
        """Audit a refusal; an audit failure is logged but never turns a refusal into success."""
        try:
            await self._audit.record(
                "cert_refused",
                reason=refused.reason,
                status=refused.status,
                source_address=source_address,
                issuer=issuer,
            )
        except Exception as exc:
            log.error("audit failed for a refused certificate request: %s", exc)
