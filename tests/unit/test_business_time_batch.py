"""The calendar batch path (``due_many_ts``): the per-call answers, and the slow model's.

Random calendars, zones, holidays and starts (near DST changes, outside opening hours, in
several years so the compiled window grows both ways), multi-week durations, 24x7; then the
pairs the window cannot answer, which the batch path hands to ``due_ts``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_business_time import (
    DAY,
    HOUR,
    MINUTE,
    at,
    durations,
    examples,
    office,
    scenarios,
    sk_holidays,
    starts,
    wall,
)

from bot.business_time import AlwaysOpenCalendar, BusinessCalendar, Calendar
from bot.errors import CalendarError


@examples(150)
@given(st.data())
def test_the_batch_path_gives_the_per_call_and_the_model_answers(data: st.DataObject) -> None:
    scenario = data.draw(scenarios)
    count = data.draw(st.integers(1, 12), label="pairs")
    pairs = [
        (data.draw(starts(scenario.zone)), data.draw(durations(scenario))) for _ in range(count)
    ]
    begins, seconds = zip(*pairs, strict=True)
    batch = scenario.fast.due_many_ts(list(begins), list(seconds)).tolist()
    assert batch == [scenario.fast.due_ts(s, d) for s, d in pairs]
    assert batch == [scenario.slow.due(s, d) for s, d in pairs]


@examples(100)
@given(st.data())
def test_the_batch_path_is_exact_to_the_second(data: st.DataObject) -> None:
    scenario = data.draw(scenarios)
    pairs = [
        (
            data.draw(starts(scenario.zone)) + data.draw(st.integers(0, 59)),
            data.draw(st.integers(0, 60 * HOUR)),
        )
        for _ in range(data.draw(st.integers(1, 6)))
    ]
    begins, seconds = zip(*pairs, strict=True)
    batch = scenario.fast.due_many_ts(np.array(begins), np.array(seconds)).tolist()
    assert batch == [scenario.slow.due_to_the_second(s, d) for s, d in pairs]


@examples(60)
@given(st.data())
def test_a_batch_on_a_fresh_calendar_over_many_years_matches_one_grown_call_by_call(
    data: st.DataObject,
) -> None:
    # Two calendars alike: one answers a batch spread over 1990-2090 at once, the other
    # call by call (its window moving and growing as it goes).
    zone = data.draw(st.sampled_from(["Europe/Paris", "America/New_York", "Asia/Kolkata"]))
    closed = data.draw(st.sampled_from([sk_holidays, lambda year: {}]))
    hours = tuple(((9 * HOUR, 17 * HOUR),) if day < 5 else () for day in range(7))
    batch_cal = BusinessCalendar(ZoneInfo(zone), hours, closed)
    call_cal = BusinessCalendar(ZoneInfo(zone), hours, closed)
    first, last = at("UTC", 1990, 1, 1), at("UTC", 2090, 1, 1)
    pairs = data.draw(
        st.lists(
            st.tuples(st.integers(first, last), st.integers(-HOUR, 400 * HOUR)),
            min_size=1,
            max_size=40,
        )
    )
    begins, seconds = zip(*pairs, strict=True)
    assert batch_cal.due_many_ts(begins, seconds).tolist() == [
        call_cal.due_ts(s, d) for s, d in pairs
    ]


@pytest.mark.parametrize("zone", ["Europe/Paris", "America/Los_Angeles", "UTC"])
def test_24x7_in_a_batch_is_elapsed_real_time(zone: str) -> None:
    calendar = AlwaysOpenCalendar(ZoneInfo(zone))
    march = at(zone, 2026, 3, 29, 1, 30)
    begins, seconds = [march, march, march + 7], [HOUR, 0, -5]
    assert calendar.due_many_ts(begins, seconds).tolist() == [march + HOUR, march, march + 7]


def test_starts_outside_hours_and_over_holidays_in_a_batch() -> None:
    fast, slow = office(closed=sk_holidays)
    christmas = datetime(2026, 12, 24).date()
    begins = [
        wall(christmas, 3),  # night before a run of holidays
        wall(christmas, 16),  # a holiday afternoon
        wall(christmas + timedelta(days=2), 12),  # Saturday noon
        wall(christmas - timedelta(days=10), 9),  # a multi-week span across them
    ]
    seconds = [HOUR, 2 * HOUR, 8 * HOUR, 200 * HOUR]
    expected = [slow.due(s, d) for s, d in zip(begins, seconds, strict=True)]
    assert fast.due_many_ts(begins, seconds).tolist() == expected
    assert expected[0] == wall(datetime(2026, 12, 28).date(), 10)


def test_a_due_date_past_the_compiled_window_is_answered_by_the_per_call_path() -> None:
    fast, _ = office()
    start = wall(datetime(2026, 6, 1).date(), 9)
    fast.due_ts(start, HOUR)  # compiles 2025-2027
    far = 3 * 52 * 40 * HOUR  # three years of a 40-hour week
    batch = fast.due_many_ts([start, start], [HOUR, far]).tolist()
    assert batch == [fast.due_ts(start, HOUR), office()[0].due_ts(start, far)]
    assert batch[1] > at("UTC", 2029, 1, 1)


def test_a_batch_spread_wider_than_one_window_matches_the_per_call_path() -> None:
    fast, _ = office()
    medieval, modern = at("UTC", 1300, 3, 2, 10), at("UTC", 2026, 3, 2, 10)
    batch = fast.due_many_ts([medieval, modern], [HOUR, HOUR]).tolist()
    assert batch == [office()[0].due_ts(medieval, HOUR), office()[0].due_ts(modern, HOUR)]


def test_a_batch_refuses_what_the_per_call_path_refuses() -> None:
    fast, _ = office()
    too_early = int(datetime(900, 6, 1, tzinfo=UTC).timestamp())
    with pytest.raises(CalendarError, match="years 1000-9000"):
        fast.due_ts(too_early, HOUR)
    with pytest.raises(CalendarError, match="years 1000-9000"):
        fast.due_many_ts([at("UTC", 2026, 1, 5, 10), too_early], [HOUR, HOUR])
    with pytest.raises(CalendarError, match="one duration per start"):
        fast.due_many_ts([1, 2], [HOUR])
    with pytest.raises(CalendarError, match="64 bits"):
        fast.due_many_ts([1], [2**70])


def test_an_empty_batch_is_an_empty_answer() -> None:
    fast, _ = office()
    assert fast.due_many_ts([], []).tolist() == []
    assert fast.due_many([], []) == []


def test_the_datetime_batch_gives_what_due_gives() -> None:
    fast, _ = office(closed=sk_holidays)
    zone = ZoneInfo("Europe/Bratislava")
    begins = [datetime(2026, 12, 23, 16, 30, tzinfo=zone), datetime(2026, 6, 1, tzinfo=UTC)]
    spans = [timedelta(hours=3), timedelta(minutes=15, seconds=1)]
    assert fast.due_many(begins, spans) == [
        fast.due(s, d) for s, d in zip(begins, spans, strict=True)
    ]
    with pytest.raises(CalendarError, match="one duration per start"):
        fast.due_many(begins, spans[:1])


class OnlyPerCall(Calendar):
    """A calendar that implements only ``due_ts``: the base batch path answers one by one."""

    def due_ts(self, start: int, seconds: int) -> int:
        return start + 2 * max(seconds, 0)


def test_a_calendar_without_a_batch_path_of_its_own_answers_per_call() -> None:
    assert OnlyPerCall().due_many_ts([10, 20], [5, -1]).tolist() == [20, 20]


def test_the_batch_path_keeps_minute_precision_at_scale() -> None:
    # A realistic batch: every minute of a week with three durations; all per-call answers.
    fast, _ = office(closed=sk_holidays)
    monday = wall(datetime(2026, 3, 23).date(), 0)
    begins = np.arange(monday, monday + 7 * DAY, MINUTE)
    seconds = np.resize(np.array([15 * MINUTE, 9 * HOUR, 24 * HOUR]), len(begins))
    batch = fast.due_many_ts(begins, seconds).tolist()
    assert batch == [
        fast.due_ts(s, d) for s, d in zip(begins.tolist(), seconds.tolist(), strict=True)
    ]
