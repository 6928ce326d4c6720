"""What every helpdesk's webhook endpoint shares: verify, read, record, acknowledge at once.

A connector's endpoint subclasses ``SignedWebhook`` and gives three things: ``verify``
(the vendor's signature scheme: None, or why the delivery is refused), ``parse`` (its
pure mapping of the body to a notice; raises its ``PayloadError``) and ``notice`` (what
the delivery is about: the ``Delivery`` to queue, or the answer that ends it, such as
``ignored`` for an event slabot does nothing with). The base answers the rest the same
for every helpdesk:

- a refused signature: 401 ``unauthorized`` (logged), nothing stored;
- a body over ``MAX_BODY_BYTES``: 413; one the mapping cannot read: 400 with what is wrong;
- a delivery recorded and queued: 202 ``accepted`` (or ``coalesced``); a repeat of a
  delivery recorded before: 200 ``duplicate``;
- the delivery not recorded (the database unavailable) or the queue full: 503 with
  ``Retry-After``, so the helpdesk sends it again.

``counts`` holds the deliveries by result, for the metrics. Events are dispatched as
zulip's integrations do: a table of the events handled, a list of those ignored on
purpose (``ignored``), and an explicit answer for the unknown (``unknown_event``).
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connectors.intake import IntakeJob, WebhookIntake
from slabot.store.db import DatabaseError

MAX_BODY_BYTES = 1_000_000
RETRY_LATER = {"Retry-After": "5"}
"""On a 503 (the delivery was not recorded, or the queue is full): ask for the retry."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """A verified delivery to record and queue: its job, and what the answer names
    (``{"ticket_id": 7}``, ``{"issue": "SUP-1"}``)."""

    job: IntakeJob
    shown: Mapping[str, object]


class SignedWebhook(ABC):
    """The ASGI endpoint of one helpdesk. ``intake`` queues the work."""

    path: ClassVar[str]
    """``/webhooks/<helpdesk>``."""
    helpdesk: ClassVar[str]
    """How people name the helpdesk in log lines: ``Zendesk``, ``Jira``."""
    payload_error: ClassVar[type[Exception]]
    """What ``parse`` raises for a body it cannot read (answered 400)."""

    def __init__(self, secret: str, intake: WebhookIntake) -> None:
        self._secret = secret
        self.intake = intake
        self.counts: dict[str, int] = {}
        """Deliveries by result (``accepted``, ``duplicate``, ``unauthorized``...)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(secret='********')"

    @property
    def log(self) -> logging.Logger:
        """The connector's own logger (``connectors.zendesk.webhook``...)."""
        return logging.getLogger(type(self).__module__)

    def routes(self) -> list[Route]:
        return [Route(self.path, self.handle, methods=["POST"])]

    @abstractmethod
    def verify(self, request: Request, body: bytes) -> str | None:
        """Why the delivery's signature is refused (None: it is good)."""

    @abstractmethod
    def parse(self, body: bytes) -> Any:
        """The body read as the connector's notice; raises ``payload_error``."""

    @abstractmethod
    def notice(self, request: Request, body: bytes, notice: Any) -> Delivery | JSONResponse:
        """The delivery to record and queue, or the answer that ends it here."""

    async def handle(self, request: Request) -> JSONResponse:
        body = await request.body()
        problem = self.verify(request, body)
        if problem is not None:
            return self.answer("unauthorized", 401, problem)
        if len(body) > MAX_BODY_BYTES:
            return self.answer("malformed", 413, "the body is larger than 1 MB")
        try:
            notice = self.parse(body)
        except self.payload_error as error:
            return self.answer("malformed", 400, str(error))
        delivery = self.notice(request, body, notice)
        if isinstance(delivery, JSONResponse):
            return delivery
        key = delivery.job.delivery_key
        try:
            result = await self.intake.submit_async(delivery.job)
        except DatabaseError as error:
            self.log.error("%s webhook %s not recorded: %s", self.helpdesk, key, error)
            return self.answer("unavailable", 503, "the database is unavailable; retry later")
        if result == "busy":
            return self.answer("busy", 503, "too many deliveries queued; retry later")
        self.count(result)
        status = 200 if result == "duplicate" else 202
        return JSONResponse({"status": result, **delivery.shown}, status_code=status)

    def count(self, result: str) -> None:
        self.counts[result] = self.counts.get(result, 0) + 1

    def answer(self, result: str, status: int, message: str) -> JSONResponse:
        """An error answer, counted under ``result``; a 503 asks for the retry."""
        self.count(result)
        if status == 401:
            self.log.warning("%s webhook refused: %s", self.helpdesk, message)
        headers = RETRY_LATER if status == 503 else None
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    def ignored(self, event: str) -> JSONResponse:
        """200 ``ignored``: an event slabot receives and does nothing with, on purpose."""
        self.count("ignored")
        return JSONResponse({"status": "ignored", "event": event})

    def unknown_event(self, event: str, subscribe: str) -> JSONResponse:
        """200 ``unknown event``, logged: an event slabot was not written for (``subscribe``:
        where the events to subscribe to are listed)."""
        self.count("unknown")
        self.log.warning(
            "%s webhook: unknown event %r ignored; subscribe the webhook to the events in %s",
            self.helpdesk,
            event[:80],
            subscribe,
        )
        return JSONResponse({"status": "unknown event", "event": event[:80]})


def create_app(webhook: SignedWebhook) -> Starlette:
    """A Starlette app serving only this webhook (the service mounts ``routes()``)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        webhook.intake.start()
        try:
            yield
        finally:
            webhook.intake.stop()

    return Starlette(routes=webhook.routes(), lifespan=lifespan)
