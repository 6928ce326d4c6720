"""Webhook deliveries are recorded in batches (group commit) before they are acknowledged.

Many concurrent deliveries, copies included, go through the real Zendesk and Jira endpoints
on SQLite and on PostgreSQL: each delivery key is acknowledged as new exactly once, and
every acknowledged one is in the database. A batch whose transaction fails answers every
request in it 503 (with Retry-After) and records nothing.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import httpx2 as httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from connectors.intake import DeliveryKey, IntakeJob, WebhookIntake
from connectors.jira import webhook as jira_webhook
from connectors.zendesk import webhook as zendesk_webhook
from slabot.store.deliveries import DeliveryWriter
from slabot.store.models import WebhookDelivery
from slabot.store.retry import DatabaseUnavailableError

SECRET = "recording-secret"
NOW = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)


class Recording:
    """A real writer on ``engine``; ``down`` makes every batch fail as an outage would."""

    def __init__(self, engine: Engine) -> None:
        self.writer = DeliveryWriter(engine)
        self.down = False
        self.batches: list[int] = []
        self.lock = threading.Lock()

    def record_many(
        self, keys: Sequence[DeliveryKey], digests: Mapping[DeliveryKey, str]
    ) -> set[DeliveryKey]:
        with self.lock:
            self.batches.append(len(keys))
        if self.down:
            raise DatabaseUnavailableError("database is unavailable (test)", attempts=1)
        return self.writer.record(keys, NOW, digests)


def intake(source: str, recording: Recording, processed: list[object]) -> WebhookIntake:
    return WebhookIntake(
        source,
        lambda job: processed.append(job.subject),
        None,
        lambda _source, _key: None,
        record_many=recording.record_many,
        release=recording.writer.close,
    )


def stored(engine: Engine) -> set[tuple[str, str]]:
    with Session(engine) as session:
        rows = session.execute(select(WebhookDelivery.source, WebhookDelivery.delivery_key))
        return {(str(s), str(k)) for s, k in rows}


def zendesk_request(invocation: str, ticket: int) -> tuple[dict[str, str], bytes]:
    body = json.dumps({"ticket_id": str(ticket)}).encode()
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {
        "Content-Type": "application/json",
        "X-Zendesk-Webhook-Invocation-Id": invocation,
        "X-Zendesk-Webhook-Signature": zendesk_webhook.sign(SECRET, stamp, body),
        "X-Zendesk-Webhook-Signature-Timestamp": stamp,
    }
    return headers, body


def jira_request(identifier: str, issue: int) -> tuple[dict[str, str], bytes]:
    body = json.dumps(
        {
            "webhookEvent": "jira:issue_updated",
            "timestamp": 1794822000000,
            "issue": {"id": str(issue), "key": f"OPS-{issue}"},
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Atlassian-Webhook-Identifier": identifier,
        "X-Hub-Signature": jira_webhook.sign(SECRET, body),
    }
    return headers, body


async def post_all(
    app: object, path: str, requests: list[tuple[dict[str, str], bytes]]
) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://slabot") as client:
        return await asyncio.gather(
            *(client.post(path, content=body, headers=headers) for headers, body in requests)
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Engine:
    name = "engine" if request.param == "sqlite" else "pg_engine"
    engine: Engine = request.getfixturevalue(name)
    return engine


def test_concurrent_copies_of_many_deliveries_are_each_accepted_once(database: Engine) -> None:
    recordings = [Recording(database), Recording(database)]  # a writer per intake
    processed: list[object] = []
    zendesk = zendesk_webhook.ZendeskWebhook(SECRET, intake("zendesk", recordings[0], processed))
    jira = jira_webhook.JiraWebhook(
        SECRET, intake("jira", recordings[1], processed), clock=lambda: NOW
    )
    # 60 deliveries each, every one sent 4 times, all at once and shuffled together; the
    # Jira ids reuse the Zendesk ones (another source: other keys).
    zendesk_requests = [zendesk_request(f"inv-{n}", 1000 + n) for n in range(60)] * 4
    jira_requests = [jira_request(f"inv-{n}", 20000 + n) for n in range(60)] * 4

    async def both() -> tuple[list[httpx.Response], list[httpx.Response]]:
        return await asyncio.gather(
            post_all(zendesk_webhook.create_app(zendesk), "/webhooks/zendesk", zendesk_requests),
            post_all(jira_webhook.create_app(jira), "/webhooks/jira", jira_requests),
        )

    try:
        zendesk_answers, jira_answers = asyncio.run(both())
        for answers, requests, header in (
            (zendesk_answers, zendesk_requests, "X-Zendesk-Webhook-Invocation-Id"),
            (jira_answers, jira_requests, "X-Atlassian-Webhook-Identifier"),
        ):
            accepted: dict[str, int] = {}
            for (headers, _body), answer in zip(requests, answers, strict=True):
                assert answer.status_code in (200, 202), answer.text
                if answer.status_code == 202:
                    assert answer.json()["status"] == "accepted"
                    accepted[headers[header]] = accepted.get(headers[header], 0) + 1
                else:
                    assert answer.json()["status"] == "duplicate"
            assert accepted == {f"inv-{n}": 1 for n in range(60)}
        assert stored(database) == {
            *(("zendesk", f"invocation:inv-{n}") for n in range(60)),
            *(("jira", f"delivery:inv-{n}") for n in range(60)),
        }
        # Grouped: far fewer transactions than requests.
        batches = recordings[0].batches + recordings[1].batches
        assert len(batches) < len(zendesk_requests) + len(jira_requests)
        assert zendesk.intake.depth == 60 and jira.intake.depth == 60
    finally:
        zendesk.intake.stop()
        jira.intake.stop()


def test_a_database_outage_during_a_batch_answers_every_request_in_it_503(
    engine: Engine,
) -> None:
    recording = Recording(engine)
    processed: list[object] = []
    webhook = zendesk_webhook.ZendeskWebhook(SECRET, intake("zendesk", recording, processed))
    app = zendesk_webhook.create_app(webhook)
    requests = [zendesk_request(f"inv-{n}", 1000 + n) for n in range(40)]
    try:
        recording.down = True
        answers = asyncio.run(post_all(app, "/webhooks/zendesk", requests))
        assert [a.status_code for a in answers] == [503] * 40
        assert all(a.headers["Retry-After"] == "5" for a in answers)
        assert all("retry later" in a.json()["error"] for a in answers)
        assert webhook.counts == {"unavailable": 40}
        assert stored(engine) == set() and webhook.intake.depth == 0  # nothing acknowledged
        assert sum(recording.batches) == 40

        # The database is back: Zendesk's retries are accepted (nothing was recorded).
        recording.down = False
        answers = asyncio.run(post_all(app, "/webhooks/zendesk", requests))
        assert [a.status_code for a in answers] == [202] * 40
        assert len(stored(engine)) == 40 and webhook.intake.depth == 40
    finally:
        webhook.intake.stop()


def test_a_failure_that_is_not_the_database_is_a_503_too(engine: Engine) -> None:
    def broken(
        _keys: Sequence[DeliveryKey], _digests: Mapping[DeliveryKey, str]
    ) -> set[DeliveryKey]:
        raise RuntimeError("a bug")

    queue = WebhookIntake(
        "zendesk", lambda _job: None, None, lambda _s, _k: None, record_many=broken
    )
    webhook = zendesk_webhook.ZendeskWebhook(SECRET, queue)
    answers = asyncio.run(
        post_all(
            zendesk_webhook.create_app(webhook), "/webhooks/zendesk", [zendesk_request("x", 1)]
        )
    )
    assert answers[0].status_code == 503
    queue.stop()


def test_a_blocking_caller_and_a_cancelled_request_still_queue_what_was_recorded(
    engine: Engine,
) -> None:
    recording = Recording(engine)
    gate = threading.Event()
    slow = recording.record_many

    def record_many(
        keys: Sequence[DeliveryKey], digests: Mapping[DeliveryKey, str]
    ) -> set[DeliveryKey]:
        gate.wait(5)
        return slow(keys, digests)

    queue = WebhookIntake(
        "zendesk", lambda _job: None, None, lambda _s, _k: None, record_many=record_many
    )

    async def cancelled() -> None:
        task = asyncio.ensure_future(queue.submit_async(IntakeJob("zendesk", "k1", 1, None)))
        await asyncio.sleep(0.05)
        task.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
    for _ in range(500):
        if queue.recorder.pending == 0:
            break
        threading.Event().wait(0.01)
    assert queue.depth == 1  # recorded, so queued although nobody waited for the answer
    assert queue.submit(IntakeJob("zendesk", "k1", 1, None)) == "duplicate"
    assert queue.submit(IntakeJob("zendesk", "k2", 2, None)) == "accepted"
    queue.stop()
