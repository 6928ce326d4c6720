"""Real Jira Cloud webhook bodies (tests/fixtures/real/jira, see SOURCES.md) through the service.

Each body is posted as Jira posts it (signed ``X-Hub-Signature: sha256=<hex HMAC>``, with a
delivery id) to the running service (``slabot run`` wiring, uvicorn on loopback). The fake
Jira is made to hold what Jira's API would answer at that moment: the issue as the delivery
shows it, the delivery's changelog entry, the delivered comment. The payloads are replayed in
the order Jira sent them (their ``timestamp``): TES-41 is one issue's life (created, commented,
comment edited, resolved, reopened, relabelled, priority raised), so each handled delivery is
checked against the state it must leave. Every body: never a 5xx; every ignored event:
answered 200 ``ignored`` and counted in ``/metrics``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.jira.webhook import HANDLED, IGNORED, sign
from slabot.demo.environment import JIRA_SECRET, DemoSystems
from slabot.fakes.jira import FakeJira, jira_time
from slabot.store.models import StoredTicket
from tests.e2e.harness import RunningService, start_service, wait_until

pytestmark = pytest.mark.slow

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "jira"
FIRST_DELIVERY = datetime(2019, 2, 16, 3, 0, tzinfo=UTC)
"""The service's clock at the start: just before the first real delivery (February 2019); it
is moved to each delivery's ``timestamp`` before the delivery is sent."""

EXPECTED: dict[str, dict[str, Any]] = {
    # What the ticket must show once the delivery is applied (slabot's vocabulary).
    "webhook-issue-created.json": {"key": "10040", "status": "open", "priority": "P2"},
    "webhook-cloud-comment-created.json": {"key": "10040", "status": "open"},
    "webhook-cloud-comment-updated.json": {"key": "10040", "status": "open"},
    "webhook-issue-updated-resolved.json": {"key": "10040", "status": "solved", "solved": True},
    "webhook-issue-updated-reopened.json": {"key": "10040", "status": "open", "solved": False},
    "webhook-issue-updated-labels.json": {"key": "10040", "tags": ["sad", "test-label"]},
    "webhook-issue-updated-raised-priority.json": {"key": "10040", "status": "open"},
    "webhook-cloud-issue-updated-custom-field.json": {"key": "10368", "status": "open"},
    "webhook-cloud-issue-created-many-fields.json": {"key": "10509", "status": "open"},
}


def real_bodies() -> list[tuple[str, bytes]]:
    """Every real body, in the order Jira sent them."""
    found = [(path.name, path.read_bytes()) for path in sorted(REAL.glob("*.json"))]
    return sorted(found, key=lambda item: int(json.loads(item[1])["timestamp"]))


def jira_would_answer(fake: FakeJira, body: dict[str, Any]) -> None:
    """Make the fake hold what Jira's API shows once this delivery's change is made."""
    issue = body.get("issue") or {}
    issue_id = str(issue.get("id"))
    fields = issue.get("fields") or {}
    if "created" in fields:  # comment deliveries carry a shortened issue: keep the full one
        fake.issues[issue_id] = copy.deepcopy(issue)
    fake.histories.setdefault(issue_id, [])
    fake.comments.setdefault(issue_id, [])
    changelog = body.get("changelog")
    at = datetime.fromtimestamp(int(body["timestamp"]) / 1000, UTC)
    if changelog and changelog.get("items"):
        fake.histories[issue_id].append(
            {
                "id": str(changelog["id"]),
                "author": copy.deepcopy(body.get("user")),
                "created": jira_time(at),
                "items": copy.deepcopy(changelog["items"]),
            }
        )
    comment = body.get("comment")
    if comment and body["webhookEvent"] in ("comment_created", "comment_updated"):
        comments = [c for c in fake.comments[issue_id] if c.get("id") != comment.get("id")]
        fake.comments[issue_id] = [*comments, copy.deepcopy(comment)]


def stored(running: RunningService, key: str) -> StoredTicket | None:
    with Session(running.service.runtime.engine) as session:
        return session.scalars(
            select(StoredTicket).where(
                StoredTicket.source == "jira", StoredTicket.external_key == key
            )
        ).one_or_none()


@pytest.fixture
def running(systems: DemoSystems, tmp_path: Path, pg_url: str) -> Iterator[RunningService]:
    service = start_service(systems, tmp_path, pg_url, FIRST_DELIVERY)
    try:
        yield service
    finally:
        service.stop()


def test_the_real_payloads_cover_handled_ignored_comment_and_deleted_events() -> None:
    events = {json.loads(body)["webhookEvent"] for _name, body in real_bodies()}
    assert len(real_bodies()) >= 10
    assert {"jira:issue_created", "jira:issue_updated", "jira:issue_deleted"} <= events
    assert {"comment_created", "comment_updated", "comment_deleted"} <= events
    assert events <= HANDLED | IGNORED, "a real event slabot neither handles nor ignores"


def test_every_real_jira_delivery_is_answered_without_a_5xx_and_leaves_the_right_state(
    running: RunningService,
) -> None:
    ignored = 0
    for number, (name, raw) in enumerate(real_bodies()):
        body = json.loads(raw)
        event = body["webhookEvent"]
        running.advance_to(datetime.fromtimestamp(int(body["timestamp"]) / 1000, UTC))
        jira_would_answer(running.systems.jira, body)
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature": sign(JIRA_SECRET, raw),
            "X-Atlassian-Webhook-Identifier": f"real-{number}",
        }
        reply = running.post("/webhooks/jira", headers, raw)
        assert reply.status < 500, f"{name}: {reply.status} {reply.text}"
        if event in IGNORED:
            ignored += 1
            assert (reply.status, reply.json()["status"]) == (200, "ignored"), name
            continue
        assert reply.status == 202, f"{name}: {reply.status} {reply.text}"
        expected = EXPECTED[name]
        key = expected["key"]
        wait_until(
            lambda key=key, expected=expected: _shows(stored(running, key), expected),
            f"{name} applied: {expected}",
        )
        assert _shows(stored(running, key), expected), _describe(stored(running, key))
        running.settle()
    counted = running.metrics()[
        ("slabot_webhooks_total", (("result", "ignored"), ("source", "jira")))
    ]
    assert counted == ignored == 2
    problems = [line for line in running.log.getvalue().splitlines() if _is_problem(line)]
    assert not problems, "\n".join(problems)


def _shows(row: StoredTicket | None, expected: dict[str, Any]) -> bool:
    if row is None:
        return False
    if "status" in expected and row.status != expected["status"]:
        return False
    if "priority" in expected and row.priority != expected["priority"]:
        return False
    if "solved" in expected and (row.solved_at is not None) != expected["solved"]:
        return False
    return not ("tags" in expected and (row.shown or {}).get("tags") != expected["tags"])


def _describe(row: StoredTicket | None) -> str:
    if row is None:
        return "nothing (not stored)"
    return f"status={row.status} priority={row.priority} solved_at={row.solved_at}"


def _is_problem(line: str) -> bool:
    """A log record of the service at WARNING or above (the scheduler's skipped runs aside)."""
    try:
        record = json.loads(line)
    except ValueError:
        return "Traceback" in line
    level = str(record.get("level") or record.get("levelname") or "").upper()
    return level in ("WARNING", "ERROR", "CRITICAL") and "apscheduler" not in str(
        record.get("logger") or record.get("name") or ""
    )
