"""Benchmark: due dates on a Mon-Fri 09:00-17:00 Europe/Paris calendar with French holidays.

Measures, in one run and on the same seeded sample of (start, business duration) pairs,
microseconds per due date of:

* slabot: ``BusinessCalendar.due(start, timedelta)``, one call per due date;
* slabot's batch path: ``BusinessCalendar.due_many_ts`` over the whole sample at once, as
  arrays of POSIX seconds (what recompute and backfill pass), and ``due_many`` with
  datetimes in and out (workclock's form; the conversions are most of its cost);
* workclock: ``Schedule.add(start, timedelta)`` per call, and ``Schedule.add_many`` batch;
* businesstimedelta: ``start + BusinessTimeDelta(rules, ...)`` (slow: timed on a subsample).

Then checks every implementation against a slow minute-by-minute reference model on
``--check`` pairs and prints the disagreements.

Run from the repository root: ``.venv/bin/python bench/calendar.py [--n N] [--check N]``.
Exit status 1 if a goal fails or slabot (per call or batch) disagrees with the reference.
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# This file shares its name with the standard library's ``calendar``. Run as a script, its
# folder comes first on sys.path and would shadow that module for every library importing it
# (dateutil and holidays do), so the folder is taken off the path before anything else.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse
import gc
import os
import platform
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from datetime import time as clock
from importlib.metadata import version
from typing import Any
from zoneinfo import ZoneInfo

import businesstimedelta
import holidays
import numpy as np
import pytz
from workclock import Holidays, Schedule, WorkDay

from bot.business_time import WEEKDAYS, BusinessCalendar

ZONE_NAME = "Europe/Paris"
PARIS = ZoneInfo(ZONE_NAME)
OPEN_MINUTE, CLOSE_MINUTE = 9 * 60, 17 * 60  # local minutes since midnight
DURATIONS = tuple(timedelta(minutes=m) for m in (15, 60, 3 * 60, 6 * 60, 8 * 60, 9 * 60, 24 * 60))
# Holiday years handed to the libraries that take a fixed list (starts are in 2026; a 24 h
# business duration ends a few days later at most).
HOLIDAY_YEARS = range(2025, 2029)
# Local wall times that sit on or next to an edge of the opening hours.
EDGE_TIMES = (
    clock(0, 0),
    clock(8, 59),
    clock(8, 59, 59),
    clock(9, 0),
    clock(9, 0, 1),
    clock(12, 0),
    clock(16, 45),
    clock(16, 59, 59),
    clock(17, 0),
    clock(17, 0, 1),
    clock(23, 59, 59),
)


def french_holidays(year: int) -> dict[date, str]:
    return dict(holidays.country_holidays("FR", years=year, language="en_US").items())


def holiday_dates() -> list[date]:
    return sorted(day for year in HOLIDAY_YEARS for day in french_holidays(year))


# The sample.


def make_sample(n: int, seed: int) -> tuple[list[datetime], list[timedelta], Counter[str]]:
    """``n`` aware starts in 2026 (Europe/Paris) and a business duration for each.

    40% at an arbitrary second of the year, 30% on a whole minute, 30% at a local wall
    time on or next to an edge of the opening hours (09:00, 17:00, midnight...).
    """
    rng = random.Random(seed)
    first = int(datetime(2026, 1, 1, tzinfo=PARIS).timestamp())
    last = int(datetime(2027, 1, 1, tzinfo=PARIS).timestamp())
    first_day = date(2026, 1, 1).toordinal()
    starts: list[datetime] = []
    kinds: Counter[str] = Counter()
    for _ in range(n):
        roll = rng.random()
        if roll < 0.4:
            kind = "arbitrary second"
            start = datetime.fromtimestamp(rng.randrange(first, last), PARIS)
        elif roll < 0.7:
            kind = "whole minute"
            start = datetime.fromtimestamp(rng.randrange(first, last, 60), PARIS)
        else:
            kind = "edge wall time"
            day = date.fromordinal(first_day + rng.randrange(365))
            start = datetime.combine(day, rng.choice(EDGE_TIMES), PARIS)
        kinds[kind] += 1
        starts.append(start)
    durations = [rng.choice(DURATIONS) for _ in range(n)]
    return starts, durations, kinds


# The reference model: minute by minute, straight from the definition.


def make_reference(closed: set[date]) -> Callable[[int, int], int]:
    """``due(start, seconds)`` in POSIX seconds, one minute at a time.

    Minute ``[t, t+60)`` is open iff its local Paris wall time is 09:00-17:00 on a Mon-Fri
    date that is not a holiday. The due instant is the earliest one by which ``seconds`` of
    open time have elapsed since ``start``; a start inside a minute counts the rest of
    that minute second by second.
    """

    def minute_open(t: int) -> bool:
        local = datetime.fromtimestamp(t, PARIS)
        return (
            local.weekday() < 5
            and local.date() not in closed
            and OPEN_MINUTE <= local.hour * 60 + local.minute < CLOSE_MINUTE
        )

    def due(start: int, seconds: int) -> int:
        if seconds <= 0:
            return start
        remaining = seconds
        t = start
        minute = t - t % 60
        if minute != t:
            if minute_open(minute):
                rest = minute + 60 - t
                if remaining <= rest:
                    return t + remaining
                remaining -= rest
            t = minute + 60
        while True:
            if minute_open(t):
                if remaining <= 60:
                    return t + remaining
                remaining -= 60
            t += 60

    return due


# Timing.


def timed(run: Callable[[], object]) -> float:
    """Wall time of one run, garbage collector off (as timeit does)."""
    gc.collect()
    gc.disable()
    try:
        begin = time.perf_counter()
        run()
        return time.perf_counter() - begin
    finally:
        gc.enable()


def once(run: Callable[[], object]) -> tuple[float, Any]:
    begin = time.perf_counter()
    result = run()
    return time.perf_counter() - begin, result


def local(instant: datetime | float) -> str:
    """An instant as Paris wall time, for people."""
    if not isinstance(instant, datetime):
        instant = datetime.fromtimestamp(instant, PARIS)
    shown = instant.astimezone(PARIS)
    fraction = f".{shown.microsecond:06d}" if shown.microsecond else ""
    return f"{shown:%a %Y-%m-%d %H:%M:%S}{fraction}"


def hours(duration: timedelta) -> str:
    minutes = int(duration.total_seconds()) // 60
    return f"{minutes // 60}h{minutes % 60:02d}" if minutes % 60 else f"{minutes // 60}h"


def classify(reference: int, other: float) -> str:
    """What kind of disagreement this is (edge conventions first)."""
    ref_wall = f"{datetime.fromtimestamp(reference, PARIS):%H:%M:%S}"
    other_wall = f"{datetime.fromtimestamp(other, PARIS):%H:%M:%S}"
    if other > reference and ref_wall == "17:00:00" and other_wall == "09:00:00":
        return "work ending exactly at closing put at the next opening"
    return "later than the reference" if other > reference else "earlier than the reference"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="due dates timed (100000)")
    parser.add_argument(
        "--check", type=int, default=2_000, help="pairs checked against the reference (2000)"
    )
    parser.add_argument(
        "--bt-n",
        type=int,
        default=2_000,
        help="subsample timed for businesstimedelta, which is slow (2000)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds, best kept (5)")
    parser.add_argument("--seed", type=int, default=20260101, help="random seed (20260101)")
    args = parser.parse_args(argv)
    n, check, bt_n = args.n, min(args.check, args.n), min(args.bt_n, args.n)

    print(
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        + ", ".join(
            f"{name} {version(name)}"
            for name in ("workclock", "businesstimedelta", "pytz", "holidays", "numpy")
        )
    )
    print(f"calendar: Mon-Fri 09:00-17:00 {ZONE_NAME}, French public holidays")

    starts, durations, kinds = make_sample(n, args.seed)
    pairs = list(zip(starts, durations, strict=True))
    mix = ", ".join(f"{count:,} {kind}" for kind, count in sorted(kinds.items()))
    spread = Counter(hours(d) for d in durations)
    print(f"sample: {n:,} starts in 2026 (seed {args.seed}): {mix}")
    print(
        "durations (business time): "
        + ", ".join(f"{hours(d)} x{spread[hours(d)]:,}" for d in DURATIONS)
    )
    print()

    closed_list = holiday_dates()

    # slabot. The calendar compiles its open intervals on the first call: timed apart.
    build_s, cal = once(
        lambda: BusinessCalendar.weekly(
            PARIS,
            {day: [(clock(9), clock(17))] for day in WEEKDAYS[:5]},
            closed_dates=french_holidays,
            name="paris",
        )
    )
    first_s, _ = once(lambda: cal.due(starts[0], durations[0]))
    due = cal.due
    # The batch path's input: the sample as arrays of POSIX seconds, made once (set-up, as
    # building workclock's Schedule is).
    arrays_s, (start_array, second_array) = once(
        lambda: (
            np.array([int(s.timestamp()) for s in starts], dtype=np.int64),
            np.array([int(d.total_seconds()) for d in durations], dtype=np.int64),
        )
    )
    due_many_ts, due_many = cal.due_many_ts, cal.due_many

    # workclock: per call, and one batch call with one duration per start.
    schedule_s, schedule = once(
        lambda: Schedule([WorkDay(clock(9), clock(17)), Holidays(closed_list)], time_zone=PARIS)
    )
    wc_first_s, _ = once(lambda: schedule.add(starts[0], durations[0]))
    add, add_many = schedule.add, schedule.add_many

    # businesstimedelta: a pytz zone on both rules, starts localized with pytz beforehand,
    # one BusinessTimeDelta per duration built beforehand. Its HolidayRule tests
    # `date in holidays` day by day: timed with the holidays object its docs show (on which
    # the goal is judged), and with a frozenset of the same dates, its fastest container,
    # an optimisation its docs do not show (reported beside it).
    pytz_paris = pytz.timezone(ZONE_NAME)
    bt_pairs_by_form = {}
    for form, closed in (
        ("frozenset", frozenset(closed_list)),
        (
            "holidays object",
            holidays.country_holidays("FR", years=HOLIDAY_YEARS, language="en_US"),
        ),
    ):
        rules = businesstimedelta.Rules(
            [
                businesstimedelta.WorkDayRule(
                    start_time=clock(9),
                    end_time=clock(17),
                    working_days=[0, 1, 2, 3, 4],
                    tz=pytz_paris,
                ),
                businesstimedelta.HolidayRule(closed, tz=pytz_paris),
            ]
        )
        deltas = {
            d: businesstimedelta.BusinessTimeDelta(rules, hours=d.total_seconds() / 3600)
            for d in DURATIONS
        }
        bt_pairs_by_form[form] = [
            (s.astimezone(pytz_paris), deltas[d]) for s, d in pairs[: max(bt_n, check)]
        ]
    bt_pairs = bt_pairs_by_form["frozenset"]
    bt_object_pairs = bt_pairs_by_form["holidays object"][:bt_n]
    bt_first_s, _ = once(lambda: bt_pairs[0][0] + bt_pairs[0][1])

    # Results, which also warm every implementation up.
    slabot_results = [due(s, d) for s, d in pairs]
    batch_results = due_many_ts(start_array, second_array).tolist()
    if [int(r.timestamp()) for r in due_many(starts, durations)] != batch_results:
        print("slabot: due_many differs from due_many_ts", file=sys.stderr)
        return 1
    wc_results = [add(s, d) for s, d in pairs]
    if add_many(starts, durations) != wc_results:
        print("workclock: add_many differs from add", file=sys.stderr)
        return 1
    bt_results = [s + d for s, d in bt_pairs[:check]]
    if [s + d for s, d in bt_pairs_by_form["holidays object"][:check]] != bt_results:
        print("businesstimedelta: the two holiday containers disagree", file=sys.stderr)
        return 1
    bt_pairs = bt_pairs[:bt_n]
    sub_pairs = pairs[:bt_n]

    # Timing: rounds that run every implementation in turn, the best of each kept, so a
    # change in the machine's load shows in all of them alike.
    runs: dict[str, Callable[[], object]] = {
        "slabot": lambda: [due(s, d) for s, d in pairs],
        "slabot subsample": lambda: [due(s, d) for s, d in sub_pairs],
        "slabot batch": lambda: due_many_ts(start_array, second_array),
        "slabot batch datetimes": lambda: due_many(starts, durations),
        "workclock": lambda: [add(s, d) for s, d in pairs],
        "workclock batch": lambda: add_many(starts, durations),
        "businesstimedelta": lambda: [s + d for s, d in bt_pairs],
        "businesstimedelta object": lambda: [s + d for s, d in bt_object_pairs],
    }
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(args.repeat):
        for name, run in runs.items():
            best[name] = min(best[name], timed(run))
    slabot_s, wc_s, wc_batch_s = best["slabot"], best["workclock"], best["workclock batch"]
    bt_s = best["businesstimedelta"]

    # Table.
    slabot_us = slabot_s / n * 1e6
    batch_s, batch_dt_s = best["slabot batch"], best["slabot batch datetimes"]
    rows = [
        ("slabot BusinessCalendar.due, per call", slabot_us, n),
        ("slabot due_many_ts, one batch (POSIX seconds)", batch_s / n * 1e6, n),
        ("slabot due_many, one batch (datetimes)", batch_dt_s / n * 1e6, n),
        ("workclock Schedule.add, per call", wc_s / n * 1e6, n),
        ("workclock Schedule.add_many, one batch", wc_batch_s / n * 1e6, n),
        ("businesstimedelta, holidays in a frozenset", bt_s / bt_n * 1e6, bt_n),
        (
            "businesstimedelta, holidays object",
            best["businesstimedelta object"] / bt_n * 1e6,
            bt_n,
        ),
    ]
    print(f"{'implementation':<47} {'due dates':>9} {'µs/due date':>12} {'vs slabot':>10}")
    print("-" * 81)
    for name, micros, count in rows:
        print(f"{name:<47} {count:>9,} {micros:>12.3f} {micros / slabot_us:>9.2f}x")
    print(
        f"(best of {args.repeat} rounds; businesstimedelta on the first {bt_n:,} pairs only, "
        "as it is slow; garbage collector off while timing)"
    )
    print(
        f"set-up, not in the figures above: slabot calendar built in {build_s * 1e3:.3f} ms, "
        f"first due() call (compiles 2025-2027) {first_s * 1e3:.1f} ms, the sample as "
        f"arrays {arrays_s * 1e3:.1f} ms; workclock Schedule "
        f"built in {schedule_s * 1e3:.1f} ms, first add() {wc_first_s * 1e3:.3f} ms; "
        f"businesstimedelta first call {bt_first_s * 1e3:.1f} ms"
    )
    print()

    wc_ratio = wc_s / slabot_s
    bt_object_s = best["businesstimedelta object"]
    bt_ratio = (bt_object_s / bt_n) / (slabot_s / n)
    bt_frozen_ratio = (bt_s / bt_n) / (slabot_s / n)
    goal_wc = wc_ratio >= 3
    goal_bt = bt_ratio >= 100
    print(
        "goal: slabot per call at least 3x faster than workclock per call and 100x faster "
        "than businesstimedelta"
    )
    print(f"  vs workclock per call:  {wc_ratio:7.2f}x  {'PASS' if goal_wc else 'FAIL'}")
    print(
        f"  vs businesstimedelta:   {bt_ratio:7.2f}x  {'PASS' if goal_bt else 'FAIL'}"
        "  (set up as its docs show, with a holidays object; slabot timed on the same "
        f"{bt_n:,} pairs: {bt_object_s / best['slabot subsample']:.2f}x)"
    )
    print(
        f"  (not judged) vs businesstimedelta tuned with a frozenset of holidays: "
        f"{bt_frozen_ratio:.2f}x"
    )
    print(f"  overall: {'PASS' if goal_wc and goal_bt else 'FAIL'}")
    print()

    # The batch path: judged on the arrays recompute and backfill pass; workclock's
    # add_many has only the datetime form.
    batch_vs_wc = wc_batch_s / batch_s
    batch_wrong = sum(
        1 for a, b in zip(slabot_results, batch_results, strict=True) if int(a.timestamp()) != b
    )
    goal_batch = batch_vs_wc >= 10 and not batch_wrong
    print(
        "goal: the batch path at least 10x faster than workclock's add_many, and 0 "
        f"disagreements with the per-call path on all {n:,} pairs"
    )
    print(
        f"  batch path: {n / batch_s:,.0f} due dates/s; vs workclock add_many: "
        f"{batch_vs_wc:7.2f}x  {'PASS' if batch_vs_wc >= 10 else 'FAIL'}"
    )
    print(f"  vs slabot per call:     {slabot_s / batch_s:7.2f}x")
    print(
        f"  disagreements with the per-call path: {batch_wrong:,} of {n:,}  "
        f"{'PASS' if not batch_wrong else 'FAIL'}"
    )
    print(
        f"  (not judged) due_many, datetimes in and out: {n / batch_dt_s:,.0f}/s, "
        f"{wc_batch_s / batch_dt_s:.2f}x workclock add_many"
    )
    print(f"  overall: {'PASS' if goal_batch else 'FAIL'}")
    print()

    # Agreement with the reference model.
    reference = make_reference(set(closed_list))
    check_s, expected = once(
        lambda: [reference(int(s.timestamp()), int(d.total_seconds())) for s, d in pairs[:check]]
    )
    answers = {
        "slabot": [int(r.timestamp()) for r in slabot_results[:check]],
        "slabot batch path": batch_results[:check],
        "workclock (add = add_many)": [r.timestamp() for r in wc_results[:check]],
        "businesstimedelta": [r.timestamp() for r in bt_results],
    }
    print(
        f"agreement with the minute-by-minute reference on {check:,} pairs "
        f"(reference took {check_s:.1f} s):"
    )
    slabot_wrong = 0
    for name, got in answers.items():
        wrong = [i for i in range(check) if got[i] != expected[i]]
        if name.startswith("slabot"):
            slabot_wrong += len(wrong)
        kind_of = {i: classify(expected[i], got[i]) for i in wrong}
        seen = Counter(kind_of.values())
        summary = "; ".join(f"{count} {kind}" for kind, count in seen.most_common())
        print(f"  {name:<30} {len(wrong):>5} disagreements" + (f": {summary}" if wrong else ""))
        # Examples: the first of each kind, and a second one when there is a single kind.
        firsts = {kind: i for i, kind in reversed(kind_of.items())}
        examples = sorted(firsts.values())[:4]
        if len(examples) == 1 and len(wrong) > 1:
            examples.append(wrong[1])
        for i in examples:
            print(
                f"      {local(starts[i])} + {hours(durations[i])}: reference "
                f"{local(expected[i])}, {name.split()[0]} {local(got[i])}  [{kind_of[i]}]"
            )
    full = sum(
        1 for a, b in zip(slabot_results, wc_results, strict=True) if a.timestamp() != b.timestamp()
    )
    print(f"  slabot vs workclock on all {n:,} pairs: {full:,} differ")
    if slabot_wrong:
        print("FAIL: slabot disagrees with the reference model", file=sys.stderr)
    return 0 if goal_wc and goal_bt and goal_batch and not slabot_wrong else 1


if __name__ == "__main__":
    raise SystemExit(main())
