"""Benchmark: ``slabot recompute`` over N stored open tickets after a policy edit.

For each database (SQLite file, PostgreSQL at 127.0.0.1) and each size in ``--sizes``:

1. stores N open zoom tickets, bulk-generated with ``bench/evaluate.py``'s generator (its
   mix of plans, priorities, zones, countries, replies and pauses; solved ones left out),
   each showing in the helpdesk what the bundled policy gives it (as after a sync);
2. fills their decisions and marks with a recompute against the bundled policy (reported,
   not judged: that is the first run after an upgrade, not a policy edit);
3. edits the policy (premier P2 first response 4h -> 6h, the environment cap P4 -> P3) and
   times the recompute that applies it: decisions, marks, clock outcomes, history and owed
   writes stored.

Steps 2 and 3 each run in a fresh child process, which reports its time and its peak
resident memory (``VmHWM``); comparing the peaks at two sizes shows whether memory
grows with the tickets stored (it must not: recompute is streamed in keyed batches).

The baseline, in the same run and on the same tickets: ``slabot evaluate`` in-process over
the tickets as JSON Lines (``bench/evaluate.py``'s measure), per ticket. Rounds alternate
the baseline and a recompute on a fresh copy of the filled database (best of ``--repeat``
each), and CPU time is shown beside wall time, since other jobs on the machine move both.
Goal: recompute at most 3x that per-ticket cost, and peak memory at the largest size within
1.5x (plus 20 MB) of the smallest.

Run from the repository root:
``.venv/bin/python bench/recompute.py [--sizes 50000,500000] [--databases sqlite,postgresql]``.
Exit status 1 if a goal fails.
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# bench/calendar.py shares its name with the standard library's ``calendar``; with this
# folder first on sys.path it would shadow that module, so the folder is taken off first.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse
import contextlib
import gc
import importlib.util
import json
import os
import platform
import random
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from types import ModuleType
from typing import Any, NamedTuple

import psycopg
import yaml
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from bot.compiled import Policy
from bot.engine import evaluate
from bot.ticket import SOLVED_STATUSES, TEXT_FIELDS, Ticket
from slabot.store.db import make_engine
from slabot.store.migrate import upgrade
from slabot.store.models import StoredTicket
from slabot.store.services import TicketService

ROOT = _HERE.parent
ZOOM = ROOT / "config" / "policies" / "zoom.yaml"
ADMIN_URL = os.environ.get(
    "SLABOT_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
CHUNK = 10_000


def _bench_evaluate() -> ModuleType:
    """bench/evaluate.py as a module: its ticket generator and its in-process run."""
    spec = importlib.util.spec_from_file_location("bench_evaluate", _HERE / "evaluate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_evaluate"] = module
    spec.loader.exec_module(module)
    return module


def edit(data: dict[str, Any]) -> None:
    """The policy edit recomputed: slower premier P2 first response, a milder cap."""
    data["plans"]["premier"]["targets"]["P2"]["first_response"] = "6h"
    data["classification"]["environment"]["cap"] = "P3"


def open_zoom_tickets(
    generator: ModuleType, n: int, seed: int, now: int
) -> Iterator[dict[str, Any]]:
    """``n`` open zoom tickets from bench/evaluate.py's generator (others are skipped)."""
    rng = random.Random(seed)
    made, number = 0, 0
    while made < n:
        number += 1
        fields = generator.make_ticket(rng, number, now)
        if fields["policy"] != "zoom" or fields.get("status", "open") in SOLVED_STATUSES:
            continue
        made += 1
        yield fields


def _instant(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def ticket_row(fields: dict[str, Any], policy: Policy, now: datetime) -> dict[str, Any]:
    """The stored ticket for one generated ticket, showing what the policy gives it."""
    engine_fields = {k: v for k, v in fields.items() if k != "policy"}
    decision = evaluate(Ticket.from_mapping(engine_fields), policy, now)
    created = datetime.fromisoformat(fields["created_at"])
    return {
        "source": "zendesk",
        "external_key": fields["id"],
        "policy": "zoom",
        "created_at": created,
        "status": fields.get("status", "open"),
        **{name: fields.get(name) for name in TEXT_FIELDS},
        "first_response_at": _instant(fields.get("first_response_at")),
        "last_agent_update_at": _instant(fields.get("last_agent_update_at")),
        "restoration_started_at": _instant(fields.get("restoration_started_at")),
        "paused": [
            [datetime.fromisoformat(a).isoformat(), None if b is None else _instant(b).isoformat()]  # type: ignore[union-attr]
            for a, b in fields.get("paused", [])
        ],
        "shown": {"priority": decision.priority, "tags": list(decision.tags)},
        "shown_at": created,
        "source_updated_at": created,
        "first_seen_at": created,
        "updated_at": created,
    }


@contextlib.contextmanager
def database(kind: str, folder: Path) -> Iterator[str]:
    """A fresh, migrated database of ``kind``; its URL. PostgreSQL's is dropped after."""
    if kind == "sqlite":
        url = f"sqlite:///{folder / f'recompute-{secrets.token_hex(4)}.db'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
        return
    name = f"slabot_bench_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
    text = url.render_as_string(hide_password=False)
    try:
        engine = make_engine(text)
        upgrade(engine)
        engine.dispose()
        yield text
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def clone(kind: str, url: str, folder: Path) -> Iterator[str]:
    """A copy of the database at ``url`` (no connection may be open to it); its URL."""
    if kind == "sqlite":
        source = Path(make_url(url).database or "")
        copy = folder / f"copy-{secrets.token_hex(4)}.db"
        shutil.copyfile(source, copy)
        try:
            yield f"sqlite:///{copy}"
        finally:
            copy.unlink(missing_ok=True)
        return
    original = make_url(url).database
    name = f"slabot_bench_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{original}"')
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def store(url: str, tickets: Sequence[dict[str, Any]], policy: Policy, now: datetime) -> float:
    """Insert the tickets in bulk; the seconds it took."""
    engine = make_engine(url)
    begin = time.perf_counter()
    try:
        with engine.begin() as connection:
            for start in range(0, len(tickets), CHUNK):
                rows = [ticket_row(t, policy, now) for t in tickets[start : start + CHUNK]]
                connection.execute(insert(StoredTicket), rows)
    finally:
        engine.dispose()
    return time.perf_counter() - begin


def run_child(url: str, policy: Path, now: str) -> dict[str, Any]:
    """One recompute in a fresh process: its figures (time, tickets, changed, peak RSS)."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", url, str(policy), now],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"FAIL: the recompute child exited {done.returncode}:\n{done.stderr[-2000:]}"
        )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def child(url: str, policy_path: str, now_text: str) -> int:
    """The child: recompute every open zoom ticket, then print its figures as JSON."""
    from slabot.policy_files import load_policy

    policy = load_policy(Path(policy_path))
    now = datetime.fromisoformat(now_text)
    engine = make_engine(url)
    service = TicketService(engine, {policy.name: policy}, lambda: now)
    start_kb = _status_kb("VmRSS")
    gc.collect()
    begin, begin_cpu = time.perf_counter(), time.process_time()
    tickets = changed = failed = 0
    samples: list[int] = []  # resident memory every 10,000 tickets, in KB
    for result in service.recompute(policy.name):
        tickets += 1
        changed += bool(result.changes)
        failed += result.error is not None
        if tickets % 10_000 == 0:
            samples.append(_status_kb("VmRSS"))
    seconds, cpu = time.perf_counter() - begin, time.process_time() - begin_cpu
    engine.dispose()
    # VmHWM, not ru_maxrss: Linux carries the forking parent's peak (which holds all the
    # generated tickets) over into ru_maxrss across exec; VmHWM starts anew with this program.
    peak_kb = _status_kb("VmHWM")
    figures = {
        "seconds": seconds,
        "cpu": cpu,
        "tickets": tickets,
        "changed": changed,
        "failed": failed,
        "start_kb": start_kb,
        "peak_kb": peak_kb,
        "samples_kb": samples,
    }
    print(json.dumps(figures))
    return 0


def _status_kb(field: str) -> int:
    """A memory figure of this process from /proc/self/status (VmRSS, VmHWM), in KB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise SystemExit(f"FAIL: /proc/self/status has no {field} (this benchmark needs Linux)")


def evaluate_baseline(
    generator: ModuleType, tickets: Sequence[dict[str, Any]], folder: Path, repeat: int
) -> tuple[float, float]:
    """Seconds and CPU seconds of ``slabot evaluate`` in-process over the tickets as JSON
    Lines, best of ``repeat`` rounds."""
    source, target = folder / "tickets.jsonl", folder / "evaluated.jsonl"
    with source.open("w", encoding="utf-8") as out:
        for fields in tickets:
            out.write(json.dumps(fields) + "\n")
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeat):
        gc.collect()
        begin, begin_cpu = time.perf_counter(), time.process_time()
        generator.run_slabot(source, target)
        best = min(best, time.perf_counter() - begin)
        best_cpu = min(best_cpu, time.process_time() - begin_cpu)
    with target.open(encoding="utf-8") as lines:
        if any("error" in json.loads(line) for line in lines):
            raise SystemExit("FAIL: slabot evaluate answered an error for a generated ticket")
    return best, best_cpu


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="50000,500000", help="ticket counts (50000,500000)")
    parser.add_argument(
        "--databases", default="sqlite,postgresql", help="sqlite and/or postgresql (both)"
    )
    parser.add_argument("--seed", type=int, default=20261123, help="random seed (20261123)")
    parser.add_argument("--repeat", type=int, default=2, help="timed rounds, best kept (2)")
    parser.add_argument(
        "--child", nargs=3, metavar=("URL", "POLICY", "NOW"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        return child(*args.child)
    sizes = sorted(int(size) for size in args.sizes.split(","))
    kinds = [kind.strip() for kind in args.databases.split(",") if kind.strip()]

    generator = _bench_evaluate()
    now_text = generator.NOW
    now = datetime.fromisoformat(now_text)
    bundled = Policy.from_mapping(yaml.safe_load(ZOOM.read_text(encoding="utf-8")))
    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print(
        f"open zoom tickets from bench/evaluate.py's generator (seed {args.seed}), judged at "
        f"{now_text}"
    )
    print("edit: premier P2 first response 4h -> 6h; environment cap P4 -> P3")
    print()
    rows: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="slabot-bench-") as name:
        folder = Path(name)
        edited_path = folder / "zoom-edited.yaml"
        data = yaml.safe_load(ZOOM.read_text(encoding="utf-8"))
        edit(data)
        edited_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        for n in sizes:
            tickets = list(open_zoom_tickets(generator, n, args.seed, int(now.timestamp())))
            for kind in kinds:
                with database(kind, folder) as url:
                    stored_s = store(url, tickets, bundled, now)
                    fill = run_child(url, ZOOM, now_text)
                    # Rounds alternate the baseline and a recompute on a fresh copy of the
                    # filled database, so a change in the machine's load hits both alike.
                    runs, base, base_cpu = [], float("inf"), float("inf")
                    for _ in range(args.repeat):
                        wall, cpu = evaluate_baseline(generator, tickets, folder, 1)
                        base, base_cpu = min(base, wall), min(base_cpu, cpu)
                        with clone(kind, url, folder) as copy:
                            runs.append(run_child(copy, edited_path, now_text))
                applied = min(runs, key=lambda run: float(run["seconds"]))
                applied["peak_kb"] = max(run["peak_kb"] for run in runs)
                rows.append(Measured(kind, n, fill, applied, base, base_cpu, stored_s))
                timings = ", ".join(f"{run['seconds']:.1f}" for run in runs)
                print(
                    f"{kind} {n:,}: stored in {stored_s:.1f} s; fill {fill['seconds']:.1f} s; "
                    f"recompute {timings} s "
                    f"({applied['changed']:,} changed); slabot evaluate {base:.1f} s",
                    flush=True,
                )
            del tickets
    print()
    header = (
        f"{'database':<11} {'tickets':>9} {'changed':>8} {'µs/ticket':>10} {'evaluate':>9} "
        f"{'ratio':>6} {'cpu µs':>7} {'evaluate':>9} {'ratio':>6} {'fill µs':>8} {'peak MB':>8}"
    )
    print(f"{'':<30}{'wall time':^27}{'':>2}{'CPU time (this process)':^24}")
    print(header)
    print("-" * len(header))
    ok = True
    for row in rows:
        n, applied = row.n, row.applied
        print(
            f"{row.kind:<11} {n:>9,} {applied['changed']:>8,} {row.per_ticket:>10.1f} "
            f"{row.baseline_s / n * 1e6:>9.1f} {row.ratio:>5.2f}x "
            f"{applied['cpu'] / n * 1e6:>7.1f} {row.baseline_cpu / n * 1e6:>9.1f} "
            f"{row.cpu_ratio:>5.2f}x {row.fill['seconds'] / n * 1e6:>8.1f} "
            f"{applied['peak_kb'] / 1024:>8.1f}"
        )
        if applied["tickets"] != n or applied["failed"]:
            print(
                f"FAIL: {row.kind} {n:,}: recomputed {applied['tickets']:,}, "
                f"{applied['failed']} failed"
            )
            ok = False
    print(
        f"(µs/ticket: the recompute that applies the edit, in a fresh process on a fresh copy "
        f"of the filled database, best of {args.repeat}; evaluate: slabot evaluate in-process "
        "over the same tickets as JSON Lines, best of as many rounds, alternated with them; "
        "CPU time is the recompute's own process (not PostgreSQL's); fill: the first "
        "recompute, which stores every decision, mark and clock outcome; peak MB: VmHWM of "
        "the recompute)"
    )
    print()
    print(
        "goal: recompute at most 3x slabot evaluate's per-ticket cost (wall time); memory flat in N"
    )
    for kind in kinds:
        mine = [row for row in rows if row.kind == kind]
        for row in mine:
            verdict = "PASS" if row.ratio <= 3 else "FAIL"
            ok &= row.ratio <= 3
            print(f"  {kind} {row.n:,}: {row.ratio:.2f}x evaluate  {verdict}")
        if len(mine) >= 2:
            small, large = mine[0], mine[-1]
            low, high = small.applied["peak_kb"] / 1024, large.applied["peak_kb"] / 1024
            flat = high <= 1.5 * low + 20
            ok &= flat
            print(
                f"  {kind} peak memory: {low:.1f} MB at {small.n:,}, {high:.1f} MB at "
                f"{large.n:,}  {'PASS' if flat else 'FAIL'}; per-ticket cost "
                f"{small.per_ticket:.1f} -> {large.per_ticket:.1f} µs "
                f"({large.per_ticket / small.per_ticket:.2f}x for {large.n / small.n:g}x the "
                "tickets: linear when near 1)"
            )
    print(f"  overall: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


class Measured(NamedTuple):
    """One database at one size: what was measured."""

    kind: str
    n: int
    fill: dict[str, Any]
    applied: dict[str, Any]
    baseline_s: float
    baseline_cpu: float
    stored_s: float

    @property
    def per_ticket(self) -> float:
        return float(self.applied["seconds"]) / self.n * 1e6

    @property
    def ratio(self) -> float:
        return float(self.applied["seconds"]) / self.baseline_s

    @property
    def cpu_ratio(self) -> float:
        return float(self.applied["cpu"]) / self.baseline_cpu


if __name__ == "__main__":
    raise SystemExit(main())
