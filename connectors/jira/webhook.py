"""``POST /webhooks/jira``: verify, acknowledge, and hand the issue to the worker.

Jira signs the deliveries of an admin webhook created with a secret: ``X-Hub-Signature:
sha256=<hex HMAC-SHA256(secret, raw body)>``. There is no timestamp, so the delivery id
``X-Atlassian-Webhook-Identifier`` (stable across Jira's retries) is the replay defence:
a repeat is answered 200 ``duplicate`` and dropped. A missing or wrong signature is answered
401 and nothing is stored; a body slabot cannot read, 400 with what is wrong.

Events are dispatched through ``HANDLED``; ``IGNORED`` lists the events slabot receives
but deliberately does nothing with (answered 200 ``ignored``); any other event is logged
and answered 200 ``unknown event`` without effect. A handled delivery is recorded, queued
and answered 202 at once; the worker then fetches the issue's authoritative state through
the API (the body is only a hint) and ingests it. A change made by slabot's own account
(the echo of its write-back) is dropped by the worker without a read.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connectors.common import (
    IntakeJob,
    WebhookIntake,
    signature_hex,
    signatures_match,
    store_intake,
)
from connectors.jira.client import JiraRejectedError
from connectors.jira.mapping import SOURCE, PayloadError, WebhookNotice, parse_webhook
from connectors.jira.sync import JiraSync
from slabot.store.db import DatabaseError

log = logging.getLogger(__name__)

PATH = "/webhooks/jira"
SIGNATURE = "X-Hub-Signature"
IDENTIFIER = "X-Atlassian-Webhook-Identifier"
MAX_BODY_BYTES = 1_000_000
RETRY_LATER = {"Retry-After": "5"}
"""On a 503 (the delivery was not recorded, or the queue is full): ask for the retry."""

HANDLED = frozenset(
    {
        "jira:issue_created",
        "jira:issue_updated",
        "comment_created",
        "comment_updated",  # a comment made public (or internal) later
    }
)
IGNORED = frozenset(
    {
        # slabot keeps its record of a deleted issue; its clocks are no longer updated.
        "jira:issue_deleted",
        # A deleted reply does not undo the response that was given.
        "comment_deleted",
        "worklog_created",
        "worklog_updated",
        "worklog_deleted",
        "attachment_created",
        "attachment_deleted",
        "issuelink_created",
        "issuelink_deleted",
        "issue_property_set",
        "issue_property_deleted",
        "jira:worklog_updated",
        "project_created",
        "project_updated",
        "project_deleted",
        "project_soft_deleted",
        "project_restored_deleted",
        "project_archived",
        "project_restored_archived",
        "jira:version_created",
        "jira:version_updated",
        "jira:version_released",
        "jira:version_unreleased",
        "jira:version_moved",
        "jira:version_deleted",
        "user_created",
        "user_updated",
        "user_deleted",
        "option_voting_changed",
        "option_watching_changed",
        "option_unassigned_issues_changed",
        "option_subtasks_changed",
        "option_attachments_changed",
        "option_issuelinks_changed",
        "option_timetracking_changed",
        "sprint_created",
        "sprint_updated",
        "sprint_started",
        "sprint_closed",
        "sprint_deleted",
        "board_created",
        "board_updated",
        "board_deleted",
        "board_configuration_changed",
    }
)
"""Events slabot receives but does nothing with, on purpose (see docs/jira.md)."""


def sign(secret: str, body: bytes) -> str:
    """Jira's ``X-Hub-Signature`` of a delivery (for verifying, and for test senders)."""
    return f"sha256={signature_hex(secret, body)}"


class JiraWebhook:
    """The ASGI endpoint. ``intake`` queues the work."""

    def __init__(self, secret: str, intake: WebhookIntake) -> None:
        self._secret = secret
        self.intake = intake
        self.counts: dict[str, int] = {}
        """Deliveries by result (``accepted``, ``duplicate``, ``ignored``, ``unknown``...)."""

    def __repr__(self) -> str:
        return "JiraWebhook(secret='********')"

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
        if notice.event in IGNORED:
            self._count("ignored")
            return JSONResponse({"status": "ignored", "event": notice.event})
        if notice.event not in HANDLED:
            self._count("unknown")
            log.warning(
                "Jira webhook: unknown event %r ignored; subscribe the webhook to the events "
                "in docs/jira.md",
                notice.event[:80],
            )
            return JSONResponse({"status": "unknown event", "event": notice.event[:80]})
        if notice.issue_id is None:
            return self._answer("malformed", 400, f"{notice.event}: the body names no issue")
        key = _delivery_key(request, body)
        job = IntakeJob(SOURCE, key, notice.issue_id, notice)
        try:
            result = await self.intake.submit_async(job)
        except DatabaseError as error:
            log.error("Jira webhook %s not recorded: %s", key, error)
            return self._answer("unavailable", 503, "the database is unavailable; retry later")
        if result == "busy":
            return self._answer("busy", 503, "too many deliveries queued; retry later")
        self._count(result)
        status = 200 if result == "duplicate" else 202
        return JSONResponse(
            {"status": result, "issue": notice.issue_key or notice.issue_id}, status_code=status
        )

    def _verify(self, request: Request, body: bytes) -> str | None:
        signature = request.headers.get(SIGNATURE)
        if not signature:
            return f"missing {SIGNATURE} header: create the webhook with a secret (docs/jira.md)"
        if not signature.strip().startswith("sha256="):
            return f"{SIGNATURE} must be sha256=<hex digest>"
        if not signatures_match(sign(self._secret, body), signature):
            return f"{SIGNATURE} does not match: check JIRA_WEBHOOK_SECRET"
        return None

    def _count(self, result: str) -> None:
        self.counts[result] = self.counts.get(result, 0) + 1

    def _answer(self, result: str, status: int, message: str) -> JSONResponse:
        self._count(result)
        if status == 401:
            log.warning("Jira webhook refused: %s", message)
        headers = RETRY_LATER if status == 503 else None
        return JSONResponse({"error": message}, status_code=status, headers=headers)


def _delivery_key(request: Request, body: bytes) -> str:
    identifier = (request.headers.get(IDENTIFIER) or "").strip()
    if identifier:
        return f"delivery:{identifier[:200]}"
    # No id given: the same signed body is the same delivery.
    return f"body:{hashlib.sha256(body).hexdigest()}"


def make_intake(sync: JiraSync, **options: Any) -> WebhookIntake:
    """The intake queue whose worker fetches and ingests each notified issue."""

    def process(job: IntakeJob) -> None:
        notice = job.payload
        assert isinstance(notice, WebhookNotice)
        if notice.account_id is not None and notice.account_id == sync.client.bot_account_id():
            return  # slabot's own change coming back: nothing new to read
        try:
            sync.sync_issue(notice.subject)
        except (JiraRejectedError, PayloadError) as error:
            # Retrying cannot help (a deleted issue, a payload slabot cannot read).
            log.error("Jira issue %s not applied: %s", notice.subject, error)

    return store_intake(SOURCE, process, sync.events, **options)


def create_app(webhook: JiraWebhook) -> Starlette:
    """A Starlette app serving only the Jira webhook (the service mounts ``routes()``)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        webhook.intake.start()
        try:
            yield
        finally:
            webhook.intake.stop()

    return Starlette(routes=webhook.routes(), lifespan=lifespan)
