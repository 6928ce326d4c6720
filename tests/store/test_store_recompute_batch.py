"""The batched recompute stores exactly what the per-ticket rules store, on SQLite and
PostgreSQL: the same tickets are recomputed both ways against an edited policy and every
table is compared (decisions, marks, history, outbox), with owed, sent-but-not-echoed and
superseded writes, missing and stale marks, missing decisions, unknown plans and values, a
helpdesk with due-date fields, and batches small enough to page many times."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, Table, delete, select, update
from sqlalchemy.orm import Session
from store_support import MONDAY_0900_LA, FakeClock, snapshot

from bot.compiled import Policy
from bot.engine import evaluate
from bot.errors import SlabotError
from bot.ticket import SOLVED_STATUSES
from slabot.policy_files import BUNDLED_POLICIES, load_policy
from slabot.store.db import for_writing
from slabot.store.models import OutboxItem, StoredDecision, StoredTicket, TargetMark, TicketEvent
from slabot.store.outbox import Outbox
from slabot.store.services import (
    Recomputed,
    TicketService,
    decision_changes,
    engine_ticket,
    row_snapshot,
)

ZONES = ("America/Los_Angeles", "Europe/Paris", "Asia/Kolkata", "Mars/Olympus_Mons", None)
PLANS = ("standard", "premier", "premier", "premier_elite", "premier_plus", "gold", None)
STATUSES = ("new", "open", "open", "pending", "on_hold", "solved")
JIRA_DUE = {
    "due": {"customfield_1": None, "customfield_2": "2026-11-20T17:00:00Z"},
    "due_format": {
        "customfield_1": {"target": "first_response"},
        "customfield_2": {"target": "restoration", "format": "date", "zone": "Europe/Paris"},
    },
}


def edited(data: dict[str, Any]) -> None:
    """A policy edit that moves due dates, priorities, tags and plans."""
    data["plans"]["premier"]["targets"]["P2"]["first_response"] = "6h"
    data["classification"]["environment"]["cap"] = "P3"
    del data["plans"]["premier_elite"]


def edited_policy(tmp_path: Any, change: Callable[[dict[str, Any]], None]) -> Policy:
    import yaml

    data = yaml.safe_load((BUNDLED_POLICIES / "zoom.yaml").read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / "zoom-edited.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_policy(path)


def store_tickets(engine: Engine, seed: int, clock: FakeClock) -> None:
    """Tickets ingested under the bundled zoom policy, some writes sent, marks and decisions
    then damaged the ways a store can hold them (lost, stale, left over)."""
    rng = random.Random(seed)
    zoom = load_policy(BUNDLED_POLICIES / "zoom.yaml")
    service = TicketService(engine, {"zoom": zoom}, clock)
    for number in range(1, 41):
        created = MONDAY_0900_LA - timedelta(minutes=rng.randrange(0, 5 * 24 * 60))
        status = rng.choice(STATUSES)
        jira = rng.random() < 0.25
        shown: dict[str, Any] = {"priority": rng.choice(["P1", "P2", "P3", "P4", None])}
        if rng.random() < 0.5:
            shown["tags"] = rng.sample(["sla_unknown_plan", "env_missing", "other"], 2)
        if jira:
            shown.update(JIRA_DUE)
        fields: dict[str, Any] = {
            "source": "jira" if jira else "zendesk",
            "external_key": str(number),
            "created_at": created,
            "updated_at": created + timedelta(minutes=1),
            "status": status,
            "plan": rng.choice(PLANS),
            "priority": rng.choice(["P1", "P2", "P3", "P4", "P9", None]),
            "environment": rng.choice(["production", "staging", None]),
            "customer_timezone": rng.choice(ZONES),
            "customer_country": rng.choice(["US", "FR", "XX", None]),
            "shown": shown,
        }
        if status == "solved":
            fields["solved_at"] = created + timedelta(minutes=30)
        if rng.random() < 0.5:
            fields["first_response_at"] = created + timedelta(minutes=rng.randrange(1, 600))
        service.ingest(snapshot(**fields))
    clock.now += timedelta(minutes=5)
    Outbox(engine, clock).flush("zendesk", lambda item: None, "w1")  # sent, not echoed
    clock.now += timedelta(minutes=5)
    for number in range(1, 41, 3):  # newer snapshots: some writes owed again, or moot
        key = str(number)
        with Session(engine) as session:
            row = session.scalars(
                select(StoredTicket).where(StoredTicket.external_key == key)
            ).one()
            if row.source != "zendesk" or row.status in SOLVED_STATUSES:
                continue
        service.ingest(
            snapshot(
                external_key=key,
                created_at=row.created_at,
                updated_at=clock.now,
                status=row.status,
                plan=row.plan,
                priority=row.priority,
                environment=row.environment,
                shown={"priority": rng.choice(["P2", "P3"])},
            )
        )
    with Session(engine) as session, session.begin():
        ids = sorted(session.scalars(select(StoredTicket.id)))
        lost_marks, stale_marks, lost_decisions = (rng.sample(ids, 6) for _ in range(3))
        session.execute(delete(TargetMark).where(TargetMark.ticket_id.in_(lost_marks)))
        session.execute(
            update(TargetMark)
            .where(TargetMark.ticket_id.in_(stale_marks))
            .values(at=MONDAY_0900_LA, cycle_started_at=MONDAY_0900_LA)
        )
        session.execute(delete(StoredDecision).where(StoredDecision.ticket_id.in_(lost_decisions)))


def per_ticket(service: TicketService, session: Session, policy_name: str) -> list[Recomputed]:
    """The per-ticket path: each ticket evaluated and stored by the service's own rules."""
    policy = service.policies[policy_name]
    now = service.now()
    results = []
    rows = session.scalars(
        select(StoredTicket)
        .where(StoredTicket.policy == policy_name, StoredTicket.status.not_in(SOLVED_STATUSES))
        .order_by(StoredTicket.id)
    ).all()
    for row in rows:
        name = f"{row.source}:{row.external_key}"
        try:
            decision = evaluate(engine_ticket(row), policy, now)
        except SlabotError as error:
            results.append(Recomputed(row.id, name, (), str(error)))
            continue
        old = session.get(StoredDecision, row.id)
        results.append(Recomputed(row.id, name, tuple(decision_changes(old, decision, now))))
        previous = old.priority if old is not None else None
        if previous != decision.priority:
            session.add(
                TicketEvent(
                    ticket_id=row.id,
                    kind="priority_changed",
                    occurred_at=now,
                    recorded_at=now,
                    actor="slabot",
                    origin="policy",
                    reason=f"policy {policy_name} recomputed",
                    payload={"field": "final", "from": previous, "to": decision.priority},
                )
            )
        service.store_decision(session, row, policy, decision, now)
        service.enqueue_writes(session, row, row_snapshot(row, now), decision, now)
        service.note_unplaced(session, row, policy, decision, now)
    session.flush()
    return results


def tables(session: Session) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tables a recompute writes, without surrogate ids, in a stable order."""

    def read(model: type[Any], drop: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
        table: Table = model.__table__
        columns = [c for c in table.columns if c.name not in drop]
        found = [tuple(row) for row in session.execute(select(*columns))]
        return sorted(found, key=repr)

    return {
        "tickets": read(StoredTicket),
        "decisions": read(StoredDecision),
        "marks": read(TargetMark),
        "events": read(TicketEvent, drop=("id",)),
        "outbox": read(OutboxItem, drop=("id",)),
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_batched_recompute_stores_what_the_per_ticket_rules_store(
    migrated: Engine, tmp_path: Any, seed: int
) -> None:
    clock = FakeClock(MONDAY_0900_LA)
    store_tickets(migrated, seed, clock)
    clock.now += timedelta(hours=rng_hours(seed))
    policy = edited_policy(tmp_path, edited)
    # One threshold more than the tickets were stored with: every open clock gains a mark.
    service = TicketService(migrated, {"zoom": policy}, clock, thresholds=(0.5, 0.75, 1.0))

    with Session(for_writing(migrated)) as session, session.begin():
        expected_results = per_ticket(service, session, "zoom")
        expected = tables(session)
        session.rollback()
    with Session(migrated) as session:
        before = tables(session)
    assert expected != before  # the edit changes something

    dry = list(service.recompute("zoom", dry_run=True, batch_size=7))
    with Session(migrated) as session:
        assert tables(session) == before
    applied = list(service.recompute("zoom", batch_size=7))
    assert dry == applied == expected_results
    assert any(r.error for r in applied) or any(r.changes for r in applied)
    with Session(migrated) as session:
        after = tables(session)
    for name in expected:
        assert after[name] == expected[name], name
    # And again: nothing left to change, the same as the per-ticket rules would find.
    clock.now += timedelta(minutes=1)
    with Session(for_writing(migrated)) as session, session.begin():
        again_expected = per_ticket(service, session, "zoom")
        expected = tables(session)
        session.rollback()
    assert list(service.recompute("zoom", batch_size=11)) == again_expected
    with Session(migrated) as session:
        assert tables(session) == expected


def rng_hours(seed: int) -> int:
    """How long after the tickets were stored the recompute runs (clocks run out meanwhile)."""
    return (0, 2, 26, 49)[seed]


def test_a_batch_with_a_ticket_the_policy_cannot_evaluate_stores_the_others(
    migrated: Engine, tmp_path: Any
) -> None:
    clock = FakeClock(MONDAY_0900_LA)
    store_tickets(migrated, 4, clock)
    with Session(migrated) as session, session.begin():
        (victim,) = session.scalars(
            select(StoredTicket.id)
            .where(StoredTicket.status.not_in(SOLVED_STATUSES))
            .order_by(StoredTicket.id)
            .limit(1)
        )
        # A year no calendar computes in: evaluate refuses the ticket (CalendarError).
        session.execute(
            update(StoredTicket)
            .where(StoredTicket.id == victim)
            .values(created_at=datetime(999, 6, 1, 12, tzinfo=UTC), plan="premier")
        )
    clock.now += timedelta(hours=3)
    service = TicketService(migrated, {"zoom": edited_policy(tmp_path, edited)}, clock)
    with Session(for_writing(migrated)) as session, session.begin():
        expected_results = per_ticket(service, session, "zoom")
        expected = tables(session)
        session.rollback()
    results = list(service.recompute("zoom", batch_size=5))
    assert results == expected_results
    assert [r.ticket_id for r in results if r.error] == [victim]
    with Session(migrated) as session:
        assert tables(session) == expected


def test_recompute_reads_no_more_than_one_batch_at_a_time(
    migrated: Engine, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slabot.store import recompute as module

    clock = FakeClock(MONDAY_0900_LA)
    store_tickets(migrated, 5, clock)
    service = TicketService(migrated, {"zoom": edited_policy(tmp_path, edited)}, clock)
    sizes: list[int] = []
    real = module.evaluate_many

    def counted(tickets: Any, policy: Policy, now: datetime) -> Any:
        sizes.append(len(tickets))
        return real(tickets, policy, now)

    monkeypatch.setattr(module, "evaluate_many", counted)
    results = list(service.recompute("zoom", batch_size=4))
    assert max(sizes) == 4 and sum(sizes) == len(results) == module.open_tickets(migrated, "zoom")
    assert [r.ticket_id for r in results] == sorted(r.ticket_id for r in results)
