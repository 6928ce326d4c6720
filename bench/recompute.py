"""Benchmark: ``slabot recompute`` over N stored open tickets after a policy edit.

For each database (SQLite file, PostgreSQL at 127.0.0.1) and each size in ``--sizes``:

1. stores N open zoom tickets, bulk-generated with ``bench/evaluate.py``'s generator (its
   mix of plans, priorities, zones, countries, replies and pauses; solved ones left out),
   each showing in the helpdesk what the bundled policy gives it (as after a sync);
2. fills their decisions and marks with a recompute against the bundled policy (reported,
   not judged: that is the first run after an upgrade, not a policy edit);
3. edits the policy (premier P2 first response 4h -> 6h, the environment cap P4 -> P3) and
   times the recompute that applies it: decisions, marks, history and owed writes stored.

Steps 2 and 3 each run in a fresh child process, which reports its time and its peak
resident memory (``VmHWM``); comparing the peaks at two sizes shows whether memory
grows with the tickets stored (it must not: recompute is streamed in keyed batches).

The baseline, in the same run and on the same tickets: ``slabot evaluate`` in-process over
the tickets as JSON Lines (``bench/evaluate.py``'s measure), per ticket. Goal: recompute at
most 3x that per-ticket cost, and peak memory at the largest size within 1.5x (plus 20 MB)
of the smallest.

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
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from types import ModuleType
from typing import Any

import psycopg
import yaml
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from bot.compiled import Policy
from bot.engine import evaluate
from bot.ticket import SOLVED_STATUSES, Ticket
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
        **{
            name: fields.get(name)
            for name in (
                "priority",
                "plan",
                "environment",
                "product_stage",
                "urgency",
                "impact",
                "channel",
                "customer_timezone",
                "customer_country",
            )
        },
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
    begin = time.perf_counter()
    tickets = changed = failed = 0
    samples: list[int] = []  # resident memory every 10,000 tickets, in KB
    for result in service.recompute(policy.name):
        tickets += 1
        changed += bool(result.changes)
        failed += result.error is not None
        if tickets % 10_000 == 0:
            samples.append(_status_kb("VmRSS"))
    seconds = time.perf_counter() - begin
    engine.dispose()
    # VmHWM, not ru_maxrss: Linux carries the forking parent's peak (which holds all the
    # generated tickets) over into ru_maxrss across exec; VmHWM starts anew with this program.
    peak_kb = _status_kb("VmHWM")
    figures = {
        "seconds": seconds,
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
    generator: ModuleType, tickets: Sequence[dict[str, Any]], folder: Path
) -> float:
    """Seconds of ``slabot evaluate`` in-process over the tickets as JSON Lines (best of 2)."""
    source, target = folder / "tickets.jsonl", folder / "evaluated.jsonl"
    with source.open("w", encoding="utf-8") as out:
        for fields in tickets:
            out.write(json.dumps(fields) + "\n")
    best = float("inf")
    for _ in range(2):
        gc.collect()
        begin = time.perf_counter()
        generator.run_slabot(source, target)
        best = min(best, time.perf_counter() - begin)
    with target.open(encoding="utf-8") as lines:
        if any("error" in json.loads(line) for line in lines):
            raise SystemExit("FAIL: slabot evaluate answered an error for a generated ticket")
    return best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="50000,500000", help="ticket counts (50000,500000)")
    parser.add_argument(
        "--databases", default="sqlite,postgresql", help="sqlite and/or postgresql (both)"
    )
    parser.add_argument("--seed", type=int, default=20261123, help="random seed (20261123)")
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
    rows: list[tuple[str, int, dict[str, Any], dict[str, Any], float, float]] = []
    with tempfile.TemporaryDirectory(prefix="slabot-bench-") as name:
        folder = Path(name)
        edited_path = folder / "zoom-edited.yaml"
        data = yaml.safe_load(ZOOM.read_text(encoding="utf-8"))
        edit(data)
        edited_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        for n in sizes:
            tickets = list(open_zoom_tickets(generator, n, args.seed, int(now.timestamp())))
            baseline_s = evaluate_baseline(generator, tickets, folder)
            for kind in kinds:
                with database(kind, folder) as url:
                    stored_s = store(url, tickets, bundled, now)
                    fill = run_child(url, ZOOM, now_text)
                    applied = run_child(url, edited_path, now_text)
                rows.append((kind, n, fill, applied, baseline_s, stored_s))
                print(
                    f"{kind} {n:,}: stored in {stored_s:.1f} s; fill {fill['seconds']:.1f} s; "
                    f"recompute {applied['seconds']:.1f} s ({applied['changed']:,} changed)",
                    flush=True,
                )
            del tickets
    print()
    header = (
        f"{'database':<11} {'tickets':>9} {'changed':>9} {'recompute s':>12} {'µs/ticket':>10} "
        f"{'evaluate µs':>12} {'ratio':>6} {'fill µs':>8} {'peak MB':>8}"
    )
    print(header)
    print("-" * len(header))
    ok = True
    for kind, n, fill, applied, baseline_s, _ in rows:
        per = applied["seconds"] / n * 1e6
        base = baseline_s / n * 1e6
        print(
            f"{kind:<11} {n:>9,} {applied['changed']:>9,} {applied['seconds']:>12.1f} "
            f"{per:>10.1f} {base:>12.1f} {per / base:>5.2f}x {fill['seconds'] / n * 1e6:>8.1f} "
            f"{applied['peak_kb'] / 1024:>8.1f}"
        )
        if applied["tickets"] != n or applied["failed"]:
            print(
                f"FAIL: {kind} {n:,}: recomputed {applied['tickets']:,}, {applied['failed']} failed"
            )
            ok = False
    print(
        "(µs/ticket: the recompute that applies the edit, in a fresh process; evaluate µs: "
        "slabot evaluate in-process over the same tickets, best of 2; fill: the first "
        "recompute, which stores every decision and mark; peak MB: the recompute's process)"
    )
    print()
    print("goal: recompute at most 3x slabot evaluate's per-ticket cost; memory flat in N")
    for kind in kinds:
        mine = [r for r in rows if r[0] == kind]
        for _, n, _, applied, baseline_s, _ in mine:
            ratio = (applied["seconds"] / n) / (baseline_s / n)
            verdict = "PASS" if ratio <= 3 else "FAIL"
            ok &= ratio <= 3
            print(f"  {kind} {n:,}: {ratio:.2f}x evaluate  {verdict}")
        if len(mine) >= 2:
            small, large = mine[0], mine[-1]
            low, high = small[3]["peak_kb"] / 1024, large[3]["peak_kb"] / 1024
            flat = high <= 1.5 * low + 20
            ok &= flat
            cost_small = small[3]["seconds"] / small[1] * 1e6
            cost_large = large[3]["seconds"] / large[1] * 1e6
            print(
                f"  {kind} peak memory: {low:.1f} MB at {small[1]:,}, {high:.1f} MB at "
                f"{large[1]:,}  {'PASS' if flat else 'FAIL'}; per-ticket cost {cost_small:.1f} "
                f"-> {cost_large:.1f} µs ({cost_large / cost_small:.2f}x: linear when near 1)"
            )
    print(f"  overall: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
