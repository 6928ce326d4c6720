"""``TicketService.ingest_many`` leaves exactly the state ``ingest`` one by one leaves, on
SQLite and PostgreSQL: the same tickets, history, decisions, marks, owed writes and clock
outcomes, the same outcome per snapshot, failing snapshots reported and the others stored,
with and without routing rules (tickets moving between policies as their attributes change).

Each example ingests the same snapshots twice into one database, under two sources: one by
one under the first, as a batch under the second; every stored row of every table is then
compared with the source (and the surrogate ids, which a rolled-back insert spends on
PostgreSQL) taken out.
"""

from __future__ import annotations

import collections
import itertools
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, inspect, select
from sqlalchemy.orm import Session
from store_support import zoom_with_metrics

from bot.compiled import Policy
from bot.engine import evaluate
from bot.routing import Router, RoutingSpec
from bot.ticket import Ticket
from slabot.policy_files import BUNDLED_POLICIES, load_policy
from slabot.store import ingest_batch
from slabot.store.models import Base, ClockOutcome, StoredDecision, StoredTicket, TicketEvent
from slabot.store.services import TicketService
from slabot.store.snapshot import IngestResult, Snapshot, StatusChange

START = datetime(2026, 11, 16, 17, 0, tzinfo=UTC)  # Monday 09:00 in Los Angeles
PARIS_WINTER = timezone(timedelta(hours=1))
_sources = itertools.count()


@pytest.fixture(scope="module")
def policies() -> dict[str, Policy]:
    return {
        name: load_policy(BUNDLED_POLICIES / f"{name}.yaml")
        for name in ("zoom", "cloudtalk", "zmanda")
    }


ROUTING = RoutingSpec.model_validate(
    {
        "rules": [
            {"name": "zmanda-brand", "policy": "zmanda", "when": {"brand": "2"}},
            {"name": "cloudtalk-tagged", "policy": "cloudtalk", "when": {"tags": ["ct"]}},
            {"name": "zoom", "policy": "zoom", "default": True},
        ]
    }
)
"""Rules on attributes the generated snapshots change from one to the next (the test's
sources are neither zendesk nor jira: rules on ``source`` would never match)."""


@pytest.fixture(scope="module")
def router(policies: dict[str, Policy]) -> Router:
    return Router(ROUTING, policies)


class TickingClock:
    """A second later at every reading: both ways of ingesting must read it as often."""

    def __init__(self, start: datetime) -> None:
        self.at = start

    def __call__(self) -> datetime:
        self.at += timedelta(seconds=1)
        return self.at

    def standing(self) -> datetime:
        return self.at


def instants(lowest: int = 0, highest: int = 72 * 60) -> st.SearchStrategy[datetime]:
    """Minutes after START, written in UTC or with a +01:00 offset (stored as UTC)."""
    return st.builds(
        lambda minutes, zone: (START + timedelta(minutes=minutes)).astimezone(zone),
        st.integers(lowest, highest),
        st.sampled_from([UTC, PARIS_WINTER]),
    )


TAGS = ["sla_environment_unconfirmed", "sla_p1_not_by_phone", "sla_no_target_beta", "vip"]


@st.composite
def snapshots(draw: st.DrawFn) -> dict[str, Any]:
    """A snapshot's fields (source left out), from valid to refused: unknown plans and
    values, time zones the engine cannot use, a solved ticket without ``solved_at``."""
    key = draw(st.sampled_from(["1", "2", "3"]))
    created = START + timedelta(hours=int(key))
    status = draw(st.sampled_from(["new", "open", "pending", "on_hold", "solved", "closed"]))
    solved = status in ("solved", "closed")
    fields: dict[str, Any] = {
        "external_key": key,
        "policy": draw(st.sampled_from(["zoom", "zoom", "cloudtalk", "zmanda"])),
        "created_at": created,
        "updated_at": draw(instants(int(key) * 60, 72 * 60)),
        "status": status,
        "priority": draw(st.sampled_from([None, "P1", "P2", "P3", "P4"])),
        "plan": draw(st.sampled_from([None, "premier", "standard", "professional", "gold"])),
        "environment": draw(st.sampled_from([None, "production", "staging"])),
        "channel": draw(st.sampled_from([None, "phone", "email"])),
        "product_stage": draw(st.sampled_from([None, None, "beta"])),
        "customer_timezone": draw(st.sampled_from([None, None, "Europe/Paris", "Mars/Olympus"])),
        "urgency": draw(st.sampled_from([None, "high", "low"])),
        "impact": draw(st.sampled_from([None, "medium"])),
        "first_response_at": draw(st.none() | instants(int(key) * 60 + 5, 72 * 60)),
        "last_agent_update_at": draw(st.none() | instants(int(key) * 60 + 5, 72 * 60)),
        "solved_at": draw(instants(int(key) * 60, 72 * 60)) if solved else None,
        "actor": draw(st.sampled_from([None, "agent@example.com"])),
    }
    if solved and draw(st.integers(0, 9)) == 0:
        fields["solved_at"] = None  # refused before anything is read
    shown: dict[str, Any] = {
        "priority": draw(st.sampled_from([None, "P1", "P2", "P3"])),
        "tags": draw(st.lists(st.sampled_from(TAGS), max_size=2, unique=True)),
    }
    if draw(st.booleans()):
        shown["due"] = {"first_response": draw(st.sampled_from([None, "2026-11-16T21:00:00Z"]))}
    fields["shown"] = shown
    history = draw(
        st.lists(
            st.builds(
                StatusChange,
                at=instants(int(key) * 60 - 30, 72 * 60),
                to=st.sampled_from(["open", "pending", "solved", "open", "deleted"]),
                key=st.sampled_from(["a1", "a2", "a3", "a4", "a5"]),
            ),
            max_size=4,
        )
    )
    fields["status_history"] = tuple(history)
    for replies in ("agent_replies", "customer_replies"):  # they only ever add up
        drawn = draw(st.lists(instants(int(key) * 60 + 5, 72 * 60), max_size=2))
        fields[replies] = tuple(sorted(drawn))
    routing: dict[str, Any] = {}
    brand = draw(st.sampled_from([None, "2", "7"]))
    if brand is not None:
        routing["brand"] = brand
    tags = draw(st.lists(st.sampled_from(["ct", "vip"]), max_size=2, unique=True))
    if tags:
        routing["tags"] = tags
    fields["routing"] = routing  # empty: the stored routing attributes stay
    return fields


ORDERED = {"ticket_events", "outbox"}
"""Tables compared per ticket in the order their rows were stored (by id)."""
NO_TICKET_ROWS = {"alembic_version", "webhook_deliveries", "poll_cursors"}
"""Tables that hold no row of a ticket: ingest writes nothing there."""


def stored_state(engine: Engine, source: str) -> dict[str, Any]:
    """Every row the source's tickets hold, in every table, ids and the source itself taken
    out; history and owed writes per ticket in the order they were stored. A table that is
    neither the tickets', nor keyed by ticket, nor listed in ``NO_TICKET_ROWS`` fails the
    comparison: a new table must be compared, or said to hold no ticket's rows."""
    tables = set(inspect(engine).get_table_names())
    assert tables == {*Base.metadata.tables, "alembic_version"}, "migrations and models differ"
    left_out = ("id", "ticket_id", "source", "target_system")

    def plain(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        # A reclassification's note is keyed by its history entry's (surrogate) id.
        return re.sub(r":event-\d+$", ":event-N", value.replace(f"{source}:", "S:"))

    def columns(row: Any) -> tuple[Any, ...]:
        return tuple(plain(value) for key, value in row._mapping.items() if key not in left_out)

    tickets = StoredTicket.__table__
    with engine.connect() as connection:
        stored = connection.execute(select(tickets).where(tickets.c.source == source)).all()
        name = {row.id: row.external_key for row in stored}
        ids = list(name)
        state: dict[str, Any] = {"tickets": sorted((columns(row) for row in stored), key=repr)}
        for table in Base.metadata.sorted_tables:
            if table is tickets:
                continue
            if "ticket_id" not in table.c:
                assert table.name in NO_TICKET_ROWS, (
                    f"table {table.name} is not compared: compare it, or add it to "
                    "NO_TICKET_ROWS if no ticket's rows are stored there"
                )
                continue
            query = select(table).where(table.c.ticket_id.in_(ids))
            if table.name in ORDERED:
                query = query.order_by(table.c.ticket_id, table.c.id)
            rows = [(name[row.ticket_id], *columns(row)) for row in connection.execute(query)]
            # Per ticket in storing order, whatever order the tickets' ids came in.
            if table.name in ORDERED:
                rows.sort(key=lambda entry: entry[0])
            else:
                rows.sort(key=repr)
            state[table.name] = rows
    assert set(state) | NO_TICKET_ROWS == tables
    return state


def outcome(value: IngestResult | Exception, source: str) -> Any:
    """A result without its ticket id; an error as its type and message."""
    if isinstance(value, Exception):
        # The first line: a driver's message goes on with the statement and its parameters.
        return (type(value).__name__, str(value).replace(source, "S").splitlines()[0])
    return replace(value, ticket_id=0)


def one_by_one(service: TicketService, batch: list[Snapshot]) -> list[Any]:
    results: list[Any] = []
    for item in batch:
        try:
            results.append(service.ingest(item))
        except Exception as error:
            results.append(error)
    return results


def compare(
    engine: Engine,
    policies: dict[str, Policy],
    before: list[dict[str, Any]],
    batch: list[dict[str, Any]],
    *,
    batched: Callable[[TicketService, list[Snapshot]], list[Any]] | None = None,
    ticking: bool = True,
    router: Router | None = None,
    prepare: Callable[[TicketService, str], None] | None = None,
    falls_back: bool = False,
) -> tuple[list[Any], list[Any]]:
    """Ingest ``before`` one by one under two fresh sources (then ``prepare`` each), then
    ``batch`` one by one under the first and with ``ingest_many`` under the second; assert
    both stored the same, and that the batch was applied in bulk (unless ``falls_back``:
    the fallback through ``ingest`` would store the same and prove nothing of the bulk
    path). Returns both outcomes."""
    number = next(_sources)
    sources = (f"seq{number}", f"bat{number}")
    outcomes = []
    fallbacks: list[int] = []
    real = ingest_batch._one_by_one

    def counted(service: TicketService, items: list[tuple[int, Snapshot]]) -> dict[int, Any]:
        fallbacks.append(len(items))
        return real(service, items)

    for side, source in enumerate(sources):
        clock = TickingClock(START + timedelta(days=3))
        service = TicketService(
            engine, policies, clock if ticking else clock.standing, router=router
        )
        made = [Snapshot(source=source, **fields) for fields in before]
        one_by_one(service, made)
        if prepare is not None:
            prepare(service, source)
        items = [Snapshot(source=source, **fields) for fields in batch]
        if side == 0:
            results = one_by_one(service, items)
        else:
            ingest_batch._one_by_one = counted  # type: ignore[assignment]
            try:
                results = (batched or TicketService.ingest_many)(service, items)
            finally:
                ingest_batch._one_by_one = real  # type: ignore[assignment]
        outcomes.append([outcome(result, source) for result in results])
    assert outcomes[1] == outcomes[0]
    assert stored_state(engine, sources[1]) == stored_state(engine, sources[0])
    assert bool(fallbacks) == falls_back, f"the bulk path fell back: {fallbacks}"
    return outcomes[0], outcomes[1]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    before=st.lists(snapshots(), max_size=4),
    batch=st.lists(snapshots(), max_size=10),
    again=st.booleans(),
)
def test_a_batch_stores_what_ingesting_one_by_one_stores(
    migrated: Engine,
    policies: dict[str, Policy],
    before: list[dict[str, Any]],
    batch: list[dict[str, Any]],
    again: bool,
) -> None:
    if again and batch:
        batch = [*batch, batch[0]]  # a snapshot read twice: unchanged (or stale) the second time
    compare(migrated, policies, before, batch)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    before=st.lists(snapshots(), max_size=4),
    batch=st.lists(snapshots(), max_size=10),
    again=st.booleans(),
)
def test_a_batch_under_routing_rules_stores_what_ingesting_one_by_one_stores(
    migrated: Engine,
    policies: dict[str, Policy],
    router: Router,
    before: list[dict[str, Any]],
    batch: list[dict[str, Any]],
    again: bool,
) -> None:
    """The rules choose each snapshot's policy from its brand and tags, which change from
    one snapshot of a ticket to the next: tickets move between policies (``policy_changed``,
    the managed tags of all three policies), within the batch and from before it."""
    if again and batch:
        batch = [*batch, batch[0]]
    compare(migrated, policies, before, batch, router=router)


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
def test_the_generated_batches_hold_what_the_comparison_must_cover(
    migrated: Engine, policies: dict[str, Policy], router: Router
) -> None:
    """Not a vacuous property: the same kinds of snapshot, drawn once, do reach every path
    (created, updated, unchanged, stale, refused before and by the engine, notes owed;
    under the rules, tickets moved to another policy; stored clock cycles added, changed
    and removed by the bulk path)."""
    seen: set[str] = set()
    drawn = snapshots()
    wanted = {
        "created",
        "updated",
        "unchanged",
        "stale",
        "refused",
        "note owed",
        "moved",
        "cycle added",
        "cycle changed",
        "cycle removed",
    }
    real = ingest_batch._plan_outcomes

    def spying(stored: Any, plan: Any, ticket: Any, policy: Policy, decision: Any) -> None:
        real(stored, plan, ticket, policy, decision)
        for label, written in (
            ("cycle added", plan.needs_id),
            ("cycle changed", plan.updates),
            ("cycle removed", plan.deletes),
        ):
            if any(table is ingest_batch._OUTCOMES for table, _ in written):
                seen.add(label)

    ingest_batch._plan_outcomes = spying  # type: ignore[assignment]
    try:
        for attempt in range(160):
            before = [drawn.example() for _ in range(3)]
            batch = [drawn.example() for _ in range(8)]
            batch.append(batch[-1])
            routed = router if attempt % 2 else None
            _, results = compare(migrated, policies, before, batch, router=routed)
            for result in results:
                if isinstance(result, tuple):
                    seen.add("refused")
                else:
                    seen.add(result.outcome)
                    if result.warnings:
                        seen.add("note owed")
                    if "policy_changed" in result.events:
                        seen.add("moved")
            if seen == wanted:
                break
    finally:
        ingest_batch._plan_outcomes = real  # type: ignore[assignment]
    assert seen == wanted


def test_the_same_ticket_twice_in_a_batch_is_applied_in_order(
    migrated: Engine, policies: dict[str, Policy]
) -> None:
    base = {
        "external_key": "7",
        "policy": "zoom",
        "created_at": START,
        "priority": "P2",
        "plan": "premier",
        "environment": "production",
        "channel": "phone",
    }
    batch = [
        {**base, "updated_at": START, "status": "new"},
        {**base, "updated_at": START + timedelta(hours=1), "status": "pending"},
        {**base, "updated_at": START + timedelta(minutes=30), "status": "open"},  # stale
        {**base, "updated_at": START + timedelta(hours=2), "status": "open"},
    ]
    results, _ = compare(migrated, policies, [], batch)
    assert [r.outcome for r in results] == ["created", "updated", "stale", "updated"]


def test_a_ticket_the_rules_move_is_stored_under_its_new_policy_by_the_batch(
    migrated: Engine, policies: dict[str, Policy], router: Router
) -> None:
    """Two snapshots of a ticket in one batch, the second with the Zmanda brand: the
    batch stores what ingest does, and that is the move, its rule and the clock cycles."""
    base = {
        "external_key": "5",
        "policy": "",  # the rules decide
        "created_at": START,
        "priority": "P2",
        "plan": "standard",
        "environment": "production",
        "status": "open",
    }
    batch = [
        {**base, "updated_at": START, "routing": {"tags": ["ct"]}},
        {**base, "updated_at": START + timedelta(hours=1), "routing": {"brand": "2"}},
    ]
    results, _ = compare(migrated, policies, [], batch, router=router)
    assert [r.events for r in results] == [("created",), ("policy_changed",)]
    with Session(migrated) as session:
        [row] = session.scalars(
            select(StoredTicket)
            .where(StoredTicket.source.like("bat%"))
            .order_by(StoredTicket.id.desc())
            .limit(1)
        )
        decision = session.get(StoredDecision, row.id)
        assert decision is not None
        assert (row.policy, row.routing) == ("zmanda", {"brand": "2"})
        assert (decision.policy, decision.routing_rule) == ("zmanda", "zmanda-brand")
        [moved] = session.scalars(
            select(TicketEvent).where(
                TicketEvent.ticket_id == row.id, TicketEvent.kind == "policy_changed"
            )
        )
        assert moved.payload == {"from": "cloudtalk", "to": "zmanda", "rule": "zmanda-brand"}
        cycles = session.scalars(select(ClockOutcome).where(ClockOutcome.ticket_id == row.id))
        assert {c.policy for c in cycles} == {"zmanda"}


def test_a_reclassified_ticket_keeps_its_count_and_first_priority_in_the_batch(
    migrated: Engine, policies: dict[str, Policy]
) -> None:
    """The clock cycles count an agent's reclassifications and the priority before the
    first one, read from the history: the batch reads them in bulk, to the same result."""
    base = {
        "external_key": "8",
        "policy": "zoom",
        "created_at": START,
        "priority": "P3",
        "plan": "premier",
        "environment": "production",
        "channel": "email",
        "status": "open",
    }

    def reclassify(service: TicketService, source: str) -> None:
        service.reclassify(source, "8", "P2", "agent@example.com", "outage", "slack")

    results, _ = compare(
        migrated,
        policies,
        [{**base, "updated_at": START}],
        [{**base, "updated_at": START + timedelta(hours=1), "status": "pending"}],
        prepare=reclassify,
    )
    assert results[0].outcome == "updated"
    with Session(migrated) as session:
        counted = session.execute(
            select(ClockOutcome.reclassifications, ClockOutcome.created_priority)
            .join(StoredTicket, StoredTicket.id == ClockOutcome.ticket_id)
            .where(StoredTicket.source.like("bat%"), StoredTicket.external_key == "8")
        ).all()
    assert counted and set(counted) == {(1, "P3")}


def test_a_snapshot_the_engine_cannot_evaluate_is_reported_and_the_others_stored(
    migrated: Engine, policies: dict[str, Policy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine refuses a ticket (here: one on channel ``refuse-me``, by a stand-in for
    a policy that cannot place it): that snapshot stores nothing, a stored ticket stays as
    it was, and the others of the batch are stored."""
    from bot import engine
    from bot.errors import TicketError
    from slabot.store import services

    def refusing(ticket: Any, policy: Policy, now: datetime) -> Any:
        if ticket.channel == "refuse-me":
            raise TicketError("field 'channel' is 'refuse-me'; the policy cannot place it")
        return engine.evaluate(ticket, policy, now)

    monkeypatch.setattr(services, "evaluate", refusing)
    monkeypatch.setattr(ingest_batch, "evaluate", refusing)
    good = {
        "policy": "zoom",
        "created_at": START,
        "updated_at": START,
        "priority": "P2",
        "plan": "premier",
        "environment": "production",
        "channel": "phone",
    }
    batch = [
        {**good, "external_key": "1"},
        {**good, "external_key": "2", "channel": "refuse-me", "status": "pending"},
        {**good, "external_key": "3"},
    ]
    # The second one is already stored: refused, it must stay as it was.
    before = [{**good, "external_key": "2", "updated_at": START - timedelta(minutes=1)}]
    results, _ = compare(migrated, policies, before, batch)
    assert results[0].outcome == "created" and results[2].outcome == "created"
    assert results[1][0] == "IngestError" and "refuse-me" in results[1][1]


def test_a_batch_the_bulk_path_cannot_write_is_applied_one_by_one(
    migrated: Engine, policies: dict[str, Policy], caplog: pytest.LogCaptureFixture
) -> None:
    """A snapshot whose ``shown`` cannot be stored as JSON fails when the batch is written:
    the batch is rolled back and applied one snapshot at a time, so that snapshot gets its
    own error and the others are stored, as ingesting one by one would."""
    good = {
        "policy": "zoom",
        "created_at": START,
        "updated_at": START,
        "priority": "P2",
        "plan": "premier",
        "environment": "production",
        "channel": "phone",
    }
    batch = [
        {**good, "external_key": "1"},
        {**good, "external_key": "2", "shown": {"priority": "P2", "tags": {object()}}},
        {**good, "external_key": "3"},
    ]
    calls: list[int] = []
    real = ingest_batch._one_by_one

    def counted(service: TicketService, items: list[tuple[int, Snapshot]]) -> dict[int, Any]:
        calls.append(len(items))
        return real(service, items)

    ingest_batch._one_by_one = counted  # type: ignore[assignment]
    try:
        with caplog.at_level("INFO", logger="slabot.store.ingest_batch"):
            # The attempt read the clock too: a clock that stands still, for this comparison.
            results, _ = compare(migrated, policies, [], batch, ticking=False, falls_back=True)
    finally:
        ingest_batch._one_by_one = real  # type: ignore[assignment]
    assert calls == [3]
    assert "applying them one by one" in caplog.text
    assert results[0].outcome == "created" and results[2].outcome == "created"
    assert isinstance(results[1], tuple) and results[1][0] != "IngestResult"


def test_a_batch_reads_in_bulk(migrated: Engine, policies: dict[str, Policy]) -> None:
    """The point of the batch: statements per batch, not per snapshot (a page of 200
    stored tickets, each with a status history, takes the same few reads as one)."""
    from sqlalchemy import event

    service = TicketService(migrated, policies, TickingClock(START + timedelta(days=3)))

    def page(minutes: int) -> list[Snapshot]:
        return [
            Snapshot(
                source="bulk",
                external_key=str(number),
                policy="zoom",
                created_at=START,
                updated_at=START + timedelta(minutes=minutes),
                status="pending" if minutes else "open",
                priority="P2",
                plan="premier",
                shown={"priority": "P3"},
                status_history=(
                    StatusChange(START + timedelta(minutes=minutes), "pending", f"k{minutes}"),
                ),
            )
            for number in range(200)
        ]

    assert not any(isinstance(r, Exception) for r in service.ingest_many(page(0)))
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(migrated, "before_cursor_execute", count)
    try:
        results = service.ingest_many(page(10))
    finally:
        event.remove(migrated, "before_cursor_execute", count)
    assert all(isinstance(r, IngestResult) for r in results)
    assert {r.events for r in results} == {("status_changed",)}
    assert len(statements) < 20, collections.Counter(s[:70] for s in statements)


def test_the_plain_cycle_copy_has_every_column() -> None:
    """The batch plans the clock cycles on plain copies of ``clock_outcomes`` rows: a
    column added to the table must be added to the copy, or the batch cannot read it."""
    from dataclasses import fields

    assert [f.name for f in fields(ingest_batch._Cycle)] == [
        column.key for column in ClockOutcome.__table__.columns
    ]


def test_a_snapshot_that_only_adds_a_reply_is_an_update_in_the_batch(
    migrated: Engine, policies: dict[str, Policy]
) -> None:
    """The same state with one more public reply: ``updated`` (the replies are stored and the
    metrics read them), as ``ingest`` says."""
    base = {
        "external_key": "9",
        "policy": "zoom",
        "created_at": START,
        "updated_at": START + timedelta(hours=1),
        "priority": "P2",
        "plan": "premier",
        "environment": "production",
        "status": "open",
    }
    reply = {"customer_replies": (START + timedelta(minutes=30),)}
    results, _ = compare(migrated, policies, [base], [{**base, **reply}])
    assert [r.outcome for r in results] == ["updated"]


def test_a_policy_with_metrics_beyond_the_classic_three_is_ingested_in_bulk(
    migrated: Engine, tmp_path: Any
) -> None:
    """A policy whose plans also set next_reply, agent_work and requester_wait: the batch
    stores what ``ingest`` stores (the classic three targets, which the store's columns and
    CHECKs hold) without falling back to one snapshot at a time."""
    metrics = zoom_with_metrics(tmp_path)
    base = {
        "policy": "zoom-metrics",
        "created_at": START,
        "updated_at": START + timedelta(hours=1),
        "priority": "P2",
        "plan": "premier",
        "environment": "production",
        "status": "open",
    }
    batch = [
        {**base, "external_key": "1", "customer_replies": (START + timedelta(minutes=30),)},
        {
            **base,
            "external_key": "2",
            "first_response_at": START + timedelta(minutes=20),
            "agent_replies": (START + timedelta(minutes=20),),
            "customer_replies": (START + timedelta(minutes=40),),
        },
    ]
    results, _ = compare(migrated, {"zoom-metrics": metrics}, [], batch)
    assert [r.outcome for r in results] == ["created", "created"]
    with Session(migrated) as session:
        targets = set(session.scalars(select(ClockOutcome.target)))
    assert targets and targets <= {"first_response", "restoration", "next_update"}


@pytest.mark.parametrize("later", [False, True])
def test_the_stored_status_history_reaches_the_metrics_that_read_it(
    migrated: Engine, tmp_path: Any, later: bool
) -> None:
    """agent_work and requester_wait read the stored status history, in ``ingest`` and in
    bulk: a pending period (an hour after the creation, for two hours) holds agent_work,
    not requester_wait, as the engine gives with that history. ``later``: the history came
    with an earlier snapshot, the one ingested now carries none."""
    metrics = zoom_with_metrics(tmp_path)
    history = (
        StatusChange(START + timedelta(hours=1), "pending", "a1"),
        StatusChange(START + timedelta(hours=3), "open", "a2"),
    )
    base = {
        "external_key": "1",
        "policy": "zoom-metrics",
        "created_at": START,
        "updated_at": START + timedelta(hours=4),
        "priority": "P2",
        "plan": "premier",
        "environment": "production",
        "status": "open",
        "first_response_at": START + timedelta(minutes=20),
    }
    with_history = {**base, "status_history": history}
    before = [with_history] if later else []
    now = {**base, "updated_at": START + timedelta(hours=5)} if later else with_history
    results, _ = compare(migrated, {"zoom-metrics": metrics}, before, [now])
    result = results[0]
    assert isinstance(result, IngestResult) and result.decision is not None
    ticket = Ticket(
        id="1",
        created_at=START,
        priority="P2",
        plan="premier",
        environment="production",
        first_response_at=START + timedelta(minutes=20),
        status_changes=(
            (START + timedelta(hours=1), "pending"),
            (START + timedelta(hours=3), "open"),
        ),
    )
    expected = evaluate(ticket, metrics, START + timedelta(days=3))
    for name in ("agent_work", "requester_wait"):
        got, want = result.decision.targets[name], expected.targets[name]
        assert (got.due, got.state, got.pauses) == (want.due, want.state, want.pauses)
    # 6 hours on 24x7 from the creation, the 2 hours pending not counted.
    assert result.decision.targets["agent_work"].due == START + timedelta(hours=8)
