"""The reads connectors make without touching tables, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine
from store_support import MONDAY_0900_LA, FakeClock, snapshot

from bot.compiled import Policy
from slabot.policy_files import BUNDLED_POLICIES, load_policy
from slabot.store import queries
from slabot.store.events import EventService
from slabot.store.services import TicketService


@pytest.fixture(scope="module")
def zoom() -> Policy:
    return load_policy(BUNDLED_POLICIES / "zoom.yaml")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(MONDAY_0900_LA + timedelta(minutes=5))


@pytest.fixture
def tickets(migrated: Engine, zoom: Policy, clock: FakeClock) -> TicketService:
    return TicketService(migrated, {"zoom": zoom}, clock)


def test_known_event_keys_of_a_ticket(
    tickets: TicketService, migrated: Engine, clock: FakeClock
) -> None:
    tickets.ingest(snapshot())
    tickets.ingest(snapshot(external_key="1002"))
    events = EventService(tickets)
    at = MONDAY_0900_LA + timedelta(minutes=1)
    events.public_reply("zendesk", "1001", at, event_key="zendesk:audit:7:reply")
    events.status_changed("zendesk", "1001", "pending", at, event_key="zendesk:audit:8:status")
    events.status_changed("zendesk", "1001", "open", at, event_key="zendesk_audit_9")
    events.public_reply("zendesk", "1002", at, event_key="zendesk:audit:10:reply")

    assert queries.known_event_keys(migrated, "zendesk", "1001") == {
        "zendesk:audit:7:reply",
        "zendesk:audit:8:status",
        "zendesk_audit_9",
    }
    # The prefix is matched literally ("_" is no wildcard).
    assert queries.known_event_keys(migrated, "zendesk", "1001", prefix="zendesk:audit:") == {
        "zendesk:audit:7:reply",
        "zendesk:audit:8:status",
    }
    assert queries.known_event_keys(migrated, "zendesk", "1001", prefix="zendesk_") == {
        "zendesk_audit_9"
    }
    assert queries.known_event_keys(migrated, "zendesk", "404") == frozenset()


def test_the_stored_decision_and_dues_by_the_helpdesks_key(
    tickets: TicketService, migrated: Engine
) -> None:
    result = tickets.ingest(snapshot())
    assert result.decision is not None
    view = queries.stored_decision(migrated, "zendesk", "1001")
    assert view is not None
    assert (view.ticket_id, view.source, view.external_key) == (result.ticket_id, "zendesk", "1001")
    assert (view.priority, view.plan, view.commitment) == (
        "P2",
        "premier",
        result.decision.commitment,
    )
    for name, target in result.decision.targets.items():
        assert view.due[name] == target.due
        assert view.state[name] == target.state
    assert view.next_change_at == result.decision.next_change_at
    assert queries.stored_dues(migrated, "zendesk", "1001") == {
        name: target.due for name, target in result.decision.targets.items()
    }
    assert queries.stored_decision(migrated, "jira", "1001") is None
    assert queries.stored_dues(migrated, "zendesk", "404") is None


def test_external_keys_by_source(tickets: TicketService, migrated: Engine) -> None:
    first = tickets.ingest(snapshot()).ticket_id
    second = tickets.ingest(snapshot(external_key="1002")).ticket_id
    other = tickets.ingest(snapshot(source="jira", external_key="SUP-1")).ticket_id
    assert queries.external_keys(migrated, "zendesk", [first, other, 999]) == {first: "1001"}
    assert queries.external_keys(migrated, "zendesk") == {first: "1001", second: "1002"}
    assert queries.external_keys(migrated, "jira") == {other: "SUP-1"}
    assert queries.external_keys(migrated, "zendesk", []) == {}


def test_the_stored_updated_times_by_the_sources_key(
    tickets: TicketService, migrated: Engine
) -> None:
    later = MONDAY_0900_LA + timedelta(minutes=3)
    tickets.ingest(snapshot())
    tickets.ingest(snapshot(external_key="1002", updated_at=later))
    tickets.ingest(snapshot(source="jira", external_key="1003"))
    assert queries.source_updated_at(migrated, "zendesk", ["1001", "1002", "1003", "404"]) == {
        "1001": MONDAY_0900_LA,
        "1002": later,
    }
    assert queries.source_updated_at(migrated, "jira", ["1003"]) == {"1003": MONDAY_0900_LA}
    assert queries.source_updated_at(migrated, "zendesk", []) == {}


def test_the_poll_cursor_is_saved_and_replaced(migrated: Engine) -> None:
    assert queries.load_cursor(migrated, "zendesk", "tickets") is None
    queries.save_cursor(migrated, "zendesk", "tickets", "c1", MONDAY_0900_LA)
    queries.save_cursor(migrated, "jira", "tickets", "j1", MONDAY_0900_LA)
    queries.save_cursor(migrated, "zendesk", "tickets", "c2", MONDAY_0900_LA)
    assert queries.load_cursor(migrated, "zendesk", "tickets") == "c2"
    assert queries.load_cursor(migrated, "jira", "tickets") == "j1"
    assert queries.load_cursor(migrated, "zendesk", "other") is None


def test_recorded_deliveries_say_which_keys_are_recorded_and_record_none(
    tickets: TicketService, migrated: Engine
) -> None:
    events = EventService(tickets)
    assert events.record_delivery("zendesk-priority", "101:2127302300:2127302301")
    assert events.record_delivery("jira-priority", "10001:10500")

    assert queries.recorded_deliveries(
        migrated,
        "zendesk-priority",
        ["101:2127302300:2127302301", "101:2127302300:2127302302", "10001:10500", ""],
    ) == {"101:2127302300:2127302301"}
    assert queries.recorded_deliveries(migrated, "zendesk-priority", []) == frozenset()
    # A read only: a key asked about is still new to the recorder afterwards.
    assert events.record_delivery("zendesk-priority", "101:2127302300:2127302302")
    many = [f"101:{n}" for n in range(1200)]
    assert events.record_delivery("zendesk-priority", "101:1199")
    assert queries.recorded_deliveries(migrated, "zendesk-priority", many) == {"101:1199"}
