"""Due-date fields a connector words itself (Jira's), owed from the stored decision, on
SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine
from store_support import MONDAY_0900_LA, FakeClock, rows, snapshot

from bot.compiled import Policy
from slabot.policy_files import BUNDLED_POLICIES, load_policy
from slabot.store.due_fields import StoredDue, owe_due_fields
from slabot.store.models import OutboxItem
from slabot.store.services import TicketService

SNAPSHOT_AT = MONDAY_0900_LA


@pytest.fixture(scope="module")
def zoom() -> Policy:
    return load_policy(BUNDLED_POLICIES / "zoom.yaml")


@pytest.fixture
def tickets(migrated: Engine, zoom: Policy) -> TicketService:
    return TicketService(migrated, {"zoom": zoom}, FakeClock(MONDAY_0900_LA))


@pytest.fixture
def ticket_id(tickets: TicketService) -> int:
    return tickets.ingest(
        snapshot(source="jira", external_key="SUP-1", customer_timezone="America/Los_Angeles")
    ).ticket_id


def due_writes(engine: Engine) -> list[OutboxItem]:
    return [item for item in rows(engine, OutboxItem) if item.kind == "set_due_fields"]


def owe(
    tickets: TicketService, ticket_id: int, fields: dict[str, str | None], shown: Mapping[str, str]
) -> bool:
    return owe_due_fields(
        tickets, ticket_id, lambda due: fields, shown, SNAPSHOT_AT, helpdesk="Jira"
    )


def test_the_stored_due_gives_the_instants_and_the_zone_of_each_targets_calendar(
    tickets: TicketService, ticket_id: int
) -> None:
    seen: dict[str, object] = {}

    def wanted(due: StoredDue) -> dict[str, str | None]:
        # Read in owe_due_fields' transaction, as a connector's wording is.
        seen.update(
            first_response=due.instant("first_response"),
            first_response_zone=due.zone("first_response"),
            next_update_zone=due.zone("next_update"),
        )
        return {}

    assert owe_due_fields(tickets, ticket_id, wanted, {}, SNAPSHOT_AT, helpdesk="Jira") is False
    # Zoom premier P2: first response 4 business hours on the customer's calendar.
    assert seen["first_response"] == MONDAY_0900_LA + timedelta(hours=4)
    assert seen["first_response_zone"] == ZoneInfo("America/Los_Angeles")
    # Next update runs 24x7: "that day" is the plan's calendar's.
    assert seen["next_update_zone"] == ZoneInfo("America/Los_Angeles")


def test_a_field_jira_shows_otherwise_is_owed_once(
    tickets: TicketService, ticket_id: int, migrated: Engine
) -> None:
    assert owe(tickets, ticket_id, {"duedate": "2026-11-16"}, {"duedate": "2026-11-20"})
    assert owe(tickets, ticket_id, {"duedate": "2026-11-16"}, {}) is False
    [item] = due_writes(migrated)
    assert (item.target_system, item.ticket_id) == ("jira", ticket_id)
    assert item.payload == {"fields": {"duedate": "2026-11-16"}}
    assert item.done_at is None


def test_a_field_shown_already_or_without_a_due_instant_is_not_owed(
    tickets: TicketService, ticket_id: int, migrated: Engine
) -> None:
    assert owe(tickets, ticket_id, {"duedate": "2026-11-16"}, {"duedate": "2026-11-16"}) is False
    assert owe(tickets, ticket_id, {"duedate": None, "instant": None}, {"duedate": "x"}) is False
    assert due_writes(migrated) == []


def test_owed_due_writes_that_became_moot_are_settled_as_superseded(
    tickets: TicketService, ticket_id: int, migrated: Engine
) -> None:
    owe(tickets, ticket_id, {"duedate": "2026-11-16"}, {})
    assert owe(tickets, ticket_id, {"duedate": "2026-11-17"}, {})
    older, newer = sorted(due_writes(migrated), key=lambda item: item.id)
    assert older.last_error == "superseded by a newer write"
    assert older.done_at is not None and older.next_attempt_at is None
    assert newer.done_at is None

    assert owe(tickets, ticket_id, {"duedate": "2026-11-17"}, {"duedate": "2026-11-17"}) is False
    newer = next(item for item in due_writes(migrated) if item.id == newer.id)
    assert newer.last_error == "superseded: Jira already shows the due dates"
    assert newer.done_at == MONDAY_0900_LA.replace(tzinfo=UTC)


def test_a_ticket_not_stored_owes_nothing(tickets: TicketService, migrated: Engine) -> None:
    assert owe(tickets, 404, {"duedate": "2026-11-16"}, {}) is False
    assert due_writes(migrated) == []
