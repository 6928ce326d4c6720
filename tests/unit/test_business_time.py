"""Business-time arithmetic, checked against a minute-by-minute model of its documented contract.

The model (``SlowCalendar``) is the contract read literally: it walks UTC one minute at a
time and asks the zone what the wall clock shows. The fast calendars must agree with it on
random calendars, zones, holidays, starts, durations and pauses, and on hand-written cases.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.business_time import (
    WEEKDAYS,
    AlwaysOpenCalendar,
    BusinessCalendar,
    Calendar,
    Pause,
    merge_pauses,
)
from bot.errors import CalendarError

MINUTE = 60
HOUR = 3600
DAY = 86_400

ClosedDates = Callable[[int], Mapping[date, str]]
Hours = tuple[tuple[tuple[int, int], ...], ...]
"""Per weekday (Monday first), opening intervals in minutes since local midnight."""


def no_closed_dates(year: int) -> Mapping[date, str]:
    return {}


@cache
def sk_holidays(year: int) -> Mapping[date, str]:
    return dict(holidays.country_holidays("SK", years=year, language="en_US"))


# The slow model.


@dataclass
class SlowCalendar:
    """The documented semantics, one UTC minute at a time: obviously right, deliberately slow.

    A minute [t, t+60) is open iff its local wall time falls in an opening interval of its
    local weekday and its local date is not closed. ``hours`` None means open 24x7.
    """

    zone: ZoneInfo
    hours: Hours | None
    closed_dates: ClosedDates = no_closed_dates
    _closed_by_year: dict[int, Mapping[date, str]] = field(default_factory=dict)

    # Give up rather than hang: no test walks anywhere near this far.
    LIMIT = 3 * 366 * DAY

    def local(self, t: int) -> datetime:
        return datetime.fromtimestamp(t, self.zone)

    def is_closed(self, day: date) -> bool:
        if day.year not in self._closed_by_year:
            self._closed_by_year[day.year] = self.closed_dates(day.year)
        return day in self._closed_by_year[day.year]

    def is_open(self, t: int) -> bool:
        if self.hours is None:
            return True
        wall = self.local(t)
        if self.is_closed(wall.date()):
            return False
        minute = wall.hour * 60 + wall.minute
        return any(a <= minute < b for a, b in self.hours[wall.weekday()])

    def counts(self, t: int, pauses: Sequence[Pause]) -> bool:
        paused = any(b <= t and (e is None or t < e) for b, e in pauses)
        return self.is_open(t) and not paused

    def due(self, start: int, seconds: int, pauses: Sequence[Pause] = ()) -> int | None:
        """The end of the minute that completes ``seconds``; None if paused for good first."""
        if seconds == 0:
            return start
        elapsed = 0
        for t in range(start, start + self.LIMIT, MINUTE):
            if any(e is None and b <= t for b, e in pauses):
                return None
            if self.counts(t, pauses):
                elapsed += MINUTE
                if elapsed == seconds:
                    return t + MINUTE
        raise AssertionError("the slow model gave up")

    def due_to_the_second(self, start: int, seconds: int) -> int:
        """``due`` for any second: opening hours and zone offsets change on whole minutes, so
        a minute is open or closed as a whole; walk minute by minute, counting the seconds."""
        if seconds == 0:
            return start
        t, remaining = start, seconds
        for _ in range(self.LIMIT // MINUTE):
            minute_end = t - t % MINUTE + MINUTE
            if self.is_open(t - t % MINUTE):
                if minute_end - t >= remaining:
                    return t + remaining
                remaining -= minute_end - t
            t = minute_end
        raise AssertionError("the slow model gave up")

    def elapsed(self, start: int, now: int, pauses: Sequence[Pause] = ()) -> int:
        return sum(MINUTE for t in range(start, now, MINUTE) if self.counts(t, pauses))

    def open_spans(self, start: int, end: int) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        for t in range(start, end, MINUTE):
            if self.is_open(t):
                if spans and spans[-1][1] == t:
                    spans[-1] = (spans[-1][0], t + MINUTE)
                else:
                    spans.append((t, t + MINUTE))
        return spans

    def next_business_day_close(self, start: int) -> int:
        """The end of the last open minute of the first open local date after start's."""
        start_date = self.local(start).date()
        business_day = close = None
        for t in range(start, start + self.LIMIT, MINUTE):
            day = self.local(t).date()
            if business_day is not None and day > business_day:
                return close  # type: ignore[return-value]
            if day > start_date and self.is_open(t):
                business_day = business_day or day
                close = t + MINUTE
        raise AssertionError("the slow model gave up")

    def closed_dates_between(self, start: int, end: int) -> list[tuple[date, str]]:
        """Closed dates from start's local date to end's, on weekdays with opening hours."""
        if end <= start or self.hours is None:
            return []
        first, last = self.local(start).date(), self.local(end - 1).date()  # end exclusive
        days = (first + timedelta(days=n) for n in range((last - first).days + 1))
        return [
            (day, self.closed_dates(day.year)[day])
            for day in days
            if self.is_closed(day) and self.hours[day.weekday()]
        ]


# Helpers.


def at(zone: str, y: int, mo: int, d: int, h: int = 0, mi: int = 0, fold: int = 0) -> int:
    """POSIX seconds of a local wall time."""
    return int(datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(zone), fold=fold).timestamp())


def weekly(hours: Hours) -> tuple[tuple[tuple[int, int], ...], ...]:
    """Minutes since midnight to the seconds BusinessCalendar takes."""
    return tuple(tuple((a * MINUTE, b * MINUTE) for a, b in day) for day in hours)


NINE_TO_FIVE: Hours = (((9 * 60, 17 * 60),),) * 5 + ((), ())


def office(zone: str = "Europe/Bratislava", closed: ClosedDates = no_closed_dates):
    """Mon-Fri 09:00-17:00: the fast calendar and its slow model."""
    fast = BusinessCalendar.weekly(
        ZoneInfo(zone), {day: [(time(9), time(17))] for day in WEEKDAYS[:5]}, closed
    )
    return fast, SlowCalendar(ZoneInfo(zone), NINE_TO_FIVE, closed)


def merged_spans(calendar: Calendar, start: int, end: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for interval in calendar.open_intervals(start, end):
        if spans and spans[-1][1] == interval.start:
            spans[-1] = (spans[-1][0], interval.end)
        else:
            spans.append((interval.start, interval.end))
    return spans


def sk_holiday(name: str, year: int) -> date:
    """The date the holidays package gives a Slovak holiday (never hard-coded here)."""
    (day,) = (d for d, n in sk_holidays(year).items() if n.startswith(name))
    return day


def wall(day: date, h: int, mi: int = 0, zone: str = "Europe/Bratislava") -> int:
    return at(zone, day.year, day.month, day.day, h, mi)


# Strategies.

ZONES = [
    "Europe/Paris",
    "Europe/Bratislava",
    "America/Los_Angeles",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "UTC",
]
FIRST_START = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())
LAST_START = int(datetime(2031, 1, 1, tzinfo=UTC).timestamp())
MAX_MINUTES = 200 * 60  # 200 business hours

# Wall-clock minutes where things happen: midnight, the DST hours 01:00-03:00, 24:00.
EDGE_MINUTES = [0, 30, 60, 90, 120, 150, 180, 210, 9 * 60, 17 * 60, 23 * 60, 24 * 60]
TYPICAL_DAYS = [
    (),
    ((9 * 60, 17 * 60),),
    ((0, 24 * 60),),
    ((8 * 60, 12 * 60), (13 * 60, 17 * 60)),
    ((0, 6 * 60), (22 * 60, 24 * 60)),
    ((60, 180),),
    ((0, 150), (150, 24 * 60)),
]


ANY_MINUTE = st.one_of(st.sampled_from(EDGE_MINUTES), st.integers(0, 24 * 60))
# The DST changes of the test zones (01:00-03:00 wall time), points inside their repeated
# hours (01:30 New York, 01:45 Lord Howe, 02:30 Paris), midnight and 24:00.
NIGHT_MINUTE = st.sampled_from([0, 60, 90, 105, 120, 150, 180, 24 * 60])


@st.composite
def random_days(
    draw: st.DrawFn, minute: st.SearchStrategy[int] = ANY_MINUTE
) -> tuple[tuple[int, int], ...]:
    """0-3 sorted, non-overlapping intervals; sometimes a day split into touching intervals."""
    if draw(st.booleans()):
        points = sorted(draw(st.sets(minute, max_size=4)))
        return tuple(itertools.pairwise(points))
    points = sorted(draw(st.lists(minute, max_size=6)))
    return tuple((a, b) for a, b in zip(points[::2], points[1::2], strict=False) if a < b)


def open_somewhere(hours: Hours) -> Hours:
    """A calendar needs an open day (else CalendarError): open Monday 09:00-17:00 if none."""
    return hours if any(hours) else (((9 * 60, 17 * 60),), *hours[1:])


weekly_hours = st.lists(
    st.one_of(st.sampled_from(TYPICAL_DAYS), random_days()), min_size=7, max_size=7
).map(lambda days: open_somewhere(tuple(days)))


def random_closed_dates(seed: int, per_year: int) -> ClosedDates:
    def closed(year: int) -> Mapping[date, str]:
        rng = random.Random(seed * 10_000 + year)
        jan1 = date(year, 1, 1).toordinal()
        days = date(year + 1, 1, 1).toordinal() - jan1
        return {
            date.fromordinal(jan1 + rng.randrange(days)): f"holiday {n}" for n in range(per_year)
        }

    closed.__qualname__ = f"random_closed_dates(seed={seed}, per_year={per_year})"
    return closed


closed_dates_strategy = st.one_of(
    st.just(no_closed_dates),
    st.just(sk_holidays),
    st.builds(random_closed_dates, st.integers(0, 10**6), st.integers(1, 60)),
)


@dataclass
class Scenario:
    fast: Calendar
    slow: SlowCalendar
    weekly_open_minutes: int

    @property
    def zone(self) -> str:
        return str(self.slow.zone)

    def __repr__(self) -> str:  # what Hypothesis prints for a failing example
        if self.slow.hours is None:
            return f"Scenario({self.zone}, 24x7)"
        closed = self.slow.closed_dates.__qualname__
        return f"Scenario({self.zone}, hours={self.slow.hours}, closed={closed})"


@st.composite
def business_scenarios(draw: st.DrawFn) -> Scenario:
    zone = ZoneInfo(draw(st.sampled_from(ZONES)))
    hours = draw(weekly_hours)
    closed = draw(closed_dates_strategy)
    fast = BusinessCalendar(zone, weekly(hours), closed)
    open_minutes = sum(b - a for day in hours for a, b in day)
    return Scenario(fast, SlowCalendar(zone, hours, closed), open_minutes)


always_open_scenarios = st.sampled_from(ZONES).map(
    lambda name: Scenario(
        AlwaysOpenCalendar(ZoneInfo(name)), SlowCalendar(ZoneInfo(name), None), 7 * 24 * 60
    )
)
scenarios = st.one_of(business_scenarios(), business_scenarios(), always_open_scenarios)


@cache
def dst_changes(zone_name: str) -> tuple[int, ...]:
    """The (minute-aligned) instants the zone's UTC offset changes in the test years."""
    zone = ZoneInfo(zone_name)

    def offset(t: int) -> timedelta | None:
        return datetime.fromtimestamp(t, zone).utcoffset()

    changes = []
    for lo in range(FIRST_START, LAST_START, DAY):
        hi = lo + DAY
        if offset(lo) != offset(hi):
            while hi - lo > MINUTE:
                mid = lo + (hi - lo) // (2 * MINUTE) * MINUTE
                lo, hi = (mid, hi) if offset(mid) == offset(lo) else (lo, mid)
            changes.append(hi)
    return tuple(changes)


def starts(zone_name: str) -> st.SearchStrategy[int]:
    """Minute-aligned instants over 2024-2030, often within three days of a DST change."""
    anywhere = st.integers(FIRST_START // MINUTE, LAST_START // MINUTE).map(lambda m: m * MINUTE)
    changes = dst_changes(zone_name)
    if not changes:
        return anywhere
    near_change = st.builds(
        lambda change, minutes: change + minutes * MINUTE,
        st.sampled_from(changes),
        st.integers(-3 * 24 * 60, 3 * 24 * 60),
    )
    return st.one_of(anywhere, near_change)


def durations(scenario: Scenario, max_minutes: int = MAX_MINUTES) -> st.SearchStrategy[int]:
    """Whole minutes up to 200 business hours, capped at ~6 weeks of walking for the model."""
    cap = min(max_minutes, 6 * scenario.weekly_open_minutes)
    return st.integers(0, cap).map(lambda m: m * MINUTE)


@st.composite
def pauses_around(draw: st.DrawFn, start: int) -> list[Pause]:
    """0-4 raw pauses near start: overlapping, touching, empty, before start or open-ended."""
    pauses: list[Pause] = []
    for _ in range(draw(st.integers(0, 4))):
        begin = start + draw(st.integers(-2 * 24 * 60, 4 * 7 * 24 * 60)) * MINUTE
        open_ended = draw(st.sampled_from([True, False, False, False, False]))
        length = draw(st.integers(0, 10 * 24 * 60)) * MINUTE
        pauses.append((begin, None if open_ended else begin + length))
    return pauses


def examples(n: int):
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# Property tests: the fast calendars agree with the slow model.


@examples(150)
@given(st.data())
def test_due_is_the_earliest_instant_at_which_the_open_time_has_elapsed(data: st.DataObject):
    scenario = data.draw(scenarios)
    # Several queries on one calendar, in random years: the compiled span grows both ways.
    for _ in range(data.draw(st.integers(1, 3), label="queries")):
        start = data.draw(starts(scenario.zone), label="start")
        seconds = data.draw(durations(scenario), label="seconds")
        expected = scenario.slow.due(start, seconds)
        assert scenario.fast.due_ts(start, seconds) == expected
        start_dt = datetime.fromtimestamp(start, ZoneInfo(scenario.zone))
        assert scenario.fast.due(start_dt, timedelta(seconds=seconds)).timestamp() == expected


@examples(100)
@given(st.data())
def test_due_is_exact_to_the_second(data: st.DataObject):
    scenario = data.draw(scenarios)
    start = data.draw(starts(scenario.zone), label="start") + data.draw(st.integers(0, 59))
    seconds = data.draw(st.integers(0, 60 * 3600), label="seconds")
    expected = scenario.slow.due_to_the_second(start, seconds)
    assert scenario.fast.due_ts(start, seconds) == expected
    start_dt = datetime.fromtimestamp(start, ZoneInfo(scenario.zone))
    assert scenario.fast.due(start_dt, timedelta(seconds=seconds)).timestamp() == expected


@examples(80)
@given(st.data())
def test_work_that_ends_exactly_at_a_closing_is_due_at_that_closing(data: st.DataObject):
    scenario = data.draw(scenarios)
    start = data.draw(starts(scenario.zone), label="start")
    spans = scenario.slow.open_spans(start, start + 14 * DAY)
    if not spans:
        return
    _, closing = data.draw(st.sampled_from(spans), label="span")
    seconds = scenario.slow.elapsed(start, closing)
    assert scenario.fast.due_ts(start, seconds) == scenario.slow.due(start, seconds) == closing


@examples(100)
@given(st.data())
def test_open_seconds_and_elapsed_count_the_open_unpaused_minutes(data: st.DataObject):
    scenario = data.draw(scenarios)
    start = data.draw(starts(scenario.zone), label="start")
    end = start + data.draw(st.integers(-3 * 24 * 60, 21 * 24 * 60), label="minutes") * MINUTE
    pauses = data.draw(pauses_around(start), label="pauses")
    assert scenario.fast.open_seconds(start, end) == scenario.slow.elapsed(start, end)
    merged = merge_pauses(pauses)
    assert scenario.fast.elapsed_ts(start, end, merged) == scenario.slow.elapsed(start, end, pauses)


@examples(100)
@given(st.data())
def test_due_with_pauses_skips_the_paused_time(data: st.DataObject):
    scenario = data.draw(scenarios)
    start = data.draw(starts(scenario.zone), label="start")
    seconds = data.draw(durations(scenario), label="seconds")
    pauses = data.draw(pauses_around(start), label="pauses")
    expected = scenario.slow.due(start, seconds, pauses)
    assert scenario.fast.due_with_pauses_ts(start, seconds, merge_pauses(pauses)) == expected


@examples(100)
@given(st.data())
def test_next_business_day_is_the_close_of_the_first_open_date_after_the_start(
    data: st.DataObject,
):
    scenario = data.draw(scenarios)
    for _ in range(data.draw(st.integers(1, 3), label="queries")):
        start = data.draw(starts(scenario.zone), label="start")
        expected = scenario.slow.next_business_day_close(start)
        assert scenario.fast.next_business_day_close_ts(start) == expected


@examples(60)
@given(st.data())
def test_open_intervals_and_closed_dates_describe_the_same_minutes(data: st.DataObject):
    scenario = data.draw(scenarios)
    start = data.draw(starts(scenario.zone), label="start")
    end = start + data.draw(st.integers(-60, 14 * 24 * 60), label="minutes") * MINUTE
    assert merged_spans(scenario.fast, start, end) == scenario.slow.open_spans(start, end)
    expected_closed = scenario.slow.closed_dates_between(start, end)
    assert scenario.fast.closed_dates_between(start, end) == expected_closed


@examples(150)
@given(st.data())
def test_night_hours_around_dst_changes_agree_with_the_model(data: st.DataObject):
    zone = data.draw(st.sampled_from([z for z in ZONES if dst_changes(z)]), label="zone")
    # The same night hours every day, so the day of the change surely has them.
    hours = (data.draw(random_days(NIGHT_MINUTE).filter(bool), label="night hours"),) * 7
    fast = BusinessCalendar(ZoneInfo(zone), weekly(hours))
    slow = SlowCalendar(ZoneInfo(zone), hours)
    change = data.draw(st.sampled_from(dst_changes(zone)), label="change")
    near = st.integers(-3 * 60, 3 * 60)
    start, end = (change + data.draw(near, label=label) * MINUTE for label in ("start", "end"))
    seconds = data.draw(st.integers(0, 8 * 60), label="seconds") * MINUTE
    assert fast.due_ts(start, seconds) == slow.due(start, seconds)
    assert fast.open_seconds(start, end) == slow.elapsed(start, end)
    assert merged_spans(fast, start, end) == slow.open_spans(start, end)
    assert fast.next_business_day_close_ts(start) == slow.next_business_day_close(start)


@examples(200)
@given(
    st.lists(
        st.tuples(st.integers(0, 100), st.one_of(st.none(), st.integers(0, 100))).map(
            lambda p: (p[0], p[1] if p[1] is None else p[0] + p[1] - 20)
        ),
        max_size=6,
    )
)
def test_merged_pauses_are_sorted_disjoint_and_cover_the_same_instants(pauses: list[Pause]):
    merged = merge_pauses(pauses)

    def paused(ps: Sequence[Pause], t: int) -> bool:
        return any(b <= t and (e is None or t < e) for b, e in ps)

    for t in range(-1, 202):
        assert paused(merged, t) == paused(pauses, t)
    for (_, end), (next_begin, _) in itertools.pairwise(merged):
        assert end is not None and end < next_begin
    assert all(e is None or b < e for b, e in merged)


@pytest.mark.slow
@examples(100)
@given(st.data())
def test_due_agrees_with_the_model_over_the_full_200_business_hours(data: st.DataObject):
    scenario = data.draw(
        scenarios.filter(lambda s: s.weekly_open_minutes >= 20 * 60), label="scenario"
    )
    start = data.draw(starts(scenario.zone), label="start")
    seconds = data.draw(st.integers(0, MAX_MINUTES), label="minutes") * MINUTE
    pauses = data.draw(pauses_around(start), label="pauses")
    assert scenario.fast.due_ts(start, seconds) == scenario.slow.due(start, seconds)
    expected = scenario.slow.due(start, seconds, pauses)
    assert scenario.fast.due_with_pauses_ts(start, seconds, merge_pauses(pauses)) == expected


# Hand cases. Tables map a test id (a sentence) to a row.


def table(cases: dict[str, tuple]) -> dict:
    """parametrize arguments from ``{id: row}``."""
    return {"argvalues": list(cases.values()), "ids": list(cases)}


def june(d: int, h: int, mi: int = 0) -> int:
    """A wall time in Bratislava, June 2026 (Monday the 8th, 15th; no holidays)."""
    return at("Europe/Bratislava", 2026, 6, d, h, mi)


def july(d: int, h: int, mi: int = 0) -> int:
    return at("Europe/Bratislava", 2026, 7, d, h, mi)


NINE_TO_FIVE_DUE = {
    "friday 16:30 + 3h is monday 11:30": (june(12, 16, 30), 3 * HOUR, june(15, 11, 30)),
    "a day's work from opening is due at closing": (june(8, 9), 8 * HOUR, june(8, 17)),
    "work ending exactly at 17:00 is due 17:00 not 09:00": (june(12, 16), HOUR, june(12, 17)),
    "a minute more is due monday 09:01": (june(12, 16), HOUR + MINUTE, june(15, 9, 1)),
    "zero duration is due at the start": (june(10, 11, 11), 0, june(10, 11, 11)),
    "zero duration is due at the start even when closed": (june(13, 12), 0, june(13, 12)),
    "a start before opening counts from opening": (june(9, 6), HOUR, june(9, 10)),
    "a start after closing counts from the next opening": (june(9, 19), HOUR, june(10, 10)),
    "a start at closing counts from the next opening": (june(9, 17), HOUR, june(10, 10)),
    "a saturday start counts from monday": (june(13, 12), HOUR, june(15, 10)),
    "a sunday start counts from monday": (june(14, 23, 59), 8 * HOUR, june(15, 17)),
    "40h from monday opening is friday closing": (june(8, 9), 40 * HOUR, june(12, 17)),
    "200h spans five weeks": (june(8, 9), 200 * HOUR, july(10, 17)),
    "200h and a minute is the sixth monday": (june(8, 9), 200 * HOUR + MINUTE, july(13, 9, 1)),
}


@pytest.mark.parametrize(("start", "duration", "expected"), **table(NINE_TO_FIVE_DUE))
def test_due_on_a_nine_to_five_calendar(start: int, duration: int, expected: int):
    fast, slow = office()
    assert fast.due_ts(start, duration) == expected
    assert slow.due(start, duration) == expected


DST_WEEKENDS = {
    "los angeles in march": ("America/Los_Angeles", (2026, 3, 6, 16, 30), (2026, 3, 9, 9, 30)),
    "los angeles in november": (
        "America/Los_Angeles",
        (2026, 10, 30, 16, 30),
        (2026, 11, 2, 9, 30),
    ),
    "new york in march": ("America/New_York", (2026, 3, 6, 16, 30), (2026, 3, 9, 9, 30)),
    "new york in november": ("America/New_York", (2026, 10, 30, 16, 30), (2026, 11, 2, 9, 30)),
    "paris in march": ("Europe/Paris", (2026, 3, 27, 16, 30), (2026, 3, 30, 9, 30)),
    "bratislava in october": ("Europe/Bratislava", (2026, 10, 23, 16, 30), (2026, 10, 26, 9, 30)),
}


@pytest.mark.parametrize(("zone", "start", "expected"), **table(DST_WEEKENDS))
def test_an_hour_over_a_dst_weekend_keeps_to_the_wall_clock(zone, start, expected):
    fast, slow = office(zone)
    assert fast.due_ts(at(zone, *start), HOUR) == at(zone, *expected)
    assert slow.due(at(zone, *start), HOUR) == at(zone, *expected)


ROUND_THE_CLOCK: Hours = (((0, 24 * 60),),) * 7
ONE_TO_THREE: Hours = (((60, 180),),) * 7
SPLIT_AT_0230: Hours = (((0, 150), (150, 24 * 60)),) * 7
LA, NY, PARIS = "America/Los_Angeles", "America/New_York", "Europe/Paris"

DST_DAYS = {
    "the march change day has 23 open hours": (
        LA,
        ROUND_THE_CLOCK,
        (2026, 3, 8),
        23 * HOUR,
        (2026, 3, 9),
    ),
    "the october change day has 25 open hours": (
        PARIS,
        ROUND_THE_CLOCK,
        (2026, 10, 25),
        25 * HOUR,
        (2026, 10, 26),
    ),
    "01:00-03:00 skips the missing hour": (
        LA,
        ONE_TO_THREE,
        (2026, 3, 8, 1),
        HOUR,
        (2026, 3, 8, 3),
    ),
    "01:00-03:00 holds one hour in march": (
        LA,
        ONE_TO_THREE,
        (2026, 3, 8, 1),
        HOUR + MINUTE,
        (2026, 3, 9, 1, 1),
    ),
    "01:00-03:00 holds three hours in november": (
        NY,
        ONE_TO_THREE,
        (2026, 11, 1, 1),
        3 * HOUR,
        (2026, 11, 1, 3),
    ),
    # (2026, 10, 25, 2, 0, 1) is the second 02:00 of the day (fold=1).
    "a day split at 02:30 counts each real minute once": (
        PARIS,
        SPLIT_AT_0230,
        (2026, 10, 25),
        3 * HOUR,
        (2026, 10, 25, 2, 0, 1),
    ),
    "a day split at 02:30 has 25 hours in october": (
        PARIS,
        SPLIT_AT_0230,
        (2026, 10, 25),
        25 * HOUR,
        (2026, 10, 26),
    ),
}


@pytest.mark.parametrize(("zone", "hours", "start", "duration", "expected"), **table(DST_DAYS))
def test_open_hours_follow_the_wall_clock_across_dst(zone, hours, start, duration, expected):
    fast = BusinessCalendar(ZoneInfo(zone), weekly(hours))
    slow = SlowCalendar(ZoneInfo(zone), hours)
    assert fast.due_ts(at(zone, *start), duration) == at(zone, *expected)
    assert slow.due(at(zone, *start), duration) == at(zone, *expected)


def test_a_day_split_inside_the_repeated_hour_ends_at_midnight():
    fast = BusinessCalendar(ZoneInfo(PARIS), weekly(SPLIT_AT_0230))
    saturday_noon, sunday, monday = (
        at(PARIS, 2026, 10, d, h) for d, h in ((24, 12), (25, 0), (26, 0))
    )
    assert fast.open_seconds(sunday, monday) == 25 * HOUR
    assert fast.next_business_day_close_ts(saturday_noon) == monday


TWENTY_FOUR_SEVEN_HOURS = {
    "los angeles in march": (LA, (2026, 3, 8, 1, 30), (2026, 3, 8, 3, 30)),
    "new york in november": (NY, (2026, 11, 1, 1, 30), (2026, 11, 1, 1, 30, 1)),
    "paris in march": (PARIS, (2026, 3, 29, 1, 30), (2026, 3, 29, 3, 30)),
    "bratislava in october": ("Europe/Bratislava", (2026, 10, 25, 2, 30), (2026, 10, 25, 2, 30, 1)),
}


@pytest.mark.parametrize(("zone", "start", "expected"), **table(TWENTY_FOUR_SEVEN_HOURS))
def test_a_24x7_hour_across_a_dst_change_is_sixty_real_minutes(zone, start, expected):
    due = AlwaysOpenCalendar(ZoneInfo(zone)).due_ts(at(zone, *start), HOUR)
    assert due == at(zone, *start) + 60 * MINUTE == at(zone, *expected)


# Holidays, from the holidays package: the holiday, its year, and the days until reopening.

SK_HOLIDAYS = {
    "epiphany on a tuesday": ("Epiphany", 2026, 1),
    "good friday and easter monday": ("Good Friday", 2026, 4),
    "labour day on a friday": ("Labor Day", 2026, 3),
    "christmas eve to boxing day": ("Christmas Eve", 2026, 4),
    "good friday in 2090": ("Good Friday", 2090, 4),
}


@pytest.mark.parametrize(("holiday", "year", "days_after"), **table(SK_HOLIDAYS))
def test_a_holiday_closes_the_whole_day(holiday: str, year: int, days_after: int):
    fast, slow = office(closed=sk_holidays)
    day = sk_holiday(holiday, year)
    reopens = day + timedelta(days=days_after)
    start = wall(day - timedelta(days=1), 16)
    assert fast.due_ts(start, 2 * HOUR) == slow.due(start, 2 * HOUR) == wall(reopens, 10)
    assert fast.next_business_day_close_ts(start) == wall(reopens, 17)
    assert slow.next_business_day_close(start) == wall(reopens, 17)
    assert (day, sk_holidays(year)[day]) in fast.closed_dates_between(start, wall(reopens, 10))


def test_holidays_over_a_multi_week_span_agree_with_the_model():
    fast, slow = office(closed=sk_holidays)
    start = wall(date(2026, 12, 14), 9)
    assert fast.due_ts(start, 200 * HOUR) == slow.due(start, 200 * HOUR)
    assert fast.open_seconds(start, start + 60 * DAY) == slow.elapsed(start, start + 60 * DAY)


# Next business day.

NEXT_BUSINESS_DAY = {
    "from friday is monday 17:00": (june(12, 10), june(15, 17)),
    "from saturday is monday 17:00": (june(13, 10), june(15, 17)),
    "from late sunday is monday 17:00": (june(14, 23, 30), june(15, 17)),
    "from monday before opening is tuesday 17:00": (june(15, 8), june(16, 17)),
    "from tuesday after closing is wednesday 17:00": (june(16, 18), june(17, 17)),
}


@pytest.mark.parametrize(("start", "expected"), **table(NEXT_BUSINESS_DAY))
def test_next_business_day_is_the_close_of_the_next_open_date(start: int, expected: int):
    fast, slow = office()
    assert fast.next_business_day_close_ts(start) == expected
    assert slow.next_business_day_close(start) == expected


def test_next_business_day_on_24x7_is_the_end_of_the_next_date():
    friday, sunday = at(PARIS, 2026, 10, 23, 10), at(PARIS, 2026, 10, 25)
    assert AlwaysOpenCalendar(ZoneInfo(PARIS)).next_business_day_close_ts(friday) == sunday


# Pauses: start, duration, raw pauses, due (None while paused for good).

EASTER_THURSDAY = sk_holiday("Good Friday", 2026) - timedelta(days=1)
EASTER_TUESDAY = EASTER_THURSDAY + timedelta(days=5)

PAUSED = {
    "a pause over the night": (june(8, 9), 8 * HOUR, [(june(8, 12), june(9, 12))], june(9, 17)),
    "a pause over the weekend": (
        june(12, 16),
        2 * HOUR,
        [(june(12, 16, 30), june(15, 10))],
        june(15, 11, 30),
    ),
    "a pause over the easter holidays": (
        wall(EASTER_THURSDAY, 16),
        2 * HOUR,
        [(wall(EASTER_THURSDAY, 16, 30), wall(EASTER_TUESDAY, 10))],
        wall(EASTER_TUESDAY, 11, 30),
    ),
    "a start inside a pause waits for its end": (
        june(8, 10),
        HOUR,
        [(june(8, 9), june(8, 11))],
        june(8, 12),
    ),
    "a pause before the start changes nothing": (
        june(8, 10),
        HOUR,
        [(june(5, 9), june(5, 11))],
        june(8, 11),
    ),
    "overlapping pauses count once": (
        june(8, 9),
        2 * HOUR,
        [(june(8, 10), june(8, 12)), (june(8, 11), june(8, 13))],
        june(8, 14),
    ),
    "a pause with no end holds the clock": (june(8, 10), HOUR, [(june(8, 10, 30), None)], None),
    "a pause with no end from the due instant is too late": (
        june(8, 10),
        HOUR,
        [(june(8, 11), None)],
        june(8, 11),
    ),
    "zero duration is due at the start even when paused": (
        june(8, 10),
        0,
        [(june(8, 10), None)],
        june(8, 10),
    ),
}


@pytest.mark.parametrize(("start", "duration", "pauses", "expected"), **table(PAUSED))
def test_due_with_pauses(start: int, duration: int, pauses: list[Pause], expected: int | None):
    fast, slow = office(closed=sk_holidays)
    assert fast.due_with_pauses_ts(start, duration, merge_pauses(pauses)) == expected
    assert slow.due(start, duration, pauses) == expected


def test_elapsed_leaves_out_paused_and_closed_time():
    fast, _ = office()
    assert fast.elapsed_ts(june(8, 9), june(9, 12), [(june(8, 12), june(9, 10))]) == 5 * HOUR
    assert fast.elapsed_ts(june(8, 9), june(9, 12), [(june(8, 12), None)]) == 3 * HOUR


MERGES = {
    "nothing": ([], []),
    "sorted": ([(30, 40), (10, 20)], [(10, 20), (30, 40)]),
    "overlapping merge": ([(10, 30), (20, 40)], [(10, 40)]),
    "touching merge": ([(10, 20), (20, 30)], [(10, 30)]),
    "empty ones dropped": ([(10, 10), (30, 20)], []),
    "an open-ended pause swallows the rest": ([(10, 20), (15, None), (50, 60)], [(10, None)]),
}


@pytest.mark.parametrize(("pauses", "expected"), **table(MERGES))
def test_merge_pauses(pauses: list[Pause], expected: list[Pause]):
    assert merge_pauses(pauses) == expected


# Calendars compile on demand, for any year.


@pytest.mark.parametrize(
    "years", [(2026, 1990, 2090, 2026), (2090, 1990, 2026), (1990, 2090)], ids=str
)
def test_a_calendar_extends_on_demand_to_any_year_in_any_order(years: tuple[int, ...]):
    fast, slow = office(closed=sk_holidays)
    for year in years:
        start = wall(date(year, 12, 18), 16, 30)
        for duration in (3 * HOUR, 200 * HOUR):
            assert fast.due_ts(start, duration) == slow.due(start, duration)
        assert fast.next_business_day_close_ts(start) == slow.next_business_day_close(start)
        assert fast.open_seconds(start - 30 * DAY, start) == slow.elapsed(start - 30 * DAY, start)


def test_the_friday_rule_holds_in_1990_and_2090():
    fast, _ = office()
    assert fast.due_ts(wall(date(2090, 6, 9), 16, 30), 3 * HOUR) == wall(date(2090, 6, 12), 11, 30)
    assert fast.due_ts(wall(date(1990, 6, 8), 16, 30), 3 * HOUR) == wall(date(1990, 6, 11), 11, 30)


# The datetime API, and refusals.


def test_due_takes_and_returns_aware_datetimes_in_whole_seconds():
    fast, _ = office(PARIS)
    friday = datetime(2026, 11, 20, 16, 30, 0, 999_999, tzinfo=ZoneInfo(PARIS))
    due = fast.due(friday, timedelta(hours=3, microseconds=500))
    assert due == datetime(2026, 11, 23, 11, 30, tzinfo=ZoneInfo(PARIS))
    assert due.tzinfo is UTC


BAD_HOURS = {
    "no day open": ((),) * 7,
    "eight days": ((),) * 6 + (((9 * HOUR, 17 * HOUR),),) * 2,
    "closing before opening": (((17 * HOUR, 9 * HOUR),),) + ((),) * 6,
    "closing after midnight": (((9 * HOUR, 25 * HOUR),),) + ((),) * 6,
}


@pytest.mark.parametrize("hours", list(BAD_HOURS.values()), ids=list(BAD_HOURS))
def test_a_calendar_without_sane_opening_hours_is_refused(hours):
    with pytest.raises(CalendarError):
        BusinessCalendar(ZoneInfo(PARIS), hours)


def test_a_calendar_built_from_no_weekly_hours_is_refused():
    with pytest.raises(CalendarError, match="no opening hours"):
        BusinessCalendar.weekly(ZoneInfo(PARIS), {})


def test_a_calendar_refuses_overlapping_intervals_on_one_day():
    hours = ((9 * 3600, 13 * 3600), (12 * 3600, 17 * 3600))
    with pytest.raises(CalendarError, match="overlapping"):
        BusinessCalendar(ZoneInfo("UTC"), (hours, (), (), (), (), (), ()))


def test_a_holiday_right_after_the_end_instant_is_not_listed_as_skipped():
    def closed(year):
        return {date(year, 3, 3): "holiday"}

    cal = BusinessCalendar(ZoneInfo("UTC"), (((9 * 3600, 17 * 3600),),) * 7, closed)
    end = int(datetime(2026, 3, 3, tzinfo=UTC).timestamp())
    start = int(datetime(2026, 3, 2, 9, tzinfo=UTC).timestamp())
    assert cal.closed_dates_between(start, end) == []
    assert cal.closed_dates_between(start, end + 1) == [(date(2026, 3, 3), "holiday")]


def test_a_negative_duration_is_due_at_the_start_on_every_calendar():
    cal = BusinessCalendar(ZoneInfo("UTC"), (((9 * 3600, 17 * 3600),),) * 7)
    start = int(datetime(2026, 3, 2, 10, tzinfo=UTC).timestamp())
    assert cal.due_ts(start, -60) == start
    assert AlwaysOpenCalendar().due_ts(start, -60) == start
