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

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.requests import Request

from connectors.intake import IntakeJob, WebhookIntake, store_intake
from connectors.mapping import PayloadError
from connectors.signatures import content_digest, signature_base64, signatures_match
from connectors.webhook import Delivery, SignedWebhook, create_app
from connectors.zendesk.client import ZendeskRejectedError
from connectors.zendesk.mapping import SOURCE, WebhookNotice, parse_webhook
from connectors.zendesk.sync import ZendeskSync

log = logging.getLogger(__name__)

__all__ = [
    "PATH",
    "ZendeskWebhook",
    "create_app",
    "make_intake",
    "sign",
]

PATH = "/webhooks/zendesk"
SIGNATURE = "X-Zendesk-Webhook-Signature"
TIMESTAMP = "X-Zendesk-Webhook-Signature-Timestamp"
INVOCATION = "X-Zendesk-Webhook-Invocation-Id"
TOLERANCE_SECONDS = 300.0


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Zendesk's signature of a delivery (for verifying, and for test senders)."""
    return signature_base64(secret, timestamp.encode("utf-8") + body)


class ZendeskWebhook(SignedWebhook):
    """The ASGI endpoint. ``intake`` queues the work; ``clock`` returns epoch seconds."""

    path = PATH
    helpdesk = "Zendesk"
    payload_error = PayloadError

    def __init__(
        self,
        secret: str,
        intake: WebhookIntake,
        *,
        clock: Callable[[], float] = time.time,
        tolerance: float = TOLERANCE_SECONDS,
    ) -> None:
        super().__init__(secret, intake)
        self._clock = clock
        self._tolerance = tolerance

    def parse(self, body: bytes) -> WebhookNotice:
        return parse_webhook(body)

    def notice(self, request: Request, body: bytes, notice: WebhookNotice) -> Delivery:
        key = _delivery_key(request, notice, body)
        # What the signature covers, so the same for every copy of this delivery.
        signed = content_digest(request.headers.get(TIMESTAMP, "").encode("utf-8"), body)
        job = IntakeJob(SOURCE, key, notice.ticket_id, notice, signed)
        return Delivery(job, {"ticket_id": notice.ticket_id})

    def verify(self, request: Request, body: bytes) -> str | None:
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

    return store_intake(SOURCE, process, sync.tickets, **options)
