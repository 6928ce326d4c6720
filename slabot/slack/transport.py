"""How Slack's requests reach the app: HTTP at ``POST /slack/events``, or Socket Mode.

HTTP: ``slack_events_endpoint(app)`` is a Starlette endpoint (the service mounts it) that
runs Bolt's synchronous ``dispatch`` in a worker thread, so acknowledging one request never
blocks the event loop for the others. Socket Mode (``SLACK_APP_TOKEN`` set): Slack's
requests arrive over a WebSocket the app opens; nothing needs to be reachable from Slack.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from slack_bolt import App, BoltRequest
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.starlette.handler import to_starlette_response
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from slabot.slack.settings import SlackSettings

EVENTS_PATH = "/slack/events"


def slack_events_endpoint(app: App) -> Callable[[Request], Awaitable[Response]]:
    """The ``POST /slack/events`` endpoint: commands, interactivity and events."""

    async def endpoint(request: Request) -> Response:
        body = (await request.body()).decode("utf-8")
        bolt_request = BoltRequest(
            body=body,
            query=request.url.query,
            headers={name: [value] for name, value in request.headers.items()},
        )
        bolt_response = await run_in_threadpool(app.dispatch, bolt_request)
        return to_starlette_response(bolt_response)

    return endpoint


def socket_mode_handler(app: App, settings: SlackSettings) -> SocketModeHandler:
    """A Socket Mode connection for the app (``start()`` blocks, ``connect()`` does not)."""
    if settings.app_token is None:
        raise ValueError("Socket Mode needs SLACK_APP_TOKEN (an xapp- app-level token)")
    return SocketModeHandler(app, settings.app_token.reveal(), web_client=app.client)
