"""Issue 14, Zendesk: a ticket deleted and restored is ingested with its deleted span paused,
and gets the same clocks whichever way it arrives (backfill, poll, one webhook, a webhook
per change); one ticket that cannot be applied never stops a backfill or a poll.

Everything goes through the real zenpy client and the fake Zendesk on loopback, serving the
recorded ticket and audits of ``fixtures/`` (Zendesk's documented shapes).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CONFIG, SECRET, Clock, fixture
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from bot.compiled import Policy
from connectors.cli import SOME_FAILED
from connectors.zendesk.cli import backfill
from connectors.zendesk.client import ZendeskClient
from connectors.zendesk.config import ZendeskConfig
from connectors.zendesk.mapping import DeletedTicketError, TicketBundle, map_ticket
from connectors.zendesk.poller import STREAM, ZendeskPoller, load_cursor
from connectors.zendesk.sync import ZendeskSync
from connectors.zendesk.webhook import ZendeskWebhook, create_app, make_intake
from slabot.fakes.zendesk import FakeZendesk
from slabot.store.db import make_engine
from slabot.store.migrate import upgrade
from slabot.store.models import StoredDecision, StoredTicket
from slabot.store.services import TicketService

TICKET = 35440
CREATED = datetime(2026, 11, 16, 17, 0, tzinfo=UTC)
DELETED_AT = datetime(2026, 11, 16, 18, 0, tzinfo=UTC)
RESTORED_AT = datetime(2026, 11, 17, 15, 0, tzinfo=UTC)
AFTER = RESTORED_AT + timedelta(minutes=5)


def recorded_ticket() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ticket (open, restored at 15:00 the next day) and its audits: created new,
    answered and opened, deleted at 18:00, restored."""
    ticket = fixture("ticket_show__restored_after_delete.json")["ticket"]
    audits = fixture("ticket_audits__open_deleted_restored.json")["audits"]
    return ticket, audits


def serve_account(fake: FakeZendesk) -> None:
    """The requester, the agent, the organization and the groups the ticket names."""
    for user in fixture("users_show_many__requester_and_assignee.json")["users"]:
        fake.users[user["id"]] = user
    organization = fixture("organization_show__premier_germany.json")["organization"]
    fake.organizations[organization["id"]] = organization
    for group in fixture("groups__list.json")["groups"]:
        fake.groups[group["id"]] = group


def serve(fake: FakeZendesk, ticket: dict[str, Any], audits: list[dict[str, Any]]) -> None:
    fake.tickets[ticket["id"]] = ticket
    fake.audits[ticket["id"]] = audits


def clocks(engine: Engine, key: str = str(TICKET)) -> dict[str, Any]:
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
            "solved_at": row.solved_at,
            "first_response_due": decision.first_response_due,
            "restoration_due": decision.restoration_due,
            "next_update_due": decision.next_update_due,
        }


def migrated(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    return engine


def run_backfill(fake: FakeZendesk, tmp_path: Path, database: Path) -> int:
    config_file = tmp_path / "slabot.yaml"
    config_file.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    environ = {
        "ZENDESK_URL": fake.url,
        "ZENDESK_EMAIL": "slabot@example.com",
        "ZENDESK_API_TOKEN": "test-token",
        "DATABASE_URL": f"sqlite:///{database}",
    }
    args = argparse.Namespace(
        source="zendesk", since="2026-11-01", config=str(config_file), policy=[], write=False
    )
    return backfill(args, environ)


class Service:
    """The webhook endpoint, its worker and a poller on one database, with a fixed clock."""

    def __init__(
        self,
        client: ZendeskClient,
        config: ZendeskConfig,
        engine: Engine,
        policies: dict[str, Policy],
    ) -> None:
        self.engine = engine
        self.clock = Clock(AFTER)
        self.tickets = TicketService(engine, policies, self.clock, origin="zendesk")
        self.sync = ZendeskSync(client, config, self.tickets)
        self.poller = ZendeskPoller(client, self.sync)
        self.webhook = ZendeskWebhook(SECRET, make_intake(self.sync, retries=1, retry_delay=0.0))

    def deliver(self, http: TestClient, fake: FakeZendesk, ticket_id: int) -> int:
        # The documented trigger body: the ticket's updated_at tells one change from another.
        notice = {"ticket_id": str(ticket_id), "updated_at": fake.tickets[ticket_id]["updated_at"]}
        headers, body = fake.webhook(notice)
        response = http.post("/webhooks/zendesk", content=body, headers=headers)
        assert self.webhook.intake.drain(10)
        return response.status_code


@pytest.fixture
def service(
    client: ZendeskClient,
    config: ZendeskConfig,
    engine: Engine,
    policies: dict[str, Policy],
) -> Service:
    return Service(client, config, engine, policies)


# --- the deleted span -------------------------------------------------------------------------


def test_the_audits_of_a_deleted_and_restored_ticket_map_with_the_deleted_span() -> None:
    ticket, audits = recorded_ticket()
    mapped = map_ticket(
        TicketBundle(ticket, audits, agent_ids=frozenset({235323})),
        ZendeskConfig(policy="zoom"),
    )
    assert mapped.snapshot.status == "open"
    assert [(c.at, c.to) for c in mapped.status_changes] == [
        (CREATED, "new"),
        (CREATED + timedelta(minutes=30), "open"),
        (DELETED_AT, "deleted"),
        (RESTORED_AT, "open"),
    ]
    assert [c.to for c in mapped.snapshot.status_history][2] == "deleted"


def test_a_ticket_deleted_now_is_refused_as_deleted_not_as_drift() -> None:
    ticket, audits = recorded_ticket()
    bundle = TicketBundle({**ticket, "status": "deleted"}, audits)
    with pytest.raises(DeletedTicketError, match="deleted in Zendesk"):
        map_ticket(bundle, ZendeskConfig(policy="zoom"))


def test_a_deleted_and_restored_ticket_is_backfilled_with_its_deleted_span_paused(
    fake: FakeZendesk, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve_account(fake)
    serve(fake, *recorded_ticket())
    database = tmp_path / "backfill.db"
    migrated(database).dispose()
    assert run_backfill(fake, tmp_path, database) == 0
    out = capsys.readouterr().out
    assert "1 tickets read" in out and "1 applied, 0 failed" in out
    engine = make_engine(f"sqlite:///{database}")
    try:
        stored = clocks(engine)
    finally:
        engine.dispose()
    assert stored["status"] == "open"
    # Deleted from 18:00 to the restore: no working status, so the clocks a wait pauses
    # (restoration and next update under zoom) are paused; the first response was given.
    assert stored["paused"] == [(DELETED_AT.isoformat(), RESTORED_AT.isoformat())]
    assert stored["first_response_at"] == CREATED + timedelta(minutes=30)
    assert stored["restoration_started_at"] is None  # deleting is not solving: no reopening
    # Zoom, premier P3: an update every 84 h (24x7) from the reply at 17:30, plus the 21 h
    # the ticket spent deleted.
    reply = CREATED + timedelta(minutes=30)
    assert stored["next_update_due"] == reply + timedelta(hours=84 + 21)


def test_backfill_poll_one_webhook_and_a_webhook_per_change_give_the_same_clocks(
    fake: FakeZendesk,
    client: ZendeskClient,
    config: ZendeskConfig,
    policies: dict[str, Policy],
    tmp_path: Path,
) -> None:
    serve_account(fake)
    ticket, audits = recorded_ticket()

    # A webhook per change, as it happened: Zendesk shows the ticket as of each audit (while
    # deleted, its status is "deleted": not ingested, nothing breaks).
    live = Service(client, config, migrated(tmp_path / "live.db"), policies)
    with TestClient(create_app(live.webhook)) as http:
        status = "new"
        for count, audit in enumerate(audits, start=1):
            for event in audit["events"]:
                if event.get("field_name") == "status":
                    status = event["value"]
            serve(
                fake,
                {**ticket, "status": status, "updated_at": audit["created_at"]},
                audits[:count],
            )
            live.clock.now = datetime.fromisoformat(audit["created_at"]) + timedelta(minutes=1)
            assert live.deliver(http, fake, TICKET) == 202
    live.clock.now = AFTER
    live.sync.sync_ticket(TICKET)  # re-evaluated at the same instant as the others

    serve(fake, ticket, audits)
    once = Service(client, config, migrated(tmp_path / "once.db"), policies)
    with TestClient(create_app(once.webhook)) as http:
        assert once.deliver(http, fake, TICKET) == 202
    polled = Service(client, config, migrated(tmp_path / "poll.db"), policies)
    polled.clock.now = RESTORED_AT + timedelta(minutes=30)  # the first poll looks 1 h back
    assert polled.poller.poll().applied == 1
    database = tmp_path / "backfill.db"
    migrated(database).dispose()
    assert run_backfill(fake, tmp_path, database) == 0
    backfilled = make_engine(f"sqlite:///{database}")

    try:
        expected = clocks(live.engine)
        assert expected["paused"] == [(DELETED_AT.isoformat(), RESTORED_AT.isoformat())]
        assert expected["next_update_due"] is not None
        assert clocks(once.engine) == expected
        assert clocks(polled.engine) == expected
        assert clocks(backfilled) == expected
    finally:
        for engine in (live.engine, once.engine, polled.engine, backfilled):
            engine.dispose()


# --- one bad ticket ---------------------------------------------------------------------------


def drifted(ticket_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The recorded ticket under another id, with an audit naming a status Zendesk does not
    have: payload drift slabot must refuse loudly."""
    ticket, audits = recorded_ticket()
    audits[2]["events"][0]["value"] = "escalated"
    return {**ticket, "id": ticket_id}, [{**audit, "ticket_id": ticket_id} for audit in audits]


def test_one_ticket_that_cannot_be_applied_does_not_stop_the_backfill(
    fake: FakeZendesk, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve_account(fake)
    ticket, audits = recorded_ticket()
    serve(fake, {**ticket, "id": 1, "updated_at": "2026-11-17T14:00:00Z"}, audits)
    serve(fake, *drifted(2))
    serve(fake, {**ticket, "id": 3, "updated_at": "2026-11-17T16:00:00Z"}, audits)
    database = tmp_path / "backfill.db"
    migrated(database).dispose()

    assert run_backfill(fake, tmp_path, database) == SOME_FAILED
    captured = capsys.readouterr()
    assert "3 tickets read" in captured.out and "2 applied, 1 failed" in captured.out
    assert "zendesk: not applied: ticket 2: " in captured.err
    assert "status 'escalated'" in captured.err
    assert "1 not applied" in captured.err
    engine = make_engine(f"sqlite:///{database}")
    try:
        with Session(engine) as session:
            keys = set(session.scalars(select(StoredTicket.external_key)))
        assert keys == {"1", "3"}
        assert load_cursor(engine, "zendesk", STREAM) is not None  # polling continues after
    finally:
        engine.dispose()


def test_a_poll_counts_the_bad_ticket_applies_the_rest_and_moves_its_cursor(
    fake: FakeZendesk, service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    serve_account(fake)
    ticket, audits = recorded_ticket()
    serve(fake, *drifted(2))
    serve(fake, {**ticket, "id": 3}, audits)
    with caplog.at_level("ERROR", logger="connectors.zendesk.poller"):
        report = service.poller.poll()
    assert (report.tickets, report.applied, report.failed, report.skipped) == (2, 1, 1, 0)
    [problem] = report.errors
    assert problem.startswith("ticket 2: ") and "'escalated'" in problem
    assert "Zendesk ticket 2 not applied" in caplog.text
    assert load_cursor(service.engine, "zendesk", STREAM) == report.cursor is not None

    # Fixed in Zendesk: its next change brings it back in the export and it is applied.
    fixed_ticket, fixed_audits = recorded_ticket()
    serve(fake, {**fixed_ticket, "id": 2, "updated_at": "2026-11-17T15:10:00Z"}, fixed_audits)
    service.clock.now += timedelta(minutes=10)
    again = service.poller.poll()
    assert (again.applied, again.failed) == (1, 0)


def test_a_ticket_deleted_now_is_skipped_not_failed(fake: FakeZendesk, service: Service) -> None:
    serve_account(fake)
    ticket, audits = recorded_ticket()
    serve(fake, {**ticket, "status": "deleted"}, audits)
    report = service.poller.poll()
    assert (report.tickets, report.applied, report.failed, report.skipped) == (1, 0, 0, 1)
    assert report.errors == []
