"""``RequestLimits`` on a plain ASGI app, message by message, and ``connection_cap``: the
branches the proof over real sockets (tests/proof/test_proof_limits.py) sees only from
outside: what the handler receives, what happens to its own answer after a refusal, and when
the connection is closed."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import anyio
import pytest
from starlette.types import Message, Receive, Scope, Send

from slabot.service.limits import RESERVED_DESCRIPTORS, RequestLimits, connection_cap

LIMIT = 1000


def scope(headers: dict[str, str]) -> Scope:
    return {
        "type": "http",
        "method": "POST",
        "path": "/webhooks/zendesk",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
    }


class Reader:
    """An app that reads the whole body (swallowing any error, as a careless handler might)
    and answers 202 with what it got."""

    def __init__(self) -> None:
        self.received = b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            while True:
                message = await receive()
                self.received += message.get("body", b"")
                if not message.get("more_body", False):
                    break
        except Exception:
            pass
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"read"})


async def ignore_body(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 401, "headers": []})
    await send({"type": "http.response.body", "body": b"unsigned"})


def drive(app: object, headers: dict[str, str], chunks: Iterable[bytes] | None) -> list[Message]:
    """Run ``RequestLimits(app)`` over a request whose body comes in ``chunks`` (None: the
    client sends nothing more, ever); the messages it sent."""
    sent: list[Message] = []
    pending = [{"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks or []]
    if chunks is not None:
        pending.append({"type": "http.request", "body": b"", "more_body": False})

    async def receive() -> Message:
        if not pending:
            await anyio.sleep_forever()
        return pending.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    limits = RequestLimits(
        app,  # type: ignore[arg-type]
        max_body_bytes=LIMIT,
        max_header_bytes=4096,
        body_timeout_seconds=0.5,
    )
    anyio.run(limits, scope(headers), receive, send)
    return sent


def status_and_close(sent: list[Message]) -> tuple[int, bool]:
    start = sent[0]
    return start["status"], (b"connection", b"close") in start["headers"]


def test_a_body_within_the_limit_reaches_the_app_whole_and_keeps_the_connection() -> None:
    app = Reader()
    sent = drive(app, {"Transfer-Encoding": "chunked"}, [b"a" * 600, b"b" * 400])
    assert app.received == b"a" * 600 + b"b" * 400
    assert status_and_close(sent) == (202, False)


def test_a_streamed_body_past_the_limit_is_refused_413_and_the_apps_answer_dropped() -> None:
    app = Reader()
    sent = drive(app, {"Transfer-Encoding": "chunked"}, [b"a" * 600, b"b" * 600, b"c" * 600])
    assert len(app.received) <= LIMIT  # the chunk that crossed it never reached the app
    assert status_and_close(sent) == (413, True)
    assert [message["type"] for message in sent] == ["http.response.start", "http.response.body"]
    assert b"larger than 1000 bytes" in sent[1]["body"]


def test_a_declared_length_past_the_limit_is_refused_without_calling_the_app() -> None:
    app = Reader()
    sent = drive(app, {"Content-Length": str(LIMIT + 1)}, None)
    assert status_and_close(sent) == (413, True)
    assert app.received == b""


def test_an_answer_sent_before_the_body_was_read_closes_the_connection() -> None:
    sent = drive(ignore_body, {"Content-Length": "10"}, [b"0123456789"])
    assert status_and_close(sent) == (401, True)
    # No body: nothing to drain, the connection stays.
    assert status_and_close(drive(ignore_body, {"Content-Length": "0"}, [])) == (401, False)


def test_a_body_that_stops_coming_is_refused_408_at_the_deadline() -> None:
    began = time.monotonic()
    sent = drive(Reader(), {"Content-Length": "500"}, None)
    assert status_and_close(sent) == (408, True)
    assert b"within 0.5s" in sent[1]["body"]
    assert 0.5 <= time.monotonic() - began < 3


def test_headers_past_the_limit_are_refused_431() -> None:
    sent = drive(Reader(), {"X-Padding": "p" * 5000, "Content-Length": "0"}, [])
    assert status_and_close(sent) == (431, True)


def test_the_connection_cap_fits_in_the_open_files_limit(caplog: pytest.LogCaptureFixture) -> None:
    assert connection_cap(1000, 65536) == 1000
    with caplog.at_level(logging.WARNING, logger="slabot.service.limits"):
        assert connection_cap(1000, 1024) == 1024 - RESERVED_DESCRIPTORS
    assert "max_connections lowered from 1000 to 640" in caplog.text
    assert "ulimit -Hn" in caplog.text
