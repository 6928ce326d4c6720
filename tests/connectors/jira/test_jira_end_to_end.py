"""End to end through the real python-jira client and a fake Jira Cloud on loopback:
signed webhook -> fetch -> ingest (a real database) -> outbox -> edit -> Jira."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from jira_support import (
    CONFIG,
    DUE_INSTANT,
    ENVIRONMENT,
    ORGANIZATIONS,
    PLAN,
    SECRET,
    START,
    Clock,
    settings_for,
)
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from bot.compiled import Policy
from connectors.jira.cli import backfill
from connectors.jira.client import JiraClient
from connectors.jira.config import JiraConfig, parse_jira_config
from connectors.jira.mapping import map_issue
from connectors.jira.poller import STREAM, JiraPoller, load_cursor
from connectors.jira.sync import RECLASSIFICATION_SOURCE, JiraSync
from connectors.jira.webhook import JiraWebhook, create_app, make_intake
from connectors.jira.writeback import JiraWriter
from slabot.fakes.jira import BOT, FakeJira
from slabot.store.db import make_engine
from slabot.store.events import EventService
from slabot.store.migrate import upgrade
from slabot.store.models import (
    OutboxItem,
    StoredDecision,
    StoredTicket,
    TicketEvent,
    WebhookDelivery,
)
from slabot.store.outbox import Outbox
from slabot.store.retry import DatabaseUnavailableError
from slabot.store.services import TicketService
from tests.support.faults import Killed, answer_lost_on_first_call, dies_on_first_call

CARL, ANA = "qm:carl", "ana"


@dataclass
class Harness:
    fake: FakeJira
    engine: Engine
    clock: Clock
    tickets: TicketService
    sync: JiraSync
    webhook: JiraWebhook
    http: TestClient
    writer: JiraWriter
    outbox: Outbox

    def post(self, delivery: tuple[dict[str, str], bytes]) -> tuple[int, dict[str, Any]]:
        headers, body = delivery
        response = self.http.post("/webhooks/jira", content=body, headers=headers)
        assert self.webhook.intake.drain(10)
        return response.status_code, response.json()

    def pending(self) -> list[OutboxItem]:
        with Session(self.engine) as session:
            return list(
                session.scalars(
                    select(OutboxItem).where(
                        OutboxItem.done_at.is_(None), OutboxItem.next_attempt_at.is_not(None)
                    )
                )
            )

    def decision(self, number: int) -> StoredDecision:
        with Session(self.engine) as session:
            row = session.scalars(
                select(StoredTicket).where(StoredTicket.external_key == str(10_000 + number))
            ).one()
            stored = session.get(StoredDecision, row.id)
            assert stored is not None
            return stored

    def history(self, number: int, kind: str) -> list[TicketEvent]:
        with Session(self.engine) as session:
            return list(
                session.scalars(
                    select(TicketEvent)
                    .join(StoredTicket, StoredTicket.id == TicketEvent.ticket_id)
                    .where(
                        StoredTicket.external_key == str(10_000 + number), TicketEvent.kind == kind
                    )
                    .order_by(TicketEvent.id)
                )
            )

    def count(self, model: Any) -> int:
        with Session(self.engine) as session:
            return session.scalar(select(func.count()).select_from(model)) or 0


def people(fake: FakeJira) -> None:
    fake.add_user(CARL, "Carl Customer", account_type="customer", time_zone="America/Los_Angeles")
    fake.add_user(ANA, "Ana Agent", time_zone="Europe/Berlin")


def staging_p1(fake: FakeJira, number: int, **extra: Any) -> tuple[dict[str, str], bytes]:
    """Zoom's policy caps a P1 outside production at P4: slabot owes Jira a change."""
    return fake.add_issue(
        number,
        reporter=CARL,
        priority="Highest",
        labels=["customer_label"],
        fields={PLAN: {"value": "Premier"}, ENVIRONMENT: {"value": "Staging"}},
        **extra,
    )


def production_p3(fake: FakeJira, number: int) -> tuple[dict[str, str], bytes]:
    return fake.add_issue(
        number,
        reporter=CARL,
        priority="Medium",
        fields={PLAN: {"value": "Premier"}, ENVIRONMENT: {"value": "Production"}},
    )


def harness_for(
    fake: FakeJira,
    client: JiraClient,
    config: JiraConfig,
    engine: Engine,
    policies: dict[str, Policy],
) -> Iterator[Harness]:
    clock = Clock(START + timedelta(minutes=5))
    tickets = TicketService(engine, policies, clock, origin="jira")
    sync = JiraSync(client, config, tickets)
    webhook = JiraWebhook(SECRET, make_intake(sync, retries=2, retry_delay=0.0), clock=clock)
    outbox = Outbox(engine, clock)
    writer = JiraWriter(client, config, outbox)
    with TestClient(create_app(webhook)) as http:
        yield Harness(fake, engine, clock, tickets, sync, webhook, http, writer, outbox)


@pytest.fixture
def harness(
    fake: FakeJira,
    client: JiraClient,
    config: JiraConfig,
    engine: Engine,
    policies: dict[str, Policy],
) -> Iterator[Harness]:
    people(fake)
    yield from harness_for(fake, client, config, engine, policies)


def check_round_trip(h: Harness) -> None:
    assert h.post(staging_p1(h.fake, 1))[0] == 202
    kinds = sorted(item.kind for item in h.pending())
    assert kinds == ["set_due_fields", "set_priority", "set_tags"]
    assert h.fake.write_calls == 0

    report = h.writer.flush("test")
    assert (report.sent, report.write_calls, report.dead) == (3, 1, 0)
    shown = h.fake.shown(1)
    assert shown["priority"] == "Low"  # P4
    assert shown["labels"] == ["customer_label", "sla_reclassified_non_production"]
    # First response: the next business day's close, Tuesday 17:00 in Los Angeles (the
    # reporter's zone) = Wednesday 01:00 UTC; Jira's duedate is the Los Angeles date.
    decision = h.decision(1)
    assert decision.first_response_due is not None
    assert decision.first_response_due.isoformat() == "2026-11-18T01:00:00+00:00"
    assert shown["duedate"] == "2026-11-17"
    assert shown[DUE_INSTANT] == "2026-11-23T17:00:00.000+0000"  # next update: 168 h
    assert h.fake.count("PUT") == 1
    assert h.pending() == []


def test_a_signed_webhook_ends_in_jira_showing_priority_duedate_and_labels(
    harness: Harness,
) -> None:
    check_round_trip(harness)


def test_the_round_trip_on_postgresql(
    fake: FakeJira,
    client: JiraClient,
    config: JiraConfig,
    pg_engine: Engine,
    policies: dict[str, Policy],
) -> None:
    people(fake)
    for h in harness_for(fake, client, config, pg_engine, policies):
        check_round_trip(h)


def test_the_webhook_echo_of_slabots_own_edit_causes_no_write(harness: Harness) -> None:
    h = harness
    h.post(staging_p1(h.fake, 1))
    h.writer.flush("test")
    [echo] = h.fake.webhook_outbox  # Jira tells slabot about its own edit
    writes, reads = h.fake.write_calls, h.fake.count("GET", "/issue/")
    h.clock.now += timedelta(minutes=1)
    assert h.post(echo)[0] == 202
    assert h.pending() == []
    assert h.writer.flush("test").write_calls == 0
    assert (h.fake.write_calls, h.fake.count("GET", "/issue/")) == (writes, reads)

    # Even read in full (the poller does), slabot's own edit changes nothing.
    result = h.sync.sync_issue("10001")
    assert result.enqueued == () and result.reclassified == ()
    assert h.writer.flush("test").write_calls == 0


def test_a_persons_priority_change_is_an_audited_reclassification(harness: Harness) -> None:
    h = harness
    h.post(production_p3(h.fake, 1))
    h.writer.flush("test")
    assert h.decision(1).priority == "P3"
    h.clock.now += timedelta(minutes=10)
    h.fake.now += timedelta(minutes=10)
    assert h.post(h.fake.person_update(1, ANA, priority="Highest"))[0] == 202

    [entry] = [e for e in h.history(1, "priority_changed") if e.payload["field"] == "reclassified"]
    assert (entry.actor, entry.origin) == ("Ana Agent (jira ana)", "jira")
    assert entry.payload["from"] == "P3" and entry.payload["to"] == "P1"
    assert entry.reason == "set the priority to Highest in Jira"
    assert h.decision(1).priority == "P1"
    # Zoom wants a P1 reported by phone: the label says so; the priority is already shown.
    assert sorted(item.kind for item in h.pending()) == ["add_note", "set_due_fields", "set_tags"]

    report = h.writer.flush("test")
    assert report.dead == 0
    assert h.fake.shown(1)["priority"] == "Highest"  # Ana's choice stands, not rewritten
    assert h.fake.shown(1)["labels"] == ["sla_p1_not_by_phone"]
    [note] = h.fake.issue_comments(1)
    text = note["body"]["content"][0]["content"][0]["text"]
    assert note["author"]["accountId"] == BOT and note["jsdPublic"] is False
    assert "from P3 to P1 by Ana Agent (jira ana) (via jira)" in text

    # The same change read again (a redelivery, the poller) is not applied twice.
    h.sync.sync_issue("10001")
    assert len(h.history(1, "priority_changed")) == len(
        [e for e in h.history(1, "priority_changed")]
    )
    assert (
        sum(e.payload.get("field") == "reclassified" for e in h.history(1, "priority_changed")) == 1
    )


def test_a_refused_reclassification_is_recorded_reverted_and_explained(harness: Harness) -> None:
    h = harness
    h.post(staging_p1(h.fake, 1))
    h.writer.flush("test")
    assert h.fake.shown(1)["priority"] == "Low"
    h.fake.now += timedelta(minutes=10)
    h.clock.now += timedelta(minutes=10)
    h.post(h.fake.person_update(1, ANA, priority="Highest"))

    [refusal] = [e for e in h.history(1, "priority_changed") if e.payload["field"] == "refused"]
    assert (refusal.actor, refusal.origin) == ("Ana Agent (jira ana)", "jira")
    # The engine's own words name the environment that forbids it.
    assert refusal.reason is not None and "'staging'" in refusal.reason
    assert h.decision(1).priority == "P4"

    report = h.writer.flush("test")
    assert report.dead == 0
    assert h.fake.shown(1)["priority"] == "Low"  # the policy's priority, written back
    [note] = h.fake.issue_comments(1)
    text = note["body"]["content"][0]["content"][0]["text"]
    assert "kept the priority at P4 (Low)" in text and "Ana Agent" in text
    assert "'staging'" in text and note["jsdPublic"] is False
    # slabot's write-back comes back as an echo and is not taken for a person's change.
    for echo in list(h.fake.webhook_outbox):
        h.post(echo)
    assert h.writer.flush("test").write_calls == 0


def test_a_public_agent_comment_is_the_first_response_and_an_internal_one_is_not(
    harness: Harness,
) -> None:
    h = harness
    h.post(production_p3(h.fake, 1))
    h.post(
        h.fake.person_comment(1, ANA, "internal", at=START + timedelta(minutes=20), public=False)
    )
    with Session(h.engine) as session:
        assert session.scalars(select(StoredTicket.first_response_at)).one() is None
    h.post(h.fake.person_comment(1, ANA, "on it", at=START + timedelta(minutes=30)))
    with Session(h.engine) as session:
        assert session.scalars(select(StoredTicket.first_response_at)).one() == START + timedelta(
            minutes=30
        )


def test_waiting_for_customer_pauses_the_clocks(harness: Harness) -> None:
    h = harness
    h.post(production_p3(h.fake, 1))
    waiting = START + timedelta(minutes=40)
    h.post(h.fake.person_update(1, ANA, at=waiting, status="Waiting for customer"))
    with Session(h.engine) as session:
        row = session.scalars(select(StoredTicket)).one()
        assert row.status == "pending"
        assert [begin for begin, _ in row.paused] == [waiting.isoformat()]


def test_a_repeated_delivery_is_dropped(harness: Harness) -> None:
    h = harness
    headers, body = staging_p1(h.fake, 1)
    assert h.post((headers, body))[0] == 202
    reads = h.fake.count("GET", "/issue/10001")
    status, answer = h.post((headers, body))
    assert (status, answer["status"]) == (200, "duplicate")
    assert h.fake.count("GET", "/issue/10001") == reads


@pytest.mark.parametrize("tamper", ["unsigned", "wrong secret", "body changed", "not sha256"])
def test_unsigned_or_tampered_webhooks_are_refused_and_nothing_is_stored(
    harness: Harness, tamper: str
) -> None:
    h = harness
    headers, raw = staging_p1(h.fake, 1)
    if tamper == "wrong secret":
        headers, raw = h.fake.webhook(raw, secret="not-the-secret")
    elif tamper == "unsigned":
        del headers["X-Hub-Signature"]
    elif tamper == "body changed":
        raw = raw.replace(b"Highest", b"Lowest")
    elif tamper == "not sha256":
        headers["X-Hub-Signature"] = headers["X-Hub-Signature"].replace("sha256=", "sha1=")
    calls = len(h.fake.calls)
    status, answer = h.post((headers, raw))
    assert status == 401 and "X-Hub-Signature" in answer["error"]
    assert len(h.fake.calls) == calls
    assert h.count(WebhookDelivery) == 0 and h.count(StoredTicket) == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        (b'{"issue": {"id": "10001"}}', "no 'webhookEvent'"),
        (b'{"webhookEvent": "jira:issue_created"}', "has no 'issue'"),
        (b'{"webhookEvent": "jira:issue_created", "issue": {"key": "SUP-1"}}', "not an issue id"),
    ],
)
def test_a_malformed_body_is_answered_400_with_what_is_wrong(
    harness: Harness, body: bytes, message: str
) -> None:
    status, answer = harness.post(harness.fake.webhook(body))
    assert status == 400 and message in answer["error"]
    assert harness.count(WebhookDelivery) == 0


def test_ignored_and_unknown_events_are_answered_without_effect(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    staging_p1(h.fake, 1)
    issue = h.fake.issues["10001"]
    deleted = {"webhookEvent": "jira:issue_deleted", "issue": issue, "timestamp": 1}
    assert h.post(h.fake.webhook(deleted)) == (
        200,
        {"status": "ignored", "event": "jira:issue_deleted"},
    )
    with caplog.at_level(logging.WARNING, logger="connectors.jira.webhook"):
        status, answer = h.post(
            h.fake.webhook({"webhookEvent": "jira:issue_teleported", "issue": issue})
        )
    assert (status, answer["status"]) == (200, "unknown event")
    assert "jira:issue_teleported" in caplog.text
    assert h.count(WebhookDelivery) == 0 and h.count(StoredTicket) == 0
    assert h.fake.count("GET", "/issue/") == 0
    assert h.webhook.counts == {"ignored": 1, "unknown": 1}


def test_while_jira_is_down_writes_wait_and_none_is_lost(harness: Harness) -> None:
    h = harness
    for number in (1, 2):
        h.post(staging_p1(h.fake, number))
    h.fake.fail_next(1, 503, retry_after=60, method="PUT")
    report = h.writer.flush("test")
    # Jira asked everyone to back off: the second issue is not even tried.
    assert (report.sent, report.retrying, report.dead, h.fake.count("PUT")) == (0, 6, 0, 1)
    assert {item.next_attempt_at for item in h.pending()} == {h.clock.now + timedelta(seconds=60)}
    assert h.fake.shown(1)["priority"] == "Highest"

    h.clock.now += timedelta(minutes=2)
    h.fake.fail_next(2, 500, method="PUT")
    assert h.writer.flush("test").retrying == 6  # a 500 is retried with backoff
    h.clock.now += timedelta(hours=2)
    assert h.writer.flush("test").sent == 6
    assert h.fake.shown(1)["priority"] == h.fake.shown(2)["priority"] == "Low"
    assert h.pending() == []


def test_a_429_is_retried_no_sooner_than_its_retry_after(harness: Harness) -> None:
    h = harness
    h.post(staging_p1(h.fake, 1))
    h.fake.fail_next(1, 429, retry_after=120, method="PUT")
    report = h.writer.flush("test")
    assert report.retrying == 3
    assert {item.next_attempt_at for item in h.pending()} == {h.clock.now + timedelta(seconds=120)}
    assert all("429" in (item.last_error or "") for item in h.pending())


def test_a_timeout_is_retried(
    fake: FakeJira, config: JiraConfig, engine: Engine, policies: dict[str, Policy]
) -> None:
    people(fake)
    quick = JiraClient(settings_for(fake), config, timeout=0.3)
    for h in harness_for(fake, quick, config, engine, policies):
        h.post(staging_p1(fake, 1))
        fake.fail_next(1, 200, stall=0.8, method="PUT")
        assert h.writer.flush("test").retrying == 3
        assert all("timed out" in (item.last_error or "") for item in h.pending())


def test_a_refused_edit_is_dead_lettered_with_jiras_message(harness: Harness) -> None:
    h = harness
    h.post(staging_p1(h.fake, 1))
    del h.fake.custom_fields[DUE_INSTANT]  # taken off the edit screen meanwhile
    report = h.writer.flush("test")
    assert report.dead == 3 and report.sent == 0
    dead = h.outbox.dead_letters("jira")
    assert {d.kind for d in dead} == {"set_priority", "set_tags", "set_due_fields"}
    assert all("not on the appropriate screen" in (d.last_error or "") for d in dead)
    assert all("test-token" not in (d.last_error or "") for d in dead)


def test_the_poller_pages_stores_its_cursor_and_skips_what_the_overlap_brings_back(
    harness: Harness,
) -> None:
    h = harness
    h.sync.config = h.sync.config.model_copy(update={"page_size": 20})
    for number in range(1, 46):
        staging_p1(h.fake, number, created_at=START - timedelta(minutes=number))
    poller = JiraPoller(h.sync.client, h.sync)
    first = poller.poll()
    assert (first.issues, first.applied, first.pages, first.complete) == (45, 45, 3, True)
    assert 'updated >= "2026-11-16 17:05"' in first.jql  # an hour back, in the bot's zone
    cursor = load_cursor(h.engine, "jira", STREAM)
    assert cursor == first.cursor == (START - timedelta(minutes=1)).isoformat()
    assert h.fake.count("GET", "/rest/api/3/search/jql") == 3
    assert h.fake.count("GET", "/rest/api/3/issue/") == 0  # the search carried everything

    h.fake.now += timedelta(minutes=10)
    h.fake.person_comment(7, ANA, "on it")  # its webhook never arrives
    reads = h.fake.count("GET", "/rest/api/3/issue/")
    second = poller.poll()
    assert 'updated >= "2026-11-16 17:57"' in second.jql  # the cursor less 2 minutes, Berlin
    assert second.applied == 1 and second.already == 3  # the overlap, skipped unread
    assert h.fake.count("GET", "/rest/api/3/issue/") == reads
    assert h.count(StoredTicket) == 45


def test_an_issue_the_search_shows_late_is_caught_by_the_overlap(harness: Harness) -> None:
    h = harness
    poller = JiraPoller(h.sync.client, h.sync)
    staging_p1(h.fake, 1)
    assert poller.poll().applied == 1
    h.fake.search_lag = timedelta(seconds=30)
    h.fake.now += timedelta(minutes=5)
    staging_p1(h.fake, 2, created_at=h.fake.now - timedelta(seconds=10))
    assert poller.poll().applied == 0  # not in the index yet
    h.fake.now += timedelta(minutes=1)
    assert poller.poll().applied == 1
    assert h.count(StoredTicket) == 2


def test_jira_down_during_a_poll_keeps_the_cursor(harness: Harness) -> None:
    h = harness
    poller = JiraPoller(h.sync.client, h.sync)
    staging_p1(h.fake, 1)
    h.fake.fail_next(1, 503, path_contains="/search/jql")
    report = poller.poll()
    assert report.error is not None and "503" in report.error and report.applied == 0
    assert load_cursor(h.engine, "jira", STREAM) is None
    assert poller.poll().applied == 1


def test_slabot_backfill_jira_imports_and_writes(
    fake: FakeJira, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    people(fake)
    for number in (1, 2, 3):
        staging_p1(fake, number, created_at=START - timedelta(days=3))
    database = f"sqlite:///{tmp_path / 'backfill.db'}"
    migrated = make_engine(database)
    upgrade(migrated)
    migrated.dispose()
    config_file = tmp_path / "slabot.yaml"
    config_file.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    environ = {
        "JIRA_URL": fake.url,
        "JIRA_EMAIL": "slabot@example.com",
        "JIRA_API_TOKEN": "test-token",
        "DATABASE_URL": database,
    }
    args = argparse.Namespace(
        source="jira", since="2026-11-01", config=str(config_file), policy=[], write=True
    )
    assert backfill(args, environ) == 0
    out = capsys.readouterr().out
    assert "3 issues read in 1 pages" in out and "3 applied" in out
    assert "9 writes sent to 3 issues in 3 calls" in out
    assert {fake.shown(n)["priority"] for n in (1, 2, 3)} == {"Low"}
    assert "test-token" not in out
    with Session(make_engine(database)) as session:
        assert session.scalar(select(func.count()).select_from(StoredTicket)) == 3


def test_group_agents_decide_who_replied(
    fake: FakeJira, engine: Engine, policies: dict[str, Policy]
) -> None:
    people(fake)
    fake.add_user("bob", "Bob Agent", groups=("support-agents",))
    data = {"jira": {**CONFIG["jira"], "agents": {"groups": ["support-agents"]}}}
    config = parse_jira_config(data)
    client = JiraClient(settings_for(fake), config, timeout=2.0)
    for h in harness_for(fake, client, config, engine, policies):
        h.post(production_p3(fake, 1))
        h.post(fake.person_comment(1, ANA, "not in the group", at=START + timedelta(minutes=10)))
        h.post(fake.person_comment(1, "bob", "on it", at=START + timedelta(minutes=20)))
        with Session(h.engine) as session:
            first = session.scalars(select(StoredTicket.first_response_at)).one()
        assert first == START + timedelta(minutes=20)


def test_slabot_backfill_jira_runs_from_the_command_line(
    fake: FakeJira,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from slabot.cli import main

    people(fake)
    staging_p1(fake, 1, created_at=START - timedelta(days=1))
    database = f"sqlite:///{tmp_path / 'cli.db'}"
    migrated = make_engine(database)
    upgrade(migrated)
    migrated.dispose()
    config_file = tmp_path / "slabot.yaml"
    config_file.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    for name, value in {
        "JIRA_URL": fake.url,
        "JIRA_EMAIL": "slabot@example.com",
        "JIRA_API_TOKEN": "test-token",
        "DATABASE_URL": database,
    }.items():
        monkeypatch.setenv(name, value)
    argv = ["backfill", "jira", "--since", "2026-11-01", "--config", str(config_file)]
    assert main(argv) == 0
    assert "1 issues read" in capsys.readouterr().out
    assert fake.write_calls == 0  # without --write the flusher sends them later
    assert main(["backfill", "jira", "--since", "last week", "--config", str(config_file)]) == 1
    assert "not a date" in capsys.readouterr().err


def test_the_assignee_and_the_key_reach_what_slack_reads(
    fake: FakeJira, client: JiraClient, config: JiraConfig
) -> None:
    fake.add_user(CARL, "Carl Customer", account_type="customer")
    fake.add_user("ana-visible", "Ana Agent", email="Ana@Acme.example")
    fake.add_user("bob-hidden", "Bob Agent")  # his profile hides his address
    fake.add_issue(1, reporter=CARL, assignee="ana-visible")
    fake.add_issue(2, reporter=CARL, assignee="bob-hidden")
    fake.add_issue(3, reporter=CARL)
    shown = {n: map_issue(client.fetch(str(10_000 + n)), config).snapshot.shown for n in (1, 2, 3)}
    assert shown[1]["assignee_email"] == "ana@acme.example"
    assert shown[2]["assignee_email"] is None and shown[3]["assignee_email"] is None
    assert [shown[n]["key"] for n in (1, 2, 3)] == ["SUP-1", "SUP-2", "SUP-3"]
    assert shown[1]["queue"] == "SUP"
    assert shown[1]["url"] == f"{fake.url}/browse/SUP-1"


def test_the_summary_reporter_organizations_project_and_assignee_name_reach_the_store(
    each_database: Harness,
) -> None:
    h = each_database
    organizations = [
        {"id": "1", "name": "Initech <GmbH> & Co", "_links": {"self": f"{h.fake.url}/o/1"}}
    ]
    h.post(
        h.fake.add_issue(
            1,
            reporter=CARL,
            assignee=ANA,
            summary="Calls <drop> & fail\r\nafter 30 s",
            fields={PLAN: {"value": "Premier"}, ORGANIZATIONS: organizations},
        )
    )
    h.post(h.fake.add_issue(2, reporter=CARL, fields={PLAN: {"value": "Premier"}}))
    with Session(h.engine) as session:
        stored = {
            row.external_key: row.shown
            for row in session.scalars(select(StoredTicket).order_by(StoredTicket.external_key))
        }
    first, second = stored["10001"], stored["10002"]
    assert first["subject"] == "Calls <drop> & fail after 30 s"
    assert first["requester"] == "Carl Customer"
    assert first["organization"] == "Initech <GmbH> & Co"
    assert first["queue"] == "SUP"
    assert first["assignee_name"] == "Ana Agent"
    assert second["subject"] == "issue 2"
    assert (second["organization"], second["assignee_name"]) == (None, None)


# --- an agent's change is applied atomically, once ----------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def each_database(
    request: pytest.FixtureRequest,
    fake: FakeJira,
    client: JiraClient,
    config: JiraConfig,
    policies: dict[str, Policy],
) -> Iterator[Harness]:
    engine: Engine = request.getfixturevalue("engine" if request.param == "sqlite" else "pg_engine")
    people(fake)
    yield from harness_for(fake, client, config, engine, policies)


def later(h: Harness, minutes: int = 10) -> None:
    h.clock.now += timedelta(minutes=minutes)
    h.fake.now += timedelta(minutes=minutes)


def agent_sets_highest(h: Harness) -> str:
    """A P3 in production that Ana sets Highest in Jira; returns the change's id."""
    production_p3(h.fake, 1)
    h.sync.sync_issue("10001")
    h.writer.flush("test")
    later(h)
    h.fake.person_update(1, ANA, priority="Highest")
    [change] = map_issue(h.sync.client.fetch("10001"), h.sync.config).reclassifications
    return change.change_id


def reclassified(h: Harness) -> list[TicketEvent]:
    return [e for e in h.history(1, "priority_changed") if e.payload["field"] == "reclassified"]


def applied_once(h: Harness) -> None:
    [entry] = reclassified(h)
    assert (entry.payload["from"], entry.payload["to"]) == ("P3", "P1")
    assert h.decision(1).priority == "P1"
    assert h.writer.flush("test").dead == 0
    assert len(h.fake.issue_comments(1)) == 1
    assert h.fake.shown(1)["priority"] == "Highest"


def test_an_agents_change_is_applied_once_across_repeated_syncs_and_keyed_in_the_history(
    each_database: Harness,
) -> None:
    h = each_database
    change_id = agent_sets_highest(h)
    assert h.sync.sync_issue("10001").reclassified == ("P1",)
    for _ in range(3):
        later(h, 1)
        assert h.sync.sync_issue("10001").reclassified == ()
    applied_once(h)
    [entry] = reclassified(h)
    assert entry.event_key == f"reclassify:jira:changelog:{change_id}"
    with Session(h.engine) as session:
        recorded = select(func.count()).where(WebhookDelivery.source == RECLASSIFICATION_SOURCE)
        assert session.scalar(recorded) == 0  # the history's key says it all


def test_a_change_applied_under_the_delivery_record_scheme_is_not_applied_again(
    each_database: Harness,
) -> None:
    h = each_database
    change_id = agent_sets_highest(h)
    # Applied before the request key was kept: only the delivery record says so.
    assert EventService(h.tickets).record_delivery(RECLASSIFICATION_SOURCE, f"10001:{change_id}")
    assert h.sync.sync_issue("10001").reclassified == ()
    assert reclassified(h) == []
    assert h.decision(1).priority == "P3"


def test_a_process_dying_while_applying_the_change_does_not_lose_it(
    each_database: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = each_database
    agent_sets_highest(h)
    dies_on_first_call(monkeypatch, h.tickets, "reclassify")
    with pytest.raises(Killed):
        h.sync.sync_issue("10001")
    assert reclassified(h) == []
    later(h, 1)
    assert h.sync.sync_issue("10001").reclassified == ("P1",)
    assert h.sync.sync_issue("10001").reclassified == ()
    applied_once(h)


def test_a_commit_whose_outcome_was_unknown_is_not_applied_twice(
    each_database: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = each_database
    agent_sets_highest(h)
    unknown = DatabaseUnavailableError("the commit may or may not have happened", attempts=1)
    answer_lost_on_first_call(monkeypatch, h.tickets, "reclassify", unknown)
    with pytest.raises(DatabaseUnavailableError):
        h.sync.sync_issue("10001")
    later(h, 1)
    assert h.sync.sync_issue("10001").reclassified == ()
    applied_once(h)


def test_a_refused_change_stays_refused_once_even_when_the_policy_would_now_allow_it(
    each_database: Harness,
) -> None:
    h = each_database
    staging_p1(h.fake, 1)
    h.sync.sync_issue("10001")
    h.writer.flush("test")
    later(h)
    h.fake.person_update(1, ANA, priority="Highest")
    assert h.sync.sync_issue("10001").reclassified == ("refused P1",)
    # The environment is fixed later: Ana's earlier change is not applied after the fact.
    later(h)
    h.fake.person_update(1, ANA, **{ENVIRONMENT: {"value": "Production"}})
    assert h.sync.sync_issue("10001").reclassified == ()
    refusals = [e for e in h.history(1, "priority_changed") if e.payload["field"] == "refused"]
    assert len(refusals) == 1 and reclassified(h) == []


def test_an_interrupted_backfill_resumes_from_the_newest_issue_it_committed(
    harness: Harness,
) -> None:
    """Each page is one transaction; the process ending in the second page's ingest leaves
    the first page stored, and the same backfill run again goes on from the newest issue
    of that page (the overlap it brings back is skipped as already applied)."""
    h = harness
    h.sync.config = h.sync.config.model_copy(update={"page_size": 20})
    for number in range(1, 46):
        staging_p1(h.fake, number, created_at=START - timedelta(hours=number))
    since = START - timedelta(days=3)
    real = h.sync.apply_many
    calls = [0]

    def dies_on_the_second_page(bundles: Any) -> Any:
        calls[0] += 1
        if calls[0] == 2:
            raise Killed
        return real(bundles)

    h.sync.apply_many = dies_on_the_second_page  # type: ignore[method-assign]
    with pytest.raises(Killed):
        JiraPoller(h.sync.client, h.sync).backfill(since)
    with Session(h.engine) as session:
        assert session.scalar(select(func.count()).select_from(StoredTicket)) == 20

    h.sync.apply_many = real  # type: ignore[method-assign]
    report = JiraPoller(h.sync.client, h.sync).backfill(since)
    assert report.resumed and report.complete
    newest_of_first_page = START - timedelta(hours=26)
    local = newest_of_first_page.astimezone(h.sync.client.account_zone())
    assert f'updated >= "{local:%Y-%m-%d %H:%M}"' in report.jql
    assert (report.applied, report.failed) == (25, 0)
    with Session(h.engine) as session:
        assert session.scalar(select(func.count()).select_from(StoredTicket)) == 45

    again = JiraPoller(h.sync.client, h.sync).backfill(since)  # finished: from --since
    assert not again.resumed and again.already == 45
