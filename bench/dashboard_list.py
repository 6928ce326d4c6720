"""Benchmark: first pages at 1,000,000 open tickets on PostgreSQL, against 100,000.

What a person waits for when they open the dashboard or a breach list of a large account:
the first page of "breached now" (``TicketService.breached(now, limit)``), of "due within the
next hour" (``TicketService.due_before``), and of the dashboard's ticket list
(``slabot.service.board.open_tickets``: its default order, and filtered by state, group,
unassigned, a search of a rare word and one of a word nearly every ticket has), each timed
as the service runs it (SQL, evaluation of each row shown, the filter options).

Two PostgreSQL databases, created for the run and dropped after it:

* small: ``--small`` open tickets (default 100,000), cloned from ``--template`` tickets of
  bench/scan.py's support queue, each evaluated once and stored with its decision, its
  threshold marks and the list's columns as the store computes them; ``--matching`` of them
  (default 1,000) are in the group ``Escalations``, unassigned, and carry the word
  ``acmerare`` in their subject; the rest are assigned, in other groups, and do not (their
  subject has ``printer``);
* large: the same tickets, then quiet ones up to ``--large`` (default 1,000,000): clones of
  template tickets with no clock due within the hour and none breached, assigned, in other
  groups, without the word. Every query thus matches the same rows in both databases, and
  the large/small ratio shows whether the cost follows the rows returned or the rows stored.

Tickets are written with COPY, streamed (nothing holds a million rows in memory). Each query
runs ``--rounds`` times per database, alternating; best and median are printed. Goals: every
first page under 50 ms at the large size, and large at most 1.5x small.

Run from the repository root: ``.venv/bin/python bench/dashboard_list.py [--large N]``.
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
import importlib.util
import json
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any

import psycopg
from sqlalchemy import Engine, func, select

from bot.ticket import TEXT_FIELDS
from slabot.policy_files import BUNDLED_POLICIES, load_policy
from slabot.service import board
from slabot.slack.store_access import SlackStore
from slabot.store.breaches import BREACH
from slabot.store.db import make_engine
from slabot.store.migrate import upgrade
from slabot.store.models import TargetMark
from slabot.store.search import search_text
from slabot.store.services import TicketService


def _policies() -> dict[str, Any]:
    return {p: load_policy(BUNDLED_POLICIES / f"{p}.yaml") for p, _ in scan.POLICY_SHARE}


def _scan() -> ModuleType:
    """bench/scan.py's support queue and database helpers (a script, loaded by path)."""
    spec = importlib.util.spec_from_file_location("bench_scan", _HERE / "scan.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_scan"] = module
    spec.loader.exec_module(module)
    return module


scan = _scan()
NOW: datetime = scan.NOW
HOUR = timedelta(hours=1)
PAGE = board.PAGE_SIZE
LATENCY_GOAL_MS = 50.0
SCALE_GOAL = 1.5
GROUP, WORD = "Escalations", "acmerare"
COMMON = "printer"
"""A word in the subject of every ticket but the ``--matching`` ones: a search the trigram
index does not narrow (the list's own order reads it)."""
OTHER_GROUPS = ("Tier 1", "Tier 2", "Billing", "Onboarding")


@dataclass
class Template:
    """One evaluated ticket of the queue, its rows ready to clone under another id."""

    ticket: dict[str, Any]
    decision: dict[str, Any]
    marks: list[dict[str, Any]]
    quiet: bool
    """No clock breached or due within the hour: a clone matches no query measured."""


def templates(count: int) -> list[Template]:
    policies = _policies()
    queue = scan.build_queue(count, 11, policies, (750, BREACH))  # the default thresholds
    marks: dict[int, list[dict[str, Any]]] = {}
    for mark in queue.marks:
        marks.setdefault(mark["ticket_id"], []).append(mark)
    found = []
    for ticket, decision in zip(queue.tickets, queue.decisions, strict=True):
        own = marks.get(ticket["id"], [])
        breaches = [m["at"] for m in own if m["threshold_permille"] == BREACH]
        quiet = all(at > NOW + HOUR for at in breaches)
        found.append(Template(ticket, decision, own, quiet))
    return found


def _ticket_rows(
    pool: list[Template], first_id: int, count: int, matching: int
) -> Iterator[tuple[int, Template, bool]]:
    for offset in range(count):
        ticket_id = first_id + offset
        yield ticket_id, pool[offset % len(pool)], ticket_id <= matching


def copy_tickets(engine: Engine, rows: Callable[[], Iterator[tuple[int, Template, bool]]]) -> None:
    """COPY the tickets, their decisions and marks produced by ``rows`` (run once a table)."""
    raw = engine.raw_connection()
    try:
        driver = raw.driver_connection
        assert isinstance(driver, psycopg.Connection)
        with driver.cursor() as cursor:
            with cursor.copy(f"COPY tickets ({', '.join(TICKET_COLUMNS)}) FROM STDIN") as copy:
                for ticket_id, template, matches in rows():
                    row = dict(template.ticket)
                    row["id"], row["external_key"] = ticket_id, _key(row["source"], ticket_id)
                    if matches:
                        queue, assignee, subject = GROUP, None, f"Export fails {WORD}"
                    else:
                        queue = OTHER_GROUPS[ticket_id % len(OTHER_GROUPS)]
                        assignee = f"agent{ticket_id % 40}@example.com"
                        subject = f"{COMMON.title()} does not print"
                    shown = {**row["shown"], "queue": queue, "subject": subject}
                    if assignee:
                        shown["assignee_email"] = assignee
                    breaches = [
                        m["at"] for m in template.marks if m["threshold_permille"] == BREACH
                    ]
                    row.update(
                        shown=shown,
                        next_due_at=min(breaches) if breaches else None,
                        queue=queue,
                        assignee_email=assignee,
                        search_text=search_text(row["source"], row["external_key"], shown),
                    )
                    copy.write_row([_value(row.get(c)) for c in TICKET_COLUMNS])
            decision_columns = list(rows().__next__()[1].decision)
            with cursor.copy(f"COPY decisions ({', '.join(decision_columns)}) FROM STDIN") as copy:
                for ticket_id, template, _matches in rows():
                    values = {**template.decision, "ticket_id": ticket_id}
                    copy.write_row([_value(values[c]) for c in decision_columns])
            mark_columns = (
                "ticket_id, target, threshold_permille, at, cycle_started_at, source, external_key"
            )
            with cursor.copy(f"COPY target_marks ({mark_columns}) FROM STDIN") as copy:
                for ticket_id, template, _matches in rows():
                    key = _key(template.ticket["source"], ticket_id)
                    for mark in template.marks:
                        copy.write_row(
                            [
                                ticket_id,
                                mark["target"],
                                mark["threshold_permille"],
                                mark["at"],
                                mark["cycle_started_at"],
                                mark["source"],
                                key,
                            ]
                        )
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('tickets', 'id'), max(id)) FROM tickets"
            )
        driver.commit()
    finally:
        raw.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")
        connection.exec_driver_sql("CHECKPOINT")


TICKET_COLUMNS = [
    "id",
    "source",
    "external_key",
    "policy",
    "created_at",
    "status",
    *TEXT_FIELDS,
    "first_response_at",
    "last_agent_update_at",
    "solved_at",
    "restoration_started_at",
    "paused",
    "reclassified_priority",
    "reclassified_by",
    "reclassified_reason",
    "reclassified_at",
    "shown",
    "source_updated_at",
    "first_seen_at",
    "updated_at",
    "next_due_at",
    "queue",
    "assignee_email",
    "search_text",
]


def _key(source: str, ticket_id: int) -> str:
    return f"SUP-{ticket_id}" if source == "jira" else str(100_000 + ticket_id)


def _value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


QUERIES: dict[str, tuple[str, board.Filters | None]] = {
    "breached now": ("breached", None),
    "due within 1h": ("due", None),
    "list": ("list", board.Filters()),
    "list state=breached": ("list", board.Filters(state="breached")),
    "list state=running": ("list", board.Filters(state="running")),
    "list state=paused": ("list", board.Filters(state="paused")),
    f"list group={GROUP}": ("list", board.Filters(group=GROUP)),
    "list unassigned": ("list", board.Filters(unassigned=True)),
    f"list q={WORD}": ("list", board.Filters(q=WORD)),
    f"list q={COMMON}": ("list", board.Filters(q=COMMON)),
    "before 0009: order, SQL only": ("before", None),
}
BEFORE = (
    select(TargetMark.ticket_id, func.min(TargetMark.at))
    .where(TargetMark.threshold_permille == BREACH)
    .group_by(TargetMark.ticket_id)
    .order_by(func.min(TargetMark.at), TargetMark.ticket_id)
    .limit(PAGE)
)
"""The list's first query before revision 0009 (its order from the breach marks), for scale:
the SQL alone, without the evaluation of its rows."""


def calls(engine: Engine) -> dict[str, Callable[[], int]]:
    policies = _policies()
    tickets = TicketService(engine, policies, lambda: NOW)
    store = SlackStore(engine, policies)

    def breached() -> int:
        return len(tickets.breached(NOW, limit=PAGE))

    def due_soon() -> int:
        return len(tickets.reaching(1.0, NOW, HOUR, limit=PAGE))

    def before() -> int:
        with engine.connect() as connection:
            return len(connection.execute(BEFORE).all())

    def listing(filters: board.Filters | None) -> Callable[[], int]:
        return lambda: len(board.open_tickets(engine, store, NOW, filters).rows)

    kinds: dict[str, Callable[[], int]] = {
        "breached": breached,
        "due": due_soon,
        "before": before,
    }
    found = {
        name: kinds[kind] if kind in kinds else listing(filters)
        for name, (kind, filters) in QUERIES.items()
    }
    return found


def timed(rounds: int, databases: dict[str, dict[str, Callable[[], int]]]) -> dict[str, Any]:
    """Per database and query: (best ms, median ms, rows of the page), alternating."""
    times: dict[str, dict[str, list[float]]] = {d: {q: [] for q in QUERIES} for d in databases}
    rows: dict[str, dict[str, int]] = {d: {} for d in databases}
    for database, own in databases.items():  # warm-up: caches, the plans
        for query, call in own.items():
            rows[database][query] = call()
    for _ in range(rounds):
        for query in QUERIES:
            for database, own in databases.items():
                started = time.perf_counter()
                rows[database][query] = own[query]()
                times[database][query].append((time.perf_counter() - started) * 1000)
    return {
        d: {q: (min(t), statistics.median(t), rows[d][q]) for q, t in per.items()}
        for d, per in times.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--matching", type=int, default=1_000)
    parser.add_argument("--template", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    options = parser.parse_args(argv)
    started = time.perf_counter()
    pool = templates(options.template)
    quiet = [t for t in pool if t.quiet]
    print(
        f"{len(pool)} template tickets evaluated ({len(quiet)} quiet) in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )
    with scan.postgres_database() as small_url, scan.postgres_database() as large_url:
        engines = {"small": make_engine(small_url), "large": make_engine(large_url)}
        for name, engine in engines.items():
            upgrade(engine)
            began = time.perf_counter()
            size = options.small if name == "small" else options.large

            def rows(size: int = size) -> Iterator[tuple[int, Template, bool]]:
                yield from _ticket_rows(pool, 1, options.small, options.matching)
                if size > options.small:
                    yield from _ticket_rows(quiet, options.small + 1, size - options.small, 0)

            copy_tickets(engine, rows)
            print(f"{name}: {size:,} open tickets stored in {time.perf_counter() - began:.0f} s")
        try:
            figures = timed(options.rounds, {n: calls(e) for n, e in engines.items()})
        finally:
            for engine in engines.values():
                engine.dispose()
    print(
        f"\nfirst page ({PAGE} rows at most), {options.rounds} alternating rounds; "
        f"ms best / median\n"
    )
    print(f"{'query':28} {'rows':>5} {'small':>15} {'large':>15} {'large/small':>12}")
    failed = False
    for query in QUERIES:
        small_best, small_median, small_rows = figures["small"][query]
        large_best, large_median, large_rows = figures["large"][query]
        ratio = large_median / small_median
        verdict = []
        if QUERIES[query][0] == "before":
            print(
                f"{query:28} {large_rows:>5} {small_best:>6.1f} / {small_median:>6.1f} "
                f"{large_best:>6.1f} / {large_median:>6.1f} {ratio:>11.2f}x  (not judged)"
            )
            continue
        if large_median >= LATENCY_GOAL_MS:
            verdict.append(f"over {LATENCY_GOAL_MS:.0f} ms")
        if ratio > SCALE_GOAL:
            verdict.append(f"ratio over {SCALE_GOAL}")
        if small_rows != large_rows:
            verdict.append(f"rows differ: {small_rows} vs {large_rows}")
        failed = failed or bool(verdict)
        print(
            f"{query:28} {large_rows:>5} {small_best:>6.1f} / {small_median:>6.1f} "
            f"{large_best:>6.1f} / {large_median:>6.1f} {ratio:>11.2f}x  "
            f"{'; '.join(verdict) or 'PASS'}"
        )
    print(
        f"\ngoals: each first page < {LATENCY_GOAL_MS:.0f} ms at {options.large:,} tickets "
        f"(median), large/small <= {SCALE_GOAL}: {'FAIL' if failed else 'PASS'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
