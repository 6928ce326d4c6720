"""Security headers on every HTTP response of the service, and each response's CSP nonce.

A pure ASGI middleware (it wraps the whole app, Starlette's own error pages included, and
never reads a body): every response carries

- ``Content-Security-Policy``: nothing may load but what the page names (scripts may fetch
  from this origin only), scripts and style blocks only with this response's nonce (no
  ``'unsafe-inline'``: an injected ``<script>`` or ``onerror=`` does not run even if
  escaping ever failed), forms post only to this origin, and no site may frame it
  (``frame-ancestors 'none'``);
- ``X-Frame-Options: DENY`` (the same for browsers without CSP level 2);
- ``X-Content-Type-Options: nosniff`` (a JSON or text answer is never run as HTML);
- ``Referrer-Policy: no-referrer`` (a dashboard address never travels to another site).

The nonce is fresh per request (``secrets.token_urlsafe``: 128 bits) and is read by the
templates through ``csp_nonce(request)``. A header the app set itself is left as it is.
"""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NONCE_KEY = "csp_nonce"

POLICY = (
    "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
"""Inline ``style=`` attributes and ``on...=`` handlers are refused too: the templates set
positions from ``data-`` attributes in the page's script (tests/service/test_dashboard.py
checks that no template carries either). ``connect-src 'self'``: the dashboard's
auto-refresh fetches its own address again, and nothing else."""

FIXED = (
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
_CSP = b"content-security-policy"


def csp_nonce(request: Request) -> str:
    """The nonce this response's Content-Security-Policy allows (empty outside the app)."""
    state = request.scope.get("state") or {}
    return str(state.get(NONCE_KEY, ""))


class SecurityHeaders:
    """``SecurityHeaders(app)``: ``app`` with the headers above on each HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        # uvicorn gives each request its own copy of the lifespan state: safe to add to.
        scope.setdefault("state", {})[NONCE_KEY] = nonce

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Raw header pairs (not MutableHeaders): a few microseconds on each webhook.
                raw = list(message.get("headers", ()))
                present = {bytes(name).lower() for name, _ in raw}
                if _CSP not in present:
                    raw.append((_CSP, POLICY.format(nonce=nonce).encode("latin-1")))
                raw.extend(pair for pair in FIXED if pair[0] not in present)
                message["headers"] = raw
            await send(message)

        await self.app(scope, receive, send_with_headers)
