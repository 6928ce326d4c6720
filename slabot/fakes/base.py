"""What the fake servers share: serving on loopback, and for the helpdesks one request's way in.

``LoopbackFake`` serves a fake on an ephemeral loopback port, on a daemon thread, from
``start()`` to ``stop()``; each request goes to the fake's ``_serve(request, verb)``. The fake
Slack stands on it alone (its calls, faults and answers are Slack's own).

``HelpdeskFake`` adds what the fake Zendesk and the fake Jira both do with a request: it is
recorded as a ``Call`` (every call is counted, failed ones included), ``chaos`` may fail it
before anything is looked at, a ``Fault`` queued by ``fail_next`` answers it instead of the
API (after ``stall`` seconds: longer than the client's time-out makes a time-out), an
unauthenticated one is refused, and ``_route`` answers the rest (a ``KeyError`` there is a
404). The vendors differ only in their words: the class constants below.

One base for every stateful fake, with a way to break the next calls: the shape of sentry's
``fixtures/integrations/mock_service.py`` (``break_next_api_call``). Like every module of this
package, it imports only the standard library and the other fakes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit

from slabot.fakes.chaos import Chaos, reset


class LoopbackFake:
    """A fake's server: ``start()`` serves ``_serve`` for each of ``verbs`` on 127.0.0.1."""

    verbs: ClassVar[tuple[str, ...]] = ("GET", "PUT", "POST")
    """The HTTP methods served; any other is answered 501, as ``http.server`` answers it."""
    _server: ThreadingHTTPServer | None = None

    def start(self) -> Self:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

        for verb in self.verbs:
            setattr(Handler, f"do_{verb}", self._answering(verb))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _answering(self, verb: str) -> Callable[[BaseHTTPRequestHandler], None]:
        def answer(request: BaseHTTPRequestHandler) -> None:
            self._serve(request, verb)

        return answer

    def _serve(self, request: BaseHTTPRequestHandler, verb: str) -> None:
        raise NotImplementedError


@dataclass
class Fault:
    status: int
    """The answer; 0: the real answer, as of the request's arrival, sent ``stall`` seconds
    late (a slow but good request: what changes meanwhile is not in it)."""
    retry_after: int | None = None
    stall: float = 0.0
    path_contains: str = ""
    method: str = ""


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    status: int = 0


class HelpdeskFake(LoopbackFake):
    """A helpdesk's REST API: calls recorded, faults injected, ``_route`` answering.

    The subclass (a dataclass) holds ``calls``, ``faults``, ``chaos`` and a ``_lock``, and
    says its vendor's words in the constants."""

    OFFLINE_URL: ClassVar[str]
    """The base of the URLs the fake shows while not served."""
    CONTENT_TYPE: ClassVar[str]
    AUTH_SCHEMES: ClassVar[tuple[str, ...]]
    """The ``Authorization`` prefixes accepted; any other request is answered 401."""
    UNAUTHENTICATED: ClassVar[dict[str, Any]]
    NOT_FOUND: ClassVar[dict[str, Any]]
    RATE_LIMITED: ClassVar[dict[str, Any]]
    UNAVAILABLE: ClassVar[dict[str, Any]]
    """The body of an injected failure other than a 429 (a ``timeout`` of the chaos too)."""
    INTERNAL_ERROR: ClassVar[dict[str, Any]]
    """The body of the chaos's ``500``."""

    calls: list[Call]
    faults: list[Fault]
    chaos: Chaos | None
    _lock: threading.RLock

    # --- test controls ---

    def fail_next(
        self,
        count: int,
        status: int = 503,
        *,
        retry_after: int | None = None,
        stall: float = 0.0,
        path_contains: str = "",
        method: str = "",
    ) -> None:
        """The next ``count`` matching requests answer ``status`` (after ``stall`` seconds:
        longer than the client's time-out makes a time-out)."""
        with self._lock:
            for _ in range(count):
                self.faults.append(Fault(status, retry_after, stall, path_contains, method))

    def count(self, method: str | None = None, contains: str = "") -> int:
        with self._lock:
            return sum(
                1
                for call in self.calls
                if (method is None or call.method == method) and contains in call.path
            )

    @property
    def write_calls(self) -> int:
        """Requests that change something (PUT and POST), failed ones included."""
        return self.count("PUT") + self.count("POST")

    # --- one request ---

    def _base(self) -> str:
        return self.url if self._server is not None else self.OFFLINE_URL

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        raise NotImplementedError

    def _serve(self, request: BaseHTTPRequestHandler, verb: str) -> None:
        parts = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        call = Call(verb, parts.path, parse_qs(parts.query), body)
        with self._lock:
            self.calls.append(call)
        chaos = self.chaos
        kind = chaos.pick(verb, parts.path) if chaos is not None else None
        if kind is not None and chaos is not None:
            self._chaos(request, call, kind, chaos)
            return
        with self._lock:
            fault = self._take_fault(verb, parts.path)
        late = 0.0
        if fault is not None and fault.status == 0:
            late, fault = fault.stall, None
        if fault is not None:
            if fault.stall:
                time.sleep(fault.stall)
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            error = self.RATE_LIMITED if fault.status == 429 else self.UNAVAILABLE
            self._reply(request, call, fault.status, error, headers)
            return
        if not (request.headers.get("Authorization") or "").startswith(self.AUTH_SCHEMES):
            self._reply(request, call, 401, self.UNAUTHENTICATED)
            return
        try:
            with self._lock:
                status, payload = self._route(verb, parts.path, call.query, body)
        except KeyError:
            status, payload = 404, self.NOT_FOUND
        if late:
            payload = json.loads(json.dumps(payload))  # as of now, whatever changes meanwhile
            time.sleep(late)
        self._reply(request, call, status, payload)

    def _chaos(self, request: BaseHTTPRequestHandler, call: Call, kind: str, chaos: Chaos) -> None:
        if kind == "reset":
            call.status = -1
            reset(request)
        elif kind == "429":
            headers = {"Retry-After": str(chaos.retry_after)}
            self._reply(request, call, 429, self.RATE_LIMITED, headers)
        elif kind == "timeout":
            time.sleep(chaos.stall)
            self._reply(request, call, 503, self.UNAVAILABLE)
        else:
            self._reply(request, call, 500, self.INTERNAL_ERROR)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for index, fault in enumerate(self.faults):
            if fault.path_contains in path and (not fault.method or fault.method == method):
                return self.faults.pop(index)
        return None

    def _reply(
        self,
        request: BaseHTTPRequestHandler,
        call: Call,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        call.status = status
        data = b"" if status == 204 else json.dumps(payload).encode()
        try:
            request.send_response(status)
            request.send_header("Content-Type", self.CONTENT_TYPE)
            request.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                request.send_header(name, value)
            request.end_headers()
            request.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and went away
