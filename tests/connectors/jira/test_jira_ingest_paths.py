"""Issue 14, Jira: an issue first seen after its reopening takes the reopening, the
restoration start and the next-update clock from the changelog entry (Done -> To Do at T1),
not from its ``updated`` time (T2, 18 h later), on the backfill, poll and first-webhook paths
alike, and they all store the clocks a webhook per change stores; one issue that cannot be
applied never stops a backfill or a poll.

Everything goes through the real python-jira client and the fake Jira Cloud on loopback,
serving the recorded issue of ``fixtures/issue_show__reopened_after_done.json`` (Jira's
documented shape: ``changelog.histories[].items[]`` with ``field: status``).
"""

from __future__ import annotations

import argparse
import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from jira_support import CONFIG, SECRET, fixture
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from bot.compiled import Policy
from connectors.cli import SOME_FAILED
from connectors.jira.cli import backfill
from connectors.jira.client import JiraClient
from connectors.jira.config import JiraConfig
from connectors.jira.poller import STREAM, JiraPoller, load_cursor
from connectors.jira.sync import JiraSync
from connectors.jira.webhook import JiraWebhook, create_app, make_intake
from slabot.fakes.jira import FakeJira
from slabot.store.db import make_engine
from slabot.store.migrate import upgrade
from slabot.store.models import StoredDecision, StoredTicket
from slabot.store.services import TicketService

ISSUE = "10043"
CREATED = datetime(2026, 11, 16, 17, 0, tzinfo=UTC)
DONE_AT = datetime(2026, 11, 16, 18, 0, tzinfo=UTC)
REOPENED_AT = datetime(2026, 11, 16, 19, 0, tzinfo=UTC)  # T1: Done -> To Do
UPDATED_AT = datetime(2026, 11, 17, 13, 0, tzinfo=UTC)  # T2: a label, 18 h later
AFTER = UPDATED_AT + timedelta(minutes=5)


def recorded_issue() -> dict[str, Any]:
    issue: dict[str, Any] = fixture("issue_show__reopened_after_done.json")
    return issue


def serve(fake: FakeJira, issue: dict[str, Any], histories: int | None = None) -> dict[str, Any]:
    """Serve ``issue`` with its comments and the first ``histories`` changelog entries (all:
    None); the fields as they were after the last of them (status, ``updated``). The fake's
    time moves on to after the recorded history (its search shows nothing newer)."""
    fake.now = max(fake.now, AFTER)
    issue = copy.deepcopy(issue)
    entries = issue.pop("changelog")["histories"]
    shown = entries if histories is None else entries[:histories]
    fields = issue["fields"]
    comments = fields.pop("comment")["comments"]
    if histories is not None:
        status = "Waiting for support"
        for entry in shown:
            for item in entry["items"]:
                if item["field"] == "status":
                    status = item["toString"]
        fields["status"] = fake._status(status)
        fields["updated"] = shown[-1]["created"] if shown else fields["created"]
    fake.issues[issue["id"]] = issue
    fake.histories[issue["id"]] = shown
    fake.comments[issue["id"]] = [c for c in comments if c["created"] <= fields["updated"]]
    return issue


def delivery(
    fake: FakeJira, issue: dict[str, Any], sent_at: datetime
) -> tuple[dict[str, str], bytes]:
    """The ``jira:issue_updated`` Jira sends at ``sent_at`` for the issue's last changelog
    entry (its ``timestamp`` is when it was sent)."""
    entries = fake.histories[issue["id"]]
    body: dict[str, Any] = {
        "timestamp": int(sent_at.timestamp() * 1000),
        "webhookEvent": "jira:issue_updated" if entries else "jira:issue_created",
        "issue_event_type_name": "issue_generic" if entries else "issue_created",
        "user": entries[-1]["author"] if entries else issue["fields"]["reporter"],
        "issue": fake._issue(issue["id"], False),
    }
    if entries:
        body["changelog"] = {"id": entries[-1]["id"], "items": entries[-1]["items"]}
    return fake.webhook(body)


def clocks(engine: Engine, key: str = ISSUE) -> dict[str, Any]:
    """What the clocks are made of, as stored: the ticket's facts and its due instants."""
    with Session(engine) as session:
        row = session.scalars(select(StoredTicket).where(StoredTicket.external_key == key)).one()
        decision = session.get(StoredDecision, row.id)
        assert decision is not None
        return {
            "status": row.status,
            "paused": [tuple(span) for span in row.paused],
            "restoration_started_at": row.restoration_started_at,
            "first_response_at": row.first_response_at,
            "last_agent_update_at": row.last_agent_update_at,
            "first_response_due": decision.first_response_due,
            "restoration_due": decision.restoration_due,
            "next_update_due": decision.next_update_due,
        }


def migrated(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    return engine


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Service:
    """The webhook endpoint, its worker and a poller on one database, with a fixed clock."""

    def __init__(
        self, client: JiraClient, config: JiraConfig, engine: Engine, policies: dict[str, Policy]
    ) -> None:
        self.engine = engine
        self.clock = Clock(AFTER)
        self.tickets = TicketService(engine, policies, self.clock, origin="jira")
        self.sync = JiraSync(client, config, self.tickets)
        self.poller = JiraPoller(client, self.sync)
        # The endpoint judges a body's own timestamp on the same clock.
        self.webhook = JiraWebhook(
            SECRET, make_intake(self.sync, retries=1, retry_delay=0.0), clock=self.clock
        )

    def post(self, http: TestClient, sent: tuple[dict[str, str], bytes]) -> int:
        headers, body = sent
        response = http.post("/webhooks/jira", content=body, headers=headers)
        assert self.webhook.intake.drain(10)
        return response.status_code


def run_backfill(fake: FakeJira, tmp_path: Path, database: Path) -> int:
    config_file = tmp_path / "slabot.yaml"
    config_file.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    environ = {
        "JIRA_URL": fake.url,
        "JIRA_EMAIL": "slabot@example.com",
        "JIRA_API_TOKEN": "test-token",
        "DATABASE_URL": f"sqlite:///{database}",
    }
    args = argparse.Namespace(
        source="jira", since="2026-11-01", config=str(config_file), policy=[], write=False
    )
    return backfill(args, environ)


# --- the reopening ----------------------------------------------------------------------------


def test_an_issue_first_seen_after_its_reopening_takes_the_changelogs_instant(
    fake: FakeJira, client: JiraClient, config: JiraConfig, engine: Engine,
    policies: dict[str, Policy],
) -> None:  # fmt: skip
    issue = serve(fake, recorded_issue())
    service = Service(client, config, engine, policies)
    with TestClient(create_app(service.webhook)) as http:
        assert service.post(http, delivery(fake, issue, service.clock())) == 202
    stored = clocks(engine)
    assert stored["status"] == "open"  # To Do (category new)
    assert stored["restoration_started_at"] == REOPENED_AT  # T1, not T2
    assert stored["first_response_at"] == CREATED + timedelta(minutes=30)
    # Zoom, premier P3: an update every 84 h (24x7), owed from the latest of the reply and
    # the reopening: Friday 07:00 UTC from T1 (from T2 it was Saturday 01:00, 18 h late).
    assert stored["next_update_due"] == REOPENED_AT + timedelta(hours=84)


def test_backfill_poll_first_webhook_and_a_webhook_per_change_give_the_same_clocks(
    fake: FakeJira,
    client: JiraClient,
    config: JiraConfig,
    policies: dict[str, Policy],
    tmp_path: Path,
) -> None:
    recorded = recorded_issue()

    # A webhook per change, as it happened (the issue as Jira showed it after each entry).
    live = Service(client, config, migrated(tmp_path / "live.db"), policies)
    with TestClient(create_app(live.webhook)) as http:
        for count in range(len(recorded["changelog"]["histories"]) + 1):
            issue = serve(fake, recorded, count)
            live.clock.now = datetime.fromisoformat(issue["fields"]["updated"]) + timedelta(
                minutes=1
            )
            assert live.post(http, delivery(fake, issue, live.clock())) == 202
    live.clock.now = AFTER
    live.sync.sync_issue(ISSUE)  # re-evaluated at the same instant as the others

    issue = serve(fake, recorded)
    first = Service(client, config, migrated(tmp_path / "first.db"), policies)
    with TestClient(create_app(first.webhook)) as http:
        assert first.post(http, delivery(fake, issue, first.clock())) == 202
    polled = Service(client, config, migrated(tmp_path / "poll.db"), policies)
    assert polled.poller.poll().applied == 1  # the first poll looks an hour back from AFTER
    database = tmp_path / "backfill.db"
    migrated(database).dispose()
    assert run_backfill(fake, tmp_path, database) == 0
    backfilled = make_engine(f"sqlite:///{database}")

    try:
        expected = clocks(live.engine)
        assert expected["restoration_started_at"] == REOPENED_AT
        assert clocks(first.engine) == expected
        assert clocks(polled.engine) == expected
        assert clocks(backfilled) == expected
    finally:
        for engine in (live.engine, first.engine, polled.engine, backfilled):
            engine.dispose()


def test_a_poll_catching_up_on_an_issue_stored_as_done_takes_the_reopening_from_the_changelog(
    fake: FakeJira, client: JiraClient, config: JiraConfig, engine: Engine,
    policies: dict[str, Policy],
) -> None:  # fmt: skip
    recorded = recorded_issue()
    service = Service(client, config, engine, policies)
    serve(fake, recorded, 2)  # Done at 18:00: stored solved
    service.clock.now = DONE_AT + timedelta(minutes=1)
    service.sync.sync_issue(ISSUE)
    assert clocks(engine)["status"] == "solved"

    serve(fake, recorded)  # reopened at T1, seen by the poller only after T2
    service.clock.now = AFTER
    assert service.poller.poll().applied == 1
    stored = clocks(engine)
    assert stored["status"] == "open"
    assert stored["restoration_started_at"] == REOPENED_AT


# --- one bad issue ----------------------------------------------------------------------------


def another(number: int, updated: str, **fields: Any) -> dict[str, Any]:
    issue = recorded_issue()
    issue_id = str(10_000 + number)
    issue["id"], issue["key"] = issue_id, f"SUP-{number}"
    issue["fields"]["updated"] = updated
    issue["fields"].update(fields)
    return issue


def test_one_issue_that_cannot_be_applied_does_not_stop_the_backfill(
    fake: FakeJira, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(fake, another(1, "2026-11-17T13:00:00.000+0000"))
    # Payload drift: a status without a category that jira.statuses does not name either.
    serve(fake, another(2, "2026-11-17T13:01:00.000+0000", status={"name": "Triage"}))
    serve(fake, another(3, "2026-11-17T13:02:00.000+0000"))
    database = tmp_path / "backfill.db"
    migrated(database).dispose()

    assert run_backfill(fake, tmp_path, database) == SOME_FAILED
    captured = capsys.readouterr()
    assert "3 issues read" in captured.out and "2 applied, 1 failed" in captured.out
    assert "jira: not applied: issue SUP-2: " in captured.err and "'Triage'" in captured.err
    engine = make_engine(f"sqlite:///{database}")
    try:
        with Session(engine) as session:
            keys = set(session.scalars(select(StoredTicket.external_key)))
        assert keys == {"10001", "10003"}
        assert load_cursor(engine, "jira", STREAM) is not None
    finally:
        engine.dispose()


def test_a_poll_counts_the_bad_issue_applies_the_rest_and_moves_its_cursor(
    fake: FakeJira, client: JiraClient, config: JiraConfig, engine: Engine,
    policies: dict[str, Policy], caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    serve(fake, another(2, "2026-11-17T13:00:00.000+0000", status={"name": "Triage"}))
    serve(fake, another(3, "2026-11-17T13:01:00.000+0000"))
    nameless = another(4, "2026-11-17T13:02:00.000+0000")
    serve(fake, nameless)
    fake.issues[nameless["id"]]["id"] = None  # the search returns an issue without an id
    service = Service(client, config, engine, policies)
    with caplog.at_level("ERROR", logger="connectors.jira.poller"):
        report = service.poller.poll()
    assert (report.issues, report.applied, report.failed) == (3, 1, 2)
    assert report.errors[0].startswith("issue SUP-2: ") and "'Triage'" in report.errors[0]
    assert "is not an issue id" in report.errors[1]
    assert "Jira issue SUP-2 not applied" in caplog.text
    assert load_cursor(engine, "jira", STREAM) == "2026-11-17T13:01:00+00:00"
