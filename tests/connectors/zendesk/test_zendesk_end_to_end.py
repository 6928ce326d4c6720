"""End to end through the real zenpy client and a fake Zendesk on loopback:
signed webhook -> fetch -> ingest (a real database) -> outbox -> update_many -> Zendesk."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CONFIG, SECRET, START, Clock, settings_for
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from bot.compiled import Policy
from connectors.zendesk.cli import BackfillError, backfill, parse_since
from connectors.zendesk.client import ZendeskClient
from connectors.zendesk.config import ZendeskConfig, parse_zendesk_config
from connectors.zendesk.mapping import due_field_values, map_ticket
from connectors.zendesk.poller import STREAM, ZendeskPoller, load_cursor
from connectors.zendesk.sync import RECLASSIFICATION_SOURCE, ZendeskSync
from connectors.zendesk.webhook import ZendeskWebhook, create_app, make_intake
from connectors.zendesk.writeback import ZendeskWriter
from slabot.fakes.zendesk import FakeZendesk
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

REQUESTER, AGENT, ORG = 501, 601, 701
ENV_FIELD, FIRST_RESPONSE_FIELD, RESTORATION_FIELD, NEXT_UPDATE_FIELD = 27642, 27650, 27651, 27652


@dataclass
class Harness:
    fake: FakeZendesk
    engine: Engine
    clock: Clock
    tickets: TicketService
    sync: ZendeskSync
    webhook: ZendeskWebhook
    http: TestClient
    writer: ZendeskWriter
    outbox: Outbox

    def post(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, object]]:
        response = self.http.post("/webhooks/zendesk", content=body, headers=headers)
        assert self.webhook.intake.drain(10)
        return response.status_code, response.json()

    def deliver(self, ticket_id: int) -> int:
        """The trigger's delivery as docs/zendesk.md has it: each change's body is its own
        (a copy of one signed delivery is a duplicate, whatever its invocation id)."""
        updated = self.fake.tickets[ticket_id]["updated_at"]
        body = {"ticket_id": str(ticket_id), "updated_at": updated}
        status, _ = self.post(*self.fake.webhook(body))
        return status

    def pending(self) -> list[OutboxItem]:
        with Session(self.engine) as session:
            return list(
                session.scalars(
                    select(OutboxItem).where(
                        OutboxItem.done_at.is_(None), OutboxItem.next_attempt_at.is_not(None)
                    )
                )
            )

    def decision(self, ticket_id: int) -> StoredDecision:
        with Session(self.engine) as session:
            row = session.scalars(
                select(StoredTicket).where(StoredTicket.external_key == str(ticket_id))
            ).one()
            stored = session.get(StoredDecision, row.id)
            assert stored is not None
            return stored

    def priority_changes(self, ticket_id: int, field: str) -> list[TicketEvent]:
        """The ticket's ``priority_changed`` entries of one kind (``reclassified``...)."""
        with Session(self.engine) as session:
            entries = session.scalars(
                select(TicketEvent)
                .join(StoredTicket, StoredTicket.id == TicketEvent.ticket_id)
                .where(
                    StoredTicket.external_key == str(ticket_id),
                    TicketEvent.kind == "priority_changed",
                )
                .order_by(TicketEvent.id)
            )
            return [e for e in entries if e.payload.get("field") == field]

    def count_deliveries(self, source: str) -> int:
        with Session(self.engine) as session:
            count = select(func.count()).where(WebhookDelivery.source == source)
            return session.scalar(count) or 0

    def notes(self, ticket_id: int) -> list[dict[str, Any]]:
        """The comments slabot posted on the ticket, oldest first."""
        return [
            event
            for audit in self.fake.audits[ticket_id]
            if audit["author_id"] == self.fake.bot_user_id
            for event in audit["events"]
            if event["type"] == "Comment"
        ]


def customer(fake: FakeZendesk) -> None:
    fake.add_user(REQUESTER, "end-user", time_zone="Pacific Time (US & Canada)")
    fake.add_user(AGENT, "agent")
    fake.add_organization(
        ORG, organization_fields={"support_plan": "premier", "country": "us", "time_zone": None}
    )


def staging_p1(fake: FakeZendesk, ticket_id: int, **extra: object) -> None:
    """Zoom's policy caps a P1 outside production at P4: slabot owes Zendesk a change."""
    fake.add_ticket(
        ticket_id,
        requester_id=REQUESTER,
        organization_id=ORG,
        priority="urgent",
        tags=["customer_tag"],
        custom_fields={ENV_FIELD: "env_staging"},
        **extra,  # type: ignore[arg-type]
    )


def production_normal(fake: FakeZendesk, ticket_id: int) -> None:
    """A P3 in production: the policy keeps what the customer asked for."""
    fake.add_ticket(
        ticket_id,
        requester_id=REQUESTER,
        organization_id=ORG,
        priority="normal",
        custom_fields={ENV_FIELD: "env_production"},
    )


def harness_for(
    fake: FakeZendesk,
    client: ZendeskClient,
    config: ZendeskConfig,
    engine: Engine,
    policies: dict[str, Policy],
) -> Iterator[Harness]:
    clock = Clock(START + timedelta(minutes=5))
    tickets = TicketService(engine, policies, clock, origin="zendesk")
    sync = ZendeskSync(client, config, tickets)
    webhook = ZendeskWebhook(SECRET, make_intake(sync, retries=2, retry_delay=0.0))
    outbox = Outbox(engine, clock)
    writer = ZendeskWriter(client, config, outbox)
    with TestClient(create_app(webhook)) as http:
        yield Harness(fake, engine, clock, tickets, sync, webhook, http, writer, outbox)


@pytest.fixture
def harness(
    fake: FakeZendesk,
    client: ZendeskClient,
    config: ZendeskConfig,
    engine: Engine,
    policies: dict[str, Policy],
) -> Iterator[Harness]:
    customer(fake)
    yield from harness_for(fake, client, config, engine, policies)


def check_round_trip(h: Harness, config: ZendeskConfig) -> None:
    staging_p1(h.fake, 101)
    assert h.deliver(101) == 202
    kinds = sorted(item.kind for item in h.pending())
    assert kinds == ["set_due_fields", "set_priority", "set_tags"]
    assert h.fake.write_calls == 0

    report = h.writer.flush("test")
    assert (report.sent, report.write_calls, report.dead) == (3, 1, 0)
    shown = h.fake.shown(101)
    assert shown["priority"] == "low"  # P4
    assert shown["tags"] == ["customer_tag", "sla_reclassified_non_production"]
    decision = h.decision(101)
    wanted = due_field_values({t: getattr(decision, f"{t}_due") for t in config.due_fields}, config)
    assert wanted["first_response"] is not None
    assert shown["fields"][FIRST_RESPONSE_FIELD] == wanted["first_response"]
    assert shown["fields"][NEXT_UPDATE_FIELD] == wanted["next_update"]
    assert h.pending() == []


def test_a_signed_webhook_ends_in_zendesk_showing_priority_tags_and_due_dates(
    harness: Harness, config: ZendeskConfig
) -> None:
    check_round_trip(harness, config)


def test_the_round_trip_on_postgresql(
    fake: FakeZendesk,
    client: ZendeskClient,
    config: ZendeskConfig,
    pg_engine: Engine,
    policies: dict[str, Policy],
) -> None:
    customer(fake)
    for h in harness_for(fake, client, config, pg_engine, policies):
        check_round_trip(h, config)


def test_the_webhook_echo_of_slabots_own_update_causes_no_write(
    harness: Harness, config: ZendeskConfig
) -> None:
    h = harness
    staging_p1(h.fake, 101)
    h.deliver(101)
    h.fake.trigger_on_update = True
    h.writer.flush("test")
    writes = h.fake.write_calls
    assert len(h.fake.webhook_outbox) == 1  # Zendesk's trigger fires on slabot's update

    h.clock.now += timedelta(minutes=1)
    status, _ = h.post(*h.fake.webhook_outbox.pop())
    assert status == 202
    assert h.pending() == []
    assert h.writer.flush("test").write_calls == 0
    assert h.fake.write_calls == writes
    snapshot_priority = h.sync.client.fetch(101)
    assert snapshot_priority.ticket["priority"] == "low"


def test_a_repeated_delivery_is_dropped(harness: Harness) -> None:
    h = harness
    staging_p1(h.fake, 101)
    headers, body = h.fake.webhook({"ticket_id": "101"}, invocation_id="inv-1")
    assert h.post(headers, body)[0] == 202
    reads = h.fake.count("GET", "/tickets/101")
    status, answer = h.post(headers, body)
    assert (status, answer["status"]) == (200, "duplicate")
    assert h.fake.count("GET", "/tickets/101") == reads


def test_an_agent_reply_and_hold_move_the_clocks_from_the_audits(harness: Harness) -> None:
    h = harness
    staging_p1(h.fake, 101)
    h.deliver(101)
    replied = START + timedelta(minutes=30)
    held = START + timedelta(minutes=40)
    h.fake.agent_update(101, AGENT, at=replied, public_reply="on it", status="open")
    h.fake.agent_update(101, AGENT, at=held, status="hold")
    h.clock.now = START + timedelta(hours=1)
    h.deliver(101)
    with Session(h.engine) as session:
        row = session.scalars(select(StoredTicket)).one()
        assert row.first_response_at == replied
        assert row.status == "on_hold"
        assert [datetime.fromisoformat(begin) for begin, _ in row.paused] == [held]
    assert h.decision(101).first_response_state == "met"


@pytest.mark.parametrize(
    "tamper",
    ["unsigned", "wrong secret", "body changed", "stale", "no timestamp", "future"],
)
def test_unsigned_tampered_or_stale_webhooks_are_refused_and_nothing_is_stored(
    harness: Harness, tamper: str
) -> None:
    h = harness
    staging_p1(h.fake, 101)
    body = {"ticket_id": "101"}
    now = datetime.now(UTC)
    if tamper == "wrong secret":
        headers, raw = h.fake.webhook(body, secret="not-the-secret")
    elif tamper == "stale":
        headers, raw = h.fake.webhook(body, timestamp=_iso(now - timedelta(minutes=6)))
    elif tamper == "future":
        headers, raw = h.fake.webhook(body, timestamp=_iso(now + timedelta(minutes=6)))
    else:
        headers, raw = h.fake.webhook(body)
    if tamper == "unsigned":
        del headers["X-Zendesk-Webhook-Signature"]
    elif tamper == "no timestamp":
        del headers["X-Zendesk-Webhook-Signature-Timestamp"]
    elif tamper == "body changed":
        raw = raw.replace(b"101", b"102")
    calls = len(h.fake.calls)
    status, answer = h.post(headers, raw)
    assert status == 401
    assert "error" in answer
    assert len(h.fake.calls) == calls
    with Session(h.engine) as session:
        assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0
        assert session.scalar(select(func.count()).select_from(StoredTicket)) == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        (b'{"ticket": 1}', "no 'ticket_id'"),
        (b'{"ticket_id": "{{ticket.id}}"}', "placeholder was not rendered"),
    ],
)
def test_a_malformed_body_is_answered_400_with_what_is_wrong(
    harness: Harness, body: bytes, message: str
) -> None:
    status, answer = harness.post(*harness.fake.webhook(body))
    assert status == 400
    assert message in str(answer["error"])
    with Session(harness.engine) as session:
        assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0


def test_an_event_subscription_delivery_is_accepted(harness: Harness) -> None:
    h = harness
    staging_p1(h.fake, 101)
    event = {
        "type": "zen:event-type:ticket.status_changed",
        "id": "0f4a9e2c",
        "time": "2026-11-16T17:00:00Z",
        "subject": "zen:ticket:101",
        "detail": {"id": "101", "status": "NEW", "priority": "URGENT"},
        "event": {"current": "NEW", "previous": None},
    }
    headers, raw = h.fake.webhook(event)
    del headers["X-Zendesk-Webhook-Invocation-Id"]  # the event id keys the delivery then
    assert h.post(headers, raw)[0] == 202
    assert {item.kind for item in h.pending()} >= {"set_priority"}
    with Session(h.engine) as session:
        keys = session.scalars(select(WebhookDelivery.delivery_key)).all()
    assert keys == ["event:0f4a9e2c"]


def test_while_zendesk_is_down_writes_wait_and_none_is_lost(harness: Harness) -> None:
    h = harness
    for ticket_id in (101, 102):
        staging_p1(h.fake, ticket_id)
        h.deliver(ticket_id)
    h.fake.fail_next(2, 503, method="PUT")
    report = h.writer.flush("test")
    assert report.sent == 0 and report.retrying == 6 and report.dead == 0
    assert h.fake.shown(101)["priority"] == "urgent"

    h.clock.now += timedelta(hours=2)  # past the backoff; the first retry fails again
    assert h.writer.flush("test").retrying == 6
    h.clock.now += timedelta(hours=2)
    assert h.writer.flush("test").sent == 6
    assert h.fake.shown(101)["priority"] == h.fake.shown(102)["priority"] == "low"
    assert h.pending() == []


def test_a_429_is_retried_no_sooner_than_its_retry_after(harness: Harness) -> None:
    h = harness
    staging_p1(h.fake, 101)
    h.deliver(101)
    h.fake.fail_next(1, 429, retry_after=120, method="PUT")
    report = h.writer.flush("test")
    assert report.retrying == 3
    assert {item.next_attempt_at for item in h.pending()} == {h.clock.now + timedelta(seconds=120)}
    assert all("429" in (item.last_error or "") for item in h.pending())


def test_a_timeout_is_retried(
    fake: FakeZendesk, config: ZendeskConfig, engine: Engine, policies: dict[str, Policy]
) -> None:
    customer(fake)
    quick = ZendeskClient(settings_for(fake), timeout=0.3, job_poll_interval=0.0)
    for h in harness_for(fake, quick, config, engine, policies):
        staging_p1(fake, 101)
        h.deliver(101)
        fake.fail_next(1, 200, stall=0.8, method="PUT")
        report = h.writer.flush("test")
        assert report.retrying == 3
        assert all("timed out" in (item.last_error or "") for item in h.pending())


def test_a_refused_update_is_dead_lettered_with_zendesks_description(
    harness: Harness, config: ZendeskConfig
) -> None:
    h = harness
    staging_p1(h.fake, 101)
    staging_p1(h.fake, 102)
    h.deliver(101)
    h.deliver(102)
    del h.fake.tickets[102]  # deleted in Zendesk meanwhile
    report = h.writer.flush("test")
    assert report.sent == 3 and report.dead == 3
    dead = h.outbox.dead_letters("zendesk")
    assert {d.kind for d in dead} == {"set_priority", "set_tags", "set_due_fields"}
    assert all("TicketNotFound" in (d.last_error or "") for d in dead)


def test_a_backfill_of_1000_tickets_needing_changes_uses_at_most_15_write_calls(
    harness: Harness,
) -> None:
    h = harness
    h.fake.page_size = 100
    for ticket_id in range(1, 1001):
        staging_p1(h.fake, ticket_id, created_at=START - timedelta(minutes=ticket_id % 50))
    poller = ZendeskPoller(h.sync.client, h.sync)
    report = poller.backfill(START - timedelta(days=1))
    assert (report.tickets, report.applied, report.complete) == (1000, 1000, True)
    assert report.pages >= 10
    assert load_cursor(h.engine, "zendesk", STREAM) == report.cursor
    assert h.fake.write_calls == 0

    written = h.writer.flush("backfill", limit=1000)
    assert written.sent == 3000 and written.dead == 0  # priority, tags, due dates each
    assert h.fake.write_calls <= 15
    assert {priority for _, priority in h.fake.tickets_by_priority()} == {"low"}
    assert h.pending() == []


def test_a_flush_settles_each_update_many_job_in_one_commit(harness: Harness) -> None:
    """300 writes for 100 tickets: one job, settled in one transaction, not 300 (on SQLite
    each commit takes the write lock the webhooks' delivery records wait for)."""
    h = harness
    h.fake.page_size = 100
    for ticket_id in range(1, 101):
        staging_p1(h.fake, ticket_id, created_at=START - timedelta(minutes=ticket_id % 50))
    ZendeskPoller(h.sync.client, h.sync).backfill(START - timedelta(days=1))
    commits: list[object] = []

    def committed(connection: object) -> None:
        commits.append(connection)

    event.listen(h.engine, "commit", committed)
    try:
        written = h.writer.flush("backfill", limit=1000)
    finally:
        event.remove(h.engine, "commit", committed)
    assert (written.sent, written.write_calls, written.dead) == (300, 1, 0)
    assert h.pending() == []
    # The claims (the last one empty), the ticket keys read, the settling: not one per write.
    assert len(commits) <= 5, len(commits)


def test_the_poller_resumes_from_its_stored_cursor_within_the_export_budget(
    harness: Harness,
) -> None:
    h = harness
    h.fake.page_size = 2
    for ticket_id in range(1, 25):
        staging_p1(h.fake, ticket_id)
    poller = ZendeskPoller(h.sync.client, h.sync)
    first = poller.poll(max_pages=3)
    assert (first.tickets, first.complete) == (6, False)
    second = poller.poll()
    assert second.complete and first.tickets + second.tickets == 24
    budget = h.sync.client.session.export_budget
    assert budget is not None and budget.waited > 0  # 13 export requests: over 10 a minute

    staging_p1(h.fake, 99)
    h.fake.now += timedelta(minutes=1)
    third = poller.poll()
    assert third.tickets == 1 and third.complete
    with Session(h.engine) as session:
        assert session.scalar(select(func.count()).select_from(StoredTicket)) == 25
        assert session.scalar(select(func.count()).select_from(TicketEvent)) >= 25


def test_zendesk_down_during_a_poll_keeps_the_cursor_for_the_next(harness: Harness) -> None:
    h = harness
    h.fake.page_size = 2
    for ticket_id in range(1, 7):
        staging_p1(h.fake, ticket_id)
    poller = ZendeskPoller(h.sync.client, h.sync)
    h.fake.fail_next(1, 503, path_contains="/audits")
    h.fake.faults[0].path_contains = "/tickets/3/audits"
    report = poller.poll()
    assert report.error is not None and not report.complete
    cursor = load_cursor(h.engine, "zendesk", STREAM)
    assert report.applied == 2 and cursor == report.cursor
    again = poller.poll()
    assert again.complete and again.applied == 4


def _iso(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_reclassification_writes_the_priority_and_a_private_note(harness: Harness) -> None:
    h = harness
    fake = h.fake
    fake.add_ticket(
        101,
        requester_id=REQUESTER,
        organization_id=ORG,
        priority="normal",
        custom_fields={ENV_FIELD: "env_production"},
    )
    h.deliver(101)
    h.writer.flush("test")
    h.tickets.reclassify("zendesk", "101", "P1", "ana@support", "outage confirmed", "slack")
    report = h.writer.flush("test")
    assert report.dead == 0 and report.write_calls == 1
    assert fake.shown(101)["priority"] == "urgent"
    note = fake.audits[101][-1]["events"][-1]
    assert note["type"] == "Comment" and note["public"] is False
    assert "from P3 to P1 by ana@support" in note["body"] and "outage confirmed" in note["body"]


def test_slabot_backfill_zendesk_imports_and_writes(
    fake: FakeZendesk, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    customer(fake)
    for ticket_id in (1, 2, 3):
        staging_p1(fake, ticket_id)
    database = f"sqlite:///{tmp_path / 'backfill.db'}"
    migrated = make_engine(database)
    upgrade(migrated)
    migrated.dispose()
    config_file = tmp_path / "slabot.yaml"
    config_file.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    environ = {
        "ZENDESK_URL": fake.url,
        "ZENDESK_EMAIL": "slabot@example.com",
        "ZENDESK_API_TOKEN": "test-token",
        "DATABASE_URL": database,
    }
    args = argparse.Namespace(
        source="zendesk", since="2026-11-01", config=str(config_file), policy=[], write=True
    )
    assert backfill(args, environ) == 0
    out = capsys.readouterr().out
    assert "3 tickets read" in out and "3 applied" in out
    assert "9 writes sent to 3 tickets in 1 calls" in out
    assert {priority for _, priority in fake.tickets_by_priority()} == {"low"}
    assert "test-token" not in out


def test_slabot_backfill_zendesk_imports_a_ticket_whose_plan_the_policy_lacks(
    fake: FakeZendesk, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before, the backfill counted it "skipped" and stored nothing: the plan's TicketError.
    customer(fake)
    fake.add_organization(ORG + 1, organization_fields={"support_plan": "enterprise"})
    staging_p1(fake, 1)
    fake.add_ticket(2, requester_id=REQUESTER, organization_id=ORG + 1, priority="high")
    database = f"sqlite:///{tmp_path / 'backfill.db'}"
    migrated = make_engine(database)
    upgrade(migrated)
    config_file = tmp_path / "slabot.yaml"
    config_file.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    environ = {
        "ZENDESK_URL": fake.url,
        "ZENDESK_EMAIL": "slabot@example.com",
        "ZENDESK_API_TOKEN": "test-token",
        "DATABASE_URL": database,
    }
    args = argparse.Namespace(
        source="zendesk", since="2026-11-01", config=str(config_file), policy=[], write=True
    )
    assert backfill(args, environ) == 0
    out = capsys.readouterr().out
    assert "2 tickets read" in out and "2 applied, 0 failed" in out
    shown = fake.shown(2)
    assert "sla_unknown_plan" in shown["tags"]
    notes = [
        e["body"]
        for a in fake.audits[2]
        if a["author_id"] == fake.bot_user_id
        for e in a["events"]
        if e["type"] == "Comment" and not e.get("public")
    ]
    assert len(notes) == 1 and "plan 'enterprise' is not in policy 'zoom'" in notes[0]
    with Session(migrated) as session:
        keys = set(session.scalars(select(StoredTicket.external_key)))
    migrated.dispose()
    assert keys == {"1", "2"}


def test_backfill_refuses_a_bad_date() -> None:
    with pytest.raises(BackfillError, match="not a date"):
        parse_since("last week")
    assert parse_since("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)


def test_the_assignee_and_the_group_reach_what_slack_reads(
    fake: FakeZendesk, client: ZendeskClient
) -> None:
    fake.add_user(501, "end-user", email="roger@example.com")
    fake.add_user(235323, "agent", email="Ana.Agent@acme.example")
    fake.add_group(98738, "Tier 2")
    fake.add_ticket(1001, requester_id=501, assignee_id=235323, group_id=98738)
    fake.add_ticket(1002, requester_id=501)  # unassigned, no group
    bundle = client.fetch(1001)
    assert bundle.assignee is not None and bundle.group is not None
    shown = map_ticket(bundle, ZendeskConfig(policy="zoom")).snapshot.shown
    assert shown["assignee_email"] == "ana.agent@acme.example"
    assert shown["queue"] == "Tier 2" and shown["key"] == "ZD-1001"
    assert shown["url"] == f"{fake.url}/agent/tickets/1001"
    assert fake.count("GET", "show_many") == 1 and fake.count("GET", "/groups") == 1
    client.fetch(1001)
    client.fetch(1002)
    assert fake.count("GET", "show_many") == 1 and fake.count("GET", "/groups") == 1  # cached
    shown = map_ticket(client.fetch(1002), ZendeskConfig(policy="zoom")).snapshot.shown
    assert (shown["assignee_email"], shown["queue"]) == (None, None)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_subject_requester_organization_group_and_assignee_name_reach_the_store(
    database: str,
    request: pytest.FixtureRequest,
    fake: FakeZendesk,
    client: ZendeskClient,
    config: ZendeskConfig,
    policies: dict[str, Policy],
) -> None:
    engine: Engine = request.getfixturevalue("engine" if database == "sqlite" else "pg_engine")
    fake.add_user(REQUESTER, "end-user", name="Roger <Wilco> & Sons")
    fake.add_user(AGENT, "agent", name="Ana Agent", email="ana@acme.example")
    fake.add_organization(ORG, name="Initech GmbH", organization_fields={"support_plan": "premier"})
    fake.add_group(98738, "Tier 2")
    subject = "Phone <calls> & faxes drop\nafter 30 seconds"
    fake.add_ticket(
        1001,
        requester_id=REQUESTER,
        organization_id=ORG,
        assignee_id=AGENT,
        group_id=98738,
        subject=subject,
    )
    fake.add_ticket(1002, requester_id=REQUESTER)  # unassigned, no group, no organization
    running = harness_for(fake, client, config, engine, policies)
    h = next(running)
    assert h.deliver(1001) == 202 and h.deliver(1002) == 202
    running.close()
    with Session(engine) as session:
        stored = {
            row.external_key: row.shown
            for row in session.scalars(select(StoredTicket).order_by(StoredTicket.external_key))
        }
    # As Zendesk shows them, line breaks folded: escaping is for where they are shown.
    assert stored["1001"]["subject"] == "Phone <calls> & faxes drop after 30 seconds"
    assert stored["1001"]["requester"] == "Roger <Wilco> & Sons"
    assert stored["1001"]["organization"] == "Initech GmbH"
    assert stored["1001"]["queue"] == "Tier 2"
    assert stored["1001"]["assignee_name"] == "Ana Agent"
    assert stored["1002"]["subject"] == "ticket 1002"
    assert stored["1002"]["requester"] == "Roger <Wilco> & Sons"
    assert [stored["1002"][key] for key in ("organization", "queue", "assignee_name")] == [
        None,
        None,
        None,
    ]
    # The names come from the reads slabot already makes: one show_many for both people.
    assert fake.count("GET", "show_many") == 1


# --- an agent's priority in Zendesk: an audited reclassification -------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def any_engine(request: pytest.FixtureRequest) -> Engine:
    engine: Engine = request.getfixturevalue("engine" if request.param == "sqlite" else "pg_engine")
    return engine


def reclassifying(
    fake: FakeZendesk,
    client: ZendeskClient,
    config: ZendeskConfig,
    engine: Engine,
    policies: dict[str, Policy],
) -> Iterator[Harness]:
    customer(fake)
    yield from harness_for(fake, client, config, engine, policies)


@pytest.fixture
def each_database(
    fake: FakeZendesk,
    client: ZendeskClient,
    config: ZendeskConfig,
    any_engine: Engine,
    policies: dict[str, Policy],
) -> Iterator[Harness]:
    yield from reclassifying(fake, client, config, any_engine, policies)


def later(h: Harness, minutes: int = 10) -> None:
    h.clock.now += timedelta(minutes=minutes)
    h.fake.now += timedelta(minutes=minutes)


def test_an_agents_priority_change_is_an_audited_reclassification_applied_once(
    each_database: Harness,
) -> None:
    h = each_database
    production_normal(h.fake, 101)
    h.deliver(101)
    h.writer.flush("test")
    assert h.decision(101).priority == "P3"
    later(h)
    h.fake.agent_update(101, AGENT, priority="urgent")
    assert h.deliver(101) == 202

    [entry] = h.priority_changes(101, "reclassified")
    assert (entry.actor, entry.origin) == (f"zendesk-user:{AGENT}", "zendesk")
    assert (entry.payload["from"], entry.payload["to"]) == ("P3", "P1")
    assert entry.reason == "set the priority to urgent in Zendesk"
    assert h.decision(101).priority == "P1"
    kinds = [item.kind for item in h.pending()]
    assert "add_note" in kinds and "set_priority" not in kinds  # Zendesk shows it already

    assert h.writer.flush("test").dead == 0
    assert h.fake.shown(101)["priority"] == "urgent"  # the agent's choice stands
    [note] = h.notes(101)
    assert note["public"] is False
    assert f"from P3 to P1 by zendesk-user:{AGENT} (via zendesk)" in note["body"]

    # The same audit read again (a redelivery, the poller) is not applied twice.
    later(h, 1)
    h.deliver(101)
    assert h.sync.sync_ticket(101).reclassified == ()
    assert len(h.priority_changes(101, "reclassified")) == 1
    assert len(h.notes(101)) == 1 and h.writer.flush("test").write_calls == 0


def test_a_refused_reclassification_is_recorded_reverted_and_explained(
    each_database: Harness,
) -> None:
    h = each_database
    staging_p1(h.fake, 101)
    h.deliver(101)
    h.writer.flush("test")
    assert h.fake.shown(101)["priority"] == "low"  # P4: zoom caps P1 outside production
    later(h)
    h.fake.agent_update(101, AGENT, priority="urgent")
    h.deliver(101)

    [refusal] = h.priority_changes(101, "refused")
    assert (refusal.actor, refusal.origin) == (f"zendesk-user:{AGENT}", "zendesk")
    # The engine's own words name the environment that forbids it.
    assert refusal.reason is not None and refusal.reason.startswith("refused: ")
    assert "'staging'" in refusal.reason
    assert (refusal.payload["from"], refusal.payload["to"]) == ("P4", "P1")
    assert h.decision(101).priority == "P4"
    assert {"set_priority", "add_note"} <= {item.kind for item in h.pending()}

    h.fake.trigger_on_update = True
    assert h.writer.flush("test").dead == 0
    assert h.fake.shown(101)["priority"] == "low"  # the policy's priority, written back
    [note] = h.notes(101)
    assert note["public"] is False
    assert "kept the priority at P4 (low)" in note["body"]
    assert f"zendesk-user:{AGENT} set urgent" in note["body"] and "'staging'" in note["body"]
    # slabot's write-back comes back as a trigger and is not taken for a person's change.
    later(h, 1)
    for echo in list(h.fake.webhook_outbox):
        h.post(*echo)
    assert h.sync.sync_ticket(101).reclassified == ()
    assert len(h.priority_changes(101, "refused")) == 1
    assert h.writer.flush("test").write_calls == 0


def test_a_priority_zendesk_priorities_does_not_map_is_refused_naming_the_mapping(
    fake: FakeZendesk,
    client: ZendeskClient,
    any_engine: Engine,
    policies: dict[str, Policy],
) -> None:
    narrow = {**CONFIG["zendesk"], "priorities": {"P1": "urgent", "P2": "high", "P3": "normal"}}
    config = parse_zendesk_config({"zendesk": narrow})
    for h in reclassifying(fake, client, config, any_engine, policies):
        production_normal(h.fake, 101)
        h.deliver(101)
        h.writer.flush("test")
        later(h)
        h.fake.agent_update(101, AGENT, priority="low")
        h.deliver(101)

        [refusal] = h.priority_changes(101, "refused")
        assert refusal.reason == (
            "refused: Zendesk priority 'low' is not one of zendesk.priorities "
            "(P1: urgent, P2: high, P3: normal)"
        )
        assert refusal.payload["to"] is None and refusal.payload["zendesk_priority"] == "low"
        assert h.decision(101).priority == "P3"
        assert h.writer.flush("test").dead == 0
        assert h.fake.shown(101)["priority"] == "normal"
        [note] = h.notes(101)
        assert "kept the priority at P3 (normal)" in note["body"]


# --- an agent's change is applied atomically, once ----------------------------------------------


def agent_sets_urgent(h: Harness) -> str:
    """A P3 in production that Ana sets urgent in Zendesk; returns the change's id."""
    production_normal(h.fake, 101)
    h.sync.sync_ticket(101)
    h.writer.flush("test")
    later(h)
    h.fake.agent_update(101, AGENT, priority="urgent")
    [change] = map_ticket(h.sync.client.fetch(101), h.sync.config).reclassifications
    return change.change_id


def applied_once(h: Harness) -> None:
    [entry] = h.priority_changes(101, "reclassified")
    assert (entry.payload["from"], entry.payload["to"]) == ("P3", "P1")
    assert h.decision(101).priority == "P1"
    assert h.writer.flush("test").dead == 0
    assert len(h.notes(101)) == 1
    assert h.fake.shown(101)["priority"] == "urgent"


def test_an_agents_change_is_applied_once_across_repeated_syncs_and_keyed_in_the_history(
    each_database: Harness,
) -> None:
    h = each_database
    change_id = agent_sets_urgent(h)
    assert h.sync.sync_ticket(101).reclassified == ("P1",)
    for _ in range(3):
        later(h, 1)
        assert h.sync.sync_ticket(101).reclassified == ()
    applied_once(h)
    [entry] = h.priority_changes(101, "reclassified")
    assert entry.event_key == f"reclassify:zendesk:audit:{change_id}"
    assert h.count_deliveries(RECLASSIFICATION_SOURCE) == 0  # the history's key says it all


def test_a_change_applied_under_the_delivery_record_scheme_is_not_applied_again(
    each_database: Harness,
) -> None:
    h = each_database
    change_id = agent_sets_urgent(h)
    # Applied before the request key was kept: only the delivery record says so.
    assert EventService(h.tickets).record_delivery(RECLASSIFICATION_SOURCE, f"101:{change_id}")
    assert h.sync.sync_ticket(101).reclassified == ()
    assert h.priority_changes(101, "reclassified") == []
    assert h.decision(101).priority == "P3"


def test_a_process_dying_while_applying_the_change_does_not_lose_it(
    each_database: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = each_database
    agent_sets_urgent(h)
    dies_on_first_call(monkeypatch, h.tickets, "reclassify")
    with pytest.raises(Killed):
        h.sync.sync_ticket(101)
    assert h.priority_changes(101, "reclassified") == []
    # The webhook's retry or the next poll: the change is applied, exactly once.
    later(h, 1)
    assert h.sync.sync_ticket(101).reclassified == ("P1",)
    assert h.sync.sync_ticket(101).reclassified == ()
    applied_once(h)


def test_a_commit_whose_outcome_was_unknown_is_not_applied_twice(
    each_database: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = each_database
    agent_sets_urgent(h)
    unknown = DatabaseUnavailableError("the commit may or may not have happened", attempts=1)
    answer_lost_on_first_call(monkeypatch, h.tickets, "reclassify", unknown)
    with pytest.raises(DatabaseUnavailableError):
        h.sync.sync_ticket(101)
    later(h, 1)
    assert h.sync.sync_ticket(101).reclassified == ()
    applied_once(h)


def test_a_refused_change_stays_refused_once_even_when_the_policy_would_now_allow_it(
    each_database: Harness,
) -> None:
    h = each_database
    staging_p1(h.fake, 101)
    h.sync.sync_ticket(101)
    h.writer.flush("test")
    later(h)
    h.fake.agent_update(101, AGENT, priority="urgent")
    assert h.sync.sync_ticket(101).reclassified == ("refused P1",)
    # The environment is fixed later: Ana's earlier change is not applied after the fact.
    later(h)
    h.fake.agent_update(101, AGENT, custom_fields=[{"id": ENV_FIELD, "value": "env_production"}])
    assert h.sync.sync_ticket(101).reclassified == ()
    assert len(h.priority_changes(101, "refused")) == 1
    assert h.priority_changes(101, "reclassified") == []
