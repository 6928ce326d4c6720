"""Reclassification through the store, on SQLite and PostgreSQL: audit, recomputed clocks,
owed writes and notes, and breaches reported once per clock cycle."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from store_support import MONDAY_0900_LA, FakeClock, count, rows, snapshot

from bot.compiled import Policy
from bot.engine import ProductionOnlyError, ReasonRequiredError, UnknownPriorityError
from bot.errors import ReclassificationError
from slabot.policy_files import BUNDLED_POLICIES, load_policy
from slabot.store.errors import UnknownTicketError
from slabot.store.models import (
    Nudge,
    OutboxItem,
    StoredDecision,
    StoredTicket,
    TargetMark,
    TicketEvent,
)
from slabot.store.reclassify import ActorRequiredError, ReclassifyResult, UnknownOriginError
from slabot.store.services import TicketService

FIRST_RESPONSE_P2 = MONDAY_0900_LA + timedelta(hours=4)  # Monday 13:00 in Los Angeles
# P4: first response by the close of the next business day, Tuesday 17:00 in Los Angeles.
FIRST_RESPONSE_P4 = datetime(2026, 11, 18, 1, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def zoom() -> Policy:
    return load_policy(BUNDLED_POLICIES / "zoom.yaml")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(MONDAY_0900_LA + timedelta(minutes=5))


@pytest.fixture
def service(migrated: Engine, zoom: Policy, clock: FakeClock) -> TicketService:
    return TicketService(migrated, {"zoom": zoom}, clock)


def outbox(engine: Engine, system: str | None = None) -> list[OutboxItem]:
    return [i for i in rows(engine, OutboxItem) if system is None or i.target_system == system]


def test_a_reclassification_is_audited_recomputed_and_written_back(
    service: TicketService, migrated: Engine, clock: FakeClock
) -> None:
    service.ingest(snapshot(shown={"priority": "P2"}))
    clock.now = MONDAY_0900_LA + timedelta(hours=1)
    result = service.reclassify(
        "zendesk", "1001", "P1", " ana@example.com ", " whole region down ", "slack"
    )

    assert (result.previous_priority, result.decision.priority) == ("P2", "P1")
    assert result.enqueued == ("set_priority", "add_note")
    (ticket,) = rows(migrated, StoredTicket)
    assert (
        ticket.reclassified_priority,
        ticket.reclassified_by,
        ticket.reclassified_reason,
        ticket.reclassified_at,
    ) == ("P1", "ana@example.com", "whole region down", clock.now)
    event = rows(migrated, TicketEvent)[-1]
    assert (event.kind, event.actor, event.origin, event.reason, event.occurred_at) == (
        "priority_changed",
        "ana@example.com",
        "slack",
        "whole region down",
        clock.now,
    )
    assert event.payload == {"field": "reclassified", "from": "P2", "to": "P1"}
    # P1 first response is 1h on 24x7 from creation (not from the reclassification): due
    # now, so breached; restoration 4h from creation.
    decision = rows(migrated, StoredDecision)[0]
    assert decision.priority == "P1"
    assert decision.first_response_due == MONDAY_0900_LA + timedelta(hours=1)
    assert decision.first_response_state == "breached"
    assert decision.restoration_due == MONDAY_0900_LA + timedelta(hours=4)
    marks = {(m.target, m.threshold_permille): m.at for m in rows(migrated, TargetMark)}
    assert marks[("first_response", 1000)] == MONDAY_0900_LA + timedelta(hours=1)
    assert marks[("restoration", 750)] == MONDAY_0900_LA + timedelta(hours=3)

    priority, note = outbox(migrated)
    assert (priority.kind, priority.payload) == ("set_priority", {"priority": "P1"})
    assert (note.target_system, note.kind, note.next_attempt_at) == (
        "zendesk",
        "add_note",
        clock.now,
    )
    assert note.payload == {
        "internal": True,
        "body": "Priority changed from P2 to P1 by ana@example.com (via slack): whole region down",
        "from": "P2",
        "to": "P1",
        "actor": "ana@example.com",
        "origin": "slack",
        "reason": "whole region down",
    }


def test_the_agents_priority_holds_through_later_snapshots(
    service: TicketService, migrated: Engine, clock: FakeClock
) -> None:
    service.ingest(snapshot(shown={"priority": "P2"}))
    service.reclassify("zendesk", "1001", "P3", "ana", "workaround given", "zendesk")
    clock.now += timedelta(minutes=10)
    later = service.ingest(snapshot(updated_at=clock.now, shown={"priority": "P3"}))
    assert later.decision is not None and later.decision.priority == "P3"
    assert later.enqueued == ()
    # The owed priority write is settled by the helpdesk showing it; the note stays owed.
    items = {i.kind: i for i in outbox(migrated)}
    assert items["set_priority"].done_at == clock.now
    assert items["add_note"].done_at is None


def test_a_helpdesk_already_showing_the_priority_is_owed_only_the_note(
    service: TicketService, migrated: Engine
) -> None:
    service.ingest(snapshot(shown={"priority": "P3"}))
    result = service.reclassify("zendesk", "1001", "P3", "ana", "confirmed minor", "zendesk")
    assert result.enqueued == ("add_note",)
    assert [i.kind for i in outbox(migrated) if i.done_at is None] == ["add_note"]


@pytest.mark.parametrize(
    ("fields", "priority", "reason", "error", "message"),
    [
        ({}, "P0", "outage", UnknownPriorityError, "'P0' is not a priority of policy 'zoom'"),
        ({}, "P1", "   ", ReasonRequiredError, "say why the priority changes"),
        (
            {"environment": "staging"},
            "P1",
            "outage",
            ProductionOnlyError,
            "P1 applies to production only",
        ),
    ],
)
def test_a_refused_reclassification_stores_nothing(
    service: TicketService,
    migrated: Engine,
    fields: dict[str, str],
    priority: str,
    reason: str,
    error: type[ReclassificationError],
    message: str,
) -> None:
    service.ingest(snapshot(**fields))
    before = (count(migrated, TicketEvent), count(migrated, OutboxItem))
    decision_before = rows(migrated, StoredDecision)[0].priority
    with pytest.raises(error, match=message):
        service.reclassify("zendesk", "1001", priority, "ana", reason, "slack")
    assert (count(migrated, TicketEvent), count(migrated, OutboxItem)) == before
    (ticket,) = rows(migrated, StoredTicket)
    assert ticket.reclassified_priority is None
    assert rows(migrated, StoredDecision)[0].priority == decision_before


def test_an_unknown_ticket_is_named(service: TicketService, migrated: Engine) -> None:
    with pytest.raises(UnknownTicketError, match="no ticket zendesk:404 is stored"):
        service.reclassify("zendesk", "404", "P1", "ana", "outage", "slack")
    assert count(migrated, TicketEvent) == 0


@pytest.mark.parametrize(
    ("actor", "origin", "error", "message"),
    [
        ("ana", "email", UnknownOriginError, "origin 'email': expected one of helpdesk, slack"),
        ("  ", "slack", ActorRequiredError, "say who reclassifies"),
    ],
)
def test_origin_and_actor_are_checked(
    service: TicketService,
    actor: str,
    origin: str,
    error: type[ReclassificationError],
    message: str,
) -> None:
    service.ingest(snapshot())
    with pytest.raises(error, match=message):
        service.reclassify("zendesk", "1001", "P3", actor, "why", origin)


def refuse(service: TicketService, **changes: object) -> bool:
    """Ana set Zendesk's "urgent" on a staging ticket; the policy keeps P4."""
    values: dict[str, object] = {
        "asked": "urgent",
        "priority": "P1",
        "actor": "zendesk-user:601",
        "origin": "zendesk",
        "why": "P1 applies to production only",
        "at": MONDAY_0900_LA + timedelta(minutes=3),
        "event_key": "zendesk:audit:7:8:priority",
        "helpdesk_name": {"P4": "low"}.get,
    }
    values.update(changes)
    return service.refuse_reclassification("zendesk", "1001", **values)  # type: ignore[arg-type]


def test_a_refused_priority_is_recorded_once_and_owes_a_note_saying_why(
    service: TicketService, migrated: Engine, clock: FakeClock
) -> None:
    service.ingest(snapshot(environment="staging", priority="P1", shown={"priority": "P1"}))
    owed_before = [i.kind for i in outbox(migrated)]
    assert refuse(service) is True
    assert refuse(service) is False  # the same change read again

    [entry] = [e for e in rows(migrated, TicketEvent) if e.kind == "priority_changed"]
    assert (entry.actor, entry.origin, entry.occurred_at, entry.recorded_at) == (
        "zendesk-user:601",
        "zendesk",
        MONDAY_0900_LA + timedelta(minutes=3),
        clock.now,
    )
    assert entry.reason == "refused: P1 applies to production only"
    assert entry.payload == {
        "field": "refused",
        "from": "P4",
        "to": "P1",
        "zendesk_priority": "urgent",
    }
    assert entry.event_key == "zendesk:audit:7:8:priority"
    assert rows(migrated, StoredDecision)[0].priority == "P4"  # nothing else changed
    note = outbox(migrated)[-1]
    assert [i.kind for i in outbox(migrated)] == [*owed_before, "add_note"]
    assert note.payload["internal"] is True and note.payload["refused"] is True
    assert note.payload["body"] == (
        "slabot kept the priority at P4 (low): zendesk-user:601 set urgent, which the "
        "support policy does not allow here. P1 applies to production only"
    )


def test_a_refusal_needs_a_known_origin_and_a_stored_ticket(service: TicketService) -> None:
    with pytest.raises(UnknownTicketError, match="no ticket zendesk:1001 is stored"):
        refuse(service)
    service.ingest(snapshot())
    with pytest.raises(UnknownOriginError, match="origin 'email'"):
        refuse(service, origin="email")


# --- breaches reported once -----------------------------------------------------------------


def test_a_breach_reclassified_to_a_later_due_date_and_breached_again_is_reported_once(
    service: TicketService, migrated: Engine, clock: FakeClock
) -> None:
    service.ingest(snapshot(shown={"priority": "P2"}))
    clock.now = FIRST_RESPONSE_P2 + timedelta(minutes=1)
    (first,) = service.record_breaches()
    assert (first.ticket, first.target, first.at) == (
        "zendesk:1001",
        "first_response",
        FIRST_RESPONSE_P2,
    )
    assert first.cycle_started_at == MONDAY_0900_LA
    assert service.record_breaches() == []  # asked again: nothing new

    # P4: the first response is now due Tuesday 17:00 in Los Angeles; no longer breached.
    service.reclassify("zendesk", "1001", "P4", "ana", "question, not an outage", "zendesk")
    assert service.breached() == []
    (reaching,) = service.reaching(1.0, now=FIRST_RESPONSE_P4 - timedelta(minutes=30))
    assert (reaching.target, reaching.at) == ("first_response", FIRST_RESPONSE_P4)

    clock.now = FIRST_RESPONSE_P4 + timedelta(minutes=1)
    (again,) = service.breached()
    assert (again.target, again.at, again.cycle_started_at) == (
        "first_response",
        FIRST_RESPONSE_P4,
        MONDAY_0900_LA,
    )
    assert service.record_breaches() == []
    (nudge,) = rows(migrated, Nudge)
    assert (nudge.target, nudge.threshold, nudge.cycle_started_at) == (
        "first_response",
        100,
        MONDAY_0900_LA,
    )
    assert nudge.payload == {"due": "2026-11-16T21:00:00Z"}
    (notice,) = outbox(migrated, "slack")
    assert (notice.kind, notice.payload["ticket"], notice.payload["due"]) == (
        "breach_notice",
        "zendesk:1001",
        "2026-11-16T21:00:00Z",
    )


def test_a_new_clock_cycle_is_a_new_breach(
    service: TicketService, migrated: Engine, clock: FakeClock
) -> None:
    # Next update: 24h elapsed from the last public agent update.
    replied = MONDAY_0900_LA + timedelta(hours=1)
    clock.now = replied
    service.ingest(snapshot(updated_at=replied, first_response_at=replied))
    clock.now = replied + timedelta(hours=25)
    assert [b.target for b in service.record_breaches()] == ["restoration", "next_update"]
    updated = clock.now
    service.ingest(
        snapshot(updated_at=updated, first_response_at=replied, last_agent_update_at=updated)
    )
    assert [b.target for b in service.breached()] == ["restoration"]
    clock.now = updated + timedelta(hours=25)
    (second,) = service.record_breaches()
    assert (second.target, second.cycle_started_at) == ("next_update", updated)
    cycles = [n.cycle_started_at for n in rows(migrated, Nudge) if n.target == "next_update"]
    assert cycles == [replied, updated]
    assert len(outbox(migrated, "slack")) == 3


def test_two_workers_recording_breaches_at_once_record_each_once(
    service: TicketService, migrated: Engine, clock: FakeClock
) -> None:
    for key in range(5):
        service.ingest(snapshot(external_key=str(key)))
    clock.now = FIRST_RESPONSE_P2 + timedelta(minutes=1)
    with ThreadPoolExecutor(max_workers=2) as pool:
        found = list(pool.map(lambda _: service.record_breaches(), range(2)))
    assert sorted(b.ticket for batch in found for b in batch) == [
        f"zendesk:{key}" for key in range(5)
    ]
    assert count(migrated, Nudge) == 5
    assert len(outbox(migrated, "slack")) == 5


def test_a_request_key_makes_a_reclassification_apply_once(
    service: TicketService, migrated: Engine, clock: FakeClock
) -> None:
    service.ingest(snapshot(shown={"priority": "P2"}))
    clock.now = MONDAY_0900_LA + timedelta(hours=1)

    def request() -> ReclassifyResult:
        return service.reclassify(
            "zendesk", "1001", "P1", "ana", "region down", "slack", request_key="slack:a-1"
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: request(), range(4)))
    assert sorted(r.duplicate for r in results) == [False, True, True, True]
    entries = [e for e in rows(migrated, TicketEvent) if e.kind == "priority_changed"]
    assert [(e.event_key, e.payload["to"]) for e in entries] == [("reclassify:slack:a-1", "P1")]
    assert [i.kind for i in outbox(migrated)].count("add_note") == 1
    # Another request is another reclassification.
    other = service.reclassify(
        "zendesk", "1001", "P3", "ana", "workaround", "slack", request_key="slack:a-2"
    )
    assert (other.duplicate, other.previous_priority) == (False, "P1")
    with pytest.raises(ReclassificationError, match="request_key"):
        service.reclassify("zendesk", "1001", "P3", "ana", "x", "slack", request_key=" ")
