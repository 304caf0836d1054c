"""An issuer's signing keys: discovery document -> ``jwks_uri`` -> JSON Web Key Set.

Keys are cached for ``max_age``. A token naming an unknown ``kid`` triggers a refresh (issuers
rotate keys), but at most once per ``min_refresh`` seconds per issuer, so a flood of tokens with
made-up key IDs cannot turn the bastion into a load generator against the issuer. Only HTTPS is
used; a discovery document whose ``issuer`` does not match the configured one is refused.
If a refresh fails, keys already fetched stay usable for ``max_stale``; with no keys at all the
token is refused (``KeysUnavailable``), never accepted.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt

MAX_DOCUMENT_BYTES = 512 * 1024
FETCH_TIMEOUT = 10.0
_SIGNING_KTY = frozenset({"RSA", "EC", "OKP"})


class KeysUnavailable(Exception):
    """The issuer's keys cannot be fetched right now (the caller answers 503)."""


class UnknownKey(Exception):
    """No key with this ``kid`` is published by the issuer."""


@dataclass
class _IssuerKeys:
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    fetched_at: float | None = None  # last successful fetch
    attempted_at: float | None = None  # last fetch attempt, successful or not
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class JwksCache:
    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_age: float = 3600.0,
        min_refresh: float = 30.0,
        max_stale: float = 24 * 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ssl = ssl_context or ssl.create_default_context()
        self._max_age = max_age
        self._min_refresh = min_refresh
        self._max_stale = max_stale
        self._clock = clock
        self._issuers: dict[str, _IssuerKeys] = {}
        self._session: aiohttp.ClientSession | None = None
        self.fetches = 0  # JWKS downloads so far (observable by tests and metrics)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def key(self, issuer: str, discovery_url: str, kid: str) -> dict[str, Any]:
        """The JWK for ``kid``; raise UnknownKey or KeysUnavailable."""
        state = self._issuers.setdefault(discovery_url, _IssuerKeys())
        async with state.lock:
            now = self._clock()
            fresh = state.fetched_at is not None and now - state.fetched_at < self._max_age
            if fresh and kid in state.keys:
                return state.keys[kid]
            may_fetch = state.attempted_at is None or now - state.attempted_at >= self._min_refresh
            if may_fetch:
                state.attempted_at = now
                try:
                    state.keys = await self._fetch(issuer, discovery_url)
                    state.fetched_at = now
                except KeysUnavailable:
                    if state.fetched_at is None or now - state.fetched_at > self._max_stale:
                        raise
            elif state.fetched_at is None:
                raise KeysUnavailable("issuer keys are unavailable (retrying later)")
            if kid not in state.keys:
                raise UnknownKey(kid)
            return state.keys[kid]

    async def _fetch(self, issuer: str, discovery_url: str) -> dict[str, dict[str, Any]]:
        discovery = await self._get_json(discovery_url)
        # Entra's multi-tenant documents say "{tenantid}"; the configured issuer carries it too.
        if discovery.get("issuer") != issuer:
            raise KeysUnavailable("the discovery document names a different issuer")
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str) or urlsplit(jwks_uri).scheme != "https":
            raise KeysUnavailable("the discovery document has no https jwks_uri")
        jwks = await self._get_json(jwks_uri)
        self.fetches += 1
        entries = jwks.get("keys")
        if not isinstance(entries, list):
            raise KeysUnavailable("the issuer's key set is malformed")
        keys: dict[str, dict[str, Any]] = {}
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
                continue
            if entry.get("kty") not in _SIGNING_KTY or entry.get("use", "sig") != "sig":
                continue  # symmetric ("oct") or encryption keys never verify tokens
            keys[entry["kid"]] = entry
        return keys

    async def _get_json(self, url: str) -> Mapping[str, Any]:
        if urlsplit(url).scheme != "https":
            raise KeysUnavailable(f"refusing to fetch issuer metadata over {url.split(':')[0]}")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
            )
        try:
            async with self._session.get(url, ssl=self._ssl, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise KeysUnavailable(f"issuer metadata answered HTTP {resp.status}")
                body = await resp.content.read(MAX_DOCUMENT_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError, ssl.SSLError) as exc:
            raise KeysUnavailable(f"cannot fetch issuer metadata: {type(exc).__name__}") from None
        if len(body) > MAX_DOCUMENT_BYTES:
            raise KeysUnavailable("issuer metadata is too large")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise KeysUnavailable("issuer metadata is not JSON") from None
        if not isinstance(data, dict):
            raise KeysUnavailable("issuer metadata is not a JSON object")
        return data


def public_key(jwk: Mapping[str, Any], algorithm: str) -> jwt.PyJWK:
    """Build the verification key, insisting that the key type fits ``algorithm``."""
    expected = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}.get(algorithm[:2])
    if expected is None or jwk.get("kty") != expected:
        raise UnknownKey(str(jwk.get("kid")))
    if "alg" in jwk and jwk["alg"] != algorithm:
        raise UnknownKey(str(jwk.get("kid")))
    try:
        return jwt.PyJWK(dict(jwk), algorithm=algorithm)
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
        raise UnknownKey(str(jwk.get("kid"))) from None
