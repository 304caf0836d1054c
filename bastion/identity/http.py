"""``POST /v1/certificates`` on the bastion's aiohttp server.

Request: ``Authorization: Bearer <OIDC token>`` and JSON ``{"public_key": "<OpenSSH line>"}``.
Success: 200 JSON ``{"certificate", "serial", "valid_before" (RFC 3339), "valid_after",
"key_id", "principals", "targets", "host_keys"}``. Errors: 4xx/5xx JSON
``{"error": "<reason>"}``, never a stack trace; every refusal is audited (``cert_refused``)
with the caller's address.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from aiohttp import web

from bastion.identity.issuer import CertificateIssuer, IssueRefused

log = logging.getLogger("bastion.identity")

PATH = "/v1/certificates"
MAX_BODY_BYTES = 16 * 1024
# aiohttp refuses header fields over 8190 bytes with a plain-text 400 before any handler runs.
# Run the server with these handler args so a token up to the configured limit (16 KiB) arrives
# and anything larger gets a clear JSON 413 from here: web.AppRunner(app, **SERVER_HANDLER_ARGS)
# (or web.Application(handler_args=SERVER_HANDLER_ARGS)).
SERVER_HANDLER_ARGS: dict[str, int] = {"max_field_size": 32 * 1024, "max_line_size": 32 * 1024}


def rfc3339(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(refused: IssueRefused) -> web.Response:
    headers = {"Cache-Control": "no-store"}
    if refused.status == 401:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return web.json_response({"error": refused.reason}, status=refused.status, headers=headers)


async def _read_request(request: web.Request, max_token: int) -> tuple[str, str]:
    """Return (token, public_key) or raise IssueRefused for a malformed request."""
    header = request.headers.get("Authorization", "")
    if len(header) > max_token + 16:
        raise IssueRefused(413, f"token is larger than {max_token} bytes")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise IssueRefused(401, "missing 'Authorization: Bearer <token>' header")
    if len(token) > max_token:
        raise IssueRefused(413, f"token is larger than {max_token} bytes")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise IssueRefused(413, f"request body is larger than {MAX_BODY_BYTES} bytes")
    body = await request.content.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise IssueRefused(413, f"request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise IssueRefused(400, "request body is not valid JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("public_key"), str):
        raise IssueRefused(400, 'request body must be {"public_key": "<OpenSSH public key>"}')
    return token, payload["public_key"]


def add_routes(app: web.Application, issuer: CertificateIssuer) -> None:
    """Mount ``POST /v1/certificates`` (issuance) on ``app``."""

    async def certificates(request: web.Request) -> web.StreamResponse:
        source = request.remote or ""
        try:
            try:
                token, public_key = await _read_request(request, issuer.config.max_token_bytes)
            except IssueRefused as refused:
                await issuer.record_refusal(refused, source)
                raise
            issued = await issuer.issue(token, public_key, source_address=source)
        except IssueRefused as refused:
            return _error(refused)
        except Exception:  # never a stack trace to the caller; the log has it
            log.exception("certificate request failed")
            return _error(IssueRefused(500, "internal error"))
        return web.json_response(
            {
                "certificate": issued.certificate,
                "serial": issued.serial,
                "valid_after": rfc3339(issued.valid_after),
                "valid_before": rfc3339(issued.valid_before),
                "key_id": issued.key_id,
                "principals": list(issued.principals),
                "targets": list(issued.targets),
                "host_keys": list(issued.host_keys),
            },
            headers={"Cache-Control": "no-store"},
        )

    app.router.add_post(PATH, certificates)
