"""The HTTP app (Starlette): webhooks, Slack's requests, health, metrics and the dashboard.

Routes:

- ``POST /webhooks/zendesk``, ``POST /webhooks/jira``: the connectors' own endpoints
  (verify, record, queue, answer 202); 404 with a message when that helpdesk is not
  configured;
- ``POST /slack/events``: Bolt's ``dispatch`` in a worker thread (404 when Slack is not
  configured);
- ``GET /healthz``: the process answers; ``GET /readyz``: the database answers and no
  connector's credentials are refused nor has an activity never succeeded past the grace
  period (503 otherwise, the reasons in ``problems``), with each enabled connector's state,
  last success and error per activity;
- ``GET /metrics``: Prometheus;
- ``GET|POST /noop``: answers at once, only when ``service.noop_endpoint`` is on (the
  benchmark's baseline);
- ``/``, ``/tickets/...``, ``/login``, ``/logout``: the read-only dashboard
  (``slabot.service.dashboard``; who may read it: ``slabot.service.access``).

Every response, whatever the route, carries the security headers of
``slabot.service.headers`` (CSP, X-Frame-Options, nosniff, Referrer-Policy).

Every request goes through ``RequestLimits`` (``slabot.service.limits``): headers over
``service.max_header_bytes`` are refused 431, bodies over ``service.max_body_bytes`` 413
before they are read whole, bodies slower than ``service.body_timeout_seconds`` 408.

The lifespan starts the webhook workers (and the scheduler, when given one); on shutdown
(SIGTERM) it drains the queued deliveries and lets the running job (a flush) finish.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from slabot.service.dashboard import dashboard_routes
from slabot.service.headers import SecurityHeaders
from slabot.service.limits import RequestLimits
from slabot.service.metrics import CONTENT_TYPE
from slabot.service.runtime import Runtime

log = logging.getLogger(__name__)

WEBHOOK_PATHS = {"zendesk": "/webhooks/zendesk", "jira": "/webhooks/jira"}
SLACK_PATH = "/slack/events"
_NAMES = {"zendesk": "Zendesk", "jira": "Jira", "slack": "Slack"}


def create_app(runtime: Runtime, scheduler: Any = None) -> ASGIApp:
    """The service's ASGI app over ``runtime``; ``scheduler`` (an APScheduler, jobs already
    registered) is started and stopped with the app."""
    state = {"draining": False}
    routes: list[BaseRoute] = []
    for name, path in WEBHOOK_PATHS.items():
        helpdesk = runtime.helpdesks.get(name)
        if helpdesk is not None:
            routes.extend(helpdesk.webhook.routes())
        else:
            routes.append(Route(path, _not_configured(name), methods=["POST"]))
    routes.append(Route(SLACK_PATH, _slack_endpoint(runtime), methods=["POST"]))

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> Response:
        problem = await run_in_threadpool(runtime.database_ok)
        problems = runtime.health.problems()  # refused credentials, never succeeded
        ready = problem is None and not problems and not state["draining"]
        body: dict[str, Any] = {
            "status": "ready" if ready else ("draining" if state["draining"] else "unavailable"),
            "database": "ok" if problem is None else problem,
            "problems": problems,
            "leader": runtime.leadership.is_leader,
            "connectors": {
                name: runtime.health.snapshot().get(name, {}) for name in runtime.settings.enabled
            },
        }
        if problem is None:
            # Data problems are shown, not an outage: readiness stays 200.
            body.update(await run_in_threadpool(_data_warnings, runtime))
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics(_request: Request) -> Response:
        body = await run_in_threadpool(runtime.metrics.render)
        return Response(body, media_type=CONTENT_TYPE)

    routes += [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    if runtime.settings.service.noop_endpoint:

        async def noop(request: Request) -> Response:
            await request.body()
            return JSONResponse({"status": "noop"}, status_code=202)

        routes.append(Route("/noop", noop, methods=["GET", "POST"]))
    routes += dashboard_routes(runtime)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        runtime.start()
        if scheduler is not None:
            scheduler.start()
        try:
            yield
        finally:
            state["draining"] = True
            await anyio.to_thread.run_sync(_shut_down, runtime, scheduler)

    service = runtime.settings.service
    limits = Middleware(
        RequestLimits,
        max_body_bytes=service.max_body_bytes,
        max_header_bytes=service.max_header_bytes,
        body_timeout_seconds=service.body_timeout_seconds,
    )
    # Outside Starlette's own middleware, so its error pages (and the limits' refusals)
    # carry the headers too.
    return SecurityHeaders(Starlette(routes=routes, middleware=[limits], lifespan=lifespan))


def _data_warnings(runtime: Runtime) -> dict[str, Any]:
    """``/readyz``'s ``warnings`` (readable lines) and ``unknown_plans`` (policy -> plan ->
    open tickets): what is stored but cannot be placed under its policy. Empty when all is
    well, or when the count itself failed (the database check above says why)."""
    try:
        counts = runtime.unknown_plans(attempts=1)
    except Exception as error:
        log.warning("readyz: unknown plans could not be counted (%s)", type(error).__name__)
        return {}
    if not counts:
        return {"warnings": []}
    by_policy: dict[str, dict[str, int]] = {}
    for (policy, plan), count in sorted(counts.items()):
        by_policy.setdefault(policy, {})[plan] = count
    total = sum(counts.values())
    named = ", ".join(
        f"{plan!r} ({policy}: {count})" for (policy, plan), count in sorted(counts.items())
    )
    tickets = (
        "1 open ticket names a plan its"
        if total == 1
        else f"{total} open tickets name a plan their"
    )
    warning = (
        f"{tickets} policy does not know: {named}; stored and tagged, but without targets (or "
        "with the default plan's): add the plan to the policy (then slabot recompute) or "
        "correct the plan in the helpdesk"
    )
    return {"warnings": [warning], "unknown_plans": by_policy}


def _shut_down(runtime: Runtime, scheduler: Any) -> None:
    timeout = runtime.settings.service.drain_timeout_seconds
    log.info("shutting down: draining webhook queues and the running jobs (up to %gs)", timeout)
    runtime.drain(timeout)
    if scheduler is not None and scheduler.running:
        scheduler.shutdown(wait=True)  # the job running now (a flush) finishes first
    log.info("shut down cleanly")


def _not_configured(name: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(_request: Request) -> Response:
        return JSONResponse(
            {"error": f"{_NAMES[name]} is not configured on this slabot (see docs/{name}.md)"},
            status_code=404,
        )

    return endpoint


def _slack_endpoint(runtime: Runtime) -> Callable[[Request], Awaitable[Response]]:
    if runtime.slack is None:
        return _not_configured("slack")
    from slabot.slack.transport import slack_events_endpoint

    secret = runtime.settings.slack.signing_secret if runtime.settings.slack else None
    handle = slack_events_endpoint(runtime.slack.app, secret.reveal() if secret else None)
    counts = runtime.slack_counts

    async def endpoint(request: Request) -> Response:
        response = await handle(request)
        status = response.status_code
        result = (
            "accepted"
            if status < 300
            else "unauthorized"
            if status == 401
            else "malformed"
            if 400 <= status < 500
            else "error"
        )
        counts[result] = counts.get(result, 0) + 1
        return response

    return endpoint
