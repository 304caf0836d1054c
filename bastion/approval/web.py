"""The approval page: ``GET/POST /approvals/{id}`` on the bastion's aiohttp server.

The page is plain server-rendered HTML (works without JavaScript; a hashed inline script only
ticks the countdown). Anyone holding the link may *see* the request (the id carries 80 random
bits); deciding needs an enrolled operator's TOTP code. POSTs need a CSRF token: a random cookie
(SameSite=Strict, HttpOnly) and, in a hidden field, an HMAC of that cookie and the request id
under a per-process key (double submit bound to the request); anything else gets 403.
Everything shown is HTML-escaped, commands are masked for secrets and their invisible
characters made visible.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
import shlex
import time
from urllib.parse import urlsplit

from aiohttp import web

from bastion.approval.broker import ApprovalBroker
from bastion.approval.ids import parse_request_id
from bastion.approval.model import ApprovalRefused, ApprovalRequest, iso
from bastion.approval.render import display_text, has_hidden
from bastion.audit.errors import AuditError
from bastion.errors import BastionError

COOKIE = "bastion_csrf"
_BROKER: web.AppKey[ApprovalBroker] = web.AppKey("approval_broker", ApprovalBroker)
_KEY: web.AppKey[bytes] = web.AppKey("approval_csrf_key", bytes)
MAX_FORM = 4096

STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem;"
    "color:#111;background:#fff}"
    "h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:1.5rem}"
    "dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}dt{font-weight:600}"
    "dd{margin:0}pre{background:#f3f3f3;border:1px solid #888;padding:.75rem;"
    "white-space:pre-wrap;word-break:break-all}code{font:15px/1.4 ui-monospace,monospace}"
    ".state{display:inline-block;padding:.1rem .5rem;border-radius:.25rem;font-weight:700}"
    ".pending{background:#fff3c4;color:#5c4400}.approved{background:#d8f5dc;color:#0b4a17}"
    ".denied,.expired,.abandoned{background:#fbdada;color:#6b0b0b}"
    ".alert{border:2px solid #a00;background:#fff0f0;color:#600;padding:.5rem .75rem}"
    ".warn{border:2px solid #8a5a00;background:#fff7e0;color:#4d3200;padding:.5rem .75rem}"
    "label{display:block;font-weight:600;margin-top:.75rem}"
    "input{font:inherit;padding:.35rem;border:1px solid #555;width:18rem;max-width:100%}"
    "button{font:inherit;font-weight:700;padding:.5rem 1.25rem;margin:1rem .75rem 0 0;"
    "border:2px solid #111;border-radius:.25rem;cursor:pointer}"
    ".approve{background:#0b6b24;color:#fff}.deny{background:#fff;color:#8b0000;"
    "border-color:#8b0000}table{border-collapse:collapse;width:100%}"
    "th,td{text-align:left;border-bottom:1px solid #ccc;padding:.25rem .5rem;vertical-align:top}"
    ":focus{outline:3px solid #1a5fb4;outline-offset:2px}"
)
SCRIPT = (
    "(function(){var e=document.getElementById('countdown');if(!e)return;"
    "var end=Number(e.getAttribute('data-expires'));function t(){"
    "var s=Math.max(0,Math.round(end-Date.now()/1000));"
    "e.textContent=s>0?'in '+Math.floor(s/60)+'m '+(s%60)+'s':'now (reload)';"
    "if(s>0)setTimeout(t,1000);}t();})();"
)


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


CSP = (
    f"default-src 'none'; style-src '{_sha256(STYLE)}'; script-src '{_sha256(SCRIPT)}'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def add_routes(
    app: web.Application, broker: ApprovalBroker, *, csrf_key: bytes | None = None
) -> None:
    """Serve ``/approvals/{id}`` (page and decision form) from ``broker`` on ``app``."""
    app[_BROKER] = broker
    app[_KEY] = csrf_key or secrets.token_bytes(32)
    app.router.add_get("/approvals/{id}", _show)
    app.router.add_post("/approvals/{id}", _post)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _token(key: bytes, cookie: str, request_id: str) -> str:
    mac = hmac.new(key, f"{cookie}|{request_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def _cookie_value(request: web.Request) -> str | None:
    value = request.cookies.get(COOKIE)
    if value and 20 <= len(value) <= 64 and value.replace("-", "").replace("_", "").isalnum():
        return value
    return None


def _respond(body: str, status: int = 200) -> web.Response:
    return web.Response(
        text=body, status=status, content_type="text/html", charset="utf-8", headers=HEADERS
    )


async def _load(request: web.Request) -> ApprovalRequest:
    broker = request.app[_BROKER]
    try:
        request_id = parse_request_id(request.match_info["id"])
        await broker.expire_due()
        found = await broker.get(request_id)
    except BastionError:
        found = None
    if found is None:
        raise web.HTTPNotFound(
            text=_page("Not found", "<h1>Not found</h1><p>No such approval request.</p>"),
            content_type="text/html",
            headers=HEADERS,
        )
    return found


async def _show(request: web.Request) -> web.Response:
    approval = await _load(request)
    return await _render(request, approval)


async def _render(
    request: web.Request, approval: ApprovalRequest, error: str = "", status: int = 200
) -> web.Response:
    cookie = _cookie_value(request) or secrets.token_urlsafe(24)
    token = _token(request.app[_KEY], cookie, approval.id)
    context = await _recent_commands(request.app[_BROKER], approval)
    response = _respond(_page_for(approval, token, error, context), status)
    secure = urlsplit(request.app[_BROKER].config.public_url).scheme == "https"
    response.set_cookie(
        COOKIE,
        cookie,
        path="/approvals/",
        httponly=True,
        samesite="Strict",
        secure=secure,
        max_age=86400,
    )
    return response


async def _post(request: web.Request) -> web.Response:
    approval = await _load(request)
    if request.content_length is not None and request.content_length > MAX_FORM:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_FORM, actual_size=request.content_length)
    form = await request.post()
    cookie = _cookie_value(request)
    sent = form.get("csrf")
    if (
        cookie is None
        or not isinstance(sent, str)
        or not hmac.compare_digest(sent, _token(request.app[_KEY], cookie, approval.id))
        or not _same_origin(request)
    ):
        return _respond(
            _page(
                "Forbidden",
                "<h1>Forbidden</h1><p role='alert' class='alert'>"
                "The form was not sent from this page (missing or wrong CSRF token). "
                "Reload the page and try again.</p>",
            ),
            403,
        )
    action = form.get("action")
    operator, code, reason = (form.get(k) for k in ("operator", "totp", "reason"))
    if (
        action not in ("approve", "deny")
        or not isinstance(operator, str)
        or not isinstance(code, str)
    ):
        return await _render(
            request, approval, "Choose Approve or Deny and fill in both fields.", 400
        )
    try:
        await request.app[_BROKER].decide(
            approval.id,
            operator=operator.strip()[:64],
            totp=code[:16],
            approve=action == "approve",
            reason=reason if isinstance(reason, str) else "",
            via="web",
        )
    except ApprovalRefused as exc:
        refreshed = await request.app[_BROKER].get(approval.id) or approval
        return await _render(request, refreshed, str(exc), 400)
    except AuditError:
        return await _render(request, approval, "The decision could not be audited.", 500)
    raise web.HTTPSeeOther(location=f"/approvals/{approval.id}", headers=HEADERS)


def _same_origin(request: web.Request) -> bool:
    """A browser's Origin header, when it names one, must be this page's or the public URL's.

    With ``Referrer-Policy: no-referrer`` browsers send ``Origin: null`` on form posts; then the
    CSRF token and the SameSite=Strict cookie are the check.
    """
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return True
    public = urlsplit(request.app[_BROKER].config.public_url)
    allowed = {f"{public.scheme}://{public.netloc}", f"{request.scheme}://{request.host}"}
    return origin in allowed


async def _recent_commands(broker: ApprovalBroker, approval: ApprovalRequest) -> list[str]:
    if approval.session_id is None:
        return []
    try:
        rows = await broker.audit.query(
            kinds=("command",), session_id=approval.session_id, newest_first=True, limit=10
        )
    except AuditError:
        return ["<tr><td colspan='3'>(audit log unavailable)</td></tr>"]
    out = []
    for row in rows:
        command = row.fields.get("command")
        decision = row.fields.get("decision", "")
        out.append(
            f"<tr><td>{_e(row.ts[11:19])}</td><td>{_e(decision)}</td>"
            f"<td><code>{_e(display_text(str(command or '')))}</code></td></tr>"
        )
    return out


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{_e(title)} · bastion</title><style>{STYLE}</style></head>"
        f"<body><main>{body}</main><script>{SCRIPT}</script></body></html>"
    )


def _page_for(r: ApprovalRequest, token: str, error: str, recent: list[str]) -> str:
    remaining = max(0, int(r.expires_at - time.time()))
    rows = [
        ("Request", f"<code>{_e(r.id)}</code>"),
        ("State", f"<span class='state {_e(r.state)}'>{_e(r.state)}</span>"),
        ("Requester", f"{_e(r.requester_key_id)} (certificate serial {_e(r.requester_serial)})"),
        ("Principals", _e(", ".join(r.principals))),
        ("Target", f"<code>{_e(r.login)}@{_e(r.target)}</code>"),
        (
            "Channel",
            _e(r.channel_kind) + (" (deferred: runs when re-sent)" if r.mode == "defer" else ""),
        ),
        ("Rules", _e(", ".join(r.rules))),
        ("Approvers", _e(", ".join(r.approvers) or "any enrolled operator")),
        ("Approvals", f"{r.approvals} of {r.approvals_required}"),
    ]
    if r.state == "pending":
        rows.append(
            (
                "Expires",
                f"{_e(iso(r.expires_at))} "
                f"(<span id='countdown' data-expires='{int(r.expires_at)}'>"
                f"in {remaining // 60}m {remaining % 60}s</span>)",
            )
        )
    else:
        who = ", ".join(r.decided_by)
        rows.append(("Decided", f"{_e(iso(r.decided_at))}" + (f" by {_e(who)}" if who else "")))
        if r.reason:
            rows.append(("Reason", _e(r.reason)))
    summary = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    parts = [
        f"<h1>Held command: <span class='state {_e(r.state)}'>{_e(r.state)}</span></h1>",
        f"<p role='alert' class='alert'>{_e(error)}</p>" if error else "",
        f"<dl>{summary}</dl>",
        "<h2>Command line as typed</h2>",
    ]
    if has_hidden(r.command):
        parts.append(
            "<p class='warn'>This line contains control, invisible or bidirectional characters; "
            "they are shown as <code>\\x..</code> / <code>\\u....</code> escapes.</p>"
        )
    parts.append(f"<pre><code>{_e(display_text(r.command))}</code></pre>")
    parts.append("<h2>What would run (normalised)</h2><ol>")
    parts.extend(f"<li><code>{_e(display_text(shlex.join(u)))}</code></li>" for u in r.units)
    parts.append("</ol>")
    if r.decisions:
        parts.append("<h2>Decisions</h2><ul>")
        parts.extend(
            f"<li>{_e(d.operator)} {'approved' if d.approve else 'denied'} via {_e(d.via)} at "
            f"{_e(iso(d.at))}{': ' + _e(d.reason) if d.reason else ''}</li>"
            for d in r.decisions
        )
        parts.append("</ul>")
    parts.append("<h2>Recent commands in this session</h2>")
    if recent:
        parts.append(
            "<table><thead><tr><th scope='col'>Time (UTC)</th><th scope='col'>Decision</th>"
            "<th scope='col'>Command</th></tr></thead><tbody>"
            + "".join(recent)
            + "</tbody></table>"
        )
    else:
        parts.append("<p>None recorded.</p>")
    if r.state == "pending":
        parts.append(
            f"<h2>Decide</h2><form method='post' action='/approvals/{_e(r.id)}'>"
            f"<input type='hidden' name='csrf' value='{_e(token)}'>"
            "<label for='operator'>Operator name</label>"
            "<input id='operator' name='operator' required autocomplete='username' "
            "autocapitalize='none' spellcheck='false' maxlength='64'>"
            "<label for='totp'>Authenticator code (TOTP)</label>"
            "<input id='totp' name='totp' required inputmode='numeric' pattern='[0-9]{6}' "
            "maxlength='6' autocomplete='one-time-code'>"
            "<label for='reason'>Reason (optional)</label>"
            "<input id='reason' name='reason' maxlength='500'>"
            "<div><button class='approve' type='submit' name='action' value='approve'>Approve"
            "</button><button class='deny' type='submit' name='action' value='deny'>Deny"
            "</button></div></form>"
        )
    return _page(f"{r.state} {r.id}", "".join(parts))
