"""Threshold marks and the breach queries, on SQLite and PostgreSQL: what is marked, what the
queries answer, and that the databases answer them from the index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from alembic import command
from sqlalchemy import Engine, insert, inspect, text
from sqlalchemy.orm import Session
from store_support import MONDAY_0900_LA, FakeClock, rows, snapshot

from bot.compiled import Policy
from bot.engine import evaluate, threshold_instant
from slabot.policy_files import BUNDLED_POLICIES, load_policy
from slabot.store.breaches import (
    ThresholdError,
    breached_where,
    count_query,
    due_targets_query,
    explain,
    reaching_where,
    to_permille,
)
from slabot.store.migrate import alembic_config, current_revision, head_revision, upgrade
from slabot.store.models import StoredTicket, TargetMark
from slabot.store.rows import engine_ticket
from slabot.store.services import TicketService

HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def zoom() -> Policy:
    return load_policy(BUNDLED_POLICIES / "zoom.yaml")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(MONDAY_0900_LA + timedelta(minutes=5))


@pytest.fixture
def service(migrated: Engine, zoom: Policy, clock: FakeClock) -> TicketService:
    return TicketService(migrated, {"zoom": zoom}, clock)


def marks(engine: Engine) -> dict[tuple[str, int], datetime]:
    return {(m.target, m.threshold_permille): m.at for m in rows(engine, TargetMark)}


# --- what is marked -------------------------------------------------------------------------


def test_a_stored_decision_carries_its_marks_as_the_engine_computes_them(
    service: TicketService, migrated: Engine, zoom: Policy, clock: FakeClock
) -> None:
    service.ingest(snapshot())
    (ticket,) = rows(migrated, StoredTicket)
    view = engine_ticket(ticket)
    decision = evaluate(view, zoom, clock.now)
    expected = {
        (name, permille): threshold_instant(
            view, zoom, decision, name, Fraction(permille, 1000), clock.now
        )
        for name in ("first_response", "restoration", "next_update")
        for permille in (750, 1000)
    }
    assert marks(migrated) == expected
    assert expected[("restoration", 1000)] == MONDAY_0900_LA + 8 * HOUR
    assert {m.cycle_started_at for m in rows(migrated, TargetMark)} == {MONDAY_0900_LA}


def test_a_met_target_and_a_solved_ticket_carry_no_marks(
    service: TicketService, migrated: Engine, clock: FakeClock
) -> None:
    service.ingest(snapshot())
    replied = MONDAY_0900_LA + HOUR
    clock.now = replied
    service.ingest(snapshot(updated_at=replied, first_response_at=replied))
    assert {target for target, _ in marks(migrated)} == {"restoration", "next_update"}
    # The next update clock restarted at the reply.
    assert marks(migrated)[("next_update", 1000)] == replied + 24 * HOUR
    solved = replied + HOUR
    clock.now = solved
    service.ingest(
        snapshot(updated_at=solved, first_response_at=replied, status="solved", solved_at=solved)
    )
    assert marks(migrated) == {}


def test_waiting_on_the_customer_holds_the_marks_not_yet_reached(
    service: TicketService, migrated: Engine, clock: FakeClock
) -> None:
    service.ingest(snapshot())
    pending_at = MONDAY_0900_LA + 7 * HOUR  # past 75% of restoration (6h), short of 8h
    clock.now = pending_at
    service.ingest(snapshot(updated_at=pending_at, status="pending"))
    held = marks(migrated)
    assert held[("restoration", 750)] == MONDAY_0900_LA + 6 * HOUR
    assert ("restoration", 1000) not in held
    assert ("first_response", 1000) in held  # first response does not pause
    # Back the next morning at 10:00 (Los Angeles): 1h left, due at 11:00.
    back = MONDAY_0900_LA + 25 * HOUR
    clock.now = back
    service.ingest(snapshot(updated_at=back, status="open"))
    assert marks(migrated)[("restoration", 1000)] == back + HOUR


def test_the_marked_thresholds_are_configurable(
    migrated: Engine, zoom: Policy, clock: FakeClock
) -> None:
    service = TicketService(migrated, {"zoom": zoom}, clock, thresholds=(0.5, 0.9))
    assert service.thresholds == (500, 900, 1000)  # the breach is always marked
    service.ingest(snapshot())
    assert marks(migrated)[("restoration", 500)] == MONDAY_0900_LA + 4 * HOUR
    assert marks(migrated)[("restoration", 900)] == MONDAY_0900_LA + timedelta(minutes=432)
    with pytest.raises(
        ThresholdError, match=r"threshold 0.75 is not marked \(marked: 0.5, 0.9, 1\)"
    ):
        service.reaching(0.75)


@pytest.mark.parametrize("fraction", [0, -0.5, 0.0005])
def test_a_threshold_is_a_positive_whole_permille(fraction: float) -> None:
    with pytest.raises(ThresholdError, match="at most three decimals"):
        to_permille(fraction)


# --- the queries ----------------------------------------------------------------------------


def test_breached_and_reaching_answer_in_due_order_with_their_bounds(
    service: TicketService, clock: FakeClock
) -> None:
    # Three P2 tickets an hour apart: first responses due 13:00, 14:00, 15:00 (Los Angeles).
    for n in range(3):
        created = MONDAY_0900_LA + n * HOUR
        clock.now = created
        service.ingest(snapshot(external_key=str(n), created_at=created, updated_at=created))
    due = [MONDAY_0900_LA + (4 + n) * HOUR for n in range(3)]

    at_second_due = service.breached(now=due[1])
    assert [(b.ticket, b.target, b.at) for b in at_second_due] == [
        ("zendesk:0", "first_response", due[0]),
        ("zendesk:1", "first_response", due[1]),  # due at now: breached
    ]
    assert [b.ticket for b in service.breached(now=due[1], limit=1)] == ["zendesk:0"]
    assert service.breached(now=due[0] - timedelta(seconds=1)) == []

    # Due within the next hour: (now, now + 1h]. A clock due exactly now is breached, not
    # reaching; one due exactly at the horizon is reaching.
    upcoming = service.reaching(1.0, now=due[0], horizon=HOUR)
    assert [(r.ticket, r.at) for r in upcoming] == [("zendesk:1", due[1])]
    # 75% of 4 business hours is 3h after creation.
    three_quarters = service.reaching(0.75, now=MONDAY_0900_LA, horizon=3 * HOUR)
    assert [(r.ticket, r.target, r.at) for r in three_quarters] == [
        ("zendesk:0", "first_response", MONDAY_0900_LA + 3 * HOUR)
    ]


# --- answered from the index ----------------------------------------------------------------

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def _fill(engine: Engine, tickets: int) -> None:
    """``tickets`` open tickets whose clocks are due over the next 40 days, 0.1% past due.

    Few rows match, as in a real queue: then PostgreSQL joins each to its ticket by primary
    key. (With a twentieth of 5,000 tickets matching it rightly prefers to read the small
    tickets table whole and hash it; at 100,000 tickets ``bench/scan.py`` shows the plan.)
    """
    ticket_rows = [
        {
            "id": n,
            "source": "zendesk",
            "external_key": str(n),
            "policy": "zoom",
            "created_at": NOW - timedelta(days=1),
            "status": "open",
            "paused": [],
            "shown": {},
            "first_seen_at": NOW,
            "updated_at": NOW,
        }
        for n in range(1, tickets + 1)
    ]
    mark_rows = []
    for n in range(1, tickets + 1):
        for index, target in enumerate(("first_response", "restoration", "next_update")):
            # Dues from an hour ago to 40 days ahead, well mixed between targets.
            due = NOW + timedelta(minutes=(n * 7919 + index * 104729) % (40 * 24 * 60) - 60)
            for permille, before in ((750, timedelta(hours=2)), (1000, timedelta(0))):
                mark_rows.append(
                    {
                        "ticket_id": n,
                        "target": target,
                        "threshold_permille": permille,
                        "at": due - before,
                        "cycle_started_at": NOW - timedelta(days=1),
                        "source": "zendesk",
                        "external_key": str(n),
                    }
                )
    with Session(engine) as session, session.begin():
        session.execute(insert(StoredTicket), ticket_rows)
        session.execute(insert(TargetMark), mark_rows)
    with engine.connect() as connection:
        connection.execute(text("ANALYZE"))
        connection.commit()


def test_the_breach_queries_read_the_index_not_the_table(migrated: Engine, zoom: Policy) -> None:
    _fill(migrated, 5000)
    service = TicketService(migrated, {"zoom": zoom}, lambda: NOW)
    wheres = {
        "breached": breached_where(NOW),
        "reaching 75%": reaching_where(750, NOW, HOUR),
        "due within the hour": reaching_where(1000, NOW, HOUR),
    }
    with Session(migrated) as session:
        breached_count = session.scalar(count_query(wheres["breached"]))
        assert breached_count == len(service.breached(limit=None))
        assert 0 < breached_count < 50  # a small share of the 15,000 clocks
        due_soon = session.scalar(count_query(wheres["due within the hour"]))
        assert due_soon == len(service.reaching(1.0, horizon=HOUR, limit=None))
        for name, where in wheres.items():
            for statement in (due_targets_query(where, None), due_targets_query(where, 50)):
                _assert_index_plan(migrated, explain(session, statement), name)
            _assert_index_plan(migrated, explain(session, count_query(where)), f"{name} count")


def _assert_index_plan(engine: Engine, plan: list[str], what: str) -> None:
    shown = "\n".join(plan)
    if engine.dialect.name == "sqlite":
        assert any(
            "target_marks USING COVERING INDEX ix_target_marks_threshold_at" in line
            for line in plan
        ), f"{what}:\n{shown}"
        # No full scan of any table; tickets are joined by primary key.
        assert not any(line.startswith("SCAN") for line in plan), f"{what}:\n{shown}"
        assert "USE TEMP B-TREE" not in shown, f"{what}: sorted apart from the index\n{shown}"
    else:
        assert any(
            ("Index Only Scan" in line or "Index Scan" in line or "Bitmap Index Scan" in line)
            and "ix_target_marks_threshold_at" in line
            for line in plan
        ), f"{what}:\n{shown}"
        assert "Seq Scan" not in shown, f"{what}:\n{shown}"


def test_revision_0002_downgrades_and_upgrades_again(migrated: Engine) -> None:
    with migrated.begin() as connection:
        config = alembic_config(migrated)
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")
    assert "target_marks" not in inspect(migrated).get_table_names()
    assert current_revision(migrated) == "0001"
    assert upgrade(migrated) == head_revision()
    assert "ix_target_marks_threshold_at" in {
        index["name"] for index in inspect(migrated).get_indexes("target_marks")
    }
