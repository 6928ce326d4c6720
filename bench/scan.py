"""Benchmark: the breach queries over 100,000 open tickets, on SQLite and on PostgreSQL.

For each database (a SQLite file in a temporary folder; a PostgreSQL database created for
the run and dropped after it), in one run:

* setup: ``--n`` open tickets of the three example policies, as a support queue looks
  (ages, replies, customers waiting, pauses), bulk-inserted with the decision and the
  threshold marks the store's own code computes for each (``evaluate`` on the ticket as
  ``engine_ticket`` reads it back, ``decision_marks``); a sample is read back and
  re-evaluated to check the rows are what an ingest would have stored;
* "breached now" (``TicketService.breached(now, limit=None)``) and "due within the next
  hour" (``TicketService.reaching(1.0, now, 1h, limit=None)``), each against a bare SQL
  ``SELECT count(*)`` of the same rows with the same WHERE clause, in alternating rounds;
  the best round of each is kept. Goal: each query at most 2x its count. For scale, the
  same breached count without the marks (a scan of the decisions) is shown, and the plan
  each database chose;
* ingest throughput: ``--ingest`` snapshots (new tickets, first replies, waits on the
  customer, returns) through ``TicketService.ingest``, one transaction each, into the
  filled database.

Run from the repository root: ``.venv/bin/python bench/scan.py [--n N] [--skip-postgres]``.
PostgreSQL is reached at ``SLABOT_BENCH_POSTGRES_URL`` (default
postgresql://postgres@127.0.0.1:5432/postgres). Exit status 1 if a goal fails.
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# bench/calendar.py shares its name with the standard library's ``calendar``: take this
# folder off sys.path before importing anything that may import that module.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse
import gc
import json
import os
import platform
import random
import secrets
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import psycopg
from sqlalchemy import Engine, Table, bindparam, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bot.compiled import Policy
from bot.engine import Decision, evaluate
from bot.policy import TARGETS
from slabot.policy_files import BUNDLED_POLICIES, load_policy
from slabot.store.breaches import (
    breached_where,
    decision_marks,
    due_targets_query,
    explain,
    reaching_where,
)
from slabot.store.db import make_engine
from slabot.store.migrate import upgrade
from slabot.store.models import StoredDecision, StoredTicket, TargetMark
from slabot.store.services import Snapshot, TicketService, engine_ticket
from slabot.store.types import UTCDateTime

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # a Tuesday afternoon in Europe
HOUR = timedelta(hours=1)
GOAL = 2.0
ADMIN_URL = os.environ.get(
    "SLABOT_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)

# --- a support queue ------------------------------------------------------------------------

POLICY_SHARE = (("cloudtalk", 40), ("zoom", 40), ("zmanda", 20))
PLANS = {
    "cloudtalk": (("professional", 50), ("advanced", 35), ("basic", 15)),
    "zoom": (
        ("standard", 35),
        ("premier", 30),
        ("premier_assurance", 15),
        ("premier_plus", 10),
        ("premier_elite", 10),
    ),
    "zmanda": (("standard", 60), ("premium", 30), ("trial", 10)),
}
PRIORITIES = (("P1", 3), ("P2", 15), ("P3", 45), ("P4", 22), (None, 15))
ENVIRONMENTS = (("production", 80), ("staging", 10), ("development", 4), (None, 6))
CHANNELS = (("email", 45), ("web", 30), ("phone", 15), ("chat", 10))
CUSTOMERS = (
    (("America/Los_Angeles", "US"), 40),
    (("America/New_York", "US"), 25),
    (("Europe/Paris", "FR"), 15),
    (("Europe/Berlin", "DE"), 10),
    (("Asia/Tokyo", "JP"), 10),
)
IMPACTS = ("high", "medium", "low")


def weighted(rng: random.Random, choices: Sequence[tuple[Any, int]]) -> Any:
    values, weights = zip(*choices, strict=True)
    return rng.choices(values, weights)[0]


def queue_ticket(rng: random.Random, number: int) -> dict[str, Any]:
    """One open ticket as the store keeps it (the columns of ``tickets``)."""
    policy = weighted(rng, POLICY_SHARE)
    # Most of a queue is recent; a tail of old tickets waits on customers or on engineering.
    age = min(rng.expovariate(1 / (2.5 * 86_400)), 30 * 86_400)
    created = NOW - timedelta(seconds=int(age))
    priority = weighted(rng, PRIORITIES)
    if policy == "cloudtalk" and priority == "P4":
        priority = "P3"
    zone, country = weighted(rng, CUSTOMERS)
    row: dict[str, Any] = {
        "id": number,
        "source": "zendesk" if number % 3 else "jira",
        "external_key": str(100_000 + number) if number % 3 else f"SUP-{number}",
        "policy": policy,
        "created_at": created,
        "priority": priority,
        "plan": weighted(rng, PLANS[policy]),
        "environment": weighted(rng, ENVIRONMENTS),
        "product_stage": "beta" if rng.random() < 0.03 else None,
        "urgency": None,
        "impact": None,
        "channel": weighted(rng, CHANNELS),
        "customer_timezone": zone if policy != "cloudtalk" else None,
        "customer_country": country if policy == "zoom" else None,
        "first_response_at": None,
        "last_agent_update_at": None,
        "solved_at": None,
        "restoration_started_at": None,
        "paused": [],
        "first_seen_at": created,
        "updated_at": NOW,
        "source_updated_at": created,
        "reclassified_priority": None,
        "reclassified_by": None,
        "reclassified_reason": None,
        "reclassified_at": None,
    }
    if policy == "zmanda" and rng.random() < 0.7:
        row["urgency"], row["impact"] = rng.choice(IMPACTS), rng.choice(IMPACTS)
    last = created
    status = "new"
    # Nine in ten get a first reply, typically within a few business hours.
    reply = created + timedelta(seconds=int(rng.expovariate(1 / (4 * 3600))))
    if rng.random() < 0.9 and reply < NOW:
        row["first_response_at"] = last = reply
        status = "open"
        if rng.random() < 0.6:
            update = reply + (NOW - reply) * rng.random()
            row["last_agent_update_at"] = last = update.replace(microsecond=0)
        if rng.random() < 0.2:  # waited on the customer once, and the customer answered
            begin = last + (NOW - last) * rng.random() / 2
            end = begin + (NOW - begin) * rng.random() / 2
            row["paused"].append([_second(begin).isoformat(), _second(end).isoformat()])
            last = end
        if rng.random() < 0.3:  # waiting on the customer now
            status = rng.choice(("pending", "pending", "pending", "on_hold"))
            since = _second(last + (NOW - last) * rng.random())
            row["paused"].append([since.isoformat(), None])
    elif rng.random() < 0.5:
        status = "open"
    row["status"] = status
    row["shown"] = {"priority": priority, "tags": []}
    return row


def _second(instant: datetime) -> datetime:
    return instant.replace(microsecond=0)


def decision_row(ticket_id: int, decision: Decision) -> dict[str, Any]:
    """The ``decisions`` row ``TicketService`` stores for ``decision`` (see _store_decision)."""
    row: dict[str, Any] = {
        "ticket_id": ticket_id,
        "priority": decision.priority,
        "requested_priority": decision.requested_priority,
        "plan": decision.plan,
        "commitment": decision.commitment,
        "next_change_at": decision.next_change_at,
        "tags": list(decision.tags),
        "notes": list(decision.notes),
        "evaluated_at": NOW,
    }
    for name, target in decision.targets.items():
        row[f"{name}_due"] = target.due
        row[f"{name}_state"] = target.state
    return row


@dataclass
class Queue:
    tickets: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    marks: list[dict[str, Any]]


def build_queue(n: int, seed: int, policies: dict[str, Policy], thresholds: Sequence[int]) -> Queue:
    rng = random.Random(seed)
    tickets, decisions, marks = [], [], []
    for number in range(1, n + 1):
        row = queue_ticket(rng, number)
        ticket = engine_ticket(StoredTicket(**row))
        policy = policies[row["policy"]]
        decision = evaluate(ticket, policy, NOW)
        tickets.append(row)
        decisions.append(decision_row(number, decision))
        for mark in decision_marks(ticket, policy, decision, NOW, thresholds):
            marks.append(
                {
                    "ticket_id": number,
                    "target": mark.target,
                    "threshold_permille": mark.threshold_permille,
                    "at": mark.at,
                    "cycle_started_at": mark.cycle_started_at,
                    "source": row["source"],
                    "external_key": row["external_key"],
                }
            )
    return Queue(tickets, decisions, marks)


# --- databases ------------------------------------------------------------------------------


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="slabot-bench-") as folder:
        yield f"sqlite:///{Path(folder) / 'slabot.db'}"


@contextmanager
def postgres_database() -> Iterator[str]:
    name = f"slabot_bench_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bulk_insert(engine: Engine, queue: Queue) -> None:
    tables = (
        (cast(Table, StoredTicket.__table__), queue.tickets),
        (cast(Table, StoredDecision.__table__), queue.decisions),
        (cast(Table, TargetMark.__table__), queue.marks),
    )
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            driver = raw.driver_connection
            assert isinstance(driver, psycopg.Connection)
            with driver.cursor() as cursor:
                for table, rows in tables:
                    columns = list(rows[0])
                    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
                    with cursor.copy(statement) as copy:
                        for row in rows:
                            copy.write_row([_copy_value(row[c]) for c in columns])
                # The rows came with their ids: move the id sequence past them.
                cursor.execute(
                    "SELECT setval(pg_get_serial_sequence('tickets', 'id'), max(id)) FROM tickets"
                )
            driver.commit()
        finally:
            raw.close()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
            # Write the loaded pages out now, not during the timed ingest.
            connection.exec_driver_sql("CHECKPOINT")
        return
    with Session(engine) as session, session.begin():
        for table, rows in tables:
            for start in range(0, len(rows), 20_000):
                session.execute(insert(table), rows[start : start + 20_000])
    with engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")
        connection.commit()
        # Copy the loaded pages from the write-ahead log now, not during the timed ingest.
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def _copy_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def check_sample(engine: Engine, policies: dict[str, Policy], queue: Queue, size: int) -> None:
    """Read a sample back through the store's models: the engine must decide the same."""
    thresholds = TicketService(engine, policies, lambda: NOW).thresholds
    rng = random.Random(7)
    ids = sorted(rng.sample(range(1, len(queue.tickets) + 1), min(size, len(queue.tickets))))
    with Session(engine) as session:
        for ticket_id in ids:
            row = session.get(StoredTicket, ticket_id)
            stored = session.get(StoredDecision, ticket_id)
            assert row is not None and stored is not None
            policy = policies[row.policy]
            ticket = engine_ticket(row)
            decision = evaluate(ticket, policy, NOW)
            for name in TARGETS:
                target = decision.targets[name]
                assert getattr(stored, f"{name}_due") == target.due, (ticket_id, name)
                assert getattr(stored, f"{name}_state") == target.state, (ticket_id, name)
            expected = {
                (m.target, m.threshold_permille, m.at)
                for m in decision_marks(ticket, policy, decision, NOW, thresholds)
            }
            found = {
                (m.target, m.threshold_permille, m.at)
                for m in session.scalars(
                    select(TargetMark).where(TargetMark.ticket_id == ticket_id)
                )
            }
            assert found == expected, ticket_id


# --- timing ---------------------------------------------------------------------------------

BREACHED_COUNT = text(
    "SELECT count(*) FROM target_marks WHERE threshold_permille = 1000 AND at <= :now"
).bindparams(bindparam("now", type_=UTCDateTime()))
DUE_SOON_COUNT = text(
    "SELECT count(*) FROM target_marks "
    "WHERE threshold_permille = 1000 AND at > :now AND at <= :until"
).bindparams(bindparam("now", type_=UTCDateTime()), bindparam("until", type_=UTCDateTime()))
_COLUMNS = "ticket_id, source, external_key, target, at, cycle_started_at"
BREACHED_FETCH = text(
    f"SELECT {_COLUMNS} FROM target_marks WHERE threshold_permille = 1000 AND at <= :now "
    "ORDER BY at, ticket_id, target"
).bindparams(bindparam("now", type_=UTCDateTime()))
"""The breached rows fetched bare: text SQL, values as the driver gives them."""
_OPEN_CLOCK = "({0}_state NOT IN ('met', 'none') AND {0}_due <= :now)"
WITHOUT_MARKS_COUNT = text(
    "SELECT count(*) FROM decisions JOIN tickets ON tickets.id = decisions.ticket_id "
    "WHERE tickets.status NOT IN ('solved', 'closed') AND ("
    + " OR ".join(_OPEN_CLOCK.format(name) for name in TARGETS)
    + ")"
).bindparams(bindparam("now", type_=UTCDateTime()))


def best_of(rounds: int, calls: dict[str, Callable[[], Any]]) -> dict[str, tuple[float, Any]]:
    """Best wall time (seconds) of each call over ``rounds`` alternating rounds, and its
    result; one untimed warm-up round first."""
    results = {name: call() for name, call in calls.items()}
    best = dict.fromkeys(calls, float("inf"))
    gc.disable()
    try:
        for _ in range(rounds):
            for name, call in calls.items():
                started = time.perf_counter()
                results[name] = call()
                best[name] = min(best[name], time.perf_counter() - started)
    finally:
        gc.enable()
    return {name: (best[name], results[name]) for name in calls}


def ingest_stream(count: int, seed: int) -> list[Snapshot]:
    """``count`` snapshots of new tickets in time order: created, replied, waiting on the
    customer, back (four per ticket)."""
    rng = random.Random(seed)
    snapshots = []
    for number in range(count // 4):
        created = NOW + timedelta(seconds=rng.randrange(3600))
        policy = weighted(rng, POLICY_SHARE)
        priority = weighted(rng, PRIORITIES)
        if policy == "cloudtalk" and priority == "P4":
            priority = "P3"
        base: dict[str, Any] = {
            "source": "zendesk",
            "external_key": f"new-{number}",
            "policy": policy,
            "created_at": created,
            "priority": priority,
            "plan": weighted(rng, PLANS[policy]),
            "environment": weighted(rng, ENVIRONMENTS),
            "channel": weighted(rng, CHANNELS),
            "customer_timezone": "America/New_York" if policy != "cloudtalk" else None,
            "shown": {"priority": priority},
        }
        reply = created + timedelta(minutes=rng.randrange(5, 240))
        waiting = reply + timedelta(minutes=rng.randrange(1, 60))
        back = waiting + timedelta(minutes=rng.randrange(5, 600))
        replied: dict[str, Any] = {"first_response_at": reply, "last_agent_update_at": reply}
        snapshots += [
            Snapshot(updated_at=created, **base),
            Snapshot(updated_at=reply, status="open", **replied, **base),
            Snapshot(updated_at=waiting, status="pending", **replied, **base),
            Snapshot(updated_at=back, status="open", **replied, **base),
        ]
    snapshots.sort(key=lambda s: s.updated_at)
    return snapshots


class StreamClock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Figures:
    database: str
    rows: dict[str, int]
    seconds: dict[str, float]
    plans: dict[str, list[str]]
    ingest: tuple[int, int, float]
    """(snapshots, history entries, seconds)"""


def run(
    kind: str, url: str, policies: dict[str, Policy], queue: Queue, args: argparse.Namespace
) -> Figures:
    engine = make_engine(url)
    try:
        upgrade(engine)
        started = time.perf_counter()
        bulk_insert(engine, queue)
        print(
            f"  {kind}: {len(queue.tickets):,} tickets, {len(queue.marks):,} marks inserted in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
        check_sample(engine, policies, queue, args.check)
        service = TicketService(engine, policies, lambda: NOW)

        def count(query: Any, **params: Any) -> Callable[[], int]:
            def call() -> int:
                with engine.connect() as connection:
                    return int(connection.execute(query, params).scalar_one())

            return call

        def fetch(query: Any, **params: Any) -> Callable[[], list[Any]]:
            def call() -> list[Any]:
                with engine.connect() as connection:
                    return list(connection.execute(query, params).all())

            return call

        def in_database(where: Any) -> Any:
            """The query's own SELECT, run and counted by the database: its cost there,
            without carrying the rows to Python."""
            return select(func.count()).select_from(due_targets_query(where, None).subquery())

        timed = best_of(
            args.repeat,
            {
                "breached": lambda: service.breached(NOW, limit=None),
                "breached in db": count(in_database(breached_where(NOW))),
                "breached count": count(BREACHED_COUNT, now=NOW),
                "breached fetched bare": fetch(BREACHED_FETCH, now=NOW),
                "due within 1h": lambda: service.reaching(1.0, NOW, HOUR, limit=None),
                "due within 1h in db": count(in_database(reaching_where(1000, NOW, HOUR))),
                "due within 1h count": count(DUE_SOON_COUNT, now=NOW, until=NOW + HOUR),
                "breached, first 100": lambda: service.breached(NOW, limit=100),
                "without marks count": count(WITHOUT_MARKS_COUNT, now=NOW),
            },
        )
        rows = {
            name: len(result) if isinstance(result, list) else int(result)
            for name, (_, result) in timed.items()
        }
        assert rows["breached"] == rows["breached count"], rows
        assert rows["due within 1h"] == rows["due within 1h count"], rows
        assert rows["breached in db"] == rows["breached"] == rows["breached fetched bare"], rows
        assert rows["due within 1h in db"] == rows["due within 1h"], rows
        with Session(engine) as session:
            plans = {
                "breached": explain(session, due_targets_query(breached_where(NOW), None)),
                "due within 1h": explain(
                    session, due_targets_query(reaching_where(1000, NOW, HOUR), None)
                ),
            }

        clock = StreamClock()
        ingesting = TicketService(engine, policies, clock)
        stream = ingest_stream(args.ingest, args.seed + 1)
        entries = 0
        started = time.perf_counter()
        for snap in stream:
            clock.now = snap.updated_at + timedelta(seconds=5)
            entries += len(ingesting.ingest(snap).events)
        ingest_seconds = time.perf_counter() - started
        return Figures(
            kind,
            rows,
            {name: seconds for name, (seconds, _) in timed.items()},
            plans,
            (len(stream), entries, ingest_seconds),
        )
    finally:
        engine.dispose()


def report(figures: Figures) -> bool:
    ms = {name: seconds * 1000 for name, seconds in figures.seconds.items()}
    rows = figures.rows
    print(f"\n{figures.database}")
    ok = True
    for query in ("breached", "due within 1h"):
        bare = ms[f"{query} count"]
        ratio, in_db = ms[query] / bare, ms[f"{query} in db"] / bare
        ok &= ratio <= GOAL
        print(
            f"  {query + ' now' if query == 'breached' else query:<14} {rows[query]:>7,} rows: "
            f"query {ms[query]:7.2f} ms, bare count {bare:6.2f} ms: ratio {ratio:5.2f}x "
            f"(goal <= {GOAL:g}x: {'PASS' if ratio <= GOAL else 'FAIL'}); its SELECT in the "
            f"database {ms[f'{query} in db']:6.2f} ms: {in_db:4.2f}x the count"
        )
    print(
        f"  the breached rows fetched bare (text SQL, no conversion to objects): "
        f"{ms['breached fetched bare']:.2f} ms, "
        f"{ms['breached fetched bare'] / ms['breached count']:.2f}x the count"
    )
    print(
        f"  breached, first page of 100: {ms['breached, first 100']:.2f} ms;  for scale, the "
        f"breached count without the marks (a scan of the decisions): "
        f"{ms['without marks count']:.2f} ms"
    )
    for name, plan in figures.plans.items():
        print(f"  plan, {name}: " + " | ".join(line.strip() for line in plan))
    snapshots, entries, seconds = figures.ingest
    print(
        f"  ingest: {snapshots:,} snapshots ({entries:,} history entries) in {seconds:.2f} s: "
        f"{snapshots / seconds:,.0f} events/s ({1000 * seconds / snapshots:.2f} ms each, one "
        "transaction per snapshot)"
    )
    return ok


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key} {value:,}" for key, value in counter.items())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="open tickets stored")
    parser.add_argument("--ingest", type=int, default=2000, help="snapshots ingested")
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds (best kept)")
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--check", type=int, default=300, help="tickets read back and checked")
    parser.add_argument("--skip-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args(argv)

    print(
        f"bench/scan.py: Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{platform.machine()}; now = {NOW:%Y-%m-%d %H:%M} UTC"
    )
    policies = {p: load_policy(BUNDLED_POLICIES / f"{p}.yaml") for p, _ in POLICY_SHARE}
    thresholds = TicketService(make_engine("sqlite://"), policies, lambda: NOW).thresholds
    started = time.perf_counter()
    queue = build_queue(args.n, args.seed, policies, thresholds)
    states = Counter(row[f"{name}_state"] for row in queue.decisions for name in TARGETS)
    statuses = Counter(row["status"] for row in queue.tickets)
    breached = sum(
        any(row[f"{name}_state"] == "breached" for name in TARGETS) for row in queue.decisions
    )
    print(
        f"  queue: {args.n:,} open tickets ({_counts(statuses)}), {breached:,} of them with a "
        f"breached clock; clocks: {_counts(Counter(dict(sorted(states.items()))))}; "
        f"decided and marked in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    databases: list[tuple[str, Callable[[], Any]]] = [("SQLite", sqlite_database)]
    if not args.skip_postgres:
        databases.append(("PostgreSQL", postgres_database))
    ok = True
    for kind, database in databases:
        with database() as url:
            ok &= report(run(kind, url, policies, queue, args))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
