"""Benchmark: the breach queries over 100,000 open tickets, on SQLite and on PostgreSQL.

For each database (a SQLite file in a temporary folder; a PostgreSQL database created for
the run and dropped after it), in one run:

* setup: ``--n`` open tickets of the three example policies, as a support queue looks
  (ages, replies, customers waiting, pauses), bulk-inserted with the decision and the
  threshold marks the store's own code computes for each (``evaluate`` on the ticket as
  ``engine_ticket`` reads it back, ``decision_marks``); a sample is read back and
  re-evaluated to check the rows are what an ingest would have stored;
* "breached now" (``TicketService.breached(now, limit=None)``) and "due within the next
  hour" (``TicketService.reaching(1.0, now, 1h, limit=None)``) against a bare SQL
  ``SELECT count(*)`` of the same rows with the same WHERE clause, in alternating rounds;
  the best round of each is kept. The goal (each query at most 2x its count) is judged on
  what the database does: the query's own SELECT executed by the database without handing
  its rows to a client (PostgreSQL: ``EXPLAIN (ANALYZE, TIMING OFF)`` execution time of the
  SELECT and of the count; SQLite: ``SELECT count(*) FROM (<the SELECT>)``, which SQLite
  runs as a co-routine producing every row with its six columns, against the bare count).
  The functions' full fetch into Python objects is printed too, against the same count,
  for what it is: a count returns one number, the functions thousands of rows. For scale,
  the same breached count without the marks (a scan of the decisions) and the plans;
* cost against tickets stored: a second database holds ``--scale-small`` tickets, then
  ``--scale-large`` (the extra ones matching neither query), with the same matching rows;
  both queries are timed at each size. Goal: the larger at most 1.5x the smaller, for the
  functions and for the database's execution alike;
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
from sqlalchemy import Engine, Table, bindparam, func, insert, literal, select, text
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
from slabot.store.rows import engine_ticket
from slabot.store.services import TicketService
from slabot.store.snapshot import Snapshot
from slabot.store.types import UTCDateTime

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # a Tuesday afternoon in Europe
HOUR = timedelta(hours=1)
GOAL = 2.0
SCALE_GOAL = 1.5
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
    """The ``decisions`` row ``TicketService`` stores for ``decision`` (see
    ``slabot.store.decisions``)."""
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


# --- what the database does -------------------------------------------------------------------

EXPLAIN = "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON, FORMAT JSON) "
"""Per-node timing off: it would add two clock reads per row and node (the count has two
nodes, the SELECT one), inflating both and the ratio with them."""


def in_database(
    engine: Engine, statement: Any, params: dict[str, Any], *, whole_select: bool
) -> Any:
    """A call returning the milliseconds the database spends executing ``statement`` without
    handing its rows to a client.

    PostgreSQL: the execution time ``EXPLAIN (ANALYZE, TIMING OFF)`` reports: the plan runs
    to completion and its rows are discarded by the server. SQLite: a SELECT
    (``whole_select``) runs as ``SELECT count(*) FROM (<the SELECT>)``: SQLite cannot
    flatten a subquery with an ORDER BY into an aggregate, so it runs it as a co-routine
    that produces every row, its columns read from the index, and the outer count consumes
    them; a count runs as it is.
    Timed as the wall time of the call (in process: no network), as the best of rounds.
    """
    if engine.dialect.name == "postgresql":
        compiled = statement.compile(dialect=engine.dialect)
        sql, values = str(compiled), compiled.construct_params(params)

        def explained() -> float:
            with engine.connect() as connection:
                plan = connection.exec_driver_sql(EXPLAIN + sql, values).scalar_one()
            return float(plan[0]["Execution Time"])

        return explained
    counted = select(func.count()).select_from(statement.subquery()) if whole_select else statement

    def timed() -> float:
        with engine.connect() as connection:
            started = time.perf_counter()
            connection.execute(counted, params).scalar_one()
            return (time.perf_counter() - started) * 1000

    return timed


def best_value(rounds: int, calls: dict[str, Callable[[], float]]) -> dict[str, float]:
    """The smallest value each call returns over ``rounds`` alternating rounds (one warm-up
    round first)."""
    for call in calls.values():
        call()
    best = dict.fromkeys(calls, float("inf"))
    gc.disable()
    try:
        for _ in range(rounds):
            for name, call in calls.items():
                best[name] = min(best[name], call())
    finally:
        gc.enable()
    return best


def column_free(where: Any) -> Any:
    """The query's plan (same WHERE, same ORDER BY, same index range) producing its rows
    with no column read: what producing the rows costs before their columns are read."""
    return (
        select(literal(1))
        .select_from(TargetMark)
        .where(where)
        .order_by(TargetMark.at, TargetMark.ticket_id, TargetMark.target)
    )


SELECTED = (
    TargetMark.ticket_id,
    TargetMark.target,
    TargetMark.at,
    TargetMark.cycle_started_at,
    TargetMark.source,
    TargetMark.external_key,
)
"""The breach queries' columns, most needed first (``due_targets_query`` selects all six)."""


def first_columns(where: Any, width: int) -> Any:
    """The query's plan producing only the first ``width`` of its columns: on SQLite, what
    each column read adds to the rows' production (the floor any answer stands on)."""
    return (
        select(*SELECTED[:width])
        .where(where)
        .order_by(TargetMark.at, TargetMark.ticket_id, TargetMark.target)
    )


QUERIES = ("breached", "due within 1h")


def _wheres() -> dict[str, Any]:
    return {"breached": breached_where(NOW), "due within 1h": reaching_where(1000, NOW, HOUR)}


def _counts_sql() -> dict[str, tuple[Any, dict[str, Any]]]:
    return {
        "breached": (BREACHED_COUNT, {"now": NOW}),
        "due within 1h": (DUE_SOON_COUNT, {"now": NOW, "until": NOW + HOUR}),
    }


def database_side(engine: Engine, rounds: int) -> dict[str, float]:
    """Milliseconds, best of rounds: for each query its SELECT and the bare count executed
    by the database (``in_database``); on SQLite also its plan without reading columns."""
    calls: dict[str, Callable[[], float]] = {}
    for query, where in _wheres().items():
        count, params = _counts_sql()[query]
        calls[f"{query} select"] = in_database(
            engine, due_targets_query(where, None), {}, whole_select=True
        )
        calls[f"{query} count"] = in_database(engine, count, params, whole_select=False)
        if engine.dialect.name == "sqlite":
            calls[f"{query} no columns"] = in_database(
                engine, column_free(where), {}, whole_select=True
            )
            if query == "breached":
                for width in range(1, len(SELECTED)):
                    calls[f"{query} {width} columns"] = in_database(
                        engine, first_columns(where, width), {}, whole_select=True
                    )
    return best_value(rounds, calls)


def instant_processing(engine: Engine, values: list[Any], rounds: int) -> tuple[int, float, float]:
    """How long reading ``values`` (instants as the driver returns them) takes through
    ``UTCDateTime``'s fast path and through the general one (the driver type's processor,
    then ``process_result_value``), in milliseconds, best of rounds."""
    column = UTCDateTime().dialect_impl(engine.dialect)
    fast = column.result_processor(engine.dialect, None)
    general = super(UTCDateTime, column).result_processor(engine.dialect, None)
    assert fast is not None and general is not None
    assert [fast(v) for v in values[:100]] == [general(v) for v in values[:100]]

    def timed(process: Callable[[Any], Any]) -> Callable[[], float]:
        def call() -> float:
            started = time.perf_counter()
            for value in values:
                process(value)
            return (time.perf_counter() - started) * 1000

        return call

    best = best_value(rounds, {"fast": timed(fast), "general": timed(general)})
    return len(values), best["fast"], best["general"]


# --- a run ------------------------------------------------------------------------------------


@dataclass
class Figures:
    database: str
    rows: dict[str, int]
    seconds: dict[str, float]
    in_db: dict[str, float]
    """Milliseconds the database spends (``database_side``)."""
    plans: dict[str, list[str]]
    ingest: tuple[int, int, float]
    """(snapshots, history entries, seconds)"""
    processing: tuple[int, float, float]
    """(instants, milliseconds on UTCDateTime's fast path, on the general path)"""
    scale: Scale | None = None


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

        timed = best_of(
            args.repeat,
            {
                "breached": lambda: service.breached(NOW, limit=None),
                "breached count": count(BREACHED_COUNT, now=NOW),
                "breached fetched bare": fetch(BREACHED_FETCH, now=NOW),
                "due within 1h": lambda: service.reaching(1.0, NOW, HOUR, limit=None),
                "due within 1h count": count(DUE_SOON_COUNT, now=NOW, until=NOW + HOUR),
                "breached, first 100": lambda: service.breached(NOW, limit=100),
                "without marks count": count(WITHOUT_MARKS_COUNT, now=NOW),
            },
        )
        rows = {
            name: len(result) if isinstance(result, list) else int(result)
            for name, (_, result) in timed.items()
        }
        assert rows["breached"] == rows["breached count"] == rows["breached fetched bare"], rows
        assert rows["due within 1h"] == rows["due within 1h count"], rows
        in_db = database_side(engine, max(args.repeat, 15))
        raw_rows = timed["breached fetched bare"][1]
        instants = [row[4] for row in raw_rows] + [row[5] for row in raw_rows]
        processing = instant_processing(engine, instants, args.repeat)
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
            in_db,
            plans,
            (len(stream), entries, ingest_seconds),
            processing,
        )
    finally:
        engine.dispose()


# --- cost against tickets stored ----------------------------------------------------------------


@dataclass
class Stage:
    stored: int
    rows: dict[str, int]
    function_ms: dict[str, float]
    in_db_ms: dict[str, float]


@dataclass
class Scale:
    small: Stage
    large: Stage


def matches_a_query(marks: Sequence[dict[str, Any]]) -> bool:
    """Whether a ticket has a clock breached or due within the hour (a row of either query)."""
    return any(m["threshold_permille"] == 1000 and m["at"] <= NOW + HOUR for m in marks)


def split_for_scale(queue: Queue, small: int, large: int) -> tuple[Queue, Queue]:
    """The first ``small`` tickets of the queue, and ``large - small`` more that match
    neither query (the queue's own, then copies of them under new ids and keys)."""
    marks: dict[int, list[dict[str, Any]]] = {}
    for mark in queue.marks:
        marks.setdefault(mark["ticket_id"], []).append(mark)
    first = Queue(
        queue.tickets[:small],
        queue.decisions[:small],
        [m for t in queue.tickets[:small] for m in marks.get(t["id"], [])],
    )
    spare = [t for t in queue.tickets[small:] if not matches_a_query(marks.get(t["id"], []))]
    assert spare, "the queue has no ticket matching neither query"
    decisions = {d["ticket_id"]: d for d in queue.decisions}
    more = Queue([], [], [])
    for number in range(small + 1, large + 1):
        source = spare[(number - small - 1) % len(spare)]
        key = f"scale-{number}"
        more.tickets.append(dict(source, id=number, external_key=key))
        more.decisions.append(dict(decisions[source["id"]], ticket_id=number))
        more.marks.extend(
            dict(m, ticket_id=number, external_key=key) for m in marks.get(source["id"], [])
        )
    return first, more


def stage(engine: Engine, policies: dict[str, Policy], stored: int, rounds: int) -> Stage:
    service = TicketService(engine, policies, lambda: NOW)
    timed = best_of(
        rounds,
        {
            "breached": lambda: service.breached(NOW, limit=None),
            "due within 1h": lambda: service.reaching(1.0, NOW, HOUR, limit=None),
        },
    )
    in_db = database_side(engine, rounds)
    return Stage(
        stored,
        {name: len(result) for name, (_, result) in timed.items()},
        {name: seconds * 1000 for name, (seconds, _) in timed.items()},
        {query: in_db[f"{query} select"] for query in QUERIES},
    )


def scale(
    database: Callable[[], Any], policies: dict[str, Policy], queue: Queue, args: argparse.Namespace
) -> Scale:
    """The same queries over ``--scale-small`` and then ``--scale-large`` stored tickets,
    with the same matching rows (the extra tickets match neither query)."""
    first, more = split_for_scale(queue, args.scale_small, args.scale_large)
    rounds = max(args.repeat, 15)
    with database() as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            bulk_insert(engine, first)
            small = stage(engine, policies, len(first.tickets), rounds)
            bulk_insert(engine, more)
            large = stage(engine, policies, len(first.tickets) + len(more.tickets), rounds)
        finally:
            engine.dispose()
    assert small.rows == large.rows, (small.rows, large.rows)
    return Scale(small, large)


# --- the report -------------------------------------------------------------------------------


def _verdict(ratio: float, goal: float) -> str:
    return f"goal <= {goal:g}x: {'PASS' if ratio <= goal else 'FAIL'}"


def report(figures: Figures) -> bool:
    ms = {name: seconds * 1000 for name, seconds in figures.seconds.items()}
    db = figures.in_db
    rows = figures.rows
    sqlite = figures.database == "SQLite"
    method = (
        "SELECT count(*) FROM (<the SELECT>), every row produced with its columns"
        if sqlite
        else "EXPLAIN (ANALYZE, TIMING OFF) execution time"
    )
    print(f"\n{figures.database}")
    ok = True
    print(f"  in the database ({method}), against the bare count of the same rows:")
    for query in QUERIES:
        ratio = db[f"{query} select"] / db[f"{query} count"]
        ok &= ratio <= GOAL
        name = "breached now" if query == "breached" else query
        line = (
            f"    {name:<14} {rows[query]:>7,} rows: its SELECT {db[f'{query} select']:6.3f} ms,"
            f" count {db[f'{query} count']:6.3f} ms: {ratio:4.2f}x ({_verdict(ratio, GOAL)})"
        )
        if sqlite:
            bare = db[f"{query} no columns"] / db[f"{query} count"]
            line += f"; the same rows with no column read {db[f'{query} no columns']:.3f} ms"
            line += f" ({bare:.2f}x)"
        print(line)
    if sqlite:
        count = db["breached count"]
        widths = [("0", db["breached no columns"])]
        widths += [(str(w), db[f"breached {w} columns"]) for w in range(1, len(SELECTED))]
        widths.append((str(len(SELECTED)), db["breached select"]))
        print(
            "    breached now, its rows produced with the first k of its columns (ticket id, "
            "target, due, cycle start, source, key), k: ratio to the count: "
            + ", ".join(f"{k}: {value / count:.2f}x" for k, value in widths)
            + " (SQLite's cost of producing a row's columns, whatever the index)"
        )
    print("  the functions, every row fetched into Python objects, against the same count:")
    for query in QUERIES:
        bare = ms[f"{query} count"]
        name = "breached now" if query == "breached" else query
        print(
            f"    {name:<14} {rows[query]:>7,} rows: {ms[query]:7.2f} ms, the count "
            f"{bare:6.2f} ms: {ms[query] / bare:5.2f}x (not the goal's measure: a count returns "
            "one number)"
        )
    print(
        f"    the breached rows fetched bare (text SQL, values as the driver gives them): "
        f"{ms['breached fetched bare']:.2f} ms, "
        f"{ms['breached fetched bare'] / ms['breached count']:.2f}x the count"
    )
    values, fast, general = figures.processing
    print(
        f"    breached now, its {values:,} instants read: {fast:.2f} ms on UTCDateTime's fast "
        f"path, {general:.2f} ms on the general one (the driver type's processor, then "
        "process_result_value)"
    )
    print(
        f"  breached, first page of 100: {ms['breached, first 100']:.2f} ms;  for scale, the "
        f"breached count without the marks (a scan of the decisions): "
        f"{ms['without marks count']:.2f} ms"
    )
    for name, plan in figures.plans.items():
        print(f"  plan, {name}: " + " | ".join(line.strip() for line in plan))
    if figures.scale is not None:
        ok &= report_scale(figures.scale)
    snapshots, entries, seconds = figures.ingest
    print(
        f"  ingest: {snapshots:,} snapshots ({entries:,} history entries) in {seconds:.2f} s: "
        f"{snapshots / seconds:,.0f} events/s ({1000 * seconds / snapshots:.2f} ms each, one "
        "transaction per snapshot)"
    )
    return ok


def report_scale(figures: Scale) -> bool:
    small, large = figures.small, figures.large
    print(
        f"  cost against tickets stored: {small.stored:,} then {large.stored:,} tickets, the "
        "same rows matching (the others match neither query):"
    )
    ok = True
    for query in QUERIES:
        function = large.function_ms[query] / small.function_ms[query]
        in_db = large.in_db_ms[query] / small.in_db_ms[query]
        ok &= function <= SCALE_GOAL and in_db <= SCALE_GOAL
        name = "breached now" if query == "breached" else query
        print(
            f"    {name:<14} {small.rows[query]:>6,} rows: function {small.function_ms[query]:6.2f}"
            f" -> {large.function_ms[query]:6.2f} ms: {function:4.2f}x "
            f"({_verdict(function, SCALE_GOAL)}); in the database "
            f"{small.in_db_ms[query]:5.3f} -> {large.in_db_ms[query]:5.3f} ms: {in_db:4.2f}x "
            f"({_verdict(in_db, SCALE_GOAL)})"
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
    parser.add_argument(
        "--scale-small", type=int, default=10_000, help="tickets stored, first scale stage"
    )
    parser.add_argument(
        "--scale-large", type=int, default=100_000, help="tickets stored, second scale stage"
    )
    parser.add_argument("--skip-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args(argv)
    if not 0 < args.scale_small < args.scale_large or args.scale_small > args.n:
        parser.error("need 0 < --scale-small < --scale-large and --scale-small <= --n")

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
            figures = run(kind, url, policies, queue, args)
        started = time.perf_counter()
        figures.scale = scale(database, policies, queue, args)
        print(
            f"  {kind}: the scale stages set up and timed in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        ok &= report(figures)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
