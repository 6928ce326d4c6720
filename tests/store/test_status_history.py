"""Issue 14 in the store, on SQLite and PostgreSQL: the restoration cycle comes from the
history's entries alone (an instant inferred from a partial history gives way), a stored
solved ticket shown reopened takes the reopening from the snapshot's history, and a
``deleted`` span is a pause that neither solves, reopens nor becomes the status."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine
from store_support import MONDAY_0900_LA, FakeClock, rows, snapshot

from bot.compiled import Policy
from slabot.policy_files import BUNDLED_POLICIES, load_policy
from slabot.store.events import EventService
from slabot.store.models import StoredTicket, TicketEvent
from slabot.store.services import TicketService
from slabot.store.snapshot import IngestError, StatusChange

CREATED = MONDAY_0900_LA
DONE = CREATED + timedelta(hours=1)
REOPENED = CREATED + timedelta(hours=2)  # T1
SEEN = CREATED + timedelta(hours=20)  # T2: the first (or next) time slabot reads it


@pytest.fixture(scope="module")
def zoom() -> Policy:
    return load_policy(BUNDLED_POLICIES / "zoom.yaml")


@pytest.fixture
def tickets(migrated: Engine, zoom: Policy) -> TicketService:
    return TicketService(migrated, {"zoom": zoom}, FakeClock(SEEN + timedelta(minutes=5)))


def row(engine: Engine) -> StoredTicket:
    (stored,) = rows(engine, StoredTicket)
    assert isinstance(stored, StoredTicket)
    return stored


def test_status_events_replayed_one_by_one_after_the_snapshot_keep_the_reopenings_instant(
    migrated: Engine, tickets: TicketService
) -> None:
    # The snapshot first (open as of T2), then the source's changes one at a time: after
    # the solve alone the history ends solved and the open row looks reopened at T2; the
    # next entry shows the reopening at T1, and T1 must win.
    tickets.ingest(snapshot(updated_at=SEEN, status="open"))
    events = EventService(tickets)
    events.status_changed("zendesk", "1001", "solved", DONE, event_key="c1")
    events.status_changed("zendesk", "1001", "open", REOPENED, event_key="c2")
    assert row(migrated).restoration_started_at == REOPENED


def test_a_ticket_first_seen_after_its_reopening_takes_it_from_the_history(
    migrated: Engine, tickets: TicketService
) -> None:
    history = (
        StatusChange(CREATED, "open", "c0"),
        StatusChange(DONE, "solved", "c1"),
        StatusChange(REOPENED, "open", "c2"),
    )
    tickets.ingest(snapshot(updated_at=SEEN, status="open", status_history=history))
    assert row(migrated).restoration_started_at == REOPENED


def test_a_stored_solved_ticket_shown_reopened_takes_the_reopening_from_the_history(
    migrated: Engine, tickets: TicketService
) -> None:
    solved = (StatusChange(CREATED, "open", "c0"), StatusChange(DONE, "solved", "c1"))
    tickets.ingest(
        snapshot(updated_at=DONE, status="solved", solved_at=DONE, status_history=solved)
    )
    reopened = (*solved, StatusChange(REOPENED, "open", "c2"))
    tickets.ingest(snapshot(updated_at=SEEN, status="open", status_history=reopened))
    stored = row(migrated)
    assert stored.restoration_started_at == REOPENED
    entries = [e for e in rows(migrated, TicketEvent) if e.kind == "reopened"]
    assert [e.occurred_at for e in entries] == [REOPENED]


def test_without_a_history_the_reopening_is_the_snapshots_time(
    migrated: Engine, tickets: TicketService
) -> None:
    tickets.ingest(snapshot(updated_at=DONE, status="solved", solved_at=DONE))
    tickets.ingest(snapshot(updated_at=SEEN, status="open"))
    assert row(migrated).restoration_started_at == SEEN  # the earliest instant known


def test_a_deleted_span_is_a_pause_and_not_a_status(
    migrated: Engine, tickets: TicketService
) -> None:
    deleted, restored = CREATED + timedelta(hours=1), CREATED + timedelta(hours=21)
    history = (
        StatusChange(CREATED, "open", "c0"),
        StatusChange(deleted, "deleted", "c1"),
        StatusChange(restored, "open", "c2"),
    )
    tickets.ingest(snapshot(updated_at=restored, status="open", status_history=history))
    stored = row(migrated)
    assert stored.status == "open"
    assert stored.paused == [[deleted.isoformat(), restored.isoformat()]]
    assert stored.restoration_started_at is None


def test_a_solved_ticket_deleted_and_restored_stays_solved_in_its_cycle(
    migrated: Engine, tickets: TicketService
) -> None:
    deleted, restored = DONE + timedelta(hours=1), DONE + timedelta(hours=5)
    history = (
        StatusChange(CREATED, "open", "c0"),
        StatusChange(DONE, "solved", "c1"),
        StatusChange(deleted, "deleted", "c2"),
        StatusChange(restored, "solved", "c3"),
    )
    tickets.ingest(
        snapshot(updated_at=restored, status="solved", solved_at=DONE, status_history=history)
    )
    stored = row(migrated)
    assert (stored.status, stored.solved_at, stored.restoration_started_at) == (
        "solved",
        DONE,
        None,
    )


def test_a_waiting_ticket_deleted_and_restored_waiting_is_one_pause(
    migrated: Engine, tickets: TicketService
) -> None:
    waiting = CREATED + timedelta(hours=1)
    deleted, restored, back = waiting + timedelta(hours=1), waiting + timedelta(hours=3), SEEN
    history = (
        StatusChange(CREATED, "open", "c0"),
        StatusChange(waiting, "pending", "c1"),
        StatusChange(deleted, "deleted", "c2"),
        StatusChange(restored, "pending", "c3"),
        StatusChange(back, "open", "c4"),
    )
    tickets.ingest(snapshot(updated_at=back, status="open", status_history=history))
    assert row(migrated).paused == [[waiting.isoformat(), back.isoformat()]]


def test_a_status_change_to_an_unknown_status_is_refused_naming_deleted_as_allowed(
    tickets: TicketService,
) -> None:
    history = (StatusChange(CREATED, "archived", "c0"),)
    with pytest.raises(IngestError, match=r"'archived'; expected one of .* or deleted"):
        tickets.ingest(snapshot(updated_at=SEEN, status="open", status_history=history))
