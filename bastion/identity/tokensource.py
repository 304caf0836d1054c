"""Where ``bastion login`` gets its OIDC token: a file, an environment variable or msal.

msal flows: client credentials (secret from an environment variable, or a PEM certificate),
managed identity, device code (humans). Each call builds a fresh msal application, so a renewal
gets a new token rather than msal's cached one, which the bastion's replay guard would refuse.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from bastion.errors import BastionError

MICROSOFT_AUTHORITY_HOSTS = frozenset(
    {"login.microsoftonline.com", "login.microsoftonline.us", "login.partner.microsoftonline.cn"}
)
_PEM_KEY = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.+?-----END [A-Z ]*PRIVATE KEY-----", re.S
)
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


class TokenSource(Protocol):
    def token(self) -> str:
        """Return a fresh bearer token; raise BastionError with a one-line reason."""
        ...


def _clean(token: str, where: str) -> str:
    token = token.strip()
    if not token:
        raise BastionError(f"{where} holds no token")
    if any(c.isspace() for c in token):
        raise BastionError(f"{where} does not hold a single token")
    return token


@dataclass(frozen=True)
class FileToken:
    path: Path

    def token(self) -> str:
        try:
            return _clean(self.path.read_text(encoding="utf-8"), str(self.path))
        except (OSError, UnicodeDecodeError) as exc:
            raise BastionError(f"cannot read token file {self.path}: {exc}") from None


@dataclass(frozen=True)
class EnvToken:
    variable: str

    def token(self) -> str:
        return _clean(os.environ.get(self.variable, ""), f"environment variable {self.variable}")


def _result_token(result: object, what: str) -> str:
    if isinstance(result, dict) and isinstance(result.get("access_token"), str):
        return str(result["access_token"])
    reason = "no token returned"
    if isinstance(result, dict):
        reason = str(result.get("error_description") or result.get("error") or reason)
    raise BastionError(f"{what} failed: {reason.splitlines()[0] if reason else 'unknown error'}")


def _app_kwargs(authority: str) -> dict[str, Any]:
    host = urlsplit(authority).hostname or ""
    # msal validates authorities against Microsoft's instance list; others must opt out.
    return {"authority": authority, "instance_discovery": host in MICROSOFT_AUTHORITY_HOSTS}


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    authority: str
    scope: str
    secret_env: str = ""
    certificate: Path | None = None

    def _credential(self) -> str | dict[str, str]:
        if self.certificate is not None:
            try:
                pem = self.certificate.read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as exc:
                raise BastionError(f"cannot read {self.certificate}: {exc}") from None
            key, cert = _PEM_KEY.search(pem), _PEM_CERT.search(pem)
            if key is None or cert is None:
                raise BastionError(
                    f"{self.certificate} must hold a PEM private key and certificate"
                )
            return {"private_key": key.group(0), "public_certificate": cert.group(0)}
        secret = os.environ.get(self.secret_env, "")
        if not secret:
            raise BastionError(f"environment variable {self.secret_env} holds no client secret")
        return secret

    def token(self) -> str:
        import msal

        try:
            app = msal.ConfidentialClientApplication(
                self.client_id, client_credential=self._credential(), **_app_kwargs(self.authority)
            )
            result = app.acquire_token_for_client(scopes=[self.scope])
        except BastionError:
            raise
        except Exception as exc:  # msal raises ValueError, requests errors, ...
            raise BastionError(f"token request failed: {_one_line(exc)}") from None
        return _result_token(result, "token request")


@dataclass(frozen=True)
class ManagedIdentity:
    resource: str
    client_id: str = ""  # user-assigned identity; "" = system-assigned

    def token(self) -> str:
        import msal
        import requests

        identity: Any = (
            msal.UserAssignedManagedIdentity(client_id=self.client_id)
            if self.client_id
            else msal.SystemAssignedManagedIdentity()
        )
        try:
            client = msal.ManagedIdentityClient(identity, http_client=requests.Session())
            result = client.acquire_token_for_client(resource=self.resource)
        except Exception as exc:
            raise BastionError(f"managed identity token failed: {_one_line(exc)}") from None
        return _result_token(result, "managed identity token")


@dataclass(frozen=True)
class DeviceCode:
    client_id: str
    authority: str
    scope: str

    def token(self) -> str:
        import msal

        try:
            app = msal.PublicClientApplication(self.client_id, **_app_kwargs(self.authority))
            flow = app.initiate_device_flow(scopes=[self.scope])
            if "message" not in flow:
                return _result_token(flow, "device code sign-in")
            print(flow["message"], file=sys.stderr, flush=True)
            result = app.acquire_token_by_device_flow(flow)
        except BastionError:
            raise
        except Exception as exc:
            raise BastionError(f"device code sign-in failed: {_one_line(exc)}") from None
        return _result_token(result, "device code sign-in")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
