"""The HTTP app (Starlette): webhooks, Slack's requests, health, metrics and the dashboard.

Routes:

- ``POST /webhooks/zendesk``, ``POST /webhooks/jira``: the connectors' own endpoints
  (verify, record, queue, answer 202); 404 with a message when that helpdesk is not
  configured;
- ``POST /slack/events``: Bolt's ``dispatch`` in a worker thread (404 when Slack is not
  configured);
- ``GET /healthz``: the process answers; ``GET /readyz``: the database answers (503 if
  not), with each enabled connector's last success and error per activity;
- ``GET /metrics``: Prometheus;
- ``GET|POST /noop``: answers at once, only when ``service.noop_endpoint`` is on (the
  benchmark's baseline);
- ``/`` and ``/tickets/...``: the read-only dashboard (``slabot.service.dashboard``).

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

from slabot.service.dashboard import dashboard_routes
from slabot.service.limits import RequestLimits
from slabot.service.metrics import CONTENT_TYPE
from slabot.service.runtime import Runtime

log = logging.getLogger(__name__)

WEBHOOK_PATHS = {"zendesk": "/webhooks/zendesk", "jira": "/webhooks/jira"}
SLACK_PATH = "/slack/events"
_NAMES = {"zendesk": "Zendesk", "jira": "Jira", "slack": "Slack"}


def create_app(runtime: Runtime, scheduler: Any = None) -> Starlette:
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
        ready = problem is None and not state["draining"]
        body = {
            "status": "ready" if ready else ("draining" if state["draining"] else "unavailable"),
            "database": "ok" if problem is None else problem,
            "leader": runtime.leadership.is_leader,
            "connectors": {
                name: runtime.health.snapshot().get(name, {}) for name in runtime.settings.enabled
            },
        }
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
    return Starlette(routes=routes, middleware=[limits], lifespan=lifespan)


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
