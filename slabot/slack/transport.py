"""How Slack's requests reach the app: HTTP at ``POST /slack/events``, or Socket Mode.

HTTP: ``slack_events_endpoint(app, signing_secret)`` is a Starlette endpoint (the service
mounts it) that runs Bolt's synchronous ``dispatch`` in a worker thread, so acknowledging one
request never blocks the event loop for the others. It checks the signature itself first:
Bolt parses the body before it verifies the request, and a body it cannot parse (bad JSON,
bad UTF-8, JSON nested too deeply) or a timestamp that is not a number used to end in a 500,
signed or not. Now an unsigned request is answered 401 as Bolt answers it, and a signed body
that is not a Slack request 400. Socket Mode (``SLACK_APP_TOKEN`` set): Slack's
requests arrive over a WebSocket the app opens (``SocketMode``, which ``slabot run`` starts
with the service); nothing needs to be reachable from Slack.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Awaitable, Callable

from slack_bolt import App, BoltRequest
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.starlette.handler import to_starlette_response
from slack_bolt.request.internals import parse_body
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from slabot.slack.settings import SlackSettings

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
TOLERANCE_SECONDS = 300
"""Slack's own limit: a request signed more than 5 minutes ago is refused."""


def slack_events_endpoint(
    app: App, signing_secret: str | None = None
) -> Callable[[Request], Awaitable[Response]]:
    """The ``POST /slack/events`` endpoint: commands, interactivity and events. With
    ``signing_secret`` (the service passes it) the signature is checked before the body is
    parsed."""

    async def endpoint(request: Request) -> Response:
        raw = await request.body()
        if signing_secret is not None and not signed(
            signing_secret,
            raw,
            request.headers.get("x-slack-request-timestamp"),
            request.headers.get("x-slack-signature"),
        ):
            return JSONResponse({"error": "invalid request"}, status_code=401)  # as Bolt says it
        try:
            text = raw.decode("utf-8")
            payload = parse_body(text, content_type(request.headers.get("content-type")))
        except (ValueError, RecursionError) as error:  # JSON, UTF-8, nesting
            return _unreadable(type(error).__name__)
        problem = envelope_problem(payload)
        if problem is not None:
            return _unreadable(problem)
        try:
            bolt_request = BoltRequest(
                body=text,
                query=request.url.query,
                headers={name: [value] for name, value in request.headers.items()},
            )
        except Exception as error:  # Bolt reads its context out of the body; nothing ran yet
            return _unreadable(type(error).__name__)
        bolt_response = await run_in_threadpool(app.dispatch, bolt_request)
        return to_starlette_response(bolt_response)

    return endpoint


OBJECTS = ("event", "team", "user", "enterprise", "view", "container", "channel", "message")
"""Parts of a Slack payload Bolt reads as objects (``body["event"].get(...)``)."""
NULLABLE = ("enterprise", "team")
"""Of those, the ones Slack sends as null (Enterprise Grid) and Bolt expects so."""
LISTS_OF_OBJECTS = ("actions", "authorizations")
TEXTS = (
    "type",
    "token",
    "team_id",
    "api_app_id",
    "enterprise_id",
    "user_id",
    "channel_id",
    "command",
    "text",
    "trigger_id",
    "response_url",
    "callback_id",
    "event_id",
)
"""Top-level parts Bolt compares and matches as text (listeners match regular expressions)."""
NESTED_TEXTS = ("type", "action_id", "block_id", "callback_id", "team_id")
"""The same, inside those objects and actions (where ``text`` is an object, ``user`` an id)."""


def _unreadable(why: str) -> Response:
    return JSONResponse({"error": f"the body is not a Slack request: {why}"}, status_code=400)


def content_type(header: str | None) -> str | None:
    """The media type of a Content-Type header, as Bolt reads it."""
    return header.split(";")[0] if header else None


def envelope_problem(body: object) -> str | None:
    """What is wrong with the shape of a (signed) Slack payload that Bolt would trip over
    (its middleware answered 500: found by fuzzing), or None when it has Slack's shape."""
    if not isinstance(body, dict):
        return "the body is not an object"
    parts: list[tuple[str, dict[str, object]]] = []
    for key in OBJECTS:
        if key not in body or (body[key] is None and key in NULLABLE):
            continue
        if not isinstance(body[key], dict):
            return f"{key} is not an object"
        parts.append((key, body[key]))
    for key in LISTS_OF_OBJECTS:
        items = body.get(key)
        if key not in body or items is None:
            continue
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            return f"{key} is not a list of objects"
        if key == "actions" and not items:  # Bolt reads actions[0]
            return "actions is empty"
        parts.extend((f"{key}[{index}]", item) for index, item in enumerate(items))
    # Bolt's matchers index these directly (a KeyError there answered 500: found by fuzzing).
    if body.get("type") == "block_actions":
        actions = body.get("actions")
        if not isinstance(actions, list) or not actions:
            return "a block_actions payload needs its actions"
        if not all(isinstance(action.get("action_id"), str) for action in actions):
            return "every action needs its action_id"
    if body.get("type") in ("view_submission", "view_closed"):
        view = body.get("view")
        if not isinstance(view, dict) or not all(
            isinstance(view.get(name), str) for name in ("id", "type", "callback_id")
        ):
            return "a view payload needs its view's id, type and callback_id"
    if body.get("type") == "block_suggestion" and not isinstance(body.get("action_id"), str):
        return "a block_suggestion payload needs its action_id"
    view = body.get("view")
    if isinstance(view, dict) and not isinstance(view.get("type"), str):
        return "view needs its type"  # Bolt's view matchers read view["type"]
    event = body.get("event")
    if isinstance(event, dict):
        for key in ("message", "previous_message"):
            if event.get(key) is not None and not isinstance(event[key], dict):
                return f"event.{key} is not an object"
    checks = [("body", body, TEXTS), *((where, part, NESTED_TEXTS) for where, part in parts)]
    for where, part, names in checks:
        for name in names:
            value = part.get(name)
            if value is not None and not isinstance(value, str):
                return f"{where}.{name} is not text"
    return None


def signed(
    secret: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    now: Callable[[], float] = time.time,
) -> bool:
    """Whether Slack signed ``body`` (``v0=`` hex HMAC-SHA256 of ``v0:{timestamp}:{body}``)
    within the last 5 minutes; any malformed header is simply not signed."""
    if not timestamp or not signature:
        return False
    stamp = timestamp.strip()
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        return False
    if abs(now() - int(stamp)) > TOLERANCE_SECONDS:
        return False
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256)
    return hmac.compare_digest(f"v0={digest.hexdigest()}".encode(), signature.strip().encode())


def socket_mode_handler(app: App, settings: SlackSettings) -> SocketModeHandler:
    """A Socket Mode connection for the app (``start()`` blocks, ``connect()`` does not)."""
    if settings.app_token is None:
        raise ValueError("Socket Mode needs SLACK_APP_TOKEN (an xapp- app-level token)")
    return SocketModeHandler(app, settings.app_token.reveal(), web_client=app.client)


class SocketMode:
    """``slabot run``'s Socket Mode connection: opened in the background at start, retried
    until it is up, closed at shutdown.

    A first ``apps.connections.open`` that fails (Slack unreachable, a refused app token) must
    not stop the service from starting, and slack_sdk's client only reconnects by itself once
    it has connected once: so the first connection is retried here, with backoff up to a
    minute, each failure logged with what to check. The handler (whose client starts its
    threads when built) is made only when ``start`` is called.
    """

    def __init__(self, app: App, settings: SlackSettings, *, max_backoff: float = 60.0) -> None:
        self._app = app
        self._settings = settings
        self._max_backoff = max_backoff
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.handler: SocketModeHandler | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self.handler = socket_mode_handler(self._app, self._settings)
        self._thread = threading.Thread(target=self._connect, name="slack-socket-mode", daemon=True)
        self._thread.start()

    def connected(self) -> bool:
        return self.handler is not None and bool(self.handler.client.is_connected())

    def _connect(self) -> None:
        assert self.handler is not None
        wait = 1.0
        while not self._stopped.is_set():
            try:
                self.handler.connect()  # type: ignore[no-untyped-call]
            except Exception as error:  # messages carry no token (slack_sdk redacts it)
                log.error(
                    "Slack Socket Mode: could not connect (%s: %s); check SLACK_APP_TOKEN (an "
                    "xapp- token with connections:write) and that Socket Mode is enabled for "
                    "the app; trying again in %.0f s",
                    type(error).__name__,
                    error,
                    wait,
                )
                self._stopped.wait(wait)
                wait = min(wait * 2, self._max_backoff)
                continue
            log.info("Slack Socket Mode connected: Slack's requests arrive over the WebSocket")
            return

    def close(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.handler is not None:
            self.handler.close()  # type: ignore[no-untyped-call]
