"""The bastion's HTTP server (aiohttp): certificate endpoint, approval pages, health.

Loopback by default (``[http] listen = "127.0.0.1:8080"``); TLS when ``tls_cert``/``tls_key`` are
set. ``public_url`` is what links sent to operators and agents point at.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from aiohttp import web

from bastion.config import Config, parse_hostport
from bastion.errors import BastionError, ConfigError
from bastion.identity.http import SERVER_HANDLER_ARGS


@dataclass(frozen=True)
class HttpSettings:
    host: str
    port: int
    public_url: str
    tls_cert: Path | None = None
    tls_key: Path | None = None
    public_url_configured: bool = False

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.tls_cert is None or self.tls_key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise BastionError(f"cannot load the HTTP TLS certificate: {exc}") from None
        return context


def http_settings(config: Config) -> HttpSettings:
    section = config.raw.get("http", {})
    where = f"{config.path}: http"
    if not isinstance(section, dict):
        raise ConfigError(where, "expected a table")
    host, port = parse_hostport(section.get("listen", "127.0.0.1:8080"), f"{where}.listen")
    cert, key = section.get("tls_cert"), section.get("tls_key")
    if (cert is None) != (key is None):
        raise ConfigError(where, "set both tls_cert and tls_key, or neither")
    scheme = "https" if cert else "http"
    public = section.get("public_url", f"{scheme}://{host}:{port}")
    if not isinstance(public, str) or not public.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.public_url", "expected an http(s) URL")
    return HttpSettings(
        host=host,
        port=port,
        public_url=public.rstrip("/"),
        tls_cert=config.resolve(cert) if isinstance(cert, str) else None,
        tls_key=config.resolve(key) if isinstance(key, str) else None,
        public_url_configured="public_url" in section,
    )


def http_wanted(config: Config) -> bool:
    """The HTTP server runs when configured, or when a feature that needs it is configured."""
    return any(name in config.raw for name in ("http", "oidc", "approvals", "notify"))


class HttpServer:
    def __init__(self, app: web.Application, settings: HttpSettings) -> None:
        self.app = app
        self.settings = settings
        # aiohttp's default 8 KiB header limit would turn a large bearer token into a bare 400.
        limits: dict[str, Any] = dict(SERVER_HANDLER_ARGS)
        self._runner = web.AppRunner(app, access_log=None, **limits)
        self.address: tuple[str, int] = (settings.host, settings.port)

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            self.settings.host,
            self.settings.port,
            ssl_context=self.settings.ssl_context(),
            reuse_address=True,
        )
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise BastionError(
                f"cannot listen for HTTP on {self.settings.host}:{self.settings.port}: {why}"
            ) from None
        server = cast(asyncio.Server | None, site._server)  # the bound socket is only here
        if server is not None and server.sockets:
            sock = server.sockets[0].getsockname()
            self.address = (str(sock[0]), int(sock[1]))

    async def stop(self) -> None:
        await self._runner.cleanup()
