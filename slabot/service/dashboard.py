"""The read-only web dashboard: ``GET /`` (open tickets), ``GET /tickets/{source}/{key}``, and
its login (``GET|POST /login``, ``POST /logout``).

Server-rendered HTML, every page from a Jinja2 template with autoescaping on (no HTML is
built in Python: tests/service/test_dashboard.py checks), no front-end build; a few lines of
vanilla JavaScript (allowed by the page's CSP nonce, see ``slabot.service.headers``) count
each ticket down to its next breach, on the server's clock (the page says what the server's
time was and how fast its clock runs, so the demo's accelerated clock counts down at its
own pace), and refresh the list every ``service.dashboard_refresh_seconds`` by fetching the
same address again and swapping in its rows (no meta refresh: filters, scroll position and
keyboard focus stay where they were).

The filters and the search are query parameters (``FILTERS``, ``unassigned=1``, ``q=``)
applied on the server (``slabot.service.board``), so a filtered list is a bookmark. The list
comes a page at a time: ``after=`` (the "Next page" link) says where the previous one ended.

Every instant a page shows is written by one macro (``templates/_time.html``): a
``<time datetime="2026-11-27T17:00:00Z">`` whose text is on the clocks of the page's one zone,
named in the page's header. That zone is the reader's: ``static/zone.js`` (served from
``/static/``, loaded with the page's nonce) reads the browser's zone, rewrites each time in it
and keeps it in the ``slabot_tz`` cookie, which the pages that follow are written in
(``page_zone``); without JavaScript, and before the first page, ``service.dashboard_timezone``.

Who may read it: ``slabot.service.access``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, available_timezones

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from slabot.service import board
from slabot.service.access import (
    Access,
    client_key,
    read_form,
    safe_next,
    same_origin,
)
from slabot.service.headers import csp_nonce
from slabot.service.reports_page import choose, duration, reports_page
from slabot.service.runtime import Runtime
from slabot.store.reports import ReportError

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
"""The pages' script files, served as ``/static/NAME`` to anyone (code, never data: the login
page loads them too)."""
ZONE_COOKIE = "slabot_tz"
"""The reader's time zone, as ``static/zone.js`` read it from the browser."""
MAX_ZONE_NAME = 64
FILTERS = ("source", "priority", "plan", "assignee", "state", "group")
"""Query parameters that each pick one value (empty: any)."""
PART_HEADER = "slabot-part"
"""``Slabot-Part: rows``: answer ``GET /`` with the list's rows only (the auto-refresh)."""
MAX_SEARCH = 200
"""A longer ``q=`` is cut: nothing a reader types is that long, and each word is matched
against every listed ticket."""
STATE_LABELS = {
    "breached": "breached",
    "at_risk": "at risk",
    "running": "running",
    "paused": "paused",
    "met": "met",
    "none": "no target",
}
SOURCE_LABELS = {"zendesk": "Zendesk", "jira": "Jira"}
NO_STORE = {"Cache-Control": "no-store"}
"""Pages showing tickets stay out of shared caches and the browser's disk cache."""
CROSS_SITE = "Refused: this form was posted from another site.\n"


def _templates(access: Access, zone: str = "UTC") -> Jinja2Templates:
    """The pages' templates; ``zone``: the pages' time zone when the reader's is not known
    (``service.dashboard_timezone``)."""
    # autoescape=True for every template whatever its name (select_autoescape would judge by
    # the file's extension).
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True)
    env.filters["wall_time"] = wall_time
    env.filters["utc_iso"] = utc_iso
    env.filters["epoch_ms"] = lambda d: int(d.timestamp() * 1000) if d else ""
    env.globals["STATE_LABELS"] = STATE_LABELS
    env.globals["SOURCE_LABELS"] = SOURCE_LABELS
    env.globals["link"] = _link
    env.filters["duration"] = duration

    def page_context(request: Request) -> dict[str, Any]:
        return {
            "csp_nonce": csp_nonce(request),
            "signed_in": access.signed_in(request),
            "page_zone": page_zone(request, zone),
        }

    return Jinja2Templates(env=env, context_processors=[page_context])


@cache
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def known_zone(name: str) -> bool:
    """Whether ``name`` is an IANA zone Python knows (``Asia/Kolkata``): anything else a
    cookie says (a typo, ``../../etc/passwd``, a megabyte) is never handed to ``ZoneInfo``."""
    return len(name) <= MAX_ZONE_NAME and name in _known_zones()


def page_zone(request: Request, default: str) -> str:
    """The zone a page is written in: the reader's, as their browser said it (the
    ``slabot_tz`` cookie ``static/zone.js`` sets) when it is a zone Python knows; ``default``
    otherwise (``service.dashboard_timezone``: first visit, no JavaScript, a bad cookie)."""
    named = request.cookies.get(ZONE_COOKIE)
    return named if named is not None and known_zone(named) else default


def wall_time(instant: datetime, zone: str) -> str:
    """``Fri 27 Nov 2026 12:00 EST``: ``instant`` on the clocks of ``zone`` (the page's zone).
    Only ``templates/_time.html`` calls it, inside the ``<time>`` it writes."""
    return f"{instant.astimezone(ZoneInfo(zone)):%a %d %b %Y %H:%M %Z}"


def utc_iso(instant: datetime) -> str:
    """``2026-11-27T17:00:00Z``: a ``<time>``'s ``datetime``, what static/zone.js reads."""
    return f"{instant.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def _link(path: str, **params: Any) -> str:
    """``link("/", plan="premier")``: a path with its non-empty query parameters (and never
    a credential: the session cookie carries the login)."""
    query = {k: v for k, v in params.items() if v}
    return f"{path}?{urlencode(query)}" if query else path


def filters_of(request: Request) -> board.Filters:
    """The filters in the address: ``/?state=breached&group=Billing&unassigned=1&q=acme``."""
    params = request.query_params
    search = " ".join((params.get("q") or "")[:MAX_SEARCH].split())
    return board.Filters(
        **{name: params.get(name) or None for name in FILTERS},
        unassigned=params.get("unassigned") in ("1", "on", "true"),
        q=search or None,
    )


def _next_page(chosen: board.Filters, after: str | None) -> str | None:
    """The address of the page after this one, with the same filters (None: no more)."""
    if after is None:
        return None
    fields = {name: getattr(chosen, name) for name in FILTERS}
    return _link(
        "/", **fields, unassigned="1" if chosen.unassigned else None, q=chosen.q, after=after
    )


def dashboard_routes(runtime: Runtime) -> list[BaseRoute]:
    """The dashboard's routes over ``runtime`` (behind its access check)."""
    guard = Access(runtime.settings.service)
    templates = _templates(guard, runtime.settings.service.dashboard_timezone)
    rate = float(getattr(runtime.clock, "rate", 1.0))

    def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        return templates.TemplateResponse(
            request,
            name,
            {"now": runtime.clock(), "rate": rate, **context},
            status_code=status,
            headers=NO_STORE,
        )

    refresh_seconds = runtime.settings.service.dashboard_refresh_seconds

    async def index(request: Request) -> Response:
        chosen = filters_of(request)
        now = runtime.clock()
        after = request.query_params.get("after") or None
        found = await run_in_threadpool(
            board.open_tickets, runtime.engine, runtime.store, now, chosen, after
        )
        # The auto-refresh asks for the rows alone (a page's own script sends this header).
        name = "rows.html" if request.headers.get(PART_HEADER) == "rows" else "index.html"
        return page(
            request,
            name,
            {
                "board": found,
                "filters": chosen,
                "now": now,
                "refresh_seconds": refresh_seconds,
                "next_page": _next_page(chosen, found.next),
            },
        )

    async def ticket(request: Request) -> Response:
        source = request.path_params["source"]
        key = request.path_params["key"]
        now = runtime.clock()
        view = await run_in_threadpool(runtime.store.view_by_ref, f"{source}:{key}", now)
        if view is None:
            return page(request, "missing.html", {"source": source, "key": key}, status=404)
        shown = await run_in_threadpool(board.shown_of, runtime.engine, [view.ticket_id])
        row = board.row_of(view, now, shown.get(view.ticket_id))
        clocks = await run_in_threadpool(board.ticket_clocks, view)
        return page(
            request, "ticket.html", {"row": row, "view": view, "clocks": clocks, "now": now}
        )

    async def reports(request: Request) -> Response:
        now = runtime.clock()
        params = request.query_params
        try:
            window, mode = choose(params, now)
        except ReportError as error:
            context = {"report": None, "error": str(error), "params": params}
            return page(request, "reports.html", context, status=400)
        found = await run_in_threadpool(
            reports_page, runtime.engine, runtime.policies, window, mode, now
        )
        return page(request, "reports.html", {"report": found, "error": None, "params": params})

    def login_page(request: Request, back_to: str, error: str | None, status: int) -> Response:
        return page(
            request,
            "login.html",
            {
                "next": back_to,
                "error": error,
                "wants_token": guard.wants_token,
                "wants_password": guard.wants_password,
            },
            status=status,
        )

    async def login_form(request: Request) -> Response:
        back_to = safe_next(request.query_params.get("next"))
        if guard.open or guard.signed_in(request):
            return RedirectResponse(back_to, status_code=303)
        return login_page(request, back_to, None, 200)

    async def login(request: Request) -> Response:
        if guard.open:
            return RedirectResponse("/", status_code=303)
        if not same_origin(request):
            return PlainTextResponse(CROSS_SITE, status_code=403)
        refused = guard.throttled(request)
        if refused is not None:
            return refused
        fields = await read_form(request)
        if fields is None:
            return PlainTextResponse(
                "Send the login form (application/x-www-form-urlencoded, token or user and "
                "password).\n",
                status_code=400,
            )
        back_to = safe_next(fields.get("next"))
        if not guard.check_form(fields):
            guard.log_failure(request, "login")
            return login_page(request, back_to, "Those credentials are not right.", 401)
        guard.throttle.succeeded(client_key(request))
        log.info("dashboard: signed in from %s", client_key(request))
        answer = RedirectResponse(back_to, status_code=303, headers=NO_STORE)
        guard.session_cookie(answer, request)
        return answer

    async def logout(request: Request) -> Response:
        if not same_origin(request):
            return PlainTextResponse(CROSS_SITE, status_code=403)
        answer = RedirectResponse("/login" if not guard.open else "/", status_code=303)
        guard.clear_cookie(answer, request)
        return answer

    return [
        Route("/", guard(index), methods=["GET"]),
        Route("/tickets/{source}/{key:path}", guard(ticket), methods=["GET"]),
        Route("/reports", guard(reports), methods=["GET"]),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
