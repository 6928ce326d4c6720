"""``POST /webhooks/jira``: verify, acknowledge, and hand the issue to the worker.

Jira signs the deliveries of an admin webhook created with a secret: ``X-Hub-Signature:
sha256=<hex HMAC-SHA256(secret, raw body)>``. The signature has no time of its own, so the
replay defences are the body's: its ``timestamp`` (milliseconds, covered by the signature)
must be within ``max_age`` of now (``jira.webhook_max_age_seconds``, default an hour: Jira
retries a failed delivery, with the same body, for up to about 30 minutes), else the
delivery is answered 401 ``stale`` and nothing is stored; and a delivery whose
``X-Atlassian-Webhook-Identifier`` (stable across Jira's retries) or whose body (the
digest of the signed bytes, whatever id it comes with) was recorded before is answered 200
``duplicate`` and dropped. A missing or wrong signature is answered 401 and nothing is
stored; a body slabot cannot read, 400 with what is wrong.

Events are dispatched through ``HANDLED``; ``IGNORED`` lists the events slabot receives
but deliberately does nothing with (answered 200 ``ignored``); any other event is logged
and answered 200 ``unknown event`` without effect. A handled delivery is recorded, queued
and answered 202 at once; the worker then fetches the issue's authoritative state through
the API (the body is only a hint) and ingests it. A change made by slabot's own account
(the echo of its write-back) is dropped by the worker without a read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from connectors.intake import IntakeJob, WebhookIntake, store_intake
from connectors.jira.client import JiraRejectedError
from connectors.jira.mapping import SOURCE, WebhookNotice, parse_webhook
from connectors.jira.sync import JiraSync
from connectors.mapping import PayloadError
from connectors.signatures import content_digest, signature_hex, signatures_match
from connectors.webhook import Delivery, SignedWebhook, create_app

log = logging.getLogger(__name__)

__all__ = [
    "HANDLED",
    "IGNORED",
    "PATH",
    "JiraWebhook",
    "create_app",
    "make_intake",
    "sign",
]

PATH = "/webhooks/jira"
SIGNATURE = "X-Hub-Signature"
IDENTIFIER = "X-Atlassian-Webhook-Identifier"
MAX_AGE_SECONDS = 3600.0
"""The default ``jira.webhook_max_age_seconds``: twice the "up to 30 minutes" Atlassian
documents for its webhook retries (https://community.developer.atlassian.com/t/
new-jira-cloud-webhook-retry-policy/30554, "subject to change"; retried on 408, 409, 425,
429, 5xx and connection failures, each retry carrying ``X-Atlassian-Webhook-Retry``)."""

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


def _utc_now() -> datetime:
    return datetime.now(UTC)


class JiraWebhook(SignedWebhook):
    """The ASGI endpoint. ``intake`` queues the work; ``clock`` is the service's clock (what
    a body's ``timestamp`` is compared with), ``max_age`` the seconds it may be off."""

    path = PATH
    helpdesk = "Jira"
    payload_error = PayloadError

    def __init__(
        self,
        secret: str,
        intake: WebhookIntake,
        *,
        clock: Callable[[], datetime] = _utc_now,
        max_age: float = MAX_AGE_SECONDS,
    ) -> None:
        super().__init__(secret, intake)
        self._clock = clock
        self.max_age = max_age

    def parse(self, body: bytes) -> WebhookNotice:
        return parse_webhook(body)

    def notice(
        self, request: Request, body: bytes, notice: WebhookNotice
    ) -> Delivery | JSONResponse:
        if notice.event in IGNORED:
            return self.ignored(notice.event)
        if notice.event not in HANDLED:
            return self.unknown_event(notice.event, "docs/jira.md")
        if notice.issue_id is None:
            return self.answer("malformed", 400, f"{notice.event}: the body names no issue")
        stale = self._stale(notice)
        if stale is not None:
            return self.answer("stale", 401, stale)
        key = _delivery_key(request, body)
        # The signature covers exactly the body: its digest is the same for every copy.
        job = IntakeJob(SOURCE, key, notice.issue_id, notice, content_digest(body))
        return Delivery(job, {"issue": notice.issue_key or notice.issue_id})

    def verify(self, request: Request, body: bytes) -> str | None:
        signature = request.headers.get(SIGNATURE)
        if not signature:
            return f"missing {SIGNATURE} header: create the webhook with a secret (docs/jira.md)"
        if not signature.strip().startswith("sha256="):
            return f"{SIGNATURE} must be sha256=<hex digest>"
        if not signatures_match(sign(self._secret, body), signature):
            return f"{SIGNATURE} does not match: check JIRA_WEBHOOK_SECRET"
        return None

    def _stale(self, notice: WebhookNotice) -> str | None:
        """Why the body's own ``timestamp`` is too far from now (None: it is not, or the
        body has none: then the delivery id and the body's digest are the defence)."""
        if notice.timestamp is None:
            return None
        now = self._clock()
        off = (now - notice.timestamp).total_seconds()
        if abs(off) <= self.max_age:
            return None
        shown = notice.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ")
        when = "old" if off > 0 else "in the future"
        return (
            f"{notice.event}: the body's timestamp {shown} is {_span(abs(off))} {when}, more "
            f"than jira.webhook_max_age_seconds ({self.max_age:.0f} s) allows: a replayed or "
            "long-delayed delivery is refused (a real change is read by the poller); if "
            "slabot's clock is wrong, fix it"
        )


def _span(seconds: float) -> str:
    """``3 days``, ``2 hours``, ``40 minutes``: how far off, for a person."""
    span = timedelta(seconds=seconds)
    if span >= timedelta(days=2):
        return f"{span.days} days"
    if span >= timedelta(hours=2):
        return f"{int(seconds // 3600)} hours"
    return f"{int(seconds // 60)} minutes"


def _delivery_key(request: Request, body: bytes) -> str:
    identifier = (request.headers.get(IDENTIFIER) or "").strip()
    if identifier:
        return f"delivery:{identifier[:200]}"
    # No id given: the same signed body is the same delivery.
    return f"body:{content_digest(body)}"


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

    return store_intake(SOURCE, process, sync.tickets, **options)
