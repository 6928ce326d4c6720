"""``TicketService.ingest_many`` leaves exactly the state ``ingest`` one by one leaves, on
SQLite and PostgreSQL: the same tickets, history, decisions, marks and owed writes, the same
outcome per snapshot, failing snapshots reported and the others stored.

Each example ingests the same snapshots twice into one database, under two sources: one by
one under the first, as a batch under the second; every stored row is then compared with
the source (and the surrogate ids, which a rolled-back insert spends on PostgreSQL) taken
out.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bot.compiled import Policy
from slabot.policy_files import BUNDLED_POLICIES, load_policy
from slabot.store import ingest_batch
from slabot.store.models import OutboxItem, StoredDecision, StoredTicket, TargetMark, TicketEvent
from slabot.store.services import IngestResult, Snapshot, StatusChange, TicketService

START = datetime(2026, 11, 16, 17, 0, tzinfo=UTC)  # Monday 09:00 in Los Angeles
PARIS_WINTER = timezone(timedelta(hours=1))
_sources = itertools.count()


@pytest.fixture(scope="module")
def policies() -> dict[str, Policy]:
    return {
        name: load_policy(BUNDLED_POLICIES / f"{name}.yaml")
        for name in ("zoom", "cloudtalk", "zmanda")
    }


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
    return fields


def stored_state(engine: Engine, source: str) -> dict[str, Any]:
    """Every row the source's tickets hold, ids and the source itself taken out; history and
    owed writes per ticket in the order they were stored."""

    def plain(value: Any) -> Any:
        return value.replace(f"{source}:", "S:") if isinstance(value, str) else value

    def columns(row: Any, *leave_out: str) -> tuple[Any, ...]:
        return tuple(
            plain(getattr(row, column.key))
            for column in row.__table__.columns
            if column.key not in ("id", "ticket_id", "source", "target_system", *leave_out)
        )

    with Session(engine) as session:
        tickets = {
            row.id: row
            for row in session.scalars(select(StoredTicket).where(StoredTicket.source == source))
        }
        name = {ticket_id: row.external_key for ticket_id, row in tickets.items()}
        ids = list(tickets)
        state: dict[str, Any] = {
            "tickets": sorted(columns(row) for row in tickets.values()),
            "events": [
                (name[e.ticket_id], *columns(e))
                for e in session.scalars(
                    select(TicketEvent)
                    .where(TicketEvent.ticket_id.in_(ids))
                    .order_by(TicketEvent.ticket_id, TicketEvent.id)
                )
            ],
            "decisions": sorted(
                (name[d.ticket_id], *columns(d))
                for d in session.scalars(
                    select(StoredDecision).where(StoredDecision.ticket_id.in_(ids))
                )
            ),
            "marks": sorted(
                (name[m.ticket_id], *columns(m, "external_key"))
                for m in session.scalars(select(TargetMark).where(TargetMark.ticket_id.in_(ids)))
            ),
            "outbox": [
                (name[o.ticket_id or 0], *columns(o))
                for o in session.scalars(
                    select(OutboxItem)
                    .where(OutboxItem.ticket_id.in_(ids))
                    .order_by(OutboxItem.ticket_id, OutboxItem.id)
                )
            ],
        }
    # Per ticket in storing order, whatever order the tickets' ids came in.
    state["events"].sort(key=lambda entry: entry[0])
    state["outbox"].sort(key=lambda entry: entry[0])
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
) -> tuple[list[Any], list[Any]]:
    """Ingest ``before`` one by one under two fresh sources, then ``batch`` one by one under
    the first and with ``ingest_many`` under the second; assert both stored the same.
    Returns both outcomes."""
    number = next(_sources)
    sources = (f"seq{number}", f"bat{number}")
    outcomes = []
    for side, source in enumerate(sources):
        clock = TickingClock(START + timedelta(days=3))
        service = TicketService(engine, policies, clock if ticking else clock.standing)
        made = [Snapshot(source=source, **fields) for fields in before]
        one_by_one(service, made)
        items = [Snapshot(source=source, **fields) for fields in batch]
        if side == 0:
            results = one_by_one(service, items)
        else:
            results = (batched or TicketService.ingest_many)(service, items)
        outcomes.append([outcome(result, source) for result in results])
    assert outcomes[1] == outcomes[0]
    assert stored_state(engine, sources[1]) == stored_state(engine, sources[0])
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


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
def test_the_generated_batches_hold_what_the_comparison_must_cover(
    migrated: Engine, policies: dict[str, Policy]
) -> None:
    """Not a vacuous property: the same kinds of snapshot, drawn once, do reach every path
    (created, updated, unchanged, stale, refused before and by the engine, notes owed)."""
    seen: set[str] = set()
    drawn = snapshots()
    for _ in range(80):
        before = [drawn.example() for _ in range(3)]
        batch = [drawn.example() for _ in range(8)]
        batch.append(batch[-1])
        _, results = compare(migrated, policies, before, batch)
        for result in results:
            if isinstance(result, tuple):
                seen.add("refused")
            else:
                seen.add(result.outcome)
                if result.warnings:
                    seen.add("note owed")
        if len(seen) == 6:
            break
    assert seen == {"created", "updated", "unchanged", "stale", "refused", "note owed"}


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
            results, _ = compare(migrated, policies, [], batch, ticking=False)
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
