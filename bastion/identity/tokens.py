"""OIDC bearer token validation, fail closed.

Order of checks (each failure is a ``TokenRefused`` with a reason safe to show the caller):
size and shape -> header (allowed asymmetric ``alg`` only, no ``crit``, a ``kid``) -> ``iss``
exactly one configured issuer (Entra multi-tenant: the template with the token's ``tid``) ->
signing key from that issuer's JWKS -> signature -> ``exp``/``nbf``/``iat`` with ``clock_skew``
-> ``aud`` -> Entra specifics (``tid`` allowlist, ``azp``/``appid`` allowlist) -> required claims.
Nothing is read from the payload for a decision before the signature has been verified, except
``iss``/``tid`` to choose which issuer's keys to verify with.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from bastion.identity.config import IssuerConfig
from bastion.identity.jwks import JwksCache, KeysUnavailable, UnknownKey, public_key

SUBJECT_CLAIMS = ("oid", "sub")  # Entra's oid is stable across apps; sub is per-app


class TokenRefused(Exception):
    """The token is not acceptable; ``str(exc)`` is a reason safe to return to the caller."""


class IssuerUnavailable(Exception):
    """The token cannot be checked now (issuer keys unreachable): refuse with 503."""


@dataclass(frozen=True)
class VerifiedToken:
    issuer: IssuerConfig
    claims: Mapping[str, Any]
    subject: str  # value of the subject claim (oid or sub)
    tenant: str  # tid, or the issuer host when the issuer has no tenants
    expires_at: float
    replay_key: str  # jti/uti when present, else a hash of the signed part

    @property
    def display_name(self) -> str:
        for claim in ("name", "app_displayname", "preferred_username", "upn", "unique_name"):
            value = self.claims.get(claim)
            if isinstance(value, str) and value.strip():
                return value.strip()
        return ""


def _b64json(segment: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise TokenRefused("token is malformed (bad base64 or JSON)") from None
    if not isinstance(value, dict):
        raise TokenRefused("token is malformed (not a JSON object)")
    return value


class TokenValidator:
    def __init__(
        self,
        issuers: Sequence[IssuerConfig],
        keys: JwksCache,
        *,
        clock_skew: float = 60.0,
        max_token_bytes: int = 16 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._issuers = tuple(issuers)
        self._keys = keys
        self._skew = clock_skew
        self._max = max_token_bytes
        self._clock = clock

    async def validate(self, token: str) -> VerifiedToken:
        if len(token) > self._max:
            raise TokenRefused(f"token is larger than {self._max} bytes")
        parts = token.split(".")
        if len(parts) != 3 or not all(parts):
            raise TokenRefused("token is not a signed JWT (expected three dot-separated parts)")
        header = _b64json(parts[0])
        unverified = _b64json(parts[1])
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise TokenRefused("token header has no algorithm")
        if "crit" in header:
            raise TokenRefused("token header has critical extensions, which are not supported")
        issuer = self._issuer_for(unverified)
        if alg not in issuer.algorithms:
            raise TokenRefused(f"token algorithm {alg!r} is not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRefused("token header has no key ID (kid)")
        iss = unverified["iss"]
        try:
            jwk = await self._keys.key(issuer.issuer, issuer.discovery, kid)
            key = public_key(jwk, alg)
        except UnknownKey:
            raise TokenRefused("token is signed with a key the issuer does not publish") from None
        except KeysUnavailable as exc:
            raise IssuerUnavailable(str(exc)) from None
        claims = self._decode(token, key, alg, issuer, iss)
        return self._entra_checks(token, issuer, claims)

    def _issuer_for(self, claims: Mapping[str, Any]) -> IssuerConfig:
        iss = claims.get("iss")
        if not isinstance(iss, str):
            raise TokenRefused("token has no issuer (iss)")
        for issuer in self._issuers:
            if issuer.expected_issuer(claims.get("tid")) == iss:
                return issuer
        raise TokenRefused("token issuer is not trusted")

    def _decode(
        self, token: str, key: jwt.PyJWK, alg: str, issuer: IssuerConfig, iss: str
    ) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=list(issuer.audiences),
                issuer=iss,
                leeway=self._skew,
                options={"require": ["exp", "iat", "iss", "aud"], "verify_iat": True},
            )
        except jwt.InvalidSignatureError:
            raise TokenRefused("token signature is invalid") from None
        except jwt.ExpiredSignatureError:
            raise TokenRefused("token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRefused("token is not valid yet (nbf/iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise TokenRefused("token audience is not accepted") from None
        except jwt.InvalidIssuerError:
            raise TokenRefused("token issuer is not trusted") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRefused(f"token lacks required claim {exc.claim!r}") from None
        except jwt.InvalidTokenError as exc:
            raise TokenRefused(f"token is invalid ({type(exc).__name__})") from None
        # PyJWT checks iat only for type; a token "issued" in the future is refused here.
        now = self._clock()
        iat = claims.get("iat")
        if not isinstance(iat, int | float) or isinstance(iat, bool) or iat > now + self._skew:
            raise TokenRefused("token is not valid yet (nbf/iat in the future)")
        return claims

    def _entra_checks(
        self, token: str, issuer: IssuerConfig, claims: Mapping[str, Any]
    ) -> VerifiedToken:
        tid = claims.get("tid")
        if issuer.tenants and (not isinstance(tid, str) or tid not in issuer.tenants):
            raise TokenRefused("token tenant (tid) is not allowed")
        if issuer.clients:
            # v2 tokens name the client application in azp, v1 tokens in appid.
            client = claims.get("azp", claims.get("appid"))
            if not isinstance(client, str) or client not in issuer.clients:
                raise TokenRefused("token client application (azp/appid) is not allowed")
        for claim in issuer.required_claims:
            if claims.get(claim) in (None, "", []):
                raise TokenRefused(f"token lacks required claim {claim!r}")
        subject_claims = (issuer.subject_claim,) if issuer.subject_claim else SUBJECT_CLAIMS
        subject = next(
            (v for c in subject_claims if isinstance(v := claims.get(c), str) and v), None
        )
        if subject is None:
            raise TokenRefused(f"token lacks required claim {subject_claims[-1]!r}")
        tenant = tid if isinstance(tid, str) and tid else _host(issuer.issuer)
        unique = claims.get("jti", claims.get("uti"))
        if isinstance(unique, str) and unique:
            replay_key = f"id:{claims['iss']}:{unique}"
        else:
            # Hash the signed part only: the signature's base64 can be re-encoded (spare bits).
            signed = token.rsplit(".", 1)[0]
            replay_key = "sha256:" + hashlib.sha256(signed.encode("ascii", "replace")).hexdigest()
        return VerifiedToken(
            issuer=issuer,
            claims=claims,
            subject=subject,
            tenant=tenant,
            expires_at=float(claims["exp"]),
            replay_key=replay_key,
        )


def _host(url: str) -> str:
    return url.split("://", 1)[-1].split("/", 1)[0]
