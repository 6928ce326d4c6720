"""Ingesting ticket snapshots, on SQLite and PostgreSQL: history, decisions, owed writes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bot.compiled import Policy
from bot.engine import evaluate
from bot.ticket import Ticket
from slabot.policy_files import BUNDLED_POLICIES, load_policy
from slabot.store.models import Base, OutboxItem, StoredDecision, StoredTicket, TicketEvent
from slabot.store.services import TicketService
from slabot.store.snapshot import IngestError, Snapshot

# Zoom's premier plan: P2 restoration 8h on the customer's calendar (Los Angeles, 09:00-17:00
# on weekdays, US holidays). Monday 2026-11-16 09:00 in Los Angeles is 17:00 UTC.
MONDAY_0900_LA = datetime(2026, 11, 16, 17, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def zoom() -> Policy:
    return load_policy(BUNDLED_POLICIES / "zoom.yaml")


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(MONDAY_0900_LA + timedelta(minutes=5))


@pytest.fixture
def service(migrated: Engine, zoom: Policy, clock: FakeClock) -> TicketService:
    return TicketService(migrated, {"zoom": zoom}, clock)


def snapshot(**fields: Any) -> Snapshot:
    values: dict[str, Any] = {
        "source": "zendesk",
        "external_key": "1001",
        "policy": "zoom",
        "created_at": MONDAY_0900_LA,
        "updated_at": MONDAY_0900_LA,
        "priority": "P2",
        "plan": "premier",
        "environment": "production",
        "channel": "phone",
    }
    values.update(fields)
    return Snapshot(**values)


def engine_view(snap: Snapshot, **fields: Any) -> Ticket:
    """The ticket as the engine would be given it by hand, to compare stored decisions with."""
    return Ticket(
        id=snap.external_key,
        created_at=snap.created_at,
        priority=snap.priority,
        plan=snap.plan,
        environment=snap.environment,
        channel=snap.channel,
        status=snap.status,
        first_response_at=snap.first_response_at,
        last_agent_update_at=snap.last_agent_update_at,
        solved_at=snap.solved_at,
        **fields,
    )


def rows(engine: Engine, model: type[Base]) -> list[Any]:
    with Session(engine) as session:
        return list(session.scalars(select(model).order_by(*model.__table__.primary_key)))


def count(engine: Engine, model: type[Base]) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def stored_decision(engine: Engine) -> StoredDecision:
    (decision,) = rows(engine, StoredDecision)
    assert isinstance(decision, StoredDecision)
    return decision


def assert_stored_as_engine_says(
    engine: Engine, expected: Ticket, policy: Policy, now: datetime
) -> None:
    decision = evaluate(expected, policy, now)
    stored = stored_decision(engine)
    assert stored.priority == decision.priority
    for name, target in decision.targets.items():
        assert getattr(stored, f"{name}_due") == target.due, name
        assert getattr(stored, f"{name}_state") == target.state, name
    assert stored.next_change_at == decision.next_change_at
    assert stored.tags == list(decision.tags)


# --- a new ticket ---------------------------------------------------------------------------


def test_a_new_ticket_is_stored_evaluated_and_owed_its_priority(
    service: TicketService, migrated: Engine, zoom: Policy, clock: FakeClock
) -> None:
    snap = snapshot()
    result = service.ingest(snap)

    assert (result.outcome, result.events, result.enqueued) == (
        "created",
        ("created",),
        ("set_priority",),
    )
    (ticket,) = rows(migrated, StoredTicket)
    assert (ticket.source, ticket.external_key, ticket.policy, ticket.status) == (
        "zendesk",
        "1001",
        "zoom",
        "open",
    )
    assert ticket.created_at == MONDAY_0900_LA
    assert ticket.first_seen_at == clock.now
    assert_stored_as_engine_says(migrated, engine_view(snap), zoom, clock.now)
    decision = stored_decision(migrated)
    assert (decision.priority, decision.restoration_state) == ("P2", "running")
    # 8 business hours from Monday 09:00 in Los Angeles: Monday 17:00 there.
    assert decision.restoration_due == datetime(2026, 11, 17, 1, 0, tzinfo=UTC)

    (event,) = rows(migrated, TicketEvent)
    assert (event.kind, event.occurred_at, event.recorded_at) == (
        "created",
        MONDAY_0900_LA,
        clock.now,
    )
    assert event.payload["priority"] == "P2"
    (item,) = rows(migrated, OutboxItem)
    assert (item.target_system, item.kind, item.payload) == (
        "zendesk",
        "set_priority",
        {"priority": "P2"},
    )
    assert (item.attempts, item.next_attempt_at, item.done_at) == (0, clock.now, None)
    assert item.idempotency_key.startswith("zendesk:1001:set_priority:")


def test_a_helpdesk_already_showing_the_decision_is_owed_nothing(
    service: TicketService, migrated: Engine
) -> None:
    result = service.ingest(snapshot(shown={"priority": "P2", "tags": ["vip"]}))
    assert result.enqueued == ()
    assert count(migrated, OutboxItem) == 0


def test_the_same_snapshot_twice_changes_and_enqueues_nothing(
    service: TicketService, migrated: Engine, clock: FakeClock
) -> None:
    snap = snapshot()
    service.ingest(snap)
    clock.now += timedelta(minutes=1)
    again = service.ingest(snap)
    assert (again.outcome, again.events, again.enqueued) == ("unchanged", (), ())
    assert count(migrated, TicketEvent) == 1
    assert count(migrated, OutboxItem) == 1
    assert count(migrated, StoredTicket) == 1


def test_the_echo_of_slabots_own_write_enqueues_nothing_and_settles_the_owed_write(
    service: TicketService, migrated: Engine, clock: FakeClock
) -> None:
    service.ingest(snapshot())
    clock.now += timedelta(minutes=1)
    echo = service.ingest(snapshot(updated_at=clock.now, shown={"priority": "P2"}, actor="slabot"))
    assert (echo.outcome, echo.events, echo.enqueued) == ("unchanged", (), ())
    (item,) = rows(migrated, OutboxItem)
    assert item.done_at == clock.now
    assert item.next_attempt_at is None
    assert item.last_error == "superseded: the helpdesk already shows the value"


def test_a_changed_decision_replaces_the_write_still_owed(
    service: TicketService, migrated: Engine, clock: FakeClock
) -> None:
    service.ingest(snapshot())
    clock.now += timedelta(minutes=1)
    # Not production after all: zoom caps the priority at P4 and tags the ticket.
    result = service.ingest(snapshot(updated_at=clock.now, environment="staging"))
    assert result.enqueued == ("set_priority", "set_tags")
    first, second, tags = rows(migrated, OutboxItem)
    assert first.last_error == "superseded by a newer write" and first.done_at == clock.now
    assert (second.payload, second.done_at) == ({"priority": "P4"}, None)
    assert tags.payload == {"add": ["sla_reclassified_non_production"], "remove": []}


def test_only_the_policys_own_tags_are_added_or_removed(
    service: TicketService, migrated: Engine
) -> None:
    result = service.ingest(
        snapshot(
            environment="staging",
            shown={"priority": "P4", "tags": ["vip", "sla_p1_not_by_phone"]},
        )
    )
    assert result.enqueued == ("set_tags",)
    (item,) = rows(migrated, OutboxItem)
    assert item.payload == {
        "add": ["sla_reclassified_non_production"],
        "remove": ["sla_p1_not_by_phone"],
    }


# --- order, duplicates, bad input -----------------------------------------------------------


def test_an_older_snapshot_after_a_newer_one_is_ignored(
    service: TicketService, migrated: Engine, clock: FakeClock
) -> None:
    newer = MONDAY_0900_LA + timedelta(hours=2)
    service.ingest(snapshot(updated_at=newer, status="pending"))
    stale = service.ingest(snapshot(updated_at=newer - timedelta(hours=1), status="open"))
    assert (stale.outcome, stale.events, stale.enqueued, stale.decision) == ("stale", (), (), None)
    (ticket,) = rows(migrated, StoredTicket)
    assert (ticket.status, ticket.source_updated_at) == ("pending", newer)
    assert [e.kind for e in rows(migrated, TicketEvent)] == ["created", "status_changed"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"policy": "acme"}, "names policy 'acme'; loaded: zoom"),
        ({"status": "waiting"}, "status 'waiting'; expected one of"),
        ({"status": "solved"}, "status 'solved' needs solved_at"),
        (
            {"updated_at": datetime(2026, 11, 16, 9)},
            "updated_at 2026-11-16T09:00:00 has no time zone",
        ),
    ],
)
def test_a_bad_snapshot_stores_nothing(
    service: TicketService, migrated: Engine, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(IngestError, match=message):
        service.ingest(snapshot(**fields))
    for model in (StoredTicket, TicketEvent, StoredDecision, OutboxItem):
        assert count(migrated, model) == 0


def test_a_bad_snapshot_leaves_the_stored_ticket_as_it_was(
    service: TicketService, migrated: Engine, clock: FakeClock
) -> None:
    service.ingest(snapshot())
    clock.now += timedelta(minutes=1)
    with pytest.raises(IngestError):
        service.ingest(snapshot(updated_at=clock.now, plan="premier_plus", status="waiting"))
    (ticket,) = rows(migrated, StoredTicket)
    assert (ticket.plan, ticket.status, ticket.paused) == ("premier", "open", [])
    assert count(migrated, TicketEvent) == 1


# --- what the policy cannot place is stored, tagged, noted once ---------------------------


def owed(engine: Engine, kind: str) -> list[dict[str, Any]]:
    return [item.payload for item in rows(engine, OutboxItem) if item.kind == kind]


def test_a_ticket_naming_a_plan_its_policy_does_not_know_is_stored_tagged_and_noted_once(
    service: TicketService,
    migrated: Engine,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # zoom has no default plan: no targets, the tag written back, one internal note and one
    # WARNING naming the plan and the plans zoom knows.
    caplog.set_level("WARNING", logger="slabot.store.services")
    result = service.ingest(snapshot(plan="enterprise", shown={"priority": "P2", "tags": []}))
    assert result.outcome == "created"
    assert result.decision is not None and result.decision.unknown_plan == "enterprise"
    assert result.enqueued == ("set_tags", "add_note")
    (ticket,) = rows(migrated, StoredTicket)
    assert (ticket.plan, ticket.status) == ("enterprise", "open")
    stored = stored_decision(migrated)
    assert (stored.plan, stored.commitment, stored.tags) == (None, None, ["sla_unknown_plan"])
    assert {stored.first_response_state, stored.restoration_state, stored.next_update_state} == {
        "none"
    }
    note = (
        "plan 'enterprise' is not in policy 'zoom' (known plans: premier, premier_assurance, "
        "premier_elite, premier_plus, standard): no targets (the policy has no default plan); "
        "add the plan to the policy, or correct the ticket's plan"
    )
    assert stored.notes[-1] == note
    assert owed(migrated, "set_tags") == [{"add": ["sla_unknown_plan"], "remove": []}]
    assert owed(migrated, "add_note") == [
        {
            "internal": True,
            "body": f"slabot: {note}. Until then the ticket carries the tag sla_unknown_plan.",
            "unknown": {"plan": "enterprise"},
        }
    ]
    assert [r.getMessage() for r in caplog.records] == [f"ticket zendesk:1001 stored: {note}"]

    # Read again (a poll, a redelivery) and changed (a status): no second note or warning.
    clock.now += timedelta(minutes=5)
    shown = {"priority": "P2", "tags": ["sla_unknown_plan"]}
    service.ingest(snapshot(plan="enterprise", shown=shown))
    again = service.ingest(
        snapshot(plan="enterprise", shown=shown, status="pending", updated_at=clock.now)
    )
    assert (again.outcome, again.enqueued, again.warnings) == ("updated", (), ())
    assert len(owed(migrated, "add_note")) == 1 and len(caplog.records) == 1

    # The organization's plan is corrected: targets again, and the tag is owed off.
    clock.now += timedelta(minutes=5)
    fixed = service.ingest(snapshot(plan="premier", shown=shown, updated_at=clock.now))
    assert fixed.decision is not None and fixed.decision.unknown_plan is None
    assert stored_decision(migrated).plan == "premier"
    assert owed(migrated, "set_tags")[-1] == {"add": [], "remove": ["sla_unknown_plan"]}


def test_an_unknown_plan_is_evaluated_under_the_default_plan_when_the_policy_has_one(
    migrated: Engine, zoom: Policy, clock: FakeClock
) -> None:
    spec = zoom.spec.model_dump()
    with_default = Policy.from_mapping({**spec, "default_plan": "standard"})
    service = TicketService(migrated, {"zoom": with_default}, clock)
    result = service.ingest(snapshot(plan="enterprise"))
    assert result.decision is not None
    expected = evaluate(engine_view(snapshot(plan="standard")), with_default, clock.now)
    assert result.decision.plan == "standard"
    assert result.decision.targets == expected.targets
    assert "sla_unknown_plan" in result.decision.tags
    assert "evaluated under the default plan 'standard'" in result.decision.unknown_plan_note


@pytest.mark.parametrize(
    ("fields", "unknown", "note"),
    [
        ({"priority": "P9"}, ("priority", "P9"), "priority 'P9' cannot be used by policy 'zoom'"),
        (
            {"customer_country": "XX"},
            ("customer_country", "XX"),
            "customer country 'XX' cannot be used by policy 'zoom'",
        ),
        (
            {"customer_timezone": "Mars/Olympus_Mons"},
            ("customer_timezone", "Mars/Olympus_Mons"),
            "customer timezone 'Mars/Olympus_Mons' cannot be used",
        ),
    ],
)
def test_a_value_the_policy_cannot_use_is_ignored_and_the_ticket_stored(
    service: TicketService,
    migrated: Engine,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    fields: dict[str, Any],
    unknown: tuple[str, str],
    note: str,
) -> None:
    caplog.set_level("WARNING", logger="slabot.store.services")
    result = service.ingest(snapshot(**fields))
    assert result.decision is not None and result.decision.unknown_values == (unknown,)
    assert count(migrated, StoredTicket) == 1
    assert "sla_unknown_value" in stored_decision(migrated).tags
    (payload,) = owed(migrated, "add_note")
    assert payload["unknown"] == dict([unknown]) and note in payload["body"]
    assert len(caplog.records) == 1 and note in caplog.records[0].getMessage()
    # Written back once as a tag slabot manages: shown, it is not owed again.
    assert owed(migrated, "set_tags") == [{"add": ["sla_unknown_value"], "remove": []}]
    clock.now += timedelta(minutes=1)
    shown = {"priority": result.decision.priority, "tags": ["sla_unknown_value"]}
    service.ingest(snapshot(**fields, shown=shown, updated_at=clock.now))
    assert len(owed(migrated, "add_note")) == 1 and len(caplog.records) == 1
    assert len(owed(migrated, "set_tags")) == 1
    # Corrected: the tag is owed off.
    clock.now += timedelta(minutes=1)
    service.ingest(snapshot(shown=shown, updated_at=clock.now))
    assert owed(migrated, "set_tags")[-1] == {"add": [], "remove": ["sla_unknown_value"]}


def test_the_open_tickets_with_an_unknown_plan_are_counted_per_policy_and_plan(
    service: TicketService, migrated: Engine, zoom: Policy, clock: FakeClock
) -> None:
    from slabot.store.queries import unknown_plans

    for key, plan in (("1", "enterprise"), ("2", "enterprise"), ("3", "gold"), ("4", "premier")):
        service.ingest(snapshot(external_key=key, plan=plan))
    service.ingest(
        snapshot(external_key="5", plan="gold", status="solved", solved_at=MONDAY_0900_LA)
    )
    assert unknown_plans(migrated, {"zoom": zoom}) == {
        ("zoom", "enterprise"): 2,
        ("zoom", "gold"): 1,
    }
    # A policy that learns the plan (an alias) clears it at once; an unloaded one counts none.
    spec = zoom.spec.model_dump()
    learned = Policy.from_mapping({**spec, "plan_aliases": {"enterprise": "premier"}})
    assert unknown_plans(migrated, {"zoom": learned}) == {("zoom", "gold"): 1}
    assert unknown_plans(migrated, {}) == {}


def test_a_naive_clock_is_refused(migrated: Engine, zoom: Policy) -> None:
    service = TicketService(migrated, {"zoom": zoom}, lambda: datetime(2026, 11, 16, 9))
    with pytest.raises(IngestError, match="naive"):
        service.ingest(snapshot())


# --- history and clocks ---------------------------------------------------------------------


def test_a_pause_over_night_moves_restoration_by_the_time_waited(
    service: TicketService, migrated: Engine, zoom: Policy, clock: FakeClock
) -> None:
    service.ingest(snapshot())
    pending_at = MONDAY_0900_LA + timedelta(hours=3)  # Monday 12:00 in Los Angeles
    back_at = MONDAY_0900_LA + timedelta(hours=25)  # Tuesday 10:00 in Los Angeles
    clock.now = pending_at
    service.ingest(snapshot(updated_at=pending_at, status="pending"))
    assert stored_decision(migrated).restoration_state == "paused"
    clock.now = back_at + timedelta(minutes=1)
    result = service.ingest(snapshot(updated_at=back_at, status="open"))

    assert result.events == ("status_changed",)
    events = rows(migrated, TicketEvent)
    assert [(e.kind, e.occurred_at, e.payload) for e in events[1:]] == [
        ("status_changed", pending_at, {"from": "open", "to": "pending"}),
        ("status_changed", back_at, {"from": "pending", "to": "open"}),
    ]
    (ticket,) = rows(migrated, StoredTicket)
    assert ticket.paused == [[pending_at.isoformat(), back_at.isoformat()]]
    final = snapshot(updated_at=back_at)
    assert_stored_as_engine_says(
        migrated, engine_view(final, paused=((pending_at, back_at),)), zoom, clock.now
    )
    # 3h on Monday, then 5h from Tuesday 10:00: Tuesday 15:00 in Los Angeles.
    assert stored_decision(migrated).restoration_due == datetime(2026, 11, 17, 23, 0, tzinfo=UTC)


def test_a_pause_over_a_public_holiday(
    service: TicketService, migrated: Engine, zoom: Policy, clock: FakeClock
) -> None:
    # Wednesday 2026-11-25 09:00 in Los Angeles; Thursday the 26th is Thanksgiving.
    created = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
    pending_at = created + timedelta(hours=4)  # Wednesday 13:00
    back_at = created + timedelta(hours=27)  # Thanksgiving 12:00
    clock.now = created
    service.ingest(snapshot(created_at=created, updated_at=created))
    clock.now = pending_at
    service.ingest(snapshot(created_at=created, updated_at=pending_at, status="on_hold"))
    clock.now = back_at
    service.ingest(snapshot(created_at=created, updated_at=back_at, status="open"))

    final = snapshot(created_at=created, updated_at=back_at)
    assert_stored_as_engine_says(
        migrated, engine_view(final, paused=((pending_at, back_at),)), zoom, clock.now
    )
    # 4h on Wednesday, nothing on Thanksgiving, 4h from Friday 09:00: Friday 13:00.
    assert stored_decision(migrated).restoration_due == datetime(2026, 11, 27, 21, 0, tzinfo=UTC)


def test_reopening_a_solved_ticket_starts_a_new_restoration_cycle(
    service: TicketService, migrated: Engine, zoom: Policy, clock: FakeClock
) -> None:
    service.ingest(snapshot())
    solved_at = MONDAY_0900_LA + timedelta(hours=2)
    clock.now = solved_at
    solved = service.ingest(snapshot(updated_at=solved_at, status="solved", solved_at=solved_at))
    assert solved.events == ("status_changed", "solved")
    assert stored_decision(migrated).restoration_state == "met"

    reopened_at = MONDAY_0900_LA + timedelta(days=1)  # Tuesday 09:00 in Los Angeles
    clock.now = reopened_at + timedelta(hours=1)
    reopened = service.ingest(snapshot(updated_at=reopened_at, status="open", solved_at=solved_at))
    assert reopened.events == ("status_changed", "reopened")
    (ticket,) = rows(migrated, StoredTicket)
    assert ticket.restoration_started_at == reopened_at
    decision = stored_decision(migrated)
    assert decision.restoration_state == "running"
    assert decision.restoration_due == reopened_at + timedelta(hours=8)


def test_a_requested_priority_change_is_recorded_with_actor_and_origin(
    service: TicketService, migrated: Engine, clock: FakeClock
) -> None:
    service.ingest(snapshot(priority="P3", shown={"priority": "P3"}))
    changed_at = MONDAY_0900_LA + timedelta(minutes=30)
    clock.now = changed_at
    result = service.ingest(
        snapshot(
            updated_at=changed_at, priority="P2", actor="ana@example.com", shown={"priority": "P3"}
        )
    )
    assert (result.outcome, result.events, result.enqueued) == (
        "updated",
        ("priority_changed",),
        ("set_priority",),
    )
    event = rows(migrated, TicketEvent)[-1]
    assert (event.kind, event.actor, event.origin, event.occurred_at) == (
        "priority_changed",
        "ana@example.com",
        "helpdesk",
        changed_at,
    )
    assert event.payload == {"field": "requested", "from": "P3", "to": "P2"}


def test_public_replies_are_recorded_and_stop_the_first_response_clock(
    service: TicketService, migrated: Engine, zoom: Policy, clock: FakeClock
) -> None:
    service.ingest(snapshot())
    replied = MONDAY_0900_LA + timedelta(hours=1)
    clock.now = replied
    first = service.ingest(
        snapshot(updated_at=replied, first_response_at=replied, last_agent_update_at=replied)
    )
    assert first.events == ("public_reply",)
    update = replied + timedelta(hours=5)
    clock.now = update
    second = service.ingest(
        snapshot(updated_at=update, first_response_at=replied, last_agent_update_at=update)
    )
    assert second.events == ("public_reply",)
    replies = [e for e in rows(migrated, TicketEvent) if e.kind == "public_reply"]
    assert [(e.occurred_at, e.payload) for e in replies] == [
        (replied, {"first": True}),
        (update, {"first": False}),
    ]
    assert stored_decision(migrated).first_response_state == "met"
    final = snapshot(updated_at=update, first_response_at=replied, last_agent_update_at=update)
    assert_stored_as_engine_says(migrated, engine_view(final), zoom, clock.now)


def test_replies_are_stored_add_up_and_reach_the_engine(
    service: TicketService, migrated: Engine, zoom: Policy, clock: FakeClock
) -> None:
    customer = MONDAY_0900_LA + timedelta(hours=1)
    agent = customer + timedelta(minutes=30)
    clock.now = agent
    first = snapshot(updated_at=customer, customer_replies=(customer,))
    service.ingest(first)
    (ticket,) = rows(migrated, StoredTicket)
    assert ticket.replies == {"agent": [], "customer": [customer.astimezone(UTC).isoformat()]}
    later = snapshot(
        updated_at=agent, first_response_at=agent, last_agent_update_at=agent,
        agent_replies=(agent,),
    )  # fmt: skip
    assert service.ingest(later).outcome == "updated"
    (ticket,) = rows(migrated, StoredTicket)
    # The later snapshot does not repeat the customer's reply: it stays known.
    assert ticket.replies == {
        "agent": [agent.astimezone(UTC).isoformat()],
        "customer": [customer.astimezone(UTC).isoformat()],
    }
    with Session(migrated) as session:
        from slabot.store.rows import engine_ticket

        seen = engine_ticket(session.scalars(select(StoredTicket)).one())
    assert (seen.customer_replies, seen.agent_replies) == ((customer,), (agent,))


def test_a_ticket_first_seen_waiting_on_the_customer_is_paused_from_that_snapshot(
    service: TicketService, migrated: Engine, zoom: Policy, clock: FakeClock
) -> None:
    seen = MONDAY_0900_LA + timedelta(hours=2)
    clock.now = seen
    result = service.ingest(snapshot(updated_at=seen, status="pending"))
    assert result.events == ("created", "status_changed")
    (ticket,) = rows(migrated, StoredTicket)
    assert ticket.paused == [[seen.isoformat(), None]]
    snap = replace(snapshot(updated_at=seen, status="pending"))
    assert_stored_as_engine_says(
        migrated, engine_view(snap, paused=((seen, None),)), zoom, clock.now
    )


# --- concurrency ----------------------------------------------------------------------------


def _run_together(work: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls on as many threads, released at once; re-raise the first failure."""
    barrier = threading.Barrier(len(work))

    def call(job: Callable[[], Any]) -> Any:
        barrier.wait()
        return job()

    with ThreadPoolExecutor(max_workers=len(work)) as pool:
        return list(pool.map(call, work))


def test_the_same_new_ticket_ingested_by_several_workers_at_once_is_stored_once(
    service: TicketService, migrated: Engine
) -> None:
    snap = snapshot()
    results = _run_together([lambda: service.ingest(snap)] * 4)
    assert sorted(r.outcome for r in results) == ["created", "unchanged", "unchanged", "unchanged"]
    assert count(migrated, StoredTicket) == 1
    assert [e.kind for e in rows(migrated, TicketEvent)] == ["created"]
    assert count(migrated, OutboxItem) == 1


def test_concurrent_snapshots_of_one_ticket_end_at_the_newest(
    service: TicketService, migrated: Engine, clock: FakeClock
) -> None:
    service.ingest(snapshot())
    times = [MONDAY_0900_LA + timedelta(minutes=10 * n) for n in range(1, 7)]
    statuses = ["pending", "open", "on_hold", "open", "pending", "open"]
    clock.now = times[-1]
    _run_together(
        [
            (lambda at=at, status=status: service.ingest(snapshot(updated_at=at, status=status)))
            for at, status in zip(times, statuses, strict=True)
        ]
    )
    (ticket,) = rows(migrated, StoredTicket)
    assert (ticket.status, ticket.source_updated_at) == ("open", times[-1])
    events = rows(migrated, TicketEvent)
    # Whatever order the workers ran in, the history applied is in time order and each
    # status change follows from the one before it.
    changes = [e for e in events if e.kind == "status_changed"]
    assert [e.occurred_at for e in changes] == sorted(e.occurred_at for e in changes)
    state = "open"
    for change in changes:
        assert change.payload["from"] == state
        state = change.payload["to"]
    assert state == "open"
    assert all(end is not None for _, end in ticket.paused)


# --- the helpers other services build on ----------------------------------------------------


def test_the_helpers_events_build_on_are_public_and_documented() -> None:
    from slabot.store import rows

    for helper in (
        TicketService.enqueue_writes,
        TicketService.store_decision,
        TicketService.loaded_policy,
        rows.row_snapshot,
    ):
        assert helper.__doc__ and len(helper.__doc__.split()) > 10, helper.__name__


# --- due-date fields ------------------------------------------------------------------------

DUE_FIELDS: dict[str, Any] = {
    "due_format": {
        "first_response": {"format": "instant"},
        "restoration": {"format": "instant"},
        "next_update": {"format": "date", "zone": "America/Los_Angeles"},
    }
}


def shown_due(**due: str | None) -> dict[str, Any]:
    fields = {"first_response": None, "restoration": None, "next_update": None}
    fields.update(due)
    return {"priority": "P2", "due": fields, **DUE_FIELDS}


def due_items(engine: Engine) -> list[OutboxItem]:
    return [item for item in rows(engine, OutboxItem) if item.kind == "set_due_fields"]


def test_due_fields_are_owed_like_the_priority_and_the_tags(
    service: TicketService, migrated: Engine, clock: FakeClock
) -> None:
    from slabot.store.writes import due_text

    first = service.ingest(snapshot(shown=shown_due()))
    assert first.enqueued == ("set_due_fields",)
    assert first.decision is not None
    targets = first.decision.targets
    expected = {
        "first_response": due_text(targets["first_response"].due),
        "restoration": due_text(targets["restoration"].due),
        "next_update": due_text(
            targets["next_update"].due, {"format": "date", "zone": "America/Los_Angeles"}
        ),
    }
    expected = {name: text for name, text in expected.items() if text is not None}
    assert expected["restoration"] == "2026-11-17T01:00:00Z"  # Monday 17:00 in Los Angeles
    (item,) = due_items(migrated)
    assert item.payload == {"fields": expected}
    assert item.idempotency_key.startswith("zendesk:1001:set_due_fields:")

    # The echo: the fields show the values; nothing is owed, and the write is settled.
    clock.now += timedelta(minutes=1)
    echo = service.ingest(snapshot(updated_at=clock.now, shown=shown_due(**expected)))
    assert echo.enqueued == ()
    (item,) = due_items(migrated)
    assert item.last_error == "superseded: the helpdesk already shows the value"

    # Waiting on the customer pauses restoration and updates: their fields are emptied.
    clock.now += timedelta(minutes=1)
    waiting = service.ingest(
        snapshot(updated_at=clock.now, status="pending", shown=shown_due(**expected))
    )
    assert waiting.enqueued == ("set_due_fields",)
    assert due_items(migrated)[-1].payload == {"fields": {"restoration": None, "next_update": None}}


def test_a_reclassification_owes_the_due_fields_it_moves(
    service: TicketService, migrated: Engine, clock: FakeClock
) -> None:
    from slabot.store.writes import due_text

    created = service.ingest(snapshot(shown=shown_due()))
    assert created.decision is not None
    shown = {
        name: due_text(created.decision.targets[name].due, DUE_FIELDS["due_format"][name])
        for name in ("first_response", "restoration", "next_update")
    }
    service.ingest(snapshot(updated_at=clock.now, shown=shown_due(**shown)))
    result = service.reclassify("zendesk", "1001", "P1", "ana", "region down", "slack")
    assert "set_due_fields" in result.enqueued
    owed = due_items(migrated)[-1]
    assert owed.done_at is None
    assert owed.payload["fields"]["restoration"] == due_text(
        result.decision.targets["restoration"].due
    )


def test_due_fields_of_a_helpdesk_without_them_are_left_to_its_connector(
    service: TicketService, migrated: Engine, clock: FakeClock
) -> None:
    result = service.ingest(snapshot(source="jira", external_key="SUP-1"))
    with Session(migrated) as session, session.begin():
        session.add(
            OutboxItem(
                target_system="jira",
                ticket_id=result.ticket_id,
                kind="set_due_fields",
                payload={"fields": {"duedate": "2026-11-17"}},
                idempotency_key="jira:SUP-1:set_due_fields:own",
                attempts=0,
                next_attempt_at=clock.now,
                created_at=clock.now,
            )
        )
    clock.now += timedelta(minutes=1)
    later = service.ingest(
        snapshot(source="jira", external_key="SUP-1", updated_at=clock.now, status="pending")
    )
    assert "set_due_fields" not in later.enqueued
    (item,) = due_items(migrated)
    assert (item.done_at, item.last_error) == (None, None)


@pytest.mark.parametrize(
    ("shown", "message"),
    [
        ({"due": ["first_response"]}, "must map each due-date field"),
        ({"due": {"sla_due": None}}, "holds target 'sla_due'"),
        (
            {"due": {"x": None}, "due_format": {"x": {"target": "restoration", "format": "t"}}},
            "format 't'",
        ),
        (
            {"due": {"restoration": None}, "due_format": {"restoration": {"zone": "Mars/Base"}}},
            "unknown time zone",
        ),
    ],
)
def test_malformed_due_fields_store_nothing(
    service: TicketService, migrated: Engine, shown: dict[str, Any], message: str
) -> None:
    with pytest.raises(IngestError, match=message):
        service.ingest(snapshot(shown=shown))
    assert count(migrated, StoredTicket) == 0
