"""Compliance reports and service credits over a generated month, on SQLite and PostgreSQL.

The month is played through the real store (snapshots with status changes, agent
reclassifications) and the expected report and credits are computed here, independently:
due dates and business time by a minute-by-minute walk over New York wall-clock time with
the two November holidays written out, attainment, nearest-rank percentiles and credits by
hand. Nothing of ``slabot.store.reports`` or ``bot.credits`` is used to compute them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from store_support import FakeClock

from bot.compiled import Policy
from slabot.store.reports import (
    ReportError,
    compliance_report,
    credits_report,
    date_range,
    period,
)
from slabot.store.services import TicketService
from slabot.store.snapshot import Snapshot

NEW_YORK = ZoneInfo("America/New_York")
HOLIDAYS = {date(2026, 11, 11), date(2026, 11, 26)}  # Veterans Day, Thanksgiving
AS_OF = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
ORGANIZATIONS = ("Acme", "Globex", "Initech")
POLICY = {
    "name": "reports",
    "priorities": [
        {"name": "P1", "label": "Urgent"},
        {"name": "P2", "label": "High"},
        {"name": "P3", "label": "Normal"},
    ],
    "default_priority": "P3",
    "calendars": {
        "business": {
            "timezone": "America/New_York",
            "hours": {"weekdays": ["09:00-17:00"]},
            "holidays": {"country": "US"},
        }
    },
    "plans": {
        "gold": {
            "commitment": "sla",
            "calendar": "business",
            "targets": {
                "P1": {
                    "first_response": {"after": "1h", "calendar": "24x7"},
                    "restoration": {"after": "8h", "calendar": "24x7"},
                },
                "P2": {"first_response": "4h", "restoration": "16h"},
                "P3": {"first_response": "8h"},
            },
            "credits": {
                "currency": "EUR",
                "monthly_fee": "1000",
                "fees": {"Acme": "3000"},
                "cap_percent": "20",
                "per_breach": [{"target": "restoration", "priority": "P1", "percent": "5"}],
                "attainment": [
                    {"target": "first_response", "below": "95", "percent": "5"},
                    {"target": "first_response", "below": "80", "percent": "15"},
                ],
            },
        },
        "silver": {
            "commitment": "slo",
            "calendar": "business",
            "targets": {
                "P1": {"first_response": {"after": "2h", "calendar": "24x7"}},
                "P2": {"first_response": "8h"},
                "P3": {"first_response": "16h"},
            },
        },
    },
}
# (plan, priority) -> target -> (minutes, on the business calendar?)
TARGETS: dict[tuple[str, str], dict[str, tuple[int, bool]]] = {
    ("gold", "P1"): {"first_response": (60, False), "restoration": (480, False)},
    ("gold", "P2"): {"first_response": (240, True), "restoration": (960, True)},
    ("gold", "P3"): {"first_response": (480, True)},
    ("silver", "P1"): {"first_response": (120, False)},
    ("silver", "P2"): {"first_response": (480, True)},
    ("silver", "P3"): {"first_response": (960, True)},
}


# The independent model.

MINUTE = timedelta(minutes=1)


def is_open(minute: datetime, business: bool) -> bool:
    if not business:
        return True
    local = minute.astimezone(NEW_YORK)
    return local.weekday() < 5 and 9 <= local.hour < 17 and local.date() not in HOLIDAYS


def paused_at(minute: datetime, pauses: list[tuple[datetime, datetime]]) -> bool:
    return any(begin <= minute < end for begin, end in pauses)


def walk_due(start: datetime, minutes: int, business: bool, pauses: list[Any]) -> datetime:
    at, counted = start, 0
    while True:
        if is_open(at, business) and not paused_at(at, pauses):
            counted += 1
            if counted == minutes:
                return at + MINUTE
        at += MINUTE


def walk_used(start: datetime, stop: datetime, business: bool, pauses: list[Any]) -> int:
    at, counted = start, 0
    while at < stop:
        if is_open(at, business) and not paused_at(at, pauses):
            counted += 1
        at += MINUTE
    return counted * 60


def overlap(pauses: list[tuple[datetime, datetime]], start: datetime, end: datetime) -> int:
    total = 0
    for begin, finish in pauses:
        total += max(0, int((min(finish, end) - max(begin, start)).total_seconds()))
    return total


@dataclass
class Plan:
    """One generated ticket: what happens to it, and when."""

    key: str
    plan: str
    organization: str
    created: datetime
    priority: str
    reply: datetime | None = None
    pauses: list[tuple[datetime, datetime]] = field(default_factory=list)
    solves: list[datetime] = field(default_factory=list)
    reopens: list[datetime] = field(default_factory=list)
    reclassifications: list[tuple[datetime, str]] = field(default_factory=list)

    @property
    def final_priority(self) -> str:
        return self.reclassifications[-1][1] if self.reclassifications else self.priority


def generate(seed: int, count: int) -> list[Plan]:
    rng = random.Random(seed)
    plans = []
    first = datetime(2026, 10, 31, 20, 0, tzinfo=NEW_YORK)  # before the month, across DST
    span_minutes = int((datetime(2026, 11, 30, 23, 0, tzinfo=NEW_YORK) - first) / MINUTE)
    for index in range(count):
        created = (first + rng.randrange(span_minutes) * MINUTE).astimezone(UTC)
        if index < 4:  # around the DST change (Nov 1, 02:00 EDT -> 01:00 EST)
            created = datetime(2026, 11, 1, 5, 30, tzinfo=UTC) + index * 40 * MINUTE
        elif index == 4:  # October in New York, November in UTC
            created = datetime(2026, 10, 31, 22, 30, tzinfo=NEW_YORK).astimezone(UTC)
        elif index == 5:  # November in New York, December in UTC
            created = datetime(2026, 11, 30, 21, 0, tzinfo=NEW_YORK).astimezone(UTC)
        ticket = Plan(
            key=str(5000 + index),
            plan=rng.choice(["gold", "gold", "silver"]),
            organization=rng.choice(ORGANIZATIONS),
            created=created,
            priority=rng.choice(["P1", "P2", "P3"]),
        )
        cursor = created
        if rng.random() < 0.9:
            cursor += rng.randrange(5, 900) * MINUTE
            ticket.reply = cursor
            if rng.random() < 0.35:
                begin = cursor + rng.randrange(1, 300) * MINUTE
                cursor = begin + rng.randrange(30, 3000) * MINUTE
                ticket.pauses.append((begin, cursor))
            if rng.random() < 0.85:
                cursor += rng.randrange(10, 1500) * MINUTE
                ticket.solves.append(cursor)
                if rng.random() < 0.25:
                    cursor += rng.randrange(60, 2000) * MINUTE
                    ticket.reopens.append(cursor)
                    if rng.random() < 0.6:
                        cursor += rng.randrange(10, 1200) * MINUTE
                        ticket.solves.append(cursor)
        if rng.random() < 0.2:
            at = created + rng.randrange(1, 600) * MINUTE
            for _ in range(rng.choice([1, 1, 2])):
                current = ticket.final_priority
                ticket.reclassifications.append(
                    (at, rng.choice([p for p in ("P1", "P2", "P3") if p != current]))
                )
                at += rng.randrange(1, 900) * MINUTE
        plans.append(ticket)
    return plans


@dataclass(frozen=True)
class Clock:
    ticket: str
    plan: str
    organization: str
    priority: str
    created_priority: str
    target: str
    start: datetime
    due: datetime
    stop: datetime | None
    used: int | None
    paused: int
    reclassifications: int
    first: bool
    """The ticket's first cycle of this target (tickets count in the period of their first)."""

    @property
    def met(self) -> bool:
        return self.stop is not None and self.stop <= self.due

    @property
    def breached(self) -> bool:
        return (self.stop is not None and self.stop > self.due) or (
            self.stop is None and self.due <= AS_OF
        )


def expected_clocks(ticket: Plan) -> Iterator[Clock]:
    targets = TARGETS[(ticket.plan, ticket.final_priority)]
    common = (
        f"zendesk:{ticket.key}",
        ticket.plan,
        ticket.organization,
        ticket.final_priority,
        ticket.priority,
    )
    count = len(ticket.reclassifications)
    if "first_response" in targets:
        minutes, business = targets["first_response"]
        due = walk_due(ticket.created, minutes, business, [])
        used = (
            None if ticket.reply is None else walk_used(ticket.created, ticket.reply, business, [])
        )
        yield Clock(
            *common, "first_response", ticket.created, due, ticket.reply, used, 0, count, True
        )
    if "restoration" in targets:
        minutes, business = targets["restoration"]
        starts = [ticket.created, *ticket.reopens]
        for cycle, start in enumerate(starts):
            stop = ticket.solves[cycle] if cycle < len(ticket.solves) else None
            due = walk_due(start, minutes, business, ticket.pauses)
            used = None if stop is None else walk_used(start, stop, business, ticket.pauses)
            paused = overlap(ticket.pauses, start, stop or AS_OF)
            yield Clock(*common, "restoration", start, due, stop, used, paused, count, cycle == 0)


def nearest_rank(values: list[int], fraction: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(fraction * len(ordered)) - 1]


# Playing the month through the store.


def play(engine: Engine, tickets: list[Plan]) -> None:
    clock = FakeClock(datetime(2026, 10, 31, tzinfo=UTC))
    service = TicketService(engine, {"reports": Policy.from_mapping(POLICY)}, clock)
    steps: list[tuple[datetime, int, Plan, str, Any]] = []
    for ticket in tickets:
        steps.append((ticket.created, 0, ticket, "create", None))
        if ticket.reply:
            steps.append((ticket.reply, 1, ticket, "reply", None))
        for begin, end in ticket.pauses:
            steps.append((begin, 1, ticket, "pending", None))
            steps.append((end, 1, ticket, "open", None))
        for solved in ticket.solves:
            steps.append((solved, 1, ticket, "solved", solved))
        for reopened in ticket.reopens:
            steps.append((reopened, 1, ticket, "open", None))
        for at, priority in ticket.reclassifications:
            steps.append((at, 2, ticket, "reclassify", priority))
    state: dict[str, dict[str, Any]] = {}
    for at, _, ticket, action, value in sorted(steps, key=lambda s: (s[0], s[1], s[2].key)):
        clock.now = at
        if action == "reclassify":
            service.reclassify("zendesk", ticket.key, value, "ana", "impact changed", "slack")
            continue
        fields = state.setdefault(
            ticket.key,
            {
                "source": "zendesk",
                "external_key": ticket.key,
                "policy": "reports",
                "created_at": ticket.created,
                "priority": ticket.priority,
                "plan": ticket.plan,
                "shown": {"organization": ticket.organization, "queue": "Support"},
            },
        )
        if action == "reply":
            fields["first_response_at"] = at
        elif action in ("pending", "open"):
            fields["status"] = action
        elif action == "solved":
            fields["status"] = "solved"
            fields["solved_at"] = value
        service.ingest(Snapshot(updated_at=at, **fields))


@pytest.fixture
def month(migrated: Engine) -> list[Plan]:
    tickets = generate(seed=18, count=90)
    play(migrated, tickets)
    return tickets


def in_november(clock: Clock) -> bool:
    local = clock.start.astimezone(NEW_YORK)
    return (local.year, local.month) == (2026, 11)


def test_the_monthly_report_by_plan_priority_and_target_matches_the_independent_model(
    migrated: Engine, month: list[Plan]
) -> None:
    clocks = [c for t in month for c in expected_clocks(t) if in_november(c)]
    expected: dict[tuple[str, str, str], dict[str, Any]] = {}
    for key in {(c.plan, c.priority, c.target) for c in clocks}:
        group = [c for c in clocks if (c.plan, c.priority, c.target) == key]
        used = [c.used for c in group if c.used is not None]
        reclassified = {
            c.ticket: c.reclassifications for c in group if c.reclassifications and c.first
        }
        expected[key] = {
            "tickets": len({c.ticket for c in group if c.first}),
            "clocks": len(group),
            "met": sum(c.met for c in group),
            "breached": sum(c.breached for c in group),
            "running": sum(not c.met and not c.breached for c in group),
            "median": nearest_rank(used, 0.5),
            "p90": nearest_rank(used, 0.9),
            "paused": sum(c.paused for c in group),
            "reclassified": len(reclassified),
            "reclassifications": sum(reclassified.values()),
        }
    with Session(migrated) as session:
        report = compliance_report(
            session,
            period("2026-11", "America/New_York"),
            ["plan", "priority", "target"],
            AS_OF,
        )
    got = {
        (row.group["plan"], row.group["priority"], row.group["target"]): {
            "tickets": row.tickets,
            "clocks": row.clocks,
            "met": row.met,
            "breached": row.breached,
            "running": row.running,
            "median": row.median_seconds,
            "p90": row.p90_seconds,
            "paused": row.paused_seconds,
            "reclassified": row.reclassified_tickets,
            "reclassifications": row.reclassifications,
        }
        for row in report.rows
    }
    assert got == expected
    # The month has what it is meant to test.
    assert any(c.paused for c in clocks) and any(c.start != clocks[0].start for c in clocks)
    assert sum(1 for t in month if t.reopens) >= 3
    assert sum(e["reclassified"] for e in expected.values()) >= 5
    assert sum(e["running"] for e in expected.values()) >= 1
    assert all(e["met"] and e["breached"] for k, e in expected.items() if k[1] == "P2")


def test_the_zone_decides_which_clocks_are_in_the_month(
    migrated: Engine, month: list[Plan]
) -> None:
    every = [c for t in month for c in expected_clocks(t)]
    for zone in ("America/New_York", "UTC"):
        tz = ZoneInfo(zone)
        wanted = [
            c
            for c in every
            if (c.start.astimezone(tz).year, c.start.astimezone(tz).month) == (2026, 11)
        ]
        with Session(migrated) as session:
            report = compliance_report(session, period("2026-11", zone), [], AS_OF)
        (row,) = report.rows
        assert (row.clocks, row.met, row.breached) == (
            len(wanted),
            sum(c.met for c in wanted),
            sum(c.breached for c in wanted),
        )
    new_york = {c.ticket for c in every if in_november(c)}
    utc = {c.ticket for c in every if (c.start.month, c.start.year) == (11, 2026)}
    assert new_york != utc  # late evenings of Oct 31 and Nov 30 fall on both sides


def test_at_creation_counts_reclassified_tickets_under_their_first_priority(
    migrated: Engine, month: list[Plan]
) -> None:
    clocks = [c for t in month for c in expected_clocks(t) if in_november(c)]
    with Session(migrated) as session:
        window = period("2026-11", "America/New_York")
        final = compliance_report(session, window, ["priority"], AS_OF)
        first = compliance_report(session, window, ["priority"], AS_OF, priority="at_creation")
    for report, attribute in ((final, "priority"), (first, "created_priority")):
        got = {row.group["priority"]: (row.tickets, row.clocks) for row in report.rows}
        want = {
            p: (
                len({c.ticket for c in clocks if getattr(c, attribute) == p and c.first}),
                sum(1 for c in clocks if getattr(c, attribute) == p),
            )
            for p in {getattr(c, attribute) for c in clocks}
        }
        assert got == want
    assert {r.group["priority"]: r.tickets for r in final.rows} != {
        r.group["priority"]: r.tickets for r in first.rows
    }


def percent(met: int, judged: int) -> Decimal:
    return (Decimal(100) * met / judged).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def test_credits_owed_per_organization_match_the_rules_computed_by_hand(
    migrated: Engine, month: list[Plan]
) -> None:
    clocks = [c for t in month for c in expected_clocks(t) if in_november(c) and c.plan == "gold"]
    expected = {}
    for organization in ORGANIZATIONS:
        mine = [c for c in clocks if c.organization == organization]
        fee = Decimal(3000) if organization == "Acme" else Decimal(1000)
        p1_breaches = [
            c for c in mine if c.target == "restoration" and c.priority == "P1" and c.breached
        ]
        owed = Decimal(5) * len(p1_breaches)
        first = [c for c in mine if c.target == "first_response" and (c.met or c.breached)]
        attained = percent(sum(c.met for c in first), len(first)) if first else None
        if attained is not None and attained < 80:
            owed += 15
        elif attained is not None and attained < 95:
            owed += 5
        capped = min(owed, Decimal(20))
        amount = (fee * capped / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        expected[organization] = (
            owed,
            capped,
            amount,
            sorted((c.ticket, c.due) for c in p1_breaches),
        )
    policies = {"reports": Policy.from_mapping(POLICY)}
    with Session(migrated) as session:
        statements = credits_report(
            session, period("2026-11", "America/New_York"), policies, AS_OF
        ).statements
    got = {}
    for statement in statements:
        assert statement.plan == "gold" and statement.currency == "EUR"
        per_breach = [line for line in statement.lines if line.rule.startswith("5% per")]
        evidence = sorted((c.ticket, c.due) for line in per_breach for c in line.evidence)
        got[statement.organization] = (
            statement.percent_before_cap,
            statement.percent,
            statement.amount,
            evidence,
        )
    assert got == expected
    assert any(value[2] for value in expected.values())  # something is owed


def test_an_agent_update_closes_the_previous_update_cycle(migrated: Engine) -> None:
    policy = dict(POLICY)
    policy["plans"] = {
        "gold": {
            "commitment": "sla",
            "calendar": "business",
            "targets": {"P2": {"next_update": {"after": "2h", "calendar": "24x7"}}},
        }
    }
    clock = FakeClock(datetime(2026, 11, 2, 14, 0, tzinfo=UTC))
    service = TicketService(migrated, {"reports": Policy.from_mapping(policy)}, clock)
    created = clock.now
    fields: dict[str, Any] = {
        "source": "zendesk",
        "external_key": "77",
        "policy": "reports",
        "created_at": created,
        "priority": "P2",
        "plan": "gold",
    }
    service.ingest(Snapshot(updated_at=created, **fields))
    updates = [created + timedelta(minutes=90), created + timedelta(minutes=300)]
    for at in updates:
        clock.now = at
        fields["last_agent_update_at"] = at
        service.ingest(Snapshot(updated_at=at, **fields))
    with Session(migrated) as session:
        (row,) = compliance_report(
            session, period("2026-11-02"), ["target"], created + timedelta(hours=6)
        ).rows
    # Cycle 1: 90 min, met; cycle 2: 210 min, breached (due after 120); cycle 3 running.
    assert (row.clocks, row.met, row.breached, row.running) == (3, 1, 1, 1)
    assert (row.median_seconds, row.p90_seconds) == (90 * 60, 210 * 60)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026-11", "2026-11-01T04:00:00+00:00", "2026-12-01T05:00:00+00:00"),
        ("2026-W45", "2026-11-02T05:00:00+00:00", "2026-11-09T05:00:00+00:00"),
        ("2026-11-01", "2026-11-01T04:00:00+00:00", "2026-11-02T05:00:00+00:00"),
    ],
)
def test_periods_are_local_to_the_zone_across_dst(text: str, start: str, end: str) -> None:
    window = period(text, "America/New_York")
    assert (window.start.isoformat(), window.end.isoformat()) == (start, end)


def test_bad_periods_zones_and_groupings_name_what_to_write(migrated: Engine) -> None:
    with pytest.raises(ReportError, match="write a month"):
        period("November")
    with pytest.raises(ReportError, match="IANA"):
        period("2026-11", "Mars/Olympus")
    with pytest.raises(ReportError, match="before --from"):
        date_range("2026-11-20", "2026-11-01")
    with Session(migrated) as session, pytest.raises(ReportError, match="group by any of"):
        compliance_report(session, period("2026-11"), ["colour"], AS_OF)
