"""The approval page: ``GET/POST /approvals/{id}`` on the bastion's aiohttp server.

The page is plain server-rendered HTML (works without JavaScript; a hashed inline script only
ticks the countdown). Two links lead to it:

- the *status link* ``/approvals/{id}`` is what the agent is shown: anyone holding it may see
  the request's state (the id carries 80 random bits) but not decide, and a decided request
  does not name its approvers there;
- the *operator link* ``/approvals/{id}?op=...`` adds a signature over the id and the deadline
  (``ApprovalBroker.link_token``) and is delivered only to operators (chat notices, ``bastion
  approvals show``). Only it shows the decision form, and a POST must carry it: the second
  factor the agent cannot see, next to the operator's TOTP code.

POSTs also need a CSRF token: a random cookie (SameSite=Strict, HttpOnly) and, in a hidden
field, an HMAC of that cookie and the request id under a per-process key (double submit bound
to the request); anything else gets 403. Failed attempts are counted per source address, per
request and per operator name by ``PageGuard`` (page only; the operator's CLI/Slack standing is
untouched); a limit that trips answers 429 and raises an alert (log line, metric, audit row).
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
from collections.abc import Callable
from datetime import datetime
from urllib.parse import quote, urlsplit

from aiohttp import web

from bastion.approval.broker import ApprovalBroker
from bastion.approval.guard import PageGuard, Tripped
from bastion.approval.ids import parse_request_id
from bastion.approval.model import BAD_CREDENTIALS, ApprovalRefused, ApprovalRequest, iso
from bastion.approval.render import display_text, escape_visible, has_hidden
from bastion.audit.errors import AuditError
from bastion.errors import BastionError
from bastion.ops.metrics import Metrics

COOKIE = "bastion_csrf"
_BROKER: web.AppKey[ApprovalBroker] = web.AppKey("approval_broker", ApprovalBroker)
_KEY: web.AppKey[bytes] = web.AppKey("approval_csrf_key", bytes)
_GUARD: web.AppKey[PageGuard] = web.AppKey("approval_guard", PageGuard)
_METRICS: web.AppKey[Metrics | None] = web.AppKey("approval_metrics")
_CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("approval_clock")
MAX_FORM = 4096
STATUS_ONLY = (
    "This link shows the request's status; it cannot decide. Operators decide from the link in "
    "their notification, or at the bastion host with: bastion approvals approve {id}"
)

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
    "input[type=checkbox]{width:1.25rem;height:1.25rem}td .local{display:block;color:#333}"
    ".results{border:2px solid #0b4a17;background:#eefaf0;padding:.5rem 2rem}"
)
SCRIPT = (
    "(function(){var e=document.getElementById('countdown');if(e){"
    "var end=Number(e.getAttribute('data-expires'));function t(){"
    "var s=Math.max(0,Math.round(end-Date.now()/1000));"
    "e.textContent=s>0?'in '+Math.floor(s/60)+'m '+(s%60)+'s':'now (reload)';"
    "if(s>0)setTimeout(t,1000);}t();}"
    "function p(n){return(n<10?'0':'')+n;}"
    "var l=document.querySelectorAll('.local[data-ts]');for(var i=0;i<l.length;i++){"
    "var d=new Date(Number(l[i].getAttribute('data-ts'))*1000),o=-d.getTimezoneOffset(),"
    "a=Math.abs(o);l[i].textContent=' (local '+d.getFullYear()+'-'+p(d.getMonth()+1)+'-'"
    "+p(d.getDate())+' '+p(d.getHours())+':'+p(d.getMinutes())+':'+p(d.getSeconds())"
    "+' UTC'+(o<0?'-':'+')+p(Math.floor(a/60))+':'+p(a%60)+')';}})();"
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
    app: web.Application,
    broker: ApprovalBroker,
    *,
    csrf_key: bytes | None = None,
    guard: PageGuard | None = None,
    metrics: Metrics | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Serve ``/approvals/{id}`` (page and decision form) from ``broker`` on ``app``."""
    app[_BROKER] = broker
    app[_KEY] = csrf_key or secrets.token_bytes(32)
    app[_GUARD] = guard or PageGuard()
    app[_METRICS] = metrics
    app[_CLOCK] = clock
    app.router.add_get("/approvals/", _show_list)  # the cookie's path covers it
    app.router.add_post("/approvals/", _post_list)
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
    link = request.query.get("op")
    return await _render(request, approval, link if _valid_link(request, approval, link) else None)


def _valid_link(request: web.Request, approval: ApprovalRequest, link: object) -> bool:
    return request.app[_BROKER].check_link(approval, link)


async def _render(
    request: web.Request,
    approval: ApprovalRequest,
    link: str | None,
    error: str = "",
    status: int = 200,
    filled: tuple[str, str] = ("", ""),
) -> web.Response:
    """The operator page when ``link`` is the request's operator token, else the status page.
    ``filled`` (operator name, reason) stays in the form after a refused attempt."""
    cookie = _cookie_value(request) or secrets.token_urlsafe(24)
    token = _token(request.app[_KEY], cookie, approval.id)
    context = await _recent_commands(request.app[_BROKER], approval)
    list_url = request.app[_BROKER].list_url() if link is not None else ""
    page = _page_for(approval, token, error, context, link, filled, list_url)
    return _with_cookie(request, _respond(page, status), cookie)


def _with_cookie(request: web.Request, response: web.Response, cookie: str) -> web.Response:
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


def _refusal(title: str, message: str, status: int) -> web.Response:
    return _respond(
        _page(title, f"<h1>{_e(title)}</h1><p role='alert' class='alert'>{_e(message)}</p>"),
        status,
    )


async def _tripped(request: web.Request, tripped: list[Tripped], approval_id: str) -> None:
    """A limit tripped: guessing detected. Metric here, log line and audit row by the broker."""
    metrics = request.app[_METRICS]
    for t in tripped:
        if metrics is not None:
            metrics.approval_guessing(t.scope)
        await request.app[_BROKER].guessing_detected(
            scope=t.scope,
            key=t.key,
            failures=t.failures,
            address=request.remote or "",
            request_id=approval_id,
        )


async def _post(request: web.Request) -> web.Response:
    approval = await _load(request)
    if request.content_length is not None and request.content_length > MAX_FORM:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_FORM, actual_size=request.content_length)
    form = await request.post()
    guard = request.app[_GUARD]
    now = request.app[_CLOCK]()
    address = request.remote or ""
    sent_link = form.get("op") or request.query.get("op")  # the form field, or the action URL
    link = (
        sent_link
        if isinstance(sent_link, str) and _valid_link(request, approval, sent_link)
        else None
    )
    if guard.address_locked(address, with_link=link is not None, now=now):
        return _refusal(
            "Too many attempts",
            "Too many failed attempts from this address; try again later, or decide with "
            "the CLI at the bastion host or in Slack.",
            429,
        )
    cookie = _cookie_value(request)
    sent = form.get("csrf")
    if (
        cookie is None
        or not isinstance(sent, str)
        or not hmac.compare_digest(sent, _token(request.app[_KEY], cookie, approval.id))
        or not _same_origin(request)
    ):
        # Counted with the link-less posts: a forged or replayed form is not an operator's.
        tripped = guard.failed(
            address=address, with_link=False, request_id=approval.id, operator=None, now=now
        )
        await _tripped(request, tripped, approval.id)
        return _respond(
            _page(
                "Forbidden",
                "<h1>Forbidden</h1><p role='alert' class='alert'>"
                "The form was not sent from this page (missing or wrong CSRF token). "
                "Reload the page and try again.</p>",
            ),
            403,
        )
    if link is None:  # the status link: the agent's, or a guess
        tripped = guard.failed(
            address=address, with_link=False, request_id=approval.id, operator=None, now=now
        )
        await _tripped(request, tripped, approval.id)
        return _refusal("Forbidden", STATUS_ONLY.format(id=approval.id), 403)
    action = form.get("action")
    operator, code, reason = (form.get(k) for k in ("operator", "totp", "reason"))
    if (
        action not in ("approve", "deny")
        or not isinstance(operator, str)
        or not isinstance(code, str)
    ):
        return await _render(
            request, approval, link, "Choose Approve or Deny and fill in both fields.", 400
        )
    name = operator.strip()[:64]
    if guard.request_locked(approval.id, now) or guard.operator_locked(name, now):
        return _refusal(
            "Too many attempts",
            "Too many wrong codes on this page for this request or operator name; wait, or "
            "decide with the CLI at the bastion host or in Slack.",
            429,
        )
    try:
        await request.app[_BROKER].decide(
            approval.id,
            operator=name,
            totp=code[:16],
            approve=action == "approve",
            reason=reason if isinstance(reason, str) else "",
            via="web",
        )
    except ApprovalRefused as exc:
        message = str(exc)
        if exc.kind in ("credentials", "locked"):
            message = BAD_CREDENTIALS  # a locked operator must not look different on the page
            tripped = guard.failed(
                address=address, with_link=True, request_id=approval.id, operator=name, now=now
            )
            await _tripped(request, tripped, approval.id)
        refreshed = await request.app[_BROKER].get(approval.id) or approval
        kept = (name, reason if isinstance(reason, str) else "")
        return await _render(request, refreshed, link, message, 400, kept)
    except AuditError:
        return await _render(request, approval, link, "The decision could not be audited.", 500)
    raise web.HTTPSeeOther(location=_self_url(approval.id, link), headers=HEADERS)


def _self_url(request_id: str, link: str | None) -> str:
    return f"/approvals/{request_id}" + (f"?op={quote(link, safe='')}" if link else "")


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
        try:  # the viewer's local time beside it (audit ts is UTC ISO 8601)
            at = int(datetime.fromisoformat(row.ts).timestamp())
            local = f"<span class='local' data-ts='{at}'></span>"
        except ValueError:
            local = ""
        out.append(
            f"<tr><td>{_e(row.ts[11:19])}{local}</td><td>{_e(decision)}</td>"
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


def _when(ts: float | None) -> str:
    """A time in UTC, with the viewer's local time beside it (filled in by the page script)."""
    if ts is None:
        return "–"
    return f"{_e(iso(ts))}<span class='local' data-ts='{int(ts)}'></span>"


def _page_for(
    r: ApprovalRequest,
    token: str,
    error: str,
    recent: list[str],
    link: str | None,
    filled: tuple[str, str] = ("", ""),
    list_url: str = "",
) -> str:
    """``link`` set: the operator view (form, who decided); None: the status view."""
    remaining = max(0, int(r.expires_at - time.time()))
    rows = [
        ("Request", f"<code>{_e(r.id)}</code>"),
        ("State", f"<span class='state {_e(r.state)}'>{_e(r.state)}</span>"),
        (
            "Requester",
            f"{_e(escape_visible(r.requester_key_id))} "
            f"(certificate serial {_e(r.requester_serial)})",
        ),
        ("Principals", _e(escape_visible(", ".join(r.principals)))),
        ("Target", f"<code>{_e(r.login)}@{_e(r.target)}</code>"),
        (
            "Channel",
            _e(r.channel_kind) + (" (deferred: runs when re-sent)" if r.mode == "defer" else ""),
        ),
        ("Rules", _e(", ".join(r.rules))),
        ("Why held", _e(display_text(r.explanation)) or "–"),
        ("Approvers", _e(", ".join(r.approvers) or "any enrolled operator")),
        ("Approvals", f"{r.approvals} of {r.approvals_required}"),
    ]
    if r.state == "pending":
        rows.append(
            (
                "Expires",
                f"{_when(r.expires_at)} "
                f"(<span id='countdown' data-expires='{int(r.expires_at)}'>"
                f"in {remaining // 60}m {remaining % 60}s</span>)",
            )
        )
    elif link is not None:
        who = ", ".join(r.decided_by)
        rows.append(("Decided", _when(r.decided_at) + (f" by {_e(who)}" if who else "")))
        if r.reason:
            rows.append(("Reason", _e(display_text(r.reason))))
    else:  # who decided, and their reason, only for operators
        rows.append(("Decided", _when(r.decided_at)))
    summary = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    parts = [
        f"<h1>Held command: <span class='state {_e(r.state)}'>{_e(r.state)}</span></h1>",
        f"<p role='alert' class='alert'>{_e(error)}</p>" if error else "",
        f"<dl>{summary}</dl>",
        "" if link is not None else f"<p class='warn'>{_e(STATUS_ONLY.format(id=r.id))}</p>",
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
    if r.decisions and link is not None:
        parts.append("<h2>Decisions</h2><ul>")
        parts.extend(
            f"<li>{_e(d.operator)} {'approved' if d.approve else 'denied'} via {_e(d.via)} at "
            f"{_when(d.at)}{': ' + _e(display_text(d.reason)) if d.reason else ''}</li>"
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
    if r.state == "pending" and link is not None:
        parts.append(
            f"<h2>Decide</h2><form method='post' action='{_e(_self_url(r.id, link))}'>"
            f"<input type='hidden' name='csrf' value='{_e(token)}'>"
            f"<input type='hidden' name='op' value='{_e(link)}'>"
            + _credential_fields(filled)
            + "<div><button class='approve' type='submit' name='action' value='approve'>Approve"
            "</button><button class='deny' type='submit' name='action' value='deny'>Deny"
            "</button></div></form>"
        )
    if list_url:
        parts.append(f"<p><a href='{_e(_path(list_url))}'>All pending requests</a></p>")
    return _page(f"{r.state} {r.id}", "".join(parts))


def _credential_fields(filled: tuple[str, str]) -> str:
    """Operator name (kept after a refused attempt), TOTP code (never kept), reason."""
    name, reason = filled
    return (
        "<label for='operator'>Operator name</label>"
        f"<input id='operator' name='operator' required autocomplete='username' "
        f"autocapitalize='none' spellcheck='false' maxlength='64' value='{_e(name)}'>"
        "<label for='totp'>Authenticator code (TOTP)</label>"
        "<input id='totp' name='totp' required inputmode='numeric' pattern='[0-9]{6}' "
        "maxlength='6' autocomplete='one-time-code'>"
        "<label for='reason'>Reason (optional)</label>"
        f"<input id='reason' name='reason' maxlength='500' value='{_e(reason)}'>"
    )


def _path(url: str) -> str:
    """A link on this page as a path: the page may be reached on another host name."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


# -- the operators' list of pending requests -------------------------------------------------
LIST_ONLY = (
    "The list of pending requests opens only from the operator list link (printed by "
    "bastion approvals list at the bastion host, and linked from each request's operator page)."
)
_LIST_CSRF = "pending-list"


async def _show_list(request: web.Request) -> web.Response:
    link = request.query.get("op")
    if not request.app[_BROKER].check_list_link(link):
        return _refusal("Forbidden", LIST_ONLY, 403)
    assert isinstance(link, str)
    return await _render_list(request, link)


async def _render_list(
    request: web.Request,
    link: str,
    message: str = "",
    status: int = 200,
    filled: tuple[str, str] = ("", ""),
    results: list[str] | None = None,
) -> web.Response:
    broker = request.app[_BROKER]
    pending = await broker.list(states=("pending",), limit=100)
    cookie = _cookie_value(request) or secrets.token_urlsafe(24)
    token = _token(request.app[_KEY], cookie, _LIST_CSRF)
    rows = []
    for r in sorted(pending, key=lambda x: x.created_at):
        value = f"{r.id}:{broker.units_digest(r)}"
        units = "<br>".join(_e(display_text(shlex.join(u))) for u in r.units)
        rows.append(
            "<tr>"
            f"<td><input type='checkbox' name='pick' value='{_e(value)}' id='pick-{_e(r.id)}' "
            f"aria-label='select {_e(r.id)}'></td>"
            f"<td><a href='{_e(_path(r.operator_url or broker.operator_url(r.id, r.expires_at)))}'>"
            f"<code>{_e(r.id)}</code></a></td>"
            f"<td>{_e(escape_visible(r.requester_key_id))}<br><code>{_e(r.login)}@"
            f"{_e(r.target)}</code></td>"
            f"<td><code>{units}</code></td>"
            f"<td>{_e(', '.join(r.rules))}<br>{_e(display_text(r.explanation))}</td>"
            f"<td>{r.approvals} of {r.approvals_required}</td>"
            f"<td>{_when(r.expires_at)}</td>"
            "</tr>"
        )
    parts = ["<h1>Pending requests</h1>"]
    if message:
        parts.append(f"<p role='alert' class='alert'>{_e(message)}</p>")
    if results:
        parts.append("<ul class='results'>" + "".join(f"<li>{_e(x)}</li>" for x in results)
                     + "</ul>")  # fmt: skip
    if not rows:
        parts.append("<p>No request is pending.</p>")
    else:
        parts.append(
            f"<form method='post' action='{_e(_list_path(link))}'>"
            f"<input type='hidden' name='csrf' value='{_e(token)}'>"
            f"<input type='hidden' name='op' value='{_e(link)}'>"
            "<table><thead><tr><th scope='col'>Pick</th><th scope='col'>Request</th>"
            "<th scope='col'>Requester and target</th><th scope='col'>What would run</th>"
            "<th scope='col'>Rules and why held</th><th scope='col'>Approvals</th>"
            "<th scope='col'>Expires (UTC)</th></tr></thead><tbody>"
            + "".join(rows)
            + "</tbody></table>"
            "<p>One authenticator code decides every ticked request (each for exactly the "
            "commands shown in its row).</p>"
            + _credential_fields(filled)
            + "<div><button class='approve' type='submit' name='action' value='approve'>"
            "Approve selected</button><button class='deny' type='submit' name='action' "
            "value='deny'>Deny selected</button></div></form>"
        )
    page = _page("Pending requests", "".join(parts))
    return _with_cookie(request, _respond(page, status), cookie)


def _list_path(link: str) -> str:
    return f"/approvals/?op={quote(link, safe='')}"


async def _post_list(request: web.Request) -> web.Response:
    broker = request.app[_BROKER]
    if request.content_length is not None and request.content_length > MAX_FORM * 4:
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_FORM * 4, actual_size=request.content_length
        )
    form = await request.post()
    guard = request.app[_GUARD]
    now = request.app[_CLOCK]()
    address = request.remote or ""
    sent_link = form.get("op") or request.query.get("op")
    link = sent_link if isinstance(sent_link, str) and broker.check_list_link(sent_link) else None
    if guard.address_locked(address, with_link=link is not None, now=now):
        return _refusal("Too many attempts", "Too many failed attempts from this address.", 429)
    cookie = _cookie_value(request)
    sent = form.get("csrf")
    if (
        link is None
        or cookie is None
        or not isinstance(sent, str)
        or not hmac.compare_digest(sent, _token(request.app[_KEY], cookie, _LIST_CSRF))
        or not _same_origin(request)
    ):
        tripped = guard.failed(
            address=address, with_link=False, request_id=_LIST_CSRF, operator=None, now=now
        )
        await _tripped(request, tripped, _LIST_CSRF)
        return _refusal("Forbidden", LIST_ONLY, 403)
    action = form.get("action")
    operator, code, reason = (form.get(k) for k in ("operator", "totp", "reason"))
    name = operator.strip()[:64] if isinstance(operator, str) else ""
    kept = (name, reason if isinstance(reason, str) else "")
    picks = [p.partition(":") for p in form.getall("pick", []) if isinstance(p, str)]
    items = [(i, d) for i, _, d in picks if i and d]
    if action not in ("approve", "deny") or not name or not isinstance(code, str) or not items:
        return await _render_list(
            request, link, "Tick at least one request, fill in both fields, and choose.", 400,
            kept,
        )  # fmt: skip
    if guard.operator_locked(name, now):
        return _refusal("Too many attempts", "Too many wrong codes for this operator name.", 429)
    try:
        results = await broker.decide_batch(
            items, operator=name, totp=code[:16], approve=action == "approve",
            reason=kept[1], via="web",
        )  # fmt: skip
    except ApprovalRefused as exc:
        message = str(exc)
        if exc.kind in ("credentials", "locked"):
            message = BAD_CREDENTIALS
            tripped = guard.failed(
                address=address, with_link=True, request_id=_LIST_CSRF, operator=name, now=now
            )
            await _tripped(request, tripped, _LIST_CSRF)
        return await _render_list(request, link, message, 400, kept)
    except (AuditError, BastionError) as exc:
        return await _render_list(request, link, f"Not decided: {exc}", 400, kept)
    lines = [
        f"{rid}: {r if isinstance(r, str) else r.state}"
        + ("" if isinstance(r, str) or r.final else f" ({r.approvals} of {r.required})")
        for rid, r in results
    ]
    return await _render_list(request, link, results=lines, filled=(name, ""))
