"""The read-only web dashboard: ``GET /`` (open tickets) and ``GET /tickets/{source}/{key}``.

Server-rendered HTML (Jinja2 templates in ``slabot/service/templates``), no front-end build;
a few lines of vanilla JavaScript count each ticket down to its next breach, on the
server's clock (the page says what the server's time was and how fast its clock runs, so
the demo's accelerated clock counts down at its own pace).

Access: open, unless ``service.dashboard_token`` is set (then ``Authorization: Bearer
<token>`` or ``?token=<token>``; links carry the token on) or ``dashboard_user`` and
``dashboard_password`` are (HTTP basic auth); with both, either is accepted.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from slabot.service import board
from slabot.service.runtime import Runtime

TEMPLATES = Path(__file__).resolve().parent / "templates"
FILTERS = ("source", "priority", "plan", "assignee")
STATE_LABELS = {
    "breached": "breached",
    "at_risk": "at risk",
    "running": "running",
    "paused": "paused",
    "met": "met",
    "none": "no target",
}
SOURCE_LABELS = {"zendesk": "Zendesk", "jira": "Jira"}

Endpoint = Callable[[Request], Awaitable[Response]]


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES))
    env = templates.env
    env.filters["local"] = _local
    env.filters["iso"] = lambda d: d.astimezone(UTC).isoformat() if d else ""
    env.filters["epoch_ms"] = lambda d: int(d.timestamp() * 1000) if d else ""
    env.globals["STATE_LABELS"] = STATE_LABELS
    env.globals["SOURCE_LABELS"] = SOURCE_LABELS
    return templates


def _local(instant: datetime | None, zone: tzinfo | str | None = None) -> str:
    if instant is None:
        return "-"
    if isinstance(zone, str):
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(zone)
    return f"{instant.astimezone(zone or UTC):%a %d %b %Y %H:%M %Z}"


def dashboard_routes(runtime: Runtime) -> list[BaseRoute]:
    """The dashboard's routes over ``runtime`` (behind its access check)."""
    templates = _templates()
    guard = Access(runtime)
    rate = float(getattr(runtime.clock, "rate", 1.0))

    async def index(request: Request) -> Response:
        chosen = board.Filters(**{name: request.query_params.get(name) or None for name in FILTERS})
        now = runtime.clock()
        found = await run_in_threadpool(
            board.open_tickets, runtime.engine, runtime.store, now, chosen
        )
        return templates.TemplateResponse(
            request,
            "index.html",
            {
                "board": found,
                "filters": chosen,
                "now": now,
                "rate": rate,
                "token": guard.query_token(request),
                "link": _linker(guard.query_token(request)),
            },
        )

    async def ticket(request: Request) -> Response:
        source = request.path_params["source"]
        key = request.path_params["key"]
        now = runtime.clock()
        view = await run_in_threadpool(runtime.store.view_by_ref, f"{source}:{key}", now)
        if view is None:
            return HTMLResponse(f"<h1>No ticket {source}:{key} is stored</h1>", status_code=404)
        row = board.row_of(view, now)
        clocks = await run_in_threadpool(board.ticket_clocks, view)
        return templates.TemplateResponse(
            request,
            "ticket.html",
            {
                "row": row,
                "view": view,
                "clocks": clocks,
                "now": now,
                "rate": rate,
                "link": _linker(guard.query_token(request)),
            },
        )

    return [
        Route("/", guard(index), methods=["GET"]),
        Route("/tickets/{source}/{key:path}", guard(ticket), methods=["GET"]),
    ]


def _linker(token: str | None) -> Callable[..., str]:
    """``link("/tickets/zendesk/1", plan="premier")`` keeps ``?token=`` on every link."""

    def link(path: str, **params: Any) -> str:
        query = {k: v for k, v in params.items() if v}
        if token:
            query["token"] = token
        return f"{path}?{urlencode(query)}" if query else path

    return link


class Access:
    """The dashboard's optional access check (token, basic auth, or open)."""

    def __init__(self, runtime: Runtime) -> None:
        service = runtime.settings.service
        token = service.dashboard_token.get_secret_value() if service.dashboard_token else ""
        self._token = token.encode()
        self._user = (service.dashboard_user or "").encode()
        password = service.dashboard_password
        self._password = password.get_secret_value().encode() if password else b""

    @property
    def open(self) -> bool:
        return not self._token and not self._user

    def query_token(self, request: Request) -> str | None:
        """The token given in the query (so links can carry it), when it is the right one."""
        given = request.query_params.get("token")
        if given and self._token and hmac.compare_digest(given.encode(), self._token):
            return given
        return None

    def allows(self, request: Request) -> bool:
        if self.open:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if self._token:
            if scheme.lower() == "bearer" and hmac.compare_digest(
                value.strip().encode(), self._token
            ):
                return True
            if self.query_token(request) is not None:
                return True
        if self._user and scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True)
            except (binascii.Error, ValueError):
                return False
            user, _, password = decoded.partition(b":")
            user_ok = hmac.compare_digest(user, self._user)
            password_ok = hmac.compare_digest(password, self._password)
            return user_ok and password_ok
        return False

    def __call__(self, endpoint: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            if not self.allows(request):
                challenge = 'Basic realm="slabot"' if self._user else 'Bearer realm="slabot"'
                return Response(
                    "This dashboard needs its token (Authorization: Bearer, or ?token=) or its "
                    "user name and password.\n",
                    status_code=401,
                    headers={"WWW-Authenticate": challenge},
                    media_type="text/plain",
                )
            return await endpoint(request)

        return guarded
