"""Benchmark: the monthly compliance report by plan x priority over 1,000,000 stored tickets.

On PostgreSQL, in one run:

* seed: ``--seed-tickets`` tickets of a month (Zoom's policy, its five plans, four
  priorities, first replies, waits on the customer, solves, reopenings, agent
  reclassifications), played through ``TicketService.ingest`` and ``reclassify`` so their
  ``clock_outcomes`` rows are what the store writes;
* fill: copies of the seed under new ticket ids and keys, bulk-inserted server-side
  (``INSERT ... SELECT`` over ``generate_series``: tickets first, then their outcomes),
  up to each size in ``--sizes`` (default 100,000 and 1,000,000 tickets), then ``VACUUM
  ANALYZE``;
* at each size: ``compliance_report(..., by=["plan", "priority"])`` for the month (all its
  queries, through the driver, into Python) against the baseline, a bare ``SELECT plan,
  priority, count(*) ... GROUP BY plan, priority`` over the same rows (same table, same
  WHERE), in alternating rounds, best of ``--rounds``.

Goals: the report at most 3x the bare GROUP BY count at the largest size; linear in
tickets: the report's time per ticket at the largest size at most 1.3x that at the smallest.

Run from the repository root: ``.venv/bin/python bench/report.py [--sizes 100000,1000000]``.
PostgreSQL is reached at ``SLABOT_BENCH_POSTGRES_URL`` (default
postgresql://postgres@127.0.0.1:5432/postgres). Exit status 1 if a goal fails.
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# bench/calendar.py shares its name with the standard library's ``calendar``.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse
import os
import random
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from slabot.policy_files import BUNDLED_POLICIES, load_policy
from slabot.store.db import make_engine
from slabot.store.migrate import upgrade
from slabot.store.models import ClockOutcome, StoredTicket
from slabot.store.reports import Period, compliance_report, period
from slabot.store.services import TicketService
from slabot.store.snapshot import Snapshot

GOAL = 3.0
LINEAR_GOAL = 1.3
ADMIN_URL = os.environ.get(
    "SLABOT_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
MONTH_START = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)  # 00:00 in Los Angeles
AS_OF = datetime(2026, 12, 3, 0, 0, tzinfo=UTC)
PLANS = ("standard", "premier", "premier_assurance", "premier_plus", "premier_elite")
ORGANIZATIONS = tuple(f"Customer {n}" for n in range(40))
ZONES = ("America/Los_Angeles", "America/New_York", "Europe/Paris")


class Clock:
    def __init__(self) -> None:
        self.now = MONTH_START

    def __call__(self) -> datetime:
        return self.now


def seed(engine: Engine, count: int, rng: random.Random) -> None:
    """``count`` tickets of November played through the store, in time order."""
    policy = load_policy(BUNDLED_POLICIES / "zoom.yaml")
    clock = Clock()
    service = TicketService(engine, {"zoom": policy}, clock)
    steps: list[tuple[datetime, int, str, dict[str, Any]]] = []
    for number in range(count):
        key = str(100_000 + number)
        created = MONTH_START + timedelta(seconds=rng.randrange(29 * 86_400))
        fields: dict[str, Any] = {
            "source": "zendesk",
            "external_key": key,
            "policy": "zoom",
            "created_at": created,
            "priority": rng.choices(("P1", "P2", "P3", "P4"), (5, 25, 50, 20))[0],
            "plan": rng.choice(PLANS),
            "environment": "production",
            "channel": "phone",
            "customer_timezone": rng.choice(ZONES),
            "shown": {"organization": rng.choice(ORGANIZATIONS), "queue": "Support"},
        }
        steps.append((created, 0, key, dict(fields)))
        at = created
        if rng.random() < 0.93:
            at += timedelta(minutes=rng.randrange(2, 600))
            fields["first_response_at"] = at
            fields["last_agent_update_at"] = at
            steps.append((at, 1, key, dict(fields)))
            if rng.random() < 0.3:
                at += timedelta(minutes=rng.randrange(10, 300))
                steps.append((at, 1, key, {**fields, "status": "pending"}))
                at += timedelta(minutes=rng.randrange(30, 3000))
                steps.append((at, 1, key, {**fields, "status": "open"}))
            if rng.random() < 0.85:
                at += timedelta(minutes=rng.randrange(10, 2000))
                steps.append((at, 1, key, {**fields, "status": "solved", "solved_at": at}))
                if rng.random() < 0.15:
                    at += timedelta(minutes=rng.randrange(60, 2000))
                    steps.append((at, 1, key, {**fields, "status": "open"}))
        if rng.random() < 0.1:
            steps.append((created + timedelta(minutes=30), 2, key, {"reclassify": "P2"}))
    for at, _, key, fields in sorted(steps, key=lambda s: (s[0], s[1], s[2])):
        clock.now = at
        if "reclassify" in fields:
            service.reclassify("zendesk", key, fields["reclassify"], "ana", "impact", "slack")
        else:
            service.ingest(Snapshot(updated_at=at, **fields))


TICKET_COLUMNS = [c.name for c in StoredTicket.__table__.columns]
OUTCOME_COLUMNS = [c.name for c in ClockOutcome.__table__.columns]
SERIES = "generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) g"


def fill(engine: Engine, seeded: int, copies_from: int, copies_to: int) -> None:
    """Copies ``copies_from .. copies_to - 1`` of the seed (copy 0), under new ids and keys."""
    if copies_to <= copies_from:
        return
    shift = "s.id + g * :stride"

    def ticket_value(name: str) -> str:
        if name == "id":
            return shift
        if name == "external_key":
            return "s.external_key || '-' || g"
        return f"s.{name}"

    def outcome_value(name: str) -> str:
        if name == "ticket_id":
            return "s.ticket_id + g * :stride"
        if name == "external_key":
            return "s.external_key || '-' || g"
        return f"s.{name}"

    stride = seeded + 1_000
    with engine.begin() as connection:
        parameters = {"stride": stride, "first": copies_from, "last": copies_to - 1}
        connection.execute(
            text(
                f"INSERT INTO tickets ({', '.join(TICKET_COLUMNS)}) SELECT "
                f"{', '.join(ticket_value(n) for n in TICKET_COLUMNS)} FROM tickets s, "
                f"{SERIES} WHERE s.id < :stride"
            ),
            parameters,
        )
        connection.execute(
            text(
                f"INSERT INTO clock_outcomes ({', '.join(OUTCOME_COLUMNS)}) SELECT "
                f"{', '.join(outcome_value(n) for n in OUTCOME_COLUMNS)} FROM clock_outcomes s, "
                f"{SERIES} WHERE s.ticket_id < :stride"
            ),
            parameters,
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE tickets"))
        connection.execute(text("VACUUM ANALYZE clock_outcomes"))


def bare_count(session: Session, window: Period) -> list[Any]:
    """The baseline: the same rows counted per plan and priority, nothing else."""
    query = (
        select(ClockOutcome.plan, ClockOutcome.priority, func.count())
        .where(
            ClockOutcome.cycle_started_at >= window.start,
            ClockOutcome.cycle_started_at < window.end,
        )
        .group_by(ClockOutcome.plan, ClockOutcome.priority)
    )
    return list(session.execute(query).all())


def best_of(rounds: int, calls: dict[str, Callable[[], Any]]) -> dict[str, float]:
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


@contextmanager
def postgres_database() -> Iterator[str]:
    name = f"slabot_bench_report_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _progress(message: str) -> None:
    if sys.stderr.isatty():
        print(f"  {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed-tickets", type=int, default=1_000)
    parser.add_argument("--sizes", default="100000,1000000", help="tickets at each measure")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    sizes = sorted(int(size) for size in args.sizes.split(","))
    seeded = args.seed_tickets
    if any(size % seeded for size in sizes):
        parser.error("every size must be a multiple of --seed-tickets")
    window = period("2026-11", "America/Los_Angeles")
    results: list[tuple[int, int, float, float]] = []
    with postgres_database() as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            started = time.perf_counter()
            _progress(f"seeding {seeded} tickets through the store")
            seed(engine, seeded, random.Random(18))
            print(f"seed: {seeded} tickets ingested in {time.perf_counter() - started:.1f} s")
            copies = 1
            for size in sizes:
                _progress(f"filling to {size} tickets")
                started = time.perf_counter()
                fill(engine, seeded, copies, size // seeded)
                copies = size // seeded
                with Session(engine) as session:
                    rows = session.scalar(select(func.count()).select_from(ClockOutcome)) or 0
                    tickets = session.scalar(select(func.count()).select_from(StoredTicket)) or 0
                print(
                    f"fill: {tickets:,} tickets, {rows:,} clock cycles "
                    f"({time.perf_counter() - started:.1f} s)"
                )
                with Session(engine) as session:
                    report = compliance_report(session, window, ["plan", "priority"], AS_OF)
                    counted = bare_count(session, window)
                    assert sum(r.clocks for r in report.rows) == sum(r[2] for r in counted)
                    best = best_of(
                        args.rounds,
                        {
                            "report": lambda s=session: compliance_report(
                                s, window, ["plan", "priority"], AS_OF
                            ),
                            "count": lambda s=session: bare_count(s, window),
                        },
                    )
                results.append((tickets, rows, best["report"], best["count"]))
                print(
                    f"  {tickets:>9,} tickets: report {best['report'] * 1000:8.1f} ms, "
                    f"bare GROUP BY count {best['count'] * 1000:8.1f} ms, "
                    f"ratio {best['report'] / best['count']:.2f}x "
                    f"({len(report.rows)} groups)"
                )
        finally:
            engine.dispose()
    failed = False
    tickets, _, report_time, count_time = results[-1]
    ratio = report_time / count_time
    verdict = "PASS" if ratio <= GOAL else "FAIL"
    failed |= ratio > GOAL
    print(f"report / bare count at {tickets:,} tickets: {ratio:.2f}x (goal <= {GOAL}x): {verdict}")
    if len(results) > 1:
        small, large = results[0], results[-1]
        per_small, per_large = small[2] / small[0], large[2] / large[0]
        growth = per_large / per_small
        verdict = "PASS" if growth <= LINEAR_GOAL else "FAIL"
        failed |= growth > LINEAR_GOAL
        print(
            f"report time per ticket, {large[0]:,} vs {small[0]:,} tickets: "
            f"{per_large * 1e6:.2f} vs {per_small * 1e6:.2f} us = {growth:.2f}x "
            f"(goal <= {LINEAR_GOAL}x): {verdict}"
        )
        count_growth = (large[3] / large[0]) / (small[3] / small[0])
        print(f"  (the bare count, the same way: {count_growth:.2f}x)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
