"""The batched recompute stores exactly what the per-ticket rules store, on SQLite and
PostgreSQL: the same tickets are recomputed both ways against an edited policy, or routed
again by edited rules to another policy with more metrics, and every table is compared
(tickets, decisions, marks, clock outcomes, history, outbox...), with owed,
sent-but-not-echoed and superseded writes, missing and stale marks, missing decisions,
unknown plans and values, stored replies, a helpdesk with due-date fields, and batches
small enough to page many times."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session
from store_support import MONDAY_0900_LA, FakeClock, snapshot

from bot.compiled import Policy
from bot.engine import evaluate
from bot.errors import SlabotError
from bot.routing import Router, RoutingSpec
from bot.ticket import SOLVED_STATUSES
from slabot.policy_files import BUNDLED_POLICIES, load_policy
from slabot.store.db import for_writing
from slabot.store.history import policy_changed
from slabot.store.models import (
    Base,
    ClockOutcome,
    StoredDecision,
    StoredTicket,
    TargetMark,
    TicketEvent,
)
from slabot.store.outbox import Outbox
from slabot.store.recompute import Recomputed, decision_changes
from slabot.store.rows import engine_ticket, row_snapshot
from slabot.store.services import TicketService

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


def with_metrics(data: dict[str, Any]) -> None:
    """Zoom as another policy whose plans also set the metrics replies drive."""
    data["name"] = "zoom-metrics"
    for plan in data["plans"].values():
        for targets in plan.get("targets", {}).values():
            targets["next_reply"] = "2h"
            targets["agent_work"] = {"after": "6h", "calendar": "24x7"}
            targets["requester_wait"] = "16h"


MOVE_RULES = {
    "rules": [
        {"name": "brand-2", "policy": "zoom-metrics", "when": {"brand": "2"}},
        {"name": "zoom", "policy": "zoom", "default": True},
    ]
}
"""The edited routing: brand 2's tickets move from zoom to zoom-metrics."""


def edited_policy(tmp_path: Any, change: Callable[[dict[str, Any]], None]) -> Policy:
    import yaml

    data = yaml.safe_load((BUNDLED_POLICIES / "zoom.yaml").read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / f"zoom-{change.__name__}.yaml"
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
            "routing": {"brand": rng.choice(["1", "2", "3"])},
        }
        replies = sorted(created + timedelta(minutes=rng.randrange(1, 900)) for _ in range(3))
        if rng.random() < 0.6:
            fields["agent_replies"] = tuple(replies[: rng.randrange(1, 4)])
        if rng.random() < 0.6:
            fields["customer_replies"] = tuple(replies[rng.randrange(0, 3) :])
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


def per_ticket(
    service: TicketService, session: Session, policy_name: str | None
) -> list[Recomputed]:
    """The per-ticket path: each ticket evaluated and stored by the service's own rules
    (``policy_name`` None: routed again by the service's router, a move audited)."""
    now = service.now()
    results = []
    query = select(StoredTicket).where(StoredTicket.status.not_in(SOLVED_STATUSES))
    if policy_name is not None:
        query = query.where(StoredTicket.policy == policy_name)
    for row in session.scalars(query.order_by(StoredTicket.id)).all():
        name = f"{row.source}:{row.external_key}"
        moved = None
        rule: str | bool | None = False
        if policy_name is not None:
            policy = service.policies[policy_name]
        else:
            assert service.router is not None
            found = service.router.route({**(row.routing or {}), "source": row.source})
            policy, rule = service.policies[found.policy], found.rule
            if found.policy != row.policy:
                moved = policy_changed(row.policy, found.policy, found.rule, now)
        try:
            decision = evaluate(engine_ticket(row), policy, now)
        except SlabotError as error:
            results.append(Recomputed(row.id, name, (), str(error)))
            continue
        old = session.get(StoredDecision, row.id)
        changes = decision_changes(old, decision, now)
        if moved is not None:
            changes.insert(0, f"policy {row.policy} -> {policy.name} (rule {rule!r})")
            moved.ticket_id = row.id
            session.add(moved)
            row.policy = policy.name
        results.append(Recomputed(row.id, name, tuple(changes)))
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
                    reason=f"policy {policy.name} recomputed",
                    payload={"field": "final", "from": previous, "to": decision.priority},
                )
            )
        service.store_decision(session, row, policy, decision, now, rule=rule)  # type: ignore[arg-type]
        service.enqueue_writes(session, row, row_snapshot(row, now), decision, now)
        service.note_unplaced(session, row, policy, decision, now)
    session.flush()
    return results


WRITTEN = {"tickets", "decisions", "target_marks", "clock_outcomes", "ticket_events", "outbox"}
"""The tables a recompute writes: each must hold rows for the comparison to mean anything."""


def tables(session: Session) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the schema (none can be left out), without the surrogate
    ids of appended rows, in a stable order."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    for table in Base.metadata.sorted_tables:
        drop = () if table.name == "tickets" else ("id",)
        columns = [c for c in table.columns if c.name not in drop]
        found[table.name] = sorted((tuple(r) for r in session.execute(select(*columns))), key=repr)
    assert set(found) >= WRITTEN and all(found[name] for name in WRITTEN), {
        name: len(found.get(name, ())) for name in WRITTEN
    }
    return found


def assert_same(after: dict[str, list[Any]], expected: dict[str, list[Any]]) -> None:
    assert set(after) == set(expected) == {t.name for t in Base.metadata.sorted_tables}
    for name in expected:
        assert after[name] == expected[name], name


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
        assert_same(tables(session), expected)
    # And again: nothing left to change, the same as the per-ticket rules would find.
    clock.now += timedelta(minutes=1)
    with Session(for_writing(migrated)) as session, session.begin():
        again_expected = per_ticket(service, session, "zoom")
        expected = tables(session)
        session.rollback()
    assert list(service.recompute("zoom", batch_size=11)) == again_expected
    with Session(migrated) as session:
        assert_same(tables(session), expected)


@pytest.mark.parametrize("seed", [1, 2])
def test_the_batched_recompute_by_routing_stores_what_the_per_ticket_rules_store(
    migrated: Engine, tmp_path: Any, seed: int
) -> None:
    clock = FakeClock(MONDAY_0900_LA)
    store_tickets(migrated, seed, clock)  # all under zoom, a third of them on brand 2
    clock.now += timedelta(hours=rng_hours(seed))
    policies = {
        "zoom": edited_policy(tmp_path, edited),
        "zoom-metrics": edited_policy(tmp_path, with_metrics),
    }
    router = Router(RoutingSpec.model_validate(MOVE_RULES), policies)
    service = TicketService(migrated, policies, clock, router=router, thresholds=(0.5, 1.0))

    with Session(for_writing(migrated)) as session, session.begin():
        expected_results = per_ticket(service, session, None)
        expected = tables(session)
        session.rollback()
    with Session(migrated) as session:
        before = tables(session)
    assert list(service.recompute(None, dry_run=True, batch_size=6)) == expected_results
    with Session(migrated) as session:
        assert_same(tables(session), before)
    applied = list(service.recompute(None, batch_size=6))
    assert applied == expected_results
    moved = [r for r in applied if r.changes and r.changes[0].startswith("policy zoom -> ")]
    assert moved and all("(rule 'brand-2')" in r.changes[0] for r in moved)
    with Session(migrated) as session:
        assert_same(tables(session), expected)
        rows = session.scalars(select(StoredTicket).order_by(StoredTicket.id)).all()
        assert {r.policy for r in rows if r.id in {m.ticket_id for m in moved}} == {"zoom-metrics"}
        assert len(
            session.scalars(select(TicketEvent).where(TicketEvent.kind == "policy_changed")).all()
        ) == len(moved)
        decisions = {d.ticket_id: d for d in session.scalars(select(StoredDecision))}
        assert {decisions[m.ticket_id].routing_rule for m in moved} == {"brand-2"}
        assert session.scalars(select(ClockOutcome)).first() is not None
        # The replies reached the engine: a ticket whose next update starts at an agent reply
        # has the due that evaluate gives with them, not the one it gives without.
        checked = 0
        for row in rows:
            ticket = engine_ticket(row)
            if row.status in SOLVED_STATUSES or not ticket.agent_replies:
                continue
            policy = policies[row.policy]
            with_replies = evaluate(ticket, policy, clock.now).targets["next_update"].due
            bare = replace(ticket, agent_replies=(), customer_replies=())
            if evaluate(bare, policy, clock.now).targets["next_update"].due != with_replies:
                assert decisions[row.id].next_update_due == with_replies
                checked += 1
        assert checked
    # Routed again: nothing moves, nothing changes, as the per-ticket rules find.
    clock.now += timedelta(minutes=1)
    with Session(for_writing(migrated)) as session, session.begin():
        again_expected = per_ticket(service, session, None)
        expected = tables(session)
        session.rollback()
    again = list(service.recompute(None, batch_size=11))
    assert again == again_expected and not any(r.changes[:1] == moved[0].changes[:1] for r in again)
    with Session(migrated) as session:
        assert_same(tables(session), expected)


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
        assert_same(tables(session), expected)


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


def test_a_policy_with_other_metrics_stores_its_classic_three(
    migrated: Engine, tmp_path: Any
) -> None:
    """The decision, marks and clock outcomes hold the classic three targets (their columns
    and CHECKs); next_reply and the others are the engine's, not stored."""
    clock = FakeClock(MONDAY_0900_LA + timedelta(hours=2))
    policy = edited_policy(tmp_path, with_metrics)
    service = TicketService(migrated, {policy.name: policy}, clock)
    replied = MONDAY_0900_LA + timedelta(minutes=30)
    result = service.ingest(
        snapshot(
            policy=policy.name,
            first_response_at=replied,
            agent_replies=(replied,),
            customer_replies=(MONDAY_0900_LA + timedelta(hours=1),),
        )
    )
    assert result.decision is not None
    assert result.decision.targets["next_reply"].state == "running"  # the engine has it
    assert list(service.recompute(policy.name)) == [
        Recomputed(result.ticket_id, "zendesk:1001", ())
    ]
    with Session(migrated) as session:
        marks = {m.target for m in session.scalars(select(TargetMark))}
        outcomes = {o.target for o in session.scalars(select(ClockOutcome))}
        stored = session.get_one(StoredDecision, result.ticket_id)
    assert (
        marks
        and outcomes
        and (marks | outcomes) <= {"first_response", "restoration", "next_update"}
    )
    assert stored.first_response_state == "met"
