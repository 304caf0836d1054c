"""The ``[ca]`` and ``[oidc]`` config sections, parsed once into frozen objects.

Unknown keys are errors (a typo must never silently weaken validation). Only asymmetric JWS
algorithms can be configured, so ``none`` and HMAC are impossible by construction.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bastion.config import parse_duration
from bastion.errors import ConfigError

ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
DEFAULT_VALIDITY = 15 * 60.0
MAX_VALIDITY_CAP = 24 * 3600.0  # hard ceiling whatever the config says
MAX_CLOCK_SKEW = 300.0

_CA_KEYS = frozenset({"key"})
_OIDC_KEYS = frozenset(
    {
        "cert_validity",
        "max_cert_validity",
        "clock_skew",
        "source_address",
        "ca_bundle",
        "max_token_bytes",
        "jwks_cache",
        "jwks_min_refresh",
        "issuers",
        "grants",
    }
)
_ISSUER_KEYS = frozenset(
    {
        "issuer",
        "audience",
        "tenants",
        "clients",
        "algorithms",
        "discovery_url",
        "subject_claim",
        "required_claims",
    }
)
_GRANT_KEYS = frozenset({"claim", "value", "claims", "principals", "issuer"})
TENANT_PLACEHOLDER = "{tenantid}"


@dataclass(frozen=True)
class IssuerConfig:
    """One trusted token issuer. ``issuer`` may contain ``{tenantid}`` (Entra multi-tenant)."""

    issuer: str
    audiences: tuple[str, ...]
    tenants: tuple[str, ...] = ()
    clients: tuple[str, ...] = ()
    algorithms: tuple[str, ...] = ("RS256",)
    discovery_url: str = ""
    subject_claim: str = ""  # "" = "oid" when present, else "sub"
    required_claims: tuple[str, ...] = ()

    @property
    def templated(self) -> bool:
        return TENANT_PLACEHOLDER in self.issuer

    def expected_issuer(self, tid: object) -> str | None:
        """The exact ``iss`` a token must carry (None: cannot match, e.g. templated without tid)."""
        if not self.templated:
            return self.issuer
        if not isinstance(tid, str) or not tid or "/" in tid:
            return None
        return self.issuer.replace(TENANT_PLACEHOLDER, tid)

    @property
    def discovery(self) -> str:
        if self.discovery_url:
            return self.discovery_url
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"


@dataclass(frozen=True)
class Grant:
    """Tokens that meet every condition get ``principals``. A condition is a claim and the
    values it may hold: the claim (a string, or a list such as ``roles``) must hold one of
    them. ``claim``/``value`` in the config is one condition; ``claims = {…}`` adds more, so
    ``repository`` + ``ref`` + ``environment`` pins a GitHub workflow to one branch."""

    conditions: tuple[tuple[str, tuple[str, ...]], ...]
    principals: tuple[str, ...]
    issuer: str = ""  # "" = tokens from any configured issuer


@dataclass(frozen=True)
class IdentityConfig:
    ca_key: Path
    issuers: tuple[IssuerConfig, ...]
    grants: tuple[Grant, ...]
    cert_validity: float = DEFAULT_VALIDITY
    max_cert_validity: float = 3600.0
    clock_skew: float = 60.0
    source_address: tuple[str, ...] = ()
    ca_bundle: Path | None = None
    max_token_bytes: int = 16 * 1024
    jwks_cache: float = 3600.0
    jwks_min_refresh: float = 30.0


def _check_keys(section: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    if not isinstance(section, Mapping):
        raise ConfigError(where, "expected a table")
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}", "unknown key")


def _string(section: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = section.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key}", "expected a non-empty string")
    return value


def _strings(
    section: Mapping[str, Any], key: str, where: str, *, allow_one: bool = False
) -> tuple[str, ...]:
    value = section.get(key, [])
    if allow_one and isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}.{key}", "expected a list of non-empty strings")
    return tuple(value)


def _https_url(value: str, where: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError(where, f"expected an https:// URL, got {value!r}")
    return value


def _duration(section: Mapping[str, Any], key: str, default: str, where: str) -> float:
    return parse_duration(section.get(key, default), f"{where}.{key}")


def parse_issuer(table: Mapping[str, Any], where: str) -> IssuerConfig:
    _check_keys(table, _ISSUER_KEYS, where)
    issuer = _https_url(_string(table, "issuer", where), f"{where}.issuer")
    audiences = _strings(table, "audience", where, allow_one=True)
    if not audiences:
        raise ConfigError(f"{where}.audience", "at least one audience is required")
    tenants = _strings(table, "tenants", where)
    if TENANT_PLACEHOLDER in issuer and not tenants:
        # A multi-tenant issuer without an allowlist would trust every Entra tenant in the world.
        raise ConfigError(f"{where}.tenants", "required when the issuer contains {tenantid}")
    algorithms = _strings(table, "algorithms", where) or ("RS256",)
    for alg in algorithms:
        if alg not in ASYMMETRIC_ALGORITHMS:
            allowed = ", ".join(sorted(ASYMMETRIC_ALGORITHMS))
            raise ConfigError(f"{where}.algorithms", f"{alg!r} is not allowed (use {allowed})")
    discovery = table.get("discovery_url", "")
    if discovery:
        discovery = _https_url(_string(table, "discovery_url", where), f"{where}.discovery_url")
    elif TENANT_PLACEHOLDER in issuer:
        raise ConfigError(f"{where}.discovery_url", "required when the issuer contains {tenantid}")
    subject_claim = table.get("subject_claim", "")
    if subject_claim:
        subject_claim = _string(table, "subject_claim", where)
    return IssuerConfig(
        issuer=issuer,
        audiences=audiences,
        tenants=tenants,
        clients=_strings(table, "clients", where),
        algorithms=algorithms,
        discovery_url=discovery,
        subject_claim=subject_claim,
        required_claims=_strings(table, "required_claims", where),
    )


def parse_grant(table: Mapping[str, Any], where: str, issuers: Sequence[str]) -> Grant:
    _check_keys(table, _GRANT_KEYS, where)
    principals = _strings(table, "principals", where)
    if not principals:
        raise ConfigError(f"{where}.principals", "at least one principal is required")
    for principal in principals:
        if not principal.isprintable() or " " in principal or "," in principal:
            raise ConfigError(f"{where}.principals", f"not a valid principal: {principal!r}")
    issuer = table.get("issuer", "")
    if issuer and issuer not in issuers:
        raise ConfigError(f"{where}.issuer", f"{issuer!r} is not one of [[oidc.issuers]]")
    conditions: dict[str, tuple[str, ...]] = {}
    if "claim" in table or "value" in table:
        conditions[_string(table, "claim", where)] = (_string(table, "value", where),)
    claims = table.get("claims", {})
    if not isinstance(claims, dict):
        raise ConfigError(f"{where}.claims", "expected a table of claim = value or [values]")
    for name, wanted in claims.items():
        values = (wanted,) if isinstance(wanted, str) else wanted
        if not isinstance(values, list | tuple) or not values or not all(
            isinstance(v, str) and v for v in values
        ):
            raise ConfigError(f"{where}.claims.{name}",
                              "expected a non-empty string or a list of them")
        if name in conditions:
            raise ConfigError(f"{where}.claims.{name}", "the claim is already set by claim/value")
        conditions[name] = tuple(values)
    if not conditions:
        raise ConfigError(where, "a grant needs claim/value or claims = {…}")
    return Grant(conditions=tuple(conditions.items()), principals=principals, issuer=issuer)


def parse_identity_config(
    ca: Mapping[str, Any], oidc: Mapping[str, Any], base_dir: Path
) -> IdentityConfig:
    """Validate ``[ca]`` and ``[oidc]`` (pass ``config.raw.get(...)``); raise ConfigError."""
    _check_keys(ca, _CA_KEYS, "ca")
    _check_keys(oidc, _OIDC_KEYS, "oidc")
    ca_key = (base_dir / _string(ca, "key", "ca", "user_ca")).resolve()

    max_validity = _duration(oidc, "max_cert_validity", "1h", "oidc")
    if not 0 < max_validity <= MAX_VALIDITY_CAP:
        raise ConfigError("oidc.max_cert_validity", "must be between 1s and 24h")
    validity = _duration(oidc, "cert_validity", "15m", "oidc")
    if not 0 < validity <= max_validity:
        raise ConfigError("oidc.cert_validity", f"must be between 1s and {int(max_validity)}s")
    skew = _duration(oidc, "clock_skew", "60s", "oidc")
    if skew > MAX_CLOCK_SKEW:
        raise ConfigError("oidc.clock_skew", "at most 5m")
    sources = _strings(oidc, "source_address", "oidc", allow_one=True)
    for net in sources:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError("oidc.source_address", f"not an address or CIDR: {net!r}") from None
    bundle: Path | None = None
    if "ca_bundle" in oidc:
        bundle = (base_dir / _string(oidc, "ca_bundle", "oidc")).resolve()
        if not bundle.is_file():
            raise ConfigError("oidc.ca_bundle", f"file not found: {bundle}")
    max_token = oidc.get("max_token_bytes", 16 * 1024)
    if not isinstance(max_token, int) or isinstance(max_token, bool) or not 0 < max_token <= 65536:
        raise ConfigError("oidc.max_token_bytes", "expected an integer between 1 and 65536")

    issuers_raw = oidc.get("issuers", [])
    if not isinstance(issuers_raw, list) or not issuers_raw:
        raise ConfigError("oidc.issuers", "at least one [[oidc.issuers]] table is required")
    issuers = tuple(parse_issuer(t, f"oidc.issuers[{i}]") for i, t in enumerate(issuers_raw))
    names = [i.issuer for i in issuers]
    if len(set(names)) != len(names):
        raise ConfigError("oidc.issuers", "the same issuer is configured twice")
    grants_raw = oidc.get("grants", [])
    if not isinstance(grants_raw, list) or not grants_raw:
        raise ConfigError("oidc.grants", "at least one [[oidc.grants]] table is required")
    grants = tuple(parse_grant(t, f"oidc.grants[{i}]", names) for i, t in enumerate(grants_raw))
    return IdentityConfig(
        ca_key=ca_key,
        issuers=issuers,
        grants=grants,
        cert_validity=validity,
        max_cert_validity=max_validity,
        clock_skew=skew,
        source_address=sources,
        ca_bundle=bundle,
        max_token_bytes=max_token,
        jwks_cache=_duration(oidc, "jwks_cache", "1h", "oidc"),
        jwks_min_refresh=_duration(oidc, "jwks_min_refresh", "30s", "oidc"),
    )


def ca_key_path(ca: Mapping[str, Any], base_dir: Path) -> Path:
    """Only the CA key path (``bastion ca init`` works before ``[oidc]`` is written)."""
    _check_keys(ca, _CA_KEYS, "ca")
    return (base_dir / _string(ca, "key", "ca", "user_ca")).resolve()
