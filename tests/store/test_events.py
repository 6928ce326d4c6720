"""Event-level ingest, on SQLite and PostgreSQL: replies and status changes applied one at a
time, duplicated and out of order, pauses over a night and a holiday, webhook deliveries."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from store_support import MONDAY_0900_LA, FakeClock, count, rows, snapshot, zoom_with_metrics

from bot.compiled import Policy
from bot.engine import evaluate
from bot.ticket import Ticket
from slabot.policy_files import BUNDLED_POLICIES, load_policy
from slabot.store.errors import UnknownTicketError
from slabot.store.events import EventError, EventService
from slabot.store.models import (
    OutboxItem,
    StoredDecision,
    StoredTicket,
    TargetMark,
    TicketEvent,
    WebhookDelivery,
)
from slabot.store.services import TicketService
from slabot.store.snapshot import Snapshot

T0 = MONDAY_0900_LA  # Monday 2026-11-16 09:00 in Los Angeles
NOON_MONDAY = T0 + timedelta(hours=3)
TUESDAY_1000 = T0 + timedelta(hours=25)
# Wednesday 2026-11-25 09:00 in Los Angeles; Thursday the 26th is Thanksgiving.
WEDNESDAY_0900 = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def zoom() -> Policy:
    return load_policy(BUNDLED_POLICIES / "zoom.yaml")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0 + timedelta(minutes=5))


@pytest.fixture
def tickets(migrated: Engine, zoom: Policy, clock: FakeClock) -> TicketService:
    return TicketService(migrated, {"zoom": zoom}, clock)


@pytest.fixture
def events(tickets: TicketService) -> EventService:
    return EventService(tickets)


def known(tickets: TicketService, key: str = "1001", **fields: Any) -> Snapshot:
    """Store a ticket from a snapshot (its helpdesk already shows P2: nothing is owed)."""
    snap = snapshot(external_key=key, shown={"priority": "P2"}, **fields)
    tickets.ingest(snap)
    return snap


def ticket_row(engine: Engine, key: str = "1001") -> StoredTicket:
    (row,) = [t for t in rows(engine, StoredTicket) if t.external_key == key]
    assert isinstance(row, StoredTicket)
    return row


def decision_row(engine: Engine, key: str = "1001") -> StoredDecision:
    ticket_id = ticket_row(engine, key).id
    (decision,) = [d for d in rows(engine, StoredDecision) if d.ticket_id == ticket_id]
    assert isinstance(decision, StoredDecision)
    return decision


def history(engine: Engine, key: str = "1001") -> list[TicketEvent]:
    ticket_id = ticket_row(engine, key).id
    return [e for e in rows(engine, TicketEvent) if e.ticket_id == ticket_id]


def as_engine(snap: Snapshot, **fields: Any) -> Ticket:
    return Ticket(
        id=snap.external_key,
        created_at=snap.created_at,
        priority=snap.priority,
        plan=snap.plan,
        environment=snap.environment,
        channel=snap.channel,
        **fields,
    )


def assert_stored_as_engine_says(
    engine: Engine, expected: Ticket, policy: Policy, now: datetime, key: str = "1001"
) -> None:
    decision = evaluate(expected, policy, now)
    stored = decision_row(engine, key)
    assert stored.priority == decision.priority
    for name, target in decision.targets.items():
        assert getattr(stored, f"{name}_due") == target.due, name
        assert getattr(stored, f"{name}_state") == target.state, name
    assert stored.next_change_at == decision.next_change_at


def engine_fields(row: StoredTicket) -> tuple[Any, ...]:
    return (
        row.status,
        row.first_response_at,
        row.last_agent_update_at,
        row.solved_at,
        row.restoration_started_at,
        [
            (datetime.fromisoformat(b), None if e is None else datetime.fromisoformat(e))
            for b, e in row.paused
        ],
    )


def decision_fields(decision: StoredDecision) -> tuple[Any, ...]:
    return tuple(
        getattr(decision, f"{name}_{part}")
        for name in ("first_response", "restoration", "next_update")
        for part in ("due", "state")
    )


# --- replies ------------------------------------------------------------------------------------


def test_a_public_reply_stops_first_response_and_restarts_the_update_clock(
    events: EventService, tickets: TicketService, migrated: Engine, zoom: Policy, clock: FakeClock
) -> None:
    snap = known(tickets)
    replied = T0 + timedelta(hours=1)
    clock.now = replied + timedelta(minutes=1)
    result = events.public_reply("zendesk", "1001", replied, "ana", event_key="d1:audit-1")

    assert (result.outcome, result.events, result.enqueued) == ("applied", ("public_reply",), ())
    row = ticket_row(migrated)
    assert (row.first_response_at, row.last_agent_update_at) == (replied, replied)
    entry = history(migrated)[-1]
    assert (entry.kind, entry.occurred_at, entry.actor, entry.event_key, entry.payload) == (
        "public_reply",
        replied,
        "ana",
        "d1:audit-1",
        {"first": True},
    )
    assert decision_row(migrated).first_response_state == "met"
    expected = as_engine(snap, first_response_at=replied, last_agent_update_at=replied)
    assert_stored_as_engine_says(migrated, expected, zoom, clock.now)
    # The decision is stored with its threshold marks: a met first response has none left.
    assert "first_response" not in {m.target for m in rows(migrated, TargetMark)}
    assert "restoration" in {m.target for m in rows(migrated, TargetMark)}


def test_a_duplicated_event_is_dropped(
    events: EventService, tickets: TicketService, migrated: Engine, clock: FakeClock
) -> None:
    known(tickets)
    at = T0 + timedelta(hours=1)
    events.public_reply("zendesk", "1001", at, "ana", event_key="d1:audit-1")
    before = (count(migrated, TicketEvent), decision_fields(decision_row(migrated)))
    clock.now += timedelta(hours=1)
    again = events.public_reply("zendesk", "1001", at, "ana", event_key="d1:audit-1")
    # The same key with other content (a connector bug) is still the same event.
    other = events.status_changed("zendesk", "1001", "pending", at, event_key="d1:audit-1")
    assert (again.outcome, again.events, again.decision) == ("duplicate", (), None)
    assert other.outcome == "duplicate"
    assert (count(migrated, TicketEvent), decision_fields(decision_row(migrated))) == before
    assert ticket_row(migrated).status == "open"


def test_replies_out_of_order_end_as_in_order(
    events: EventService, tickets: TicketService, migrated: Engine, zoom: Policy, clock: FakeClock
) -> None:
    snap = known(tickets, "1001")
    known(tickets, "1002")
    times = {
        "a": T0 + timedelta(hours=3),
        "b": T0 + timedelta(hours=1),
        "c": T0 + timedelta(hours=2),
    }
    clock.now = T0 + timedelta(hours=4)
    outcomes = [
        events.public_reply("zendesk", "1001", times[k], event_key=k).outcome for k in "abc"
    ]
    for k in "bca":
        events.public_reply("zendesk", "1002", times[k], event_key=k)

    # The earliest reply is the first response, the latest the last update, whatever the order.
    assert outcomes == ["applied", "applied", "recorded"]
    row = ticket_row(migrated, "1001")
    assert (row.first_response_at, row.last_agent_update_at) == (times["b"], times["a"])
    assert [e.payload["first"] for e in history(migrated, "1001")[1:]] == [True, True, False]
    assert engine_fields(row) == engine_fields(ticket_row(migrated, "1002"))
    assert decision_fields(decision_row(migrated, "1001")) == decision_fields(
        decision_row(migrated, "1002")
    )
    expected = as_engine(snap, first_response_at=times["b"], last_agent_update_at=times["a"])
    assert_stored_as_engine_says(migrated, expected, zoom, clock.now)


# --- status changes, pauses over a night and a holiday ----------------------------------------


def test_a_pause_over_night_from_status_events(
    events: EventService, tickets: TicketService, migrated: Engine, zoom: Policy, clock: FakeClock
) -> None:
    snap = known(tickets)
    clock.now = NOON_MONDAY
    paused = events.status_changed("zendesk", "1001", "pending", NOON_MONDAY, event_key="e1")
    assert (paused.outcome, paused.events) == ("applied", ("status_changed",))
    assert decision_row(migrated).restoration_state == "paused"
    clock.now = TUESDAY_1000 + timedelta(minutes=1)
    events.status_changed("zendesk", "1001", "open", TUESDAY_1000, "ana", event_key="e2")

    row = ticket_row(migrated)
    assert row.status == "open"
    assert engine_fields(row)[-1] == [(NOON_MONDAY, TUESDAY_1000)]
    assert [(e.kind, e.occurred_at, e.payload) for e in history(migrated)[1:]] == [
        ("status_changed", NOON_MONDAY, {"from": "open", "to": "pending"}),
        ("status_changed", TUESDAY_1000, {"from": "pending", "to": "open"}),
    ]
    expected = as_engine(snap, paused=((NOON_MONDAY, TUESDAY_1000),))
    assert_stored_as_engine_says(migrated, expected, zoom, clock.now)
    # 3h on Monday, then 5h from Tuesday 10:00: Tuesday 15:00 in Los Angeles.
    assert decision_row(migrated).restoration_due == datetime(2026, 11, 17, 23, 0, tzinfo=UTC)


def test_status_events_out_of_order_end_as_in_order(
    events: EventService, tickets: TicketService, migrated: Engine, zoom: Policy, clock: FakeClock
) -> None:
    snap = known(tickets, "1001")
    known(tickets, "1002")
    clock.now = TUESDAY_1000 + timedelta(minutes=1)
    # In order on 1002; on 1001 the return to "open" arrives before the "pending" it ends.
    for key in ("1002", "1001"):
        changes = [("e1", "pending", NOON_MONDAY), ("e2", "open", TUESDAY_1000)]
        if key == "1001":
            changes.reverse()
        for event_key, to, at in changes:
            events.status_changed("zendesk", key, to, at, event_key=event_key)

    late = ticket_row(migrated, "1001")
    assert late.status == "open"
    assert engine_fields(late) == engine_fields(ticket_row(migrated, "1002"))
    assert decision_fields(decision_row(migrated, "1001")) == decision_fields(
        decision_row(migrated, "1002")
    )
    expected = as_engine(snap, paused=((NOON_MONDAY, TUESDAY_1000),))
    assert_stored_as_engine_says(migrated, expected, zoom, clock.now)
    assert_stored_as_engine_says(migrated, expected, zoom, clock.now, key="1002")


def test_a_pause_over_a_public_holiday_from_late_events(
    events: EventService, tickets: TicketService, migrated: Engine, zoom: Policy, clock: FakeClock
) -> None:
    clock.now = WEDNESDAY_0900
    snap = known(tickets, created_at=WEDNESDAY_0900, updated_at=WEDNESDAY_0900)
    on_hold_at = WEDNESDAY_0900 + timedelta(hours=4)  # Wednesday 13:00
    back_at = WEDNESDAY_0900 + timedelta(hours=27)  # Thanksgiving 12:00
    clock.now = back_at + timedelta(hours=1)
    events.status_changed("zendesk", "1001", "open", back_at, event_key="e2")
    events.status_changed("zendesk", "1001", "on_hold", on_hold_at, event_key="e1")
    events.status_changed("zendesk", "1001", "on_hold", on_hold_at, event_key="e1")  # again

    expected = as_engine(snap, paused=((on_hold_at, back_at),))
    assert_stored_as_engine_says(migrated, expected, zoom, clock.now)
    # 4h on Wednesday, nothing on Thanksgiving, 4h from Friday 09:00: Friday 13:00.
    assert decision_row(migrated).restoration_due == datetime(2026, 11, 27, 21, 0, tzinfo=UTC)
    assert ticket_row(migrated).status == "open"


def test_a_status_change_older_than_the_current_status_does_not_change_it(
    events: EventService, tickets: TicketService, migrated: Engine, zoom: Policy, clock: FakeClock
) -> None:
    snap = known(tickets)
    confirmed = T0 + timedelta(hours=2)
    clock.now = confirmed
    tickets.ingest(snapshot(updated_at=confirmed, shown={"priority": "P2"}))  # still open
    went_pending = T0 + timedelta(hours=1)
    result = events.status_changed("zendesk", "1001", "pending", went_pending, event_key="e1")

    row = ticket_row(migrated)
    assert row.status == "open"
    entry = history(migrated)[-1]
    assert (entry.kind, entry.occurred_at, entry.payload) == (
        "status_changed",
        went_pending,
        {"from": None, "to": "pending", "stale": True},
    )
    # It was pending at 10:00 and open again by 11:00 at the latest: paused until then ...
    assert result.outcome == "applied"
    assert engine_fields(row)[-1] == [(went_pending, confirmed)]
    # ... until the late event that ended the pause says when.
    back = went_pending + timedelta(minutes=20)
    events.status_changed("zendesk", "1001", "open", back, event_key="e2")
    assert engine_fields(ticket_row(migrated))[-1] == [(went_pending, back)]
    expected = as_engine(snap, paused=((went_pending, back),))
    assert_stored_as_engine_says(migrated, expected, zoom, clock.now)


def test_an_older_snapshot_after_a_newer_status_event_is_stale(
    events: EventService, tickets: TicketService, migrated: Engine, clock: FakeClock
) -> None:
    known(tickets)
    clock.now = NOON_MONDAY
    events.status_changed("zendesk", "1001", "pending", NOON_MONDAY, event_key="e1")
    older = tickets.ingest(snapshot(updated_at=NOON_MONDAY - timedelta(minutes=30)))
    assert older.outcome == "stale"
    assert ticket_row(migrated).status == "pending"


# --- solved and reopened ------------------------------------------------------------------------


def test_solving_and_reopening_start_a_new_restoration_cycle(
    events: EventService, tickets: TicketService, migrated: Engine, zoom: Policy, clock: FakeClock
) -> None:
    snap = known(tickets)
    solved_at = T0 + timedelta(hours=2)
    clock.now = solved_at
    solved = events.solved("zendesk", "1001", solved_at, "ana", event_key="e1")
    assert solved.events == ("solved", "status_changed")
    row = ticket_row(migrated)
    assert (row.status, row.solved_at) == ("solved", solved_at)
    assert decision_row(migrated).restoration_state == "met"
    assert not rows(migrated, TargetMark)  # a solved ticket has no marks left

    reopened_at = T0 + timedelta(days=1)  # Tuesday 09:00 in Los Angeles
    clock.now = reopened_at + timedelta(hours=1)
    reopened = events.reopened("zendesk", "1001", reopened_at, "customer", event_key="e2")
    assert reopened.events == ("reopened", "status_changed")
    row = ticket_row(migrated)
    assert (row.status, row.restoration_started_at) == ("open", reopened_at)
    decision = decision_row(migrated)
    assert (decision.restoration_state, decision.restoration_due) == (
        "running",
        reopened_at + timedelta(hours=8),
    )
    expected = as_engine(snap, solved_at=solved_at, restoration_started_at=reopened_at)
    assert_stored_as_engine_says(migrated, expected, zoom, clock.now)


def test_a_reopening_that_arrives_before_the_solve_ends_as_in_order(
    events: EventService, tickets: TicketService, migrated: Engine, clock: FakeClock
) -> None:
    known(tickets, "1001")
    known(tickets, "1002")
    solved_at, reopened_at = T0 + timedelta(hours=2), T0 + timedelta(days=1)
    clock.now = reopened_at + timedelta(hours=1)
    events.solved("zendesk", "1002", solved_at, event_key="e1")
    events.reopened("zendesk", "1002", reopened_at, event_key="e2")
    events.reopened("zendesk", "1001", reopened_at, event_key="e2")
    late = events.solved("zendesk", "1001", solved_at, event_key="e1")
    assert late.events == ("solved", "status_changed")

    row = ticket_row(migrated, "1001")
    assert (row.status, row.restoration_started_at) == ("open", reopened_at)
    assert engine_fields(row) == engine_fields(ticket_row(migrated, "1002"))
    assert decision_fields(decision_row(migrated, "1001")) == decision_fields(
        decision_row(migrated, "1002")
    )


def test_a_status_event_into_solved_solves_and_out_of_it_reopens(
    events: EventService, tickets: TicketService, migrated: Engine, clock: FakeClock
) -> None:
    known(tickets)
    solved_at = T0 + timedelta(hours=1)
    clock.now = solved_at
    assert events.status_changed("zendesk", "1001", "solved", solved_at, event_key="a").events == (
        "status_changed",
        "solved",
    )
    closed = events.status_changed(
        "zendesk", "1001", "closed", solved_at + timedelta(hours=1), event_key="b"
    )
    assert closed.events == ("status_changed",)
    assert ticket_row(migrated).solved_at == solved_at
    back = solved_at + timedelta(hours=2)
    assert events.status_changed("zendesk", "1001", "open", back, event_key="c").events == (
        "status_changed",
        "reopened",
    )
    assert ticket_row(migrated).restoration_started_at == back


# --- bad input ----------------------------------------------------------------------------------


def test_an_event_for_an_unknown_ticket_stores_nothing(
    events: EventService, migrated: Engine
) -> None:
    with pytest.raises(UnknownTicketError, match=r"ticket zendesk:404 is not stored") as caught:
        events.public_reply("zendesk", "404", T0, "ana", event_key="d1:e1")
    assert "ingest a snapshot of the ticket first" in str(caught.value)
    assert "'d1:e1'" in str(caught.value)
    for model in (StoredTicket, TicketEvent, StoredDecision, OutboxItem):
        assert count(migrated, model) == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda e: e.public_reply("zendesk", "1001", datetime(2026, 11, 16, 18), event_key="k"),
            "has no time zone",
        ),
        (
            lambda e: e.status_changed("zendesk", "1001", "waiting", T0, event_key="k"),
            "status 'waiting'; expected one of",
        ),
        (lambda e: e.public_reply("zendesk", "1001", T0, event_key=" "), "needs an event_key"),
        (lambda e: e.public_reply("zendesk", "1001", T0, event_key="k" * 256), "longer than 255"),
        (
            lambda e: e.public_reply("zendesk", "1001", T0 - timedelta(hours=1), event_key="k"),
            "before the ticket was created",
        ),
        (
            lambda e: e.reopened("zendesk", "1001", T0, event_key="k", to="closed"),
            "reopened into an open status",
        ),
        (lambda e: e.public_reply("", "1001", T0, event_key="k"), "source and external key"),
    ],
)
def test_a_bad_event_stores_nothing(
    events: EventService,
    tickets: TicketService,
    migrated: Engine,
    call: Callable[[EventService], Any],
    message: str,
) -> None:
    known(tickets)
    before = (count(migrated, TicketEvent), engine_fields(ticket_row(migrated)))
    with pytest.raises(EventError, match=message):
        call(events)
    assert (count(migrated, TicketEvent), engine_fields(ticket_row(migrated))) == before


# --- a changed policy ---------------------------------------------------------------------------


def test_an_event_under_a_changed_policy_owes_the_new_writes(
    tickets: TicketService, migrated: Engine, clock: FakeClock, tmp_path: Path
) -> None:
    known(tickets)
    text = (BUNDLED_POLICIES / "zoom.yaml").read_text()
    changed = tmp_path / "zoom.yaml"
    changed.write_text(text.replace("production_values: [production]", "production_values: [prod]"))
    redeployed = TicketService(migrated, {"zoom": load_policy(changed)}, clock)
    result = EventService(redeployed).public_reply(
        "zendesk", "1001", T0 + timedelta(minutes=2), event_key="e1"
    )
    assert result.decision is not None and result.decision.priority == "P4"
    assert result.enqueued == ("set_priority", "set_tags")
    assert {(i.kind, str(i.payload)) for i in rows(migrated, OutboxItem)} == {
        ("set_priority", "{'priority': 'P4'}"),
        ("set_tags", "{'add': ['sla_reclassified_non_production'], 'remove': []}"),
    }


# --- concurrency and webhook deliveries -----------------------------------------------------------


def _together(work: list[Callable[[], Any]]) -> list[Any]:
    barrier = threading.Barrier(len(work))

    def call(job: Callable[[], Any]) -> Any:
        barrier.wait()
        return job()

    with ThreadPoolExecutor(max_workers=len(work)) as pool:
        return list(pool.map(call, work))


def test_the_same_event_from_several_workers_at_once_is_stored_once(
    events: EventService, tickets: TicketService, migrated: Engine
) -> None:
    known(tickets)
    at = T0 + timedelta(hours=1)
    results = _together([lambda: events.public_reply("zendesk", "1001", at, event_key="d1:e1")] * 4)
    assert sorted(r.outcome for r in results) == ["applied", "duplicate", "duplicate", "duplicate"]
    assert [e.kind for e in history(migrated)] == ["created", "public_reply"]


def test_a_webhook_delivery_is_recorded_once(events: EventService, migrated: Engine) -> None:
    assert events.record_delivery("zendesk", "delivery-1") is True
    assert events.record_delivery("zendesk", "delivery-1") is False
    assert events.record_delivery("jira", "delivery-1") is True
    assert count(migrated, WebhookDelivery) == 2
    # Processing failed: forget it, so the helpdesk's redelivery is processed.
    assert events.forget_delivery("zendesk", "delivery-1") is True
    assert events.forget_delivery("zendesk", "delivery-1") is False
    assert events.record_delivery("zendesk", "delivery-1") is True
    with pytest.raises(EventError, match="source and delivery key"):
        events.record_delivery("zendesk", "")


def test_concurrent_copies_of_a_delivery_are_let_through_once(events: EventService) -> None:
    results = _together([lambda: events.record_delivery("zendesk", "delivery-9")] * 6)
    assert sorted(results) == [False] * 5 + [True]


# --- snapshots and events together ----------------------------------------------------------------


def test_an_older_snapshot_after_a_newer_reply_event_keeps_the_reply_times(
    events: EventService, tickets: TicketService, migrated: Engine, zoom: Policy, clock: FakeClock
) -> None:
    snap = known(tickets)
    early_reply = T0 + timedelta(minutes=30)
    reply = T0 + timedelta(hours=2)
    clock.now = reply + timedelta(minutes=1)
    events.public_reply("zendesk", "1001", reply, "ana", event_key="audit-9")
    # The helpdesk's snapshot was taken at 01:00, before the reply the event reported: it is
    # newer than the last snapshot (so not stale) but knows only an earlier reply.
    older = tickets.ingest(
        snapshot(
            updated_at=T0 + timedelta(hours=1),
            first_response_at=early_reply,
            last_agent_update_at=early_reply,
            shown={"priority": "P2"},
        )
    )
    assert (older.outcome, older.events) == ("updated", ("public_reply",))
    assert history(migrated)[-1].payload == {"first": True}
    row = ticket_row(migrated)
    # The earliest reply known is the first response, the latest the last update.
    assert (row.first_response_at, row.last_agent_update_at) == (early_reply, reply)
    expected = as_engine(snap, first_response_at=early_reply, last_agent_update_at=reply)
    assert_stored_as_engine_says(migrated, expected, zoom, clock.now)

    # One that knows no reply at all leaves both as they are, and changes nothing.
    unaware = tickets.ingest(snapshot(updated_at=T0 + timedelta(hours=1, minutes=30)))
    assert (unaware.outcome, unaware.events) == ("unchanged", ())
    row = ticket_row(migrated)
    assert (row.first_response_at, row.last_agent_update_at) == (early_reply, reply)
    assert_stored_as_engine_says(migrated, expected, zoom, clock.now)


# --- a snapshot's status history ------------------------------------------------------------------


def test_a_snapshots_status_history_is_applied_in_one_ingest_as_events_would(
    events: EventService, tickets: TicketService, migrated: Engine, zoom: Policy, clock: FakeClock
) -> None:
    from slabot.store.snapshot import StatusChange

    went_pending, back = NOON_MONDAY, TUESDAY_1000
    on_hold = TUESDAY_1000 + timedelta(hours=2)
    seen = on_hold + timedelta(minutes=5)
    clock.now = seen + timedelta(minutes=1)
    changes = (
        StatusChange(T0, "new", "audit:1:status"),
        StatusChange(went_pending, "pending", "audit:2:status", "ana"),
        StatusChange(back, "open", "audit:3:status"),
        StatusChange(on_hold, "on_hold", "audit:4:status", "ana"),
    )
    # 1001: one snapshot carrying its history (given out of order: the store sorts it).
    together = tickets.ingest(
        snapshot(
            updated_at=seen,
            status="on_hold",
            shown={"priority": "P2"},
            status_history=tuple(reversed(changes)),
        )
    )
    # 1002: the same ticket, told one event at a time.
    tickets.ingest(
        snapshot(external_key="1002", updated_at=seen, status="on_hold", shown={"priority": "P2"})
    )
    for change in changes:
        events.status_changed("zendesk", "1002", change.to, change.at, event_key=change.key)

    assert together.outcome == "created"
    assert together.events.count("status_changed") == 1 + len(changes)
    row = ticket_row(migrated, "1001")
    assert engine_fields(row)[-1] == [(went_pending, back), (on_hold, None)]
    assert engine_fields(row) == engine_fields(ticket_row(migrated, "1002"))
    assert decision_fields(decision_row(migrated, "1001")) == decision_fields(
        decision_row(migrated, "1002")
    )
    keys = {e.event_key for e in history(migrated, "1001") if e.event_key}
    assert keys == {change.key for change in changes}
    expected = as_engine(
        snapshot(), status="on_hold", paused=((went_pending, back), (on_hold, None))
    )
    assert_stored_as_engine_says(migrated, expected, zoom, clock.now)

    # The same snapshot again: every change is known by its key; nothing is stored.
    before = count(migrated, TicketEvent)
    again = tickets.ingest(
        snapshot(
            updated_at=seen, status="on_hold", shown={"priority": "P2"}, status_history=changes
        )
    )
    assert (again.outcome, again.events, again.enqueued) == ("unchanged", (), ())
    assert count(migrated, TicketEvent) == before


def test_a_status_history_that_reveals_a_solve_and_a_reopening(
    tickets: TicketService, migrated: Engine, clock: FakeClock
) -> None:
    from slabot.store.snapshot import StatusChange

    known(tickets)
    solved_at = T0 + timedelta(hours=2)
    reopened_at = T0 + timedelta(days=1)  # Tuesday 09:00 in Los Angeles
    clock.now = reopened_at + timedelta(hours=1)
    result = tickets.ingest(
        snapshot(
            updated_at=reopened_at + timedelta(minutes=1),
            shown={"priority": "P2"},
            status_history=(
                StatusChange(T0 - timedelta(days=1), "open", "before-creation"),  # skipped
                StatusChange(solved_at, "solved", "a:1"),
                StatusChange(reopened_at, "open", "a:2"),
            ),
        )
    )
    assert result.outcome == "updated"
    row = ticket_row(migrated)
    assert row.restoration_started_at == reopened_at  # a new restoration cycle
    assert "before-creation" not in {e.event_key for e in history(migrated)}
    decision = decision_row(migrated)
    assert decision.restoration_due == reopened_at + timedelta(hours=8)  # Tuesday 17:00


def test_a_malformed_status_history_stores_nothing(
    tickets: TicketService, migrated: Engine
) -> None:
    from slabot.store.snapshot import IngestError, StatusChange

    for change, message in [
        (StatusChange(T0, "waiting", "k"), "status change 'k' to 'waiting'"),
        (StatusChange(T0, "open", " "), "needs a key"),
        (StatusChange(datetime(2026, 11, 16, 9), "open", "k"), "has no time zone"),
    ]:
        with pytest.raises(IngestError, match=message):
            tickets.ingest(snapshot(status_history=(change,)))
    assert count(migrated, StoredTicket) == 0


def test_a_status_event_hands_the_metrics_the_stored_status_history(
    migrated: Engine, tmp_path: Path
) -> None:
    """agent_work reads the stored status history after a status event: pending from noon,
    open again at 14:00, it is held for those two hours, as the engine gives with that
    history (without it, the ticket open now, nothing would hold it)."""
    metrics = zoom_with_metrics(tmp_path)
    clock = FakeClock(T0 + timedelta(minutes=5))
    tickets = TicketService(migrated, {"zoom-metrics": metrics}, clock)
    events = EventService(tickets)
    tickets.ingest(snapshot(policy="zoom-metrics", status="open", shown={"priority": "P2"}))
    clock.now = T0 + timedelta(hours=5)
    events.status_changed("zendesk", "1001", "pending", NOON_MONDAY, event_key="e1")
    result = events.status_changed(
        "zendesk", "1001", "open", NOON_MONDAY + timedelta(hours=2), event_key="e2"
    )
    assert result.decision is not None
    got = result.decision.targets["agent_work"]
    # 6 hours on 24x7 from the creation, the 2 hours pending not counted.
    assert got.due == T0 + timedelta(hours=8)
    expected = evaluate(
        Ticket(
            id="1001",
            created_at=T0,
            priority="P2",
            plan="premier",
            environment="production",
            channel="phone",
            status_changes=(
                (T0, "open"),
                (NOON_MONDAY, "pending"),
                (NOON_MONDAY + timedelta(hours=2), "open"),
            ),
        ),
        metrics,
        clock.now,
    )
    for name in ("agent_work", "requester_wait"):
        want = expected.targets[name]
        decided = result.decision.targets[name]
        assert (decided.due, decided.state, decided.pauses) == (want.due, want.state, want.pauses)
    # What Slack and the dashboard show of the ticket, one or in bulk, reads it too.
    from slabot.slack.store_access import SlackStore

    store = SlackStore(migrated, {"zoom-metrics": metrics})
    one = store.view(result.ticket_id, clock.now)
    assert one is not None
    listed = store.views([result.ticket_id], clock.now)[result.ticket_id]
    for view in (one, listed):
        assert view.decision.targets["agent_work"] == result.decision.targets["agent_work"]
