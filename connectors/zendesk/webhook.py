"""``POST /webhooks/zendesk``: verify, acknowledge, and hand the ticket id to the worker.

Zendesk signs each delivery: ``X-Zendesk-Webhook-Signature`` is base64(HMAC-SHA256(signing
secret, ``X-Zendesk-Webhook-Signature-Timestamp`` + raw body)). A missing or wrong
signature, or a timestamp more than 5 minutes off, is answered 401 and nothing is stored; a
body slabot cannot read, 400 with what is wrong. A good delivery is recorded with the digest
of what was signed (SHA-256 of the timestamp + the body), queued, and answered 202 at once;
a repeat of its ``X-Zendesk-Webhook-Invocation-Id``, or of its signed content under any
other id (a captured delivery replayed within the 5 minutes), is answered 200
``duplicate`` and dropped. Zendesk's own retry of a delivery keeps its invocation id, so
it is a duplicate too (200: Zendesk stops retrying) unless the first copy was not kept.
The worker then fetches the ticket's authoritative state through the API (the webhook body
is only a hint) and ingests it; notices about one ticket are coalesced (``WebhookIntake``).
See docs/zendesk.md for the trigger body template.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connectors.common import (
    IntakeJob,
    WebhookIntake,
    content_digest,
    signature_base64,
    signatures_match,
    store_intake,
)
from connectors.mapping import PayloadError
from connectors.zendesk.client import ZendeskRejectedError
from connectors.zendesk.mapping import SOURCE, WebhookNotice, parse_webhook
from connectors.zendesk.sync import ZendeskSync
from slabot.store.db import DatabaseError

log = logging.getLogger(__name__)

PATH = "/webhooks/zendesk"
SIGNATURE = "X-Zendesk-Webhook-Signature"
TIMESTAMP = "X-Zendesk-Webhook-Signature-Timestamp"
INVOCATION = "X-Zendesk-Webhook-Invocation-Id"
TOLERANCE_SECONDS = 300.0
MAX_BODY_BYTES = 1_000_000
RETRY_LATER = {"Retry-After": "5"}
"""On a 503 (the delivery was not recorded, or the queue is full): ask for the retry."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Zendesk's signature of a delivery (for verifying, and for test senders)."""
    return signature_base64(secret, timestamp.encode("utf-8") + body)


class ZendeskWebhook:
    """The ASGI endpoint. ``intake`` queues the work; ``clock`` returns epoch seconds."""

    def __init__(
        self,
        secret: str,
        intake: WebhookIntake,
        *,
        clock: Callable[[], float] = time.time,
        tolerance: float = TOLERANCE_SECONDS,
    ) -> None:
        self._secret = secret
        self.intake = intake
        self._clock = clock
        self._tolerance = tolerance
        self.counts: dict[str, int] = {}
        """Deliveries by result (``accepted``, ``duplicate``, ``unauthorized``...)."""

    def __repr__(self) -> str:
        return "ZendeskWebhook(secret='********')"

    def routes(self) -> list[Route]:
        return [Route(PATH, self.handle, methods=["POST"])]

    async def handle(self, request: Request) -> JSONResponse:
        body = await request.body()
        problem = self._verify(request, body)
        if problem is not None:
            return self._answer("unauthorized", 401, problem)
        if len(body) > MAX_BODY_BYTES:
            return self._answer("malformed", 413, "the body is larger than 1 MB")
        try:
            notice = parse_webhook(body)
        except PayloadError as error:
            return self._answer("malformed", 400, str(error))
        key = _delivery_key(request, notice, body)
        # What the signature covers, so the same for every copy of this delivery.
        signed = content_digest(request.headers.get(TIMESTAMP, "").encode("utf-8"), body)
        job = IntakeJob(SOURCE, key, notice.ticket_id, notice, signed)
        try:
            result = await self.intake.submit_async(job)
        except DatabaseError as error:
            log.error("Zendesk webhook %s not recorded: %s", key, error)
            return self._answer("unavailable", 503, "the database is unavailable; retry later")
        if result == "busy":
            return self._answer("busy", 503, "too many deliveries queued; retry later")
        status = 200 if result == "duplicate" else 202
        self.counts[result] = self.counts.get(result, 0) + 1
        return JSONResponse({"status": result, "ticket_id": notice.ticket_id}, status_code=status)

    def _verify(self, request: Request, body: bytes) -> str | None:
        signature = request.headers.get(SIGNATURE)
        timestamp = request.headers.get(TIMESTAMP)
        if not signature or not timestamp:
            missing = SIGNATURE if not signature else TIMESTAMP
            return f"missing {missing} header: the webhook must be signed"
        try:
            sent = datetime.fromisoformat(timestamp.strip())
        except ValueError:
            return f"{TIMESTAMP} {timestamp[:40]!r} is not an ISO 8601 time"
        if sent.tzinfo is None:
            return f"{TIMESTAMP} {timestamp[:40]!r} has no time zone"
        if abs(self._clock() - sent.timestamp()) > self._tolerance:
            return f"{TIMESTAMP} is more than 5 minutes off: replayed or a wrong clock"
        if not signatures_match(sign(self._secret, timestamp, body), signature):
            return f"{SIGNATURE} does not match: check the signing secret"
        return None

    def _answer(self, result: str, status: int, message: str) -> JSONResponse:
        self.counts[result] = self.counts.get(result, 0) + 1
        if status == 401:
            log.warning("Zendesk webhook refused: %s", message)
        headers = RETRY_LATER if status == 503 else None
        return JSONResponse({"error": message}, status_code=status, headers=headers)


def _delivery_key(request: Request, notice: WebhookNotice, body: bytes) -> str:
    invocation = (request.headers.get(INVOCATION) or "").strip()
    if invocation:
        return f"invocation:{invocation[:200]}"
    if notice.event_id:
        return f"event:{notice.event_id[:200]}"
    # No id given: the same signed body at the same timestamp is the same delivery.
    return f"body:{content_digest(request.headers.get(TIMESTAMP, '').encode('utf-8'), body)}"


def make_intake(sync: ZendeskSync, **options: Any) -> WebhookIntake:
    """The intake queue whose worker fetches and ingests each notified ticket."""

    def process(job: IntakeJob) -> None:
        notice = job.payload
        assert isinstance(notice, WebhookNotice)
        try:
            sync.sync_ticket(notice.ticket_id)
        except (ZendeskRejectedError, PayloadError) as error:
            # Retrying cannot help (a deleted ticket, a payload slabot cannot read).
            log.error("Zendesk ticket %s not applied: %s", notice.ticket_id, error)

    return store_intake(SOURCE, process, sync.events, **options)


def create_app(webhook: ZendeskWebhook) -> Starlette:
    """A Starlette app serving only the Zendesk webhook (the service mounts ``routes()``)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        webhook.intake.start()
        try:
            yield
        finally:
            webhook.intake.stop()

    return Starlette(routes=webhook.routes(), lifespan=lifespan)
