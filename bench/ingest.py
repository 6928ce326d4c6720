"""Benchmark: backfill ingest, one transaction per snapshot against a page per transaction.

``--n`` Zendesk tickets are made as Zendesk serves them (the fake Zendesk's tickets and
audits, in the documented shapes: customers on three plans, P1 to P4, production and
staging, replies, waits on the customer, solves) and mapped to snapshots by the connector's
own ``map_ticket`` with ``config/slabot.yaml``'s Zendesk section (not timed), and routed by
its ``routing:`` rules, as a deployment with that file routes them. Then, for each
database (a SQLite file in a temporary folder; a PostgreSQL database created for the run and
dropped after it), in one run, each way into a database of its own:

* **sequential**: ``TicketService.ingest`` per snapshot, one transaction each (the
  baseline: what ``slabot backfill`` did before);
* **batched**: ``TicketService.ingest_many`` per page of ``--page`` snapshots (1,000: a
  page of Zendesk's incremental export), one transaction each, as the backfill now does.

Two passes each: ``backfill`` (every ticket new) and ``update`` (the same tickets again, a
later state of each: a reply, a status change; what a second backfill or a poll brings).
Both ways must store the same thing (checked: rows per table, clock outcomes included, and
the decisions' due dates, policies and routing rules).

The goal: batched at least 3x the fastest rate Zendesk's incremental export can deliver,
on both databases and both passes. Zendesk documents 10 requests a minute for the
incremental exports, 30 with the High Volume API add-on, and 1,000 tickets a page (cursor
pagination): 30 x 1,000 / 60 = 500 tickets a second at most, so the goal is 1,500
snapshots a second. The ratio batched / sequential is printed beside it.

``--cpu-time`` prints each pass's rates by CPU time too (this process's, plus on PostgreSQL
the server processes' of the run's connections, read from ``/proc``: a server on this
machine), which the other work on a shared machine moves far less than the wall clock; the
goal is judged on the wall clock either way.

Run from the repository root:
``.venv/bin/python bench/ingest.py [--n N] [--skip-postgres] [--cpu-time]``.
PostgreSQL is reached at ``SLABOT_BENCH_POSTGRES_URL`` (default
postgresql://postgres@127.0.0.1:5432/postgres). Exit status 1 if a goal fails or the two
ways stored different things.
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
import logging
import os
import platform
import random
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import Engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bot.routing import Router
from connectors.zendesk.config import ZendeskConfig, load_zendesk_config
from connectors.zendesk.mapping import TicketBundle, map_ticket
from slabot.fakes.zendesk import FakeZendesk
from slabot.policy_files import bundled_policy_paths, load_policy
from slabot.routing_files import load_routing
from slabot.store.db import make_engine
from slabot.store.migrate import upgrade
from slabot.store.models import (
    ClockOutcome,
    OutboxItem,
    StoredDecision,
    StoredTicket,
    TargetMark,
    TicketEvent,
)
from slabot.store.services import TicketService
from slabot.store.snapshot import Snapshot

EXPORT_REQUESTS_PER_MINUTE = 30
"""Zendesk's incremental exports with the High Volume API add-on (10 without it)."""
EXPORT_PAGE = 1000
"""Tickets per page of the cursor-based incremental ticket export."""
EXPORT_RATE = EXPORT_REQUESTS_PER_MINUTE * EXPORT_PAGE / 60
GOAL = 3 * EXPORT_RATE

START = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)  # a Monday afternoon in Europe
BOT, AGENT = 900, 601
ENVIRONMENT, URGENCY, IMPACT = 360001000001, 360001000002, 360001000003
ZONES = ("America/Los_Angeles", "America/New_York", "Europe/Berlin", None)
PLANS = (("premier", 40), ("standard", 30), ("premier_plus", 20), ("gold", 2), (None, 8))
PRIORITIES = (("urgent", 5), ("high", 20), ("normal", 55), ("low", 15), (None, 5))
ENVIRONMENTS = (("env_production", 85), ("env_staging", 10), (None, 5))
CHANNELS = (("web", 45), ("email", 35), ("voice", 15), ("native_messaging", 5))


def weighted(rng: random.Random, choices: tuple[tuple[Any, int], ...]) -> Any:
    values, weights = zip(*choices, strict=True)
    return rng.choices(values, weights)[0]


def zendesk_account(n: int, seed: int) -> FakeZendesk:
    """``n`` tickets in the fake Zendesk (not served: only its state and audits are used),
    a tenth of the customers' organizations per plan, each ticket created over two weeks."""
    rng = random.Random(seed)
    fake = FakeZendesk(now=START, bot_user_id=BOT)
    fake.add_user(AGENT, "agent", name="Agent Smith")
    for org in range(1, 101):
        plan = weighted(rng, PLANS)
        fake.add_organization(
            1000 + org,
            organization_fields={
                "support_plan": plan,
                "country": rng.choice(["us", "de", "fr", None]),
                "time_zone": rng.choice(ZONES),
            },
        )
        fake.add_user(2000 + org, "end-user", time_zone="Pacific Time (US & Canada)")
    for ticket_id in range(1, n + 1):
        org = rng.randrange(1, 101)
        fields: dict[int, Any] = {}
        environment = weighted(rng, ENVIRONMENTS)
        if environment:
            fields[ENVIRONMENT] = environment
        fake.add_ticket(
            ticket_id,
            requester_id=2000 + org,
            organization_id=1000 + org,
            created_at=START + timedelta(seconds=rng.randrange(14 * 24 * 3600)),
            priority=weighted(rng, PRIORITIES),
            tags=rng.choice([[], ["vip"], ["stage_beta"]]),
            custom_fields=fields,
            channel=weighted(rng, CHANNELS),
        )
    return fake


def later_state(fake: FakeZendesk, seed: int) -> None:
    """Each ticket a little later: an agent replies, and it waits on the customer, is solved
    or stays open; some are reopened."""
    rng = random.Random(seed)
    for ticket_id, ticket in fake.tickets.items():
        created = datetime.fromisoformat(ticket["created_at"].replace("Z", "+00:00"))
        reply = created + timedelta(minutes=rng.randrange(5, 600))
        status = rng.choice(["pending", "open", "solved", "pending"])
        fake.agent_update(ticket_id, AGENT, at=reply, public_reply="On it.", status=status)
        if status == "solved" and rng.random() < 0.2:
            fake.agent_update(ticket_id, AGENT, at=reply + timedelta(hours=5), status="open")


def snapshots(fake: FakeZendesk, config: ZendeskConfig) -> list[Snapshot]:
    """Every ticket of the account as the connector maps it (the export's order)."""
    mapped = []
    for ticket_id, ticket in sorted(fake.tickets.items(), key=lambda t: t[1]["updated_at"]):
        org = fake.organizations.get(ticket.get("organization_id") or 0)
        bundle = TicketBundle(
            ticket,
            fake.audits.get(ticket_id, ()),
            fake.users.get(ticket["requester_id"]),
            org,
            frozenset({AGENT}),
            BOT,
        )
        mapped.append(map_ticket(bundle, config).snapshot)
    return mapped


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as folder:
        yield f"sqlite:///{Path(folder) / 'bench.db'}"


@contextmanager
def postgres_database(admin: str) -> Iterator[str]:
    name = f"slabot_bench_{secrets.token_hex(6)}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def timed(
    call: Callable[[], int], server: Callable[[], float | None]
) -> tuple[float, float | None, int]:
    """Seconds the call took (garbage collection off while it runs), the CPU seconds it took
    (this process's and ``server``'s; None if the server's cannot be read) and what it
    counted."""
    gc.collect()
    gc.disable()
    try:
        server_before = server()
        cpu_before = time.process_time()
        started = time.perf_counter()
        failed = call()
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
        server_after = server()
        if server_before is None or server_after is None:
            return seconds, None, failed
        return seconds, cpu + server_after - server_before, failed
    finally:
        gc.enable()


def server_cpu(engine: Engine) -> Callable[[], float | None]:
    """The CPU seconds used so far by the PostgreSQL server processes of ``engine``'s
    connections (0 on SQLite, which runs in this process; None if ``/proc`` does not show
    them: a server on another machine)."""
    if engine.dialect.name != "postgresql":
        return lambda: 0.0
    pids: set[int] = set()

    @event.listens_for(engine, "connect")
    def remember(connection: Any, _record: Any) -> None:
        pids.add(connection.info.backend_pid)

    tick = os.sysconf("SC_CLK_TCK")

    def used() -> float | None:
        total = 0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return None
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / tick

    return used


def run_pass(service: TicketService, batch: list[Snapshot], page: int | None) -> int:
    """Ingest ``batch`` one by one (``page`` None) or a page at a time; the failures."""
    failed = 0
    if page is None:
        for snapshot in batch:
            try:
                service.ingest(snapshot)
            except Exception:
                failed += 1
        return failed
    for start in range(0, len(batch), page):
        results = service.ingest_many(batch[start : start + page])
        failed += sum(isinstance(result, Exception) for result in results)
    return failed


def fingerprint(engine: Engine) -> tuple[Any, ...]:
    """What both ways must have stored alike: rows per table, and the decisions."""
    tables = (StoredTicket, TicketEvent, StoredDecision, TargetMark, OutboxItem, ClockOutcome)
    with Session(engine) as session:
        counts = tuple(session.scalar(select(func.count()).select_from(model)) for model in tables)
        dues = tuple(
            session.execute(
                select(
                    StoredTicket.external_key,
                    StoredDecision.priority,
                    StoredDecision.first_response_due,
                    StoredDecision.restoration_due,
                    StoredDecision.next_update_due,
                    StoredDecision.policy,
                    StoredDecision.routing_rule,
                )
                .join(StoredDecision, StoredDecision.ticket_id == StoredTicket.id)
                .order_by(StoredTicket.external_key)
            ).all()
        )
    return counts, dues


def measure(
    url: str,
    passes: dict[str, list[Snapshot]],
    page: int | None,
    policies: dict[str, Any],
    router: Router,
) -> tuple[dict[str, float], dict[str, float | None], tuple[Any, ...]]:
    """Snapshots a second per pass, by the wall clock and by CPU time (None: the server's
    could not be read), and the fingerprint of what was stored."""
    engine = make_engine(url)
    server = server_cpu(engine)  # before the first connection, which the passes reuse
    try:
        upgrade(engine)
        now = START + timedelta(days=15)
        service = TicketService(engine, policies, lambda: now, origin="zendesk", router=router)
        rates: dict[str, float] = {}
        cpu_rates: dict[str, float | None] = {}
        for name, batch in passes.items():
            seconds, cpu, failed = timed(lambda batch=batch: run_pass(service, batch, page), server)
            if failed:
                raise SystemExit(f"{failed} snapshots of the {name} pass failed")
            rates[name] = len(batch) / seconds
            cpu_rates[name] = len(batch) / cpu if cpu else None
        return rates, cpu_rates, fingerprint(engine)
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    logging.disable(logging.WARNING)  # the unknown-plan warnings, alike both ways: not timed
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="tickets (default 10000)")
    parser.add_argument("--page", type=int, default=EXPORT_PAGE, help="snapshots a batch")
    parser.add_argument("--seed", type=int, default=20261102)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="print the rates by CPU time too (this process's and a local server's)",
    )
    args = parser.parse_args(argv)

    config_path = Path(__file__).resolve().parent.parent / "config/slabot.yaml"
    config = load_zendesk_config(config_path)
    policies = {p.name: p for p in (load_policy(path) for path in bundled_policy_paths())}
    router = load_routing(config_path).router
    fake = zendesk_account(args.n, args.seed)
    passes = {"backfill": snapshots(fake, config)}
    later_state(fake, args.seed + 1)
    passes["update"] = snapshots(fake, config)
    histories = sum(len(s.status_history) for s in passes["update"])

    print(f"bench/ingest.py: {args.n} Zendesk tickets mapped by map_ticket, pages of {args.page}")
    print(f"  python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cpus")
    print(f"  update pass: {histories} status changes from the audits")
    print(
        f"  Zendesk's incremental export: {EXPORT_REQUESTS_PER_MINUTE} requests/min x "
        f"{EXPORT_PAGE} tickets = {EXPORT_RATE:.0f} tickets/s; goal >= 3x = {GOAL:.0f}/s"
    )
    databases: list[tuple[str, Callable[[], Any]]] = [("sqlite", sqlite_database)]
    if not args.skip_postgres:
        admin = os.environ.get(
            "SLABOT_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        )
        databases.append(("postgresql", lambda: postgres_database(admin)))
    ok = True
    for name, database in databases:
        with database() as url:
            sequential, sequential_cpu, expected = measure(url, passes, None, policies, router)
        with database() as url:
            batched, batched_cpu, got = measure(url, passes, args.page, policies, router)
        same = got == expected
        ok &= same
        print(f"\n{name}: stored alike both ways: {'yes' if same else 'NO'}")
        for pass_name in passes:
            ratio = batched[pass_name] / sequential[pass_name]
            verdict = "PASS" if batched[pass_name] >= GOAL else "FAIL"
            ok &= verdict == "PASS"
            print(
                f"  {pass_name:8} sequential {sequential[pass_name]:7.0f}/s   batched "
                f"{batched[pass_name]:7.0f}/s   ratio {ratio:5.1f}x   goal >= {GOAL:.0f}/s "
                f"({batched[pass_name] / EXPORT_RATE:.1f}x the export): {verdict}"
            )
            if args.cpu_time:
                by_cpu = cpu_line(sequential_cpu[pass_name], batched_cpu[pass_name])
                print(f"  {'':8} by CPU time: {by_cpu}")
    return 0 if ok else 1


def cpu_line(sequential: float | None, batched: float | None) -> str:
    if sequential is None or batched is None:
        return "the server's CPU time cannot be read here (not a local server)"
    return (
        f"sequential {sequential:7.0f}/s   batched {batched:7.0f}/s   "
        f"ratio {batched / sequential:5.1f}x"
    )


if __name__ == "__main__":
    sys.exit(main())
