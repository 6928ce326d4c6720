"""What one HTTP client may cost the service: body and header sizes, read timeouts, connections.

Two layers, because uvicorn (0.55, checked in its source) enforces none of these itself:

- ``GuardedH11Protocol``, uvicorn's h11 protocol (not httptools: h11 caps the bytes it
  buffers while a request's headers are incomplete, httptools buffers them without end)
  with what uvicorn lacks: a deadline for a request's headers, counted from the moment the
  connection opens (or a further request's first byte arrives), whatever trickles in
  meanwhile (slowloris), and a cap on open connections that closes the longest-waiting connection
  with no request in progress to make room for a new one. uvicorn's own
  ``limit_concurrency`` counts idle connections too and answers 503 to every request once
  they reach it: idle connections would starve real webhooks, which is what this avoids.
- ``RequestLimits``, a pure ASGI middleware around the app: a declared ``Content-Length``
  above the limit is refused 413 before a byte of the body is read; a body streamed past the
  limit (chunked, or lying about its length) is refused 413 as soon as it crosses it; a body
  still incomplete ``body_timeout_seconds`` after its headers is refused 408. Each refusal
  closes the connection, and so does any response sent before its request's body was read:
  nothing is left to drain. The handlers see at most ``max_body_bytes`` of body.

``raise_open_files_limit`` lifts the soft limit on open files to the hard one at start, and
``connection_cap`` keeps the connection cap below it, so connections can never exhaust the
process's file descriptors (with none left, uvicorn stops accepting, ``/readyz`` included).
docs/operations.md lists the limits and the reverse-proxy settings to pair them with.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

import anyio
import h11
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

RESERVED_DESCRIPTORS = 384
"""File descriptors kept for everything but client connections: the listening socket's
accept backlog (``LISTEN_BACKLOG``, accepted in one batch before any is looked at), the
database pool, the webhook workers' pipes, log and database files."""
LISTEN_BACKLOG = 256
"""Connections the kernel holds for the service before it accepts them (uvicorn's
default, 2048, would let one batch of accepts outgrow the descriptors kept for it)."""


@dataclass(frozen=True)
class ConnectionLimits:
    """What ``GuardedH11Protocol`` enforces, from the service settings."""

    max_connections: int
    max_header_bytes: int
    header_timeout_seconds: float


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline, a 431 and a connection cap.

    A connection is *waiting* while no request is in progress on it: just opened, between
    requests (keep-alive), or receiving a request's headers. A request head must arrive
    whole within ``header_timeout_seconds`` of the connection opening, or of the first byte
    of a further request on it (408 if part of one arrived, closed silently if nothing did);
    between requests, uvicorn's keep-alive timeout closes an idle connection. Past
    ``max_connections``, each new connection closes the connection that has waited longest;
    a connection with a request in progress is never closed for room (with no waiting one
    to close, the new connection is closed instead).
    """

    limits: ClassVar[ConnectionLimits]
    waiting: ClassVar[OrderedDict[GuardedH11Protocol, None]]
    """Waiting connections of this server, longest-waiting first."""
    closing_for_room: ClassVar[int]
    """Connections closed to make room whose ``connection_lost`` has not run yet (still in
    uvicorn's count of connections)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._closed_for_room = False
        self._fresh = True  # no response sent on this connection yet

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        cls = type(self)
        while len(self.connections) - cls.closing_for_room > self.limits.max_connections:
            if not cls.waiting:
                log.debug("connection refused: %d requests in progress", len(self.connections))
                self._close_for_room()
                return
            oldest = next(iter(cls.waiting))
            log.debug("closing a connection waited on longest to make room for a new one")
            oldest._close_for_room()
        self._sync_waiting()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        if self._closed_for_room:
            self._closed_for_room = False
            type(self).closing_for_room -= 1
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._sync_waiting()

    def on_response_complete(self) -> None:
        self._fresh = False
        super().on_response_complete()
        self._sync_waiting()

    def send_400_response(self, msg: str) -> None:
        # h11 refuses a request whose unparsed head outgrows ``h11_max_incomplete_event_size``
        # (set to ``max_header_bytes``); uvicorn answers every refusal 400. Say 431 for that one.
        if len(self.conn.trailing_data[0]) > self.limits.max_header_bytes:
            self._answer_and_close(
                431,
                f"the request's headers are larger than {self.limits.max_header_bytes} bytes",
            )
        else:
            super().send_400_response(msg)

    def _sync_waiting(self) -> None:
        idle = self.conn.our_state is h11.IDLE and self.conn.their_state is h11.IDLE
        if not idle or self.transport.is_closing():
            self._stop_waiting()
            return
        waiting = type(self).waiting
        if self not in waiting:
            waiting[self] = None
        # Between requests uvicorn's keep-alive timeout governs an idle connection; the head's
        # deadline starts with the connection, or with the first byte of a further request.
        if self._header_deadline is None and (self._fresh or self.conn.trailing_data[0]):
            self._header_deadline = self.loop.call_later(
                self.limits.header_timeout_seconds, self._headers_too_slow
            )

    def _stop_waiting(self) -> None:
        type(self).waiting.pop(self, None)
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        self._stop_waiting()
        if self.transport.is_closing():
            return
        if self.conn.trailing_data[0]:  # part of a request head arrived
            seconds = self.limits.header_timeout_seconds
            self._answer_and_close(408, f"the request's headers did not arrive within {seconds:g}s")
        else:
            self.transport.close()

    def _close_for_room(self) -> None:
        self._stop_waiting()
        if not self._closed_for_room and not self.transport.is_closing():
            self._closed_for_room = True
            type(self).closing_for_room += 1
            self.transport.close()

    def _answer_and_close(self, status: int, message: str) -> None:
        """Answer outside h11 (its state allows no response before a request head) and close."""
        body = f'{{"error": "{message}"}}'.encode()
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, reason, len(body), body)
        )
        self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """A ``GuardedH11Protocol`` class for one server (its own registry of waiting connections),
    for ``uvicorn.Config(http=...)``."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"limits": limits, "waiting": OrderedDict(), "closing_for_room": 0},
    )


class _Refused(Exception):
    """A request body refused by ``RequestLimits`` (raised out of the app's ``receive``)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RequestLimits:
    """Pure ASGI middleware: header size, body size while streaming, and a body deadline.

    Not Starlette's ``BaseHTTPMiddleware``, which would hand the app a body it has read in
    full. Refusals are JSON ``{"error": ...}`` with ``Connection: close``; once a body is
    refused, whatever the app answers to the exception its ``receive`` raised is dropped.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_header_bytes: int,
        body_timeout_seconds: float,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.body_timeout_seconds = body_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        if sum(len(name) + len(value) + 4 for name, value in headers) > self.max_header_bytes:
            message = f"the request's headers are larger than {self.max_header_bytes} bytes"
            await _answer(send, 431, message)
            return
        declared = _declared_length(headers)
        if declared is not None and declared > self.max_body_bytes:
            await _answer(send, 413, self._too_large())
            return
        chunked = any(name == b"transfer-encoding" for name, _ in headers)
        body_pending = chunked or bool(declared)
        deadline = anyio.current_time() + self.body_timeout_seconds
        received = 0
        refusal: _Refused | None = None
        started = False

        async def guarded_receive() -> Message:
            nonlocal body_pending, received, refusal
            if refusal is not None:
                raise refusal
            if not body_pending:
                return await receive()
            try:
                with anyio.fail_after(max(deadline - anyio.current_time(), 0)):
                    message = await receive()
            except TimeoutError:
                seconds = self.body_timeout_seconds
                refusal = _Refused(408, f"the request's body did not arrive within {seconds:g}s")
                raise refusal from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    refusal = _Refused(413, self._too_large())
                    raise refusal
                body_pending = bool(message.get("more_body", False))
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refusal is not None:
                return
            if message["type"] == "http.response.start":
                started = True
                if body_pending:  # answered before reading the body: nothing left to drain
                    message = {**message, "headers": [*message.get("headers", []), _CLOSE]}
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if refusal is None:
                raise
        if refusal is not None:
            log.debug("%s %s refused %d: %s", scope["method"], scope["path"], *_parts(refusal))
            if not started:
                await _answer(send, refusal.status, refusal.message)

    def _too_large(self) -> str:
        return f"the body is larger than {self.max_body_bytes} bytes"


_CLOSE = (b"connection", b"close")


def _parts(refusal: _Refused) -> tuple[int, str]:
    return refusal.status, refusal.message


def _declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value)  # h11 has checked it is digits
    return None


async def _answer(send: Send, status: int, message: str) -> None:
    body = f'{{"error": "{message}"}}'.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                _CLOSE,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def raise_open_files_limit() -> int:
    """Lift the soft limit on open files to the hard limit; the soft limit now in force.

    Distributions start services at a soft limit of 1,024 with a far higher hard limit: at
    1,024 a few hundred idle connections left no descriptor for a real webhook.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return int(soft) if soft != resource.RLIM_INFINITY else 1 << 30
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as error:  # macOS caps it below an infinite hard limit
        log.warning("could not raise the open files limit from %d to %d: %s", soft, target, error)
        return int(soft)
    return int(target)


def connection_cap(configured: int, open_files: int) -> int:
    """``max_connections``, lowered (with a warning) to fit in ``open_files`` descriptors."""
    room = open_files - RESERVED_DESCRIPTORS
    if configured <= room:
        return configured
    cap = max(room, 16)
    log.warning(
        "max_connections lowered from %d to %d: the process may open %d files; raise its "
        "hard limit (ulimit -Hn, LimitNOFILE= in systemd) to allow more",
        configured,
        cap,
        open_files,
    )
    return cap
