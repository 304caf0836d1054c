"""Sub-commands: ``ca init``, ``cert revoke``, ``cert list`` and ``login``.

``ca init`` and ``cert`` read only the TOML sections they need (``[ca]``, ``[server].state_dir``)
so that revoking still works while some other part of the config is broken.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bastion.config import parse_duration
from bastion.errors import BastionError, ConfigError
from bastion.identity.ca import init_ca
from bastion.identity.config import ca_key_path
from bastion.identity.issuer import DB_NAME
from bastion.identity.login import SshSettings, login, remaining_validity
from bastion.identity.store import IdentityStore, StoreError
from bastion.identity.tokensource import (
    ClientCredentials,
    DeviceCode,
    EnvToken,
    FileToken,
    ManagedIdentity,
    TokenSource,
)

DEFAULT_CONFIG = "config/bastion.toml"
DEFAULT_TOKEN_ENV = "BASTION_TOKEN"  # noqa: S105 - a variable name, not a secret
MAX_WATCH_FAILURES = 5


def _raw_config(path: str) -> tuple[Mapping[str, Any], Path]:
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, "file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(path, f"cannot read: {exc}") from None
    return raw, file.resolve().parent


def _state_dir(raw: Mapping[str, Any], base: Path, path: str) -> Path:
    server = raw.get("server", {})
    value = server.get("state_dir", "state") if isinstance(server, dict) else None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}: server.state_dir", "expected a non-empty string")
    return (base / value).resolve()


def _ca_init(args: argparse.Namespace) -> int:
    raw, base = _raw_config(args.config)
    ca = raw.get("ca", {})
    key = ca_key_path(ca if isinstance(ca, dict) else {}, base)
    try:
        public = init_ca(key)
    except OSError as exc:  # e.g. /etc/bastion not writable by this user: one line, no traceback
        raise BastionError(f"cannot create the CA key {key}: {exc.strerror}") from None
    print(f"created CA key {key} (0600) and {public}")
    print('trust it in the bastion config:  [auth] trusted_user_ca_keys = ["<path of .pub>"]')
    return 0


async def _with_store(args: argparse.Namespace) -> IdentityStore:
    raw, base = _raw_config(args.config)
    return await IdentityStore.open(_state_dir(raw, base, args.config) / DB_NAME)


def _cert_revoke(args: argparse.Namespace) -> int:
    async def run() -> str:
        store = await _with_store(args)
        try:
            now = time.time()
            if args.serial is not None:
                if args.serial < 0:
                    raise BastionError("--serial must be a non-negative integer")
                await store.revoke(serial=args.serial, reason=args.reason, now=now)
                known = await store.certificate(args.serial)
                note = "" if known else " (not issued by this bastion; revoked anyway)"
                return f"revoked serial {args.serial}{note}"
            key_id = args.key_id.strip()
            if not key_id:
                raise BastionError("--key-id must not be empty")
            await store.revoke(key_id=key_id, reason=args.reason, now=now)
            return f"revoked every certificate with key ID {key_id!r}"
        finally:
            await store.close()

    try:
        print(asyncio.run(run()))
    except StoreError as exc:
        raise BastionError(str(exc)) from None
    return 0


def _cert_list(args: argparse.Namespace) -> int:
    async def run() -> None:
        store = await _with_store(args)
        try:
            revoked = await store.revocations()
            certs = await store.certificates(args.limit)
        finally:
            await store.close()
        serials = {r.serial for r in revoked}
        for c in certs:
            until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(c.valid_before or 0))
            mark = " REVOKED" if c.serial in serials else ""
            print(f"{c.serial}\t{until}\t{','.join(c.principals)}\t{c.key_id}{mark}")
        for r in revoked:
            what = f"serial {r.serial}" if r.serial is not None else f"key ID {r.key_id!r}"
            print(f"revoked {what}: {r.reason}")

    try:
        asyncio.run(run())
    except StoreError as exc:
        raise BastionError(str(exc)) from None
    return 0


def _authority(args: argparse.Namespace) -> str:
    if args.authority:
        return str(args.authority)
    if not args.tenant:
        raise BastionError("msal sign-in needs --tenant or --authority")
    return f"https://login.microsoftonline.com/{args.tenant}"


def token_source(args: argparse.Namespace) -> TokenSource:
    """Pick the token source from the options (first match wins, in this order)."""
    if args.token_file:
        return FileToken(Path(args.token_file))
    if args.token_env:
        return EnvToken(args.token_env)
    if args.managed_identity:
        resource = args.scope.removesuffix("/.default")
        return ManagedIdentity(resource=resource, client_id=args.client_id or "")
    if args.device_code:
        if not args.client_id:
            raise BastionError("--device-code needs --client-id")
        return DeviceCode(args.client_id, _authority(args), args.scope)
    if args.client_id:
        if not args.client_secret_env and not args.client_certificate:
            raise BastionError("--client-id needs --client-secret-env VAR or --client-certificate")
        return ClientCredentials(
            client_id=args.client_id,
            authority=_authority(args),
            scope=args.scope,
            secret_env=args.client_secret_env or "",
            certificate=Path(args.client_certificate) if args.client_certificate else None,
        )
    return EnvToken(DEFAULT_TOKEN_ENV)


def _login(args: argparse.Namespace) -> int:
    source = token_source(args)
    host = args.ssh_host or urlsplit(args.url).hostname
    if not host:
        raise BastionError(f"cannot tell the bastion's host from --url {args.url!r}")
    ssh = SshSettings(
        host=host, port=args.ssh_port, suffix=args.host_suffix, targets=tuple(args.target)
    )
    context = ssl.create_default_context(cafile=args.ca_bundle) if args.ca_bundle else None
    renew_before = parse_duration(args.renew_before, "--renew-before") if args.renew_before else 0.0
    key = Path(args.key)
    failures = 0
    while True:
        left = remaining_validity(key)
        if renew_before and left > renew_before:
            if not args.watch:
                print(f"certificate {key}-cert.pub is still valid for {int(left)}s; not renewed")
                return 0
            time.sleep(min(left - renew_before, 3600.0))
            continue
        try:
            result = login(
                url=args.url,
                key=key,
                source=source,
                ssh=ssh,
                ssh_config=Path(args.ssh_config) if args.ssh_config else None,
                ssl_context=context,
            )
        except BastionError as exc:
            failures += 1
            if not args.watch or failures >= MAX_WATCH_FAILURES:
                raise
            print(f"bastion: renewal failed ({exc}); retrying", file=sys.stderr)
            time.sleep(min(2.0**failures, max(1.0, left / 4)))
            continue
        failures = 0
        until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(result.valid_before))
        print(
            f"certificate serial {result.serial} for {','.join(result.principals)} valid until "
            f"{until}: {result.certificate}"
        )
        print(f"ssh_config snippet: {result.ssh_config} (add 'Include {result.ssh_config}')")
        if result.known_hosts is not None:
            print(f"bastion host key pinned in {result.known_hosts} (the snippet uses it)")
        else:
            print("bastion: warning: the bastion sent no host key; pin it in known_hosts",
                  file=sys.stderr)
        if not args.watch:
            return 0
        if not renew_before:
            raise BastionError("--watch needs --renew-before")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ca = subparsers.add_parser("ca", help="the user certificate authority")
    ca_sub = ca.add_subparsers(dest="ca_command", metavar="ACTION")
    ca_sub.required = True
    init = ca_sub.add_parser("init", help="create the CA key ([ca] key) and its .pub")
    init.add_argument("--config", default=DEFAULT_CONFIG, metavar="PATH")
    init.set_defaults(func=_ca_init)

    cert = subparsers.add_parser("cert", help="issued certificates and revocation")
    cert_sub = cert.add_subparsers(dest="cert_command", metavar="ACTION")
    cert_sub.required = True
    revoke = cert_sub.add_parser("revoke", help="revoke certificates (refused at every login)")
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--serial", type=int, metavar="N")
    which.add_argument("--key-id", metavar="ID", help="full key ID or its 'tenant/object-id' part")
    revoke.add_argument("--reason", default="revoked by operator")
    revoke.add_argument("--config", default=DEFAULT_CONFIG, metavar="PATH")
    revoke.set_defaults(func=_cert_revoke)
    listing = cert_sub.add_parser("list", help="recently issued certificates and revocations")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--config", default=DEFAULT_CONFIG, metavar="PATH")
    listing.set_defaults(func=_cert_list)

    lg = subparsers.add_parser("login", help="get a short-lived SSH certificate from the bastion")
    lg.add_argument("--url", required=True, help="the bastion's HTTPS base URL")
    lg.add_argument("--key", required=True, metavar="PATH", help="writes PATH, .pub, -cert.pub")
    src = lg.add_argument_group("token source (default: $BASTION_TOKEN)")
    src.add_argument("--token-file", metavar="FILE")
    src.add_argument("--token-env", metavar="VAR")
    src.add_argument("--client-id", help="Entra application (client) ID for msal")
    src.add_argument("--client-secret-env", metavar="VAR", help="variable holding the secret")
    src.add_argument("--client-certificate", metavar="PEM", help="PEM with key and certificate")
    src.add_argument("--managed-identity", action="store_true")
    src.add_argument("--device-code", action="store_true", help="interactive sign-in (humans)")
    src.add_argument("--tenant", help="Entra tenant ID (authority login.microsoftonline.com)")
    src.add_argument("--authority", help="full authority URL instead of --tenant")
    src.add_argument("--scope", default="api://bastion/.default")
    lg.add_argument("--ca-bundle", metavar="FILE", help="CA certificates for the bastion's TLS")
    lg.add_argument("--ssh-config", metavar="PATH", help="snippet path (default KEY.ssh_config)")
    lg.add_argument("--ssh-host", help="bastion SSH host (default: host of --url)")
    lg.add_argument("--ssh-port", type=int, default=22)
    lg.add_argument("--host-suffix", default=".bastion")
    lg.add_argument("--target", action="append", default=[], help="add a Host block (repeat)")
    lg.add_argument("--renew-before", metavar="DURATION", help="renew only this close to expiry")
    lg.add_argument("--watch", action="store_true", help="keep running, renewing before expiry")
    lg.set_defaults(func=_login)
