"""Benchmark: ``slabot evaluate`` over JSON Lines against a plain JSON round trip.

Generates ``--n`` seeded tickets mixing the three example policies (each line names its
``policy``) into a temporary file, then measures in one run:

* ``slabot.cli.main(["evaluate", ...])`` in-process, standard output redirected to a file;
* the baseline: the same lines through ``json.loads`` + ``json.dumps``, written to a file;
* once, the real command line (``slabot evaluate``) as a subprocess, start-up included.

With ``--compare-tree DIR`` another checkout's ``slabot evaluate`` runs in the same rounds on
both inputs (classic and every metric on), and must write the same bytes.

The same again with every metric on (docs/metrics.md): the three policies with targets for
``next_reply``, ``agent_work`` and ``requester_wait`` on every priority of every plan, on the
same tickets carrying the events those metrics read (customer replies, agent replies, status
changes), against the baseline on that input. The rounds alternate all four runs, so that a
change in the machine's load hits them alike.

Every output line must be a decision for the ticket on the same input line (no error
objects); the run fails loudly otherwise. Goal: slabot at most 5x the baseline's time, with
the classic metrics and with every metric on.

Run from the repository root: ``.venv/bin/python bench/evaluate.py [--n N] [--seed S]``.
Exit status 1 if the goal fails or an output line is not a decision.
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# bench/calendar.py shares its name with the standard library's ``calendar``; with this
# folder first on sys.path (as when running ``python bench/evaluate.py``) it would shadow
# that module for the libraries importing it, so the folder is taken off the path first.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse
import contextlib
import gc
import io
import json
import os
import platform
import random
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from slabot import cli

ROOT = Path(__file__).resolve().parent.parent
POLICY_DIR = ROOT / "config" / "policies"
POLICIES = ("cloudtalk", "zoom", "zmanda")
NEW_METRICS = {"next_reply": "4h", "agent_work": "40h", "requester_wait": "48h"}
"""The targets the every-metric run adds to every priority of every plan."""
NOW = "2026-11-23T12:00:00Z"
OUTPUT_KEYS = {
    "id",
    "priority",
    "requested_priority",
    "plan",
    "commitment",
    "due",
    "state",
    "tags",
    "notes",
}

# What the generator draws from. Plans and priorities are the policies' own (zmanda's
# ``trial`` is an alias of ``premium``); None means the field is left out of the ticket.
LEVELS = {"cloudtalk": ("P1", "P2", "P3"), "zoom": ("P1", "P2", "P3", "P4")}
LEVELS["zmanda"] = LEVELS["zoom"]
PLANS = {
    "cloudtalk": ("basic", "professional", "professional", "advanced", "advanced"),
    "zoom": (
        "standard",
        "standard",
        "premier",
        "premier",
        "premier_assurance",
        "premier_plus",
        "premier_elite",
    ),
    "zmanda": ("standard", "standard", "premium", "trial"),
}
ENVIRONMENTS = (
    ("production", 50),
    ("Production", 3),
    ("staging", 15),
    ("development", 7),
    ("test", 5),
    (None, 20),
)
STAGES = (("ga", 30), ("beta", 8), ("preview", 4), (None, 58))
LEVELS_3 = ("high", "medium", "low")
CHANNELS = (("web", 30), ("email", 25), ("phone", 15), ("chat", 10), ("api", 5), (None, 15))
ZONES = (
    "America/Los_Angeles",
    "America/New_York",
    "America/Chicago",
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Bratislava",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Australia/Sydney",
)
COUNTRIES = ("US", "FR", "DE", "SK", "GB")
STATUSES = (
    ("new", 10),
    ("open", 35),
    ("pending", 15),
    ("on_hold", 5),
    ("solved", 25),
    ("closed", 10),
)


def weighted(rng: random.Random, choices: Sequence[tuple[Any, int]]) -> Any:
    values, weights = zip(*choices, strict=True)
    return rng.choices(values, weights)[0]


def iso(ts: int, zone: ZoneInfo | None) -> str:
    """ISO 8601 with an offset: ``Z`` for UTC, the zone's own offset otherwise."""
    if zone is None:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return datetime.fromtimestamp(ts, zone).isoformat(timespec="seconds")


def make_ticket(rng: random.Random, number: int, now: int) -> dict[str, Any]:
    policy = POLICIES[number % 3] if rng.random() < 0.5 else rng.choice(POLICIES)
    ticket: dict[str, Any] = {"policy": policy, "id": f"{policy[:2].upper()}-{number}"}
    zone_name = rng.choice(ZONES) if rng.random() < 0.85 else None
    zone = ZoneInfo(zone_name) if zone_name and rng.random() < 0.6 else None
    # Half opened in the last three days (clocks still running), half in the last 60 days.
    created = now - rng.randrange((3 if rng.random() < 0.5 else 60) * 86_400)
    if rng.random() < 0.5:
        created -= created % 60  # whole minutes, as most helpdesks record them
    ticket["created_at"] = iso(created, zone)
    if rng.random() < 0.7:
        ticket["priority"] = rng.choice(LEVELS[policy])
    if rng.random() < 0.95:
        ticket["plan"] = rng.choice(PLANS[policy])
    for name, choices in (
        ("environment", ENVIRONMENTS),
        ("product_stage", STAGES),
        ("channel", CHANNELS),
    ):
        value = weighted(rng, choices)
        if value is not None:
            ticket[name] = value
    if rng.random() < (0.8 if policy == "zmanda" else 0.2):
        ticket["urgency"] = rng.choice(LEVELS_3)
        ticket["impact"] = rng.choice(LEVELS_3)
    if zone_name is not None:
        ticket["customer_timezone"] = zone_name
    if rng.random() < 0.85:
        ticket["customer_country"] = rng.choice(COUNTRIES)

    status = weighted(rng, STATUSES)
    if status != "open" or rng.random() < 0.5:
        ticket["status"] = status
    end = now
    if status in ("solved", "closed"):
        end = created + rng.randrange(1, max(2, now - created))
        ticket["solved_at"] = iso(end, zone)
    reply = None
    if status != "new" and rng.random() < 0.75:
        reply = created + rng.randrange(0, max(1, min(end - created, 3 * 86_400)))
        ticket["first_response_at"] = iso(reply, zone)
        if rng.random() < 0.5:
            update = reply + rng.randrange(0, max(1, end - reply))
            ticket["last_agent_update_at"] = iso(update, zone)
    if status in ("pending", "on_hold") or (status != "new" and rng.random() < 0.1):
        pauses: list[list[str | None]] = []
        cursor = created
        for _ in range(rng.randrange(0, 3)):
            begin = cursor + rng.randrange(0, max(1, (end - cursor) // 2))
            finish = begin + rng.randrange(0, max(1, (end - begin) // 2))
            pauses.append([iso(begin, zone), iso(finish, zone)])
            cursor = finish
        if status in ("pending", "on_hold") and rng.random() < 0.7:
            pauses.append([iso(cursor + rng.randrange(0, max(1, end - cursor)), zone), None])
        if pauses:
            ticket["paused"] = pauses
    if rng.random() < 0.03:
        ticket["restoration_started_at"] = iso(created + rng.randrange(0, end - created + 1), zone)
    return ticket


def add_events(rng: random.Random, ticket: dict[str, Any], now: int) -> None:
    """The events the new metrics read, consistent with the ticket's summary fields: agent
    replies from its first response to its last update, customer replies in between, and its
    status history (creation, then the current status, pending or on hold from the pause)."""
    created = int(datetime.fromisoformat(ticket["created_at"]).timestamp())
    end = (
        int(datetime.fromisoformat(ticket["solved_at"]).timestamp())
        if "solved_at" in ticket
        else now
    )
    first, last = ticket.get("first_response_at"), ticket.get("last_agent_update_at")
    replies = [first] if first else []
    if first and last:
        begin = int(datetime.fromisoformat(first).timestamp())
        stop = int(datetime.fromisoformat(last).timestamp())
        middle = sorted(rng.randrange(begin, stop + 1) for _ in range(rng.randrange(0, 3)))
        replies += [iso(ts, None) for ts in middle] + [last]
    if replies:
        ticket["agent_replies"] = replies
    if end > created and rng.random() < 0.6:
        ticket["customer_replies"] = [
            iso(ts, None)
            for ts in sorted(rng.randrange(created, end) for _ in range(rng.randrange(1, 4)))
        ]
    status = ticket.get("status", "open")
    changes = [[ticket["created_at"], "new"]]
    if status in ("pending", "on_hold") and ticket.get("paused"):
        changes.append([ticket["paused"][-1][0], status])
    elif status in ("solved", "closed"):
        changes.append([ticket["solved_at"], status])
    elif status != "new":
        changes.append([iso(created + rng.randrange(0, end - created + 1), None), status])
    ticket["status_changes"] = changes


def write_tickets(path: Path, n: int, seed: int, now: int, events: Path) -> Counter[str]:
    """``n`` tickets into ``path``; the same tickets with their events into ``events``."""
    rng = random.Random(seed)
    extra = random.Random(seed + 1)  # so that ``path`` is the same with or without events
    policies: Counter[str] = Counter()
    with path.open("w", encoding="utf-8") as out, events.open("w", encoding="utf-8") as rich:
        for number in range(1, n + 1):
            ticket = make_ticket(rng, number, now)
            policies[ticket["policy"]] += 1
            out.write(json.dumps(ticket) + "\n")
            add_events(extra, ticket, now)
            rich.write(json.dumps(ticket) + "\n")
    return policies


def write_all_metric_policies(folder: Path) -> list[str]:
    """The three policies with a target for each new metric on every priority of every plan;
    their ``--policy`` arguments."""
    args = []
    for name in POLICIES:
        spec = yaml.safe_load((POLICY_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
        levels = [level["name"] for level in spec["priorities"]]
        for plan in spec["plans"].values():
            calendar = {} if plan.get("calendar") else {"calendar": "24x7"}
            plan["targets"] = {
                level: {
                    **plan.get("targets", {}).get(level, {}),
                    **{
                        metric: {"after": after, **calendar}
                        for metric, after in NEW_METRICS.items()
                    },
                }
                for level in levels
            }
        path = folder / f"{name}-all-metrics.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
        args += ["--policy", str(path)]
    return args


# The runs.


def policy_args() -> list[str]:
    args = []
    for name in POLICIES:
        args += ["--policy", str(POLICY_DIR / f"{name}.yaml")]
    return args


def run_slabot(source: Path, target: Path, policies: Sequence[str] | None = None) -> None:
    errors = io.StringIO()
    chosen = policy_args() if policies is None else list(policies)
    with (
        target.open("w", encoding="utf-8") as out,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(errors),
    ):
        status = cli.main(["evaluate", *chosen, "--now", NOW, str(source)])
    if status != 0:
        message = errors.getvalue().strip().splitlines()
        raise SystemExit(f"FAIL: slabot evaluate exited {status}: {message[:3]}")


def run_baseline(source: Path, target: Path) -> None:
    loads, dumps = json.loads, json.dumps
    with (
        source.open(encoding="utf-8") as lines,
        target.open("w", encoding="utf-8") as out,
    ):
        write = out.write
        for line in lines:
            write(dumps(loads(line), ensure_ascii=False) + "\n")


_CHILD = """
import contextlib, gc, sys, time
from slabot import cli
source, target, *policies = sys.argv[1:]
with open(target, "w", encoding="utf-8") as out, contextlib.redirect_stdout(out):
    cli.main(["evaluate", *policies, "--now", NOW, source])  # warm-up, as in-process
gc.collect()
with open(target, "w", encoding="utf-8") as out, contextlib.redirect_stdout(out):
    begin = time.CLOCK()
    status = cli.main(["evaluate", *policies, "--now", NOW, source])
    elapsed = time.CLOCK() - begin
print(elapsed if status == 0 else -1, file=sys.stderr)
"""


def run_tree(
    tree: Path, source: Path, target: Path, policies: Sequence[str] | None = None
) -> float:
    """``slabot evaluate`` of another checkout, timed inside a child process (its imports
    and a first warm-up run left out, as the in-process rounds leave them out)."""
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    args = [str(source), str(target), *(policy_args() if policies is None else policies)]
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _CHILD.replace("NOW", repr(NOW)).replace("CLOCK", CLOCK.__name__),
            *args,
        ],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = float(done.stderr.strip().splitlines()[-1]) if done.returncode == 0 else -1.0
    if seconds < 0:
        raise SystemExit(f"FAIL: slabot evaluate in {tree} failed: {done.stderr[-1500:]}")
    return seconds


CLOCK = time.perf_counter
"""What the in-process rounds are timed with: wall-clock time, or with ``--cpu-time`` the
process's CPU time (``time.process_time``), which a machine shared with other jobs
disturbs less."""


def timed(run: Callable[[], object]) -> float:
    gc.collect()
    begin = CLOCK()
    run()
    return CLOCK() - begin


def check_output(
    source: Path,
    target: Path,
    metrics: Sequence[str] = ("first_response", "restoration", "next_update"),
) -> Counter[str]:
    """Every output line is a decision for the ticket on the same input line, with a due
    and a state for each of ``metrics``; else exit."""
    states: Counter[str] = Counter()
    with source.open(encoding="utf-8") as inputs:
        given = sum(1 for _ in inputs)
    with target.open(encoding="utf-8") as outputs:
        written = sum(1 for _ in outputs)
    if written != given:
        raise SystemExit(f"FAIL: {given:,} tickets in, {written:,} output lines out")
    with (
        source.open(encoding="utf-8") as inputs,
        target.open(encoding="utf-8") as outputs,
    ):
        for number, (line_in, line_out) in enumerate(zip(inputs, outputs, strict=True), 1):
            decision = json.loads(line_out)
            ticket_id = json.loads(line_in)["id"]
            if "error" in decision or set(decision) != OUTPUT_KEYS:
                raise SystemExit(f"FAIL: output line {number} is not a decision: {line_out}")
            if list(decision["state"]) != list(metrics) or list(decision["due"]) != list(metrics):
                raise SystemExit(
                    f"FAIL: output line {number} does not report exactly {', '.join(metrics)}"
                )
            if decision["id"] != ticket_id:
                raise SystemExit(
                    f"FAIL: output line {number} is for {decision['id']!r}, not {ticket_id!r}"
                )
            for target_name, state in decision["state"].items():
                states[f"{target_name}:{state}"] += 1
    return states


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="tickets (100000)")
    parser.add_argument("--seed", type=int, default=20261123, help="random seed (20261123)")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds, best kept (5)")
    parser.add_argument(
        "--compare-tree",
        type=Path,
        help="a checkout of another slabot (such as main): its slabot evaluate is timed in a "
        "child process in the same rounds, on the same input, and must write the same output",
    )
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time the in-process rounds in CPU seconds (for a machine other jobs share)",
    )
    args = parser.parse_args(argv)
    global CLOCK
    if args.cpu_time:
        CLOCK = time.process_time
    n = args.n
    now = int(datetime.fromisoformat(NOW).timestamp())

    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="slabot-bench-") as folder:
        work = Path(folder)
        tickets, rich = work / "tickets.jsonl", work / "tickets-events.jsonl"
        begin = time.perf_counter()
        policies = write_tickets(tickets, n, args.seed, now, rich)
        made = time.perf_counter() - begin
        size = tickets.stat().st_size
        mix = ", ".join(f"{policies[p]:,} {p}" for p in POLICIES)
        print(
            f"tickets: {n:,} (seed {args.seed}; {mix}), {size / 1e6:.1f} MB "
            f"({rich.stat().st_size / 1e6:.1f} MB with their events), "
            f"generated in {made:.1f} s; judged at {NOW}"
        )
        all_metrics = write_all_metric_policies(work)

        slabot_out, baseline_out = work / "slabot.jsonl", work / "baseline.jsonl"
        all_out = work / "slabot-all-metrics.jsonl"
        other_out, other_all_out = work / "other.jsonl", work / "other-all-metrics.jsonl"
        # Warm-up: imports, the JSON modules, the file cache.
        run_baseline(tickets, baseline_out)
        run_baseline(rich, baseline_out)
        best = {name: float("inf") for name in ("slabot", "baseline", "all", "all_baseline")}
        first = None
        for _ in range(args.repeat):
            elapsed = timed(lambda: run_slabot(tickets, slabot_out))
            first = elapsed if first is None else first
            best["slabot"] = min(best["slabot"], elapsed)
            best["baseline"] = min(
                best["baseline"], timed(lambda: run_baseline(tickets, baseline_out))
            )
            best["all"] = min(best["all"], timed(lambda: run_slabot(rich, all_out, all_metrics)))
            best["all_baseline"] = min(
                best["all_baseline"], timed(lambda: run_baseline(rich, baseline_out))
            )
            if args.compare_tree is not None:
                other = run_tree(args.compare_tree, tickets, other_out)
                best["other"] = min(best.get("other", float("inf")), other)
                other = run_tree(args.compare_tree, rich, other_all_out, all_metrics)
                best["other_all"] = min(best.get("other_all", float("inf")), other)
        states = check_output(tickets, slabot_out)
        if args.compare_tree is not None and other_out.read_bytes() != slabot_out.read_bytes():
            raise SystemExit(f"FAIL: {args.compare_tree} writes other decisions for the same input")
        if args.compare_tree is not None and other_all_out.read_bytes() != all_out.read_bytes():
            raise SystemExit(
                f"FAIL: {args.compare_tree} writes other decisions with every metric on"
            )
        all_states = check_output(
            rich, all_out, ("first_response", "restoration", "next_update", *NEW_METRICS)
        )

        slabot_exe = Path(sys.executable).with_name("slabot")
        exe = str(slabot_exe) if slabot_exe.exists() else shutil.which("slabot")
        if exe is None:
            raise SystemExit("FAIL: no slabot command next to this Python or on PATH")
        command = [exe, "evaluate", *policy_args(), "--now", NOW]
        cli_out = work / "cli.jsonl"
        with cli_out.open("wb") as out:
            begin = time.perf_counter()
            done = subprocess.run([*command, str(tickets)], stdout=out, stderr=subprocess.PIPE)
            cli_s = time.perf_counter() - begin
        if done.returncode != 0:
            tail = done.stderr.decode("utf-8", "replace")[-1500:]
            raise SystemExit(f"FAIL: {exe} exited {done.returncode}:\n{tail}")
        if cli_out.read_bytes() != slabot_out.read_bytes():
            raise SystemExit("FAIL: the command line's output differs from the in-process one")
        empty = work / "empty.jsonl"
        empty.touch()
        begin = time.perf_counter()
        subprocess.run([*command, str(empty)], check=True, stdout=subprocess.DEVNULL)
        startup_s = time.perf_counter() - begin

    slabot_rate, baseline_rate = n / best["slabot"], n / best["baseline"]
    ratio = best["slabot"] / best["baseline"]
    print(f"all {n:,} output lines are decisions for their input lines")
    shown = ", ".join(f"{key} {count:,}" for key, count in sorted(states.items()))
    print(f"states: {shown}")
    shown = ", ".join(
        f"{key} {count:,}"
        for key, count in sorted(all_states.items())
        if key.split(":")[0] in NEW_METRICS
    )
    print(f"states of the new metrics (every-metric run): {shown}")
    print()
    print(f"{'run':<52} {'seconds':>8} {'tickets/s':>11} {'µs/ticket':>10}")
    print("-" * 84)
    for name, seconds in (
        ("slabot evaluate, in-process (cli.main)", best["slabot"]),
        ("baseline: json.loads + json.dumps per line", best["baseline"]),
        ("slabot evaluate, every metric on", best["all"]),
        ("baseline on the same input (with its events)", best["all_baseline"]),
        ("slabot evaluate, command line (one run, start-up in)", cli_s),
        ("  of which start-up (same command, empty input)", startup_s),
    ):
        rate = f"{n / seconds:>11,.0f}" if not name.startswith("  ") else f"{'':>11}"
        micros = f"{seconds / n * 1e6:>10.2f}" if not name.startswith("  ") else f"{'':>10}"
        print(f"{name:<52} {seconds:>8.3f} {rate} {micros}".rstrip())
    print(
        f"(in-process runs: best of {args.repeat} rounds, "
        f"{'CPU time' if args.cpu_time else 'wall-clock time'}, output to a file; the first slabot "
        f"round took {first:.3f} s)"
    )
    print()
    verdict = "PASS" if ratio <= 5 else "FAIL"
    print(
        f"goal: slabot evaluate at most 5x the baseline's time: {ratio:.2f}x "
        f"({slabot_rate:,.0f} vs {baseline_rate:,.0f} tickets/s)  {verdict}"
    )
    all_ratio = best["all"] / best["all_baseline"]
    print(
        f"goal: every metric on ({', '.join(NEW_METRICS)} added), at most 5x the baseline on "
        f"the same input: {all_ratio:.2f}x "
        f"({n / best['all']:,.0f} vs {n / best['all_baseline']:,.0f} tickets/s)  "
        f"{'PASS' if all_ratio <= 5 else 'FAIL'}"
    )
    if args.compare_tree is not None:
        print(
            f"  (not judged) {args.compare_tree}, same rounds, same inputs: "
            f"{best['other'] / best['baseline']:.2f}x the baseline, every metric on "
            f"{best['other_all'] / best['all_baseline']:.2f}x (this tree {ratio:.2f}x and "
            f"{all_ratio:.2f}x); identical output, both runs"
        )
    print(
        f"  (not judged) the command line, one run against the best baseline round: "
        f"{cli_s / best['baseline']:.2f}x with its start-up, "
        f"{(cli_s - startup_s) / best['baseline']:.2f}x without"
    )
    return 0 if ratio <= 5 and all_ratio <= 5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
