"""Business-time arithmetic: due instants and open time on weekly calendars with holidays.

Semantics (the documented contract, checked against a minute-by-minute model in the tests):

* An instant is *open* when its local wall-clock time, in the calendar's zone, falls in one
  of the opening intervals of its local weekday and its local date is not a closed date.
  Across a daylight-saving change this is exactly what a wall clock shows: an 08:00-17:00
  day that loses an hour at 02:00 still opens at 08:00 and closes at 17:00.
* ``due(start, d)`` is the EARLIEST instant at which ``d`` of open time has elapsed since
  ``start``: work ending exactly at closing is due at closing (17:00, not next 09:00), and
  ``d == 0`` is due at ``start``.
* Instants are whole seconds (POSIX timestamps); sub-second parts are truncated.

A calendar compiles its open intervals for a span of local years into three sorted arrays
(starts, ends, open seconds elapsed at each end), so every due date is two binary searches.
The span grows on demand in both directions, so any year answers correctly; nothing is
precomputed that could silently run out.

The batch path (``due_many_ts``) answers many due dates at once with the same two binary
searches done by numpy over the same compiled arrays; what it cannot answer from the window
it has (a due date past its end, a start outside it) it hands to ``due_ts`` one by one, so
its answers are the per-call ones by construction, not by a second implementation.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from itertools import pairwise
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from bot.errors import CalendarError

DAY = 86_400
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# Longest span of years one compiled window holds; beyond it an input is surely a mistake.
_MAX_SPAN_YEARS = 400
FIRST_YEAR, LAST_YEAR = 1000, 9000
"""The years calendars compute in; an instant outside them is refused with a CalendarError."""
# UTC offsets lie within [-12h, +14h]; a window this wide around a wall time holds every
# instant that can show it.
_OFFSET_MARGIN = 16 * 3600

ClosedDates = Callable[[int], Mapping[date, str]]
"""Closed local dates of one year, with the reason shown to people (a holiday's name)."""

Pause = tuple[int, int | None]
"""A paused span ``[from, to)`` in POSIX seconds; ``to`` None while still paused."""

Instants = npt.NDArray[np.int64]
"""POSIX seconds, one per due date of a batch."""
# A duration longer than this cannot be answered within one compiled window: the batch path
# leaves it to due_ts (which says what is wrong with it), and int64 stays far from overflow.
_BATCH_MAX_SECONDS = _MAX_SPAN_YEARS * 366 * DAY


def to_timestamp(instant: datetime) -> int:
    """Whole POSIX seconds of an aware datetime (truncated toward the past)."""
    if instant.tzinfo is None:
        raise CalendarError(f"datetime {instant.isoformat()} has no time zone; pass an aware one")
    return aware_seconds(instant)


def aware_seconds(instant: datetime) -> int:
    """``math.floor(instant.timestamp())`` of an aware datetime, the caller having checked
    that it is aware (a ticket's instants are).

    Instants with a fixed offset other than UTC (what ``datetime.fromisoformat`` gives for
    ``+01:00``) are counted from their fields and the offset, which is read once per
    offset: half the cost of ``timestamp()``, run for each instant of each ticket evaluated
    (hot path).

    >>> at = datetime.fromisoformat("2026-03-29T01:59:59.5+01:00")
    >>> aware_seconds(at) == math.floor(at.timestamp())
    True
    """
    zone = instant.tzinfo
    if zone is UTC:
        return _floor(instant.timestamp())  # as quick as it gets for UTC
    offset = _OFFSET_SECONDS.get(zone)  # type: ignore[arg-type]
    if offset is None:
        if type(zone) is not timezone:
            return _floor(instant.timestamp())  # a zone whose offset varies (ZoneInfo...)
        delta = zone.utcoffset(None)
        if delta.microseconds:
            return _floor(instant.timestamp())
        if len(_OFFSET_SECONDS) >= 512:
            _OFFSET_SECONDS.clear()
        offset = _OFFSET_SECONDS[zone] = delta.days * DAY + delta.seconds
    return (
        (instant.toordinal() - _EPOCH_ORDINAL) * DAY
        + instant.hour * 3600
        + instant.minute * 60
        + instant.second
        - offset
    )


_OFFSET_SECONDS: dict[tzinfo, int] = {}
"""Seconds east of UTC by fixed-offset ``timezone`` (equal offsets share an entry)."""
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def from_timestamp(ts: int) -> datetime:
    """The aware UTC datetime of whole POSIX seconds."""
    return datetime.fromtimestamp(ts, UTC)


_fromtimestamp = datetime.fromtimestamp
_floor = math.floor


def _no_closed_dates(year: int) -> Mapping[date, str]:
    return {}


@dataclass(frozen=True, slots=True)
class OpenInterval:
    """An open span ``[start, end)`` in POSIX seconds."""

    start: int
    end: int


def merge_pauses(pauses: Iterable[Pause]) -> list[Pause]:
    """Sort and merge overlapping pauses; an open-ended pause swallows everything after it."""
    ordered = sorted(pauses, key=lambda p: p[0])
    merged: list[Pause] = []
    for begin, end in ordered:
        if end is not None and end <= begin:
            continue
        if merged:
            last_begin, last_end = merged[-1]
            if last_end is None:
                break
            if begin <= last_end:
                merged[-1] = (last_begin, None if end is None else max(last_end, end))
                continue
        merged.append((begin, end))
    return merged


class Calendar:
    """Open time as a running total ``cum(t)``: the base of every calendar.

    Subclasses provide ``cum`` (open seconds from an arbitrary origin up to ``t``) and
    ``due_ts``; pauses, elapsed time and the datetime API are built on those two.
    """

    zone: tzinfo

    def cum(self, ts: int) -> int:
        raise NotImplementedError

    def due_ts(self, start: int, seconds: int) -> int:
        raise NotImplementedError

    def next_business_day_close_ts(self, start: int) -> int:
        raise NotImplementedError

    def due_many_ts(self, starts: npt.ArrayLike, seconds: npt.ArrayLike) -> Instants:
        """``due_ts`` of each ``(starts[k], seconds[k])``, as an array: the batch path.

        This base answers one by one; the calendars below answer in a few numpy passes.
        """
        start_array, second_array = _batch(starts, seconds)
        return np.fromiter(
            (
                self.due_ts(s, d)
                for s, d in zip(start_array.tolist(), second_array.tolist(), strict=True)
            ),
            dtype=np.int64,
            count=len(start_array),
        )

    def due_many(
        self, starts: Sequence[datetime], durations: Sequence[timedelta]
    ) -> list[datetime]:
        """``due`` of each ``(starts[k], durations[k])``, through the batch path."""
        if len(starts) != len(durations):
            raise CalendarError(
                f"{len(starts)} starts and {len(durations)} durations: pass one duration per start"
            )
        start_ts = [to_timestamp(start) for start in starts]
        seconds = [d.days * DAY + d.seconds for d in durations]
        return [_fromtimestamp(ts, UTC) for ts in self.due_many_ts(start_ts, seconds).tolist()]

    def open_intervals(self, start: int, end: int) -> list[OpenInterval]:
        raise NotImplementedError

    def closed_dates_between(self, start: int, end: int) -> list[tuple[date, str]]:
        return []

    def describe(self) -> str:
        raise NotImplementedError

    def open_seconds(self, start: int, end: int) -> int:
        """Open seconds in ``[start, end)``; 0 when ``end <= start``."""
        if end <= start:
            return 0
        return self.cum(end) - self.cum(start)

    def elapsed_ts(self, start: int, now: int, pauses: Sequence[Pause] = ()) -> int:
        """Open seconds in ``[start, now)`` outside the (merged, sorted) pauses."""
        elapsed = self.open_seconds(start, now)
        for begin, end in pauses:
            stop = now if end is None else min(end, now)
            elapsed -= self.open_seconds(max(begin, start), stop)
        return elapsed

    def due_with_pauses_ts(self, start: int, seconds: int, pauses: Sequence[Pause]) -> int | None:
        """Earliest instant with ``seconds`` of open time outside the (merged, sorted) pauses.

        None while an open-ended pause holds the clock before the target is reached.
        """
        if seconds <= 0:
            # Fix: d == 0 is due at start (as in due_ts) even when a pause begins at start;
            # the loop below would skip that pause and answer its end, or None.
            return start
        remaining = seconds
        cursor = start
        for begin, end in pauses:
            if end is not None and end <= cursor:
                continue
            if begin > cursor:
                available = self.open_seconds(cursor, begin)
                if available >= remaining:
                    return self.due_ts(cursor, remaining)
                remaining -= available
            if end is None:
                return None
            cursor = max(cursor, end)
        return self.due_ts(cursor, remaining)

    # Datetime API: what callers outside the engine use.

    def due(self, start: datetime, duration: timedelta) -> datetime:
        """Earliest instant at which ``duration`` of open time has elapsed since ``start``.

        >>> from datetime import time
        >>> cal = BusinessCalendar.weekly(ZoneInfo("Europe/Paris"), {
        ...     day: [(time(9), time(17))] for day in WEEKDAYS[:5]})
        >>> friday = datetime(2026, 11, 20, 16, 30, tzinfo=ZoneInfo("Europe/Paris"))
        >>> cal.due(friday, timedelta(hours=3)).isoformat()
        '2026-11-23T10:30:00+00:00'
        """
        return _fromtimestamp(
            self.due_ts(to_timestamp(start), duration.days * DAY + duration.seconds), UTC
        )


class AlwaysOpenCalendar(Calendar):
    """24x7: open time is elapsed real time (1 h across a DST change is 60 real minutes)."""

    def __init__(self, zone: tzinfo = UTC) -> None:
        self.zone = zone

    def cum(self, ts: int) -> int:
        return ts

    def due_ts(self, start: int, seconds: int) -> int:
        return start + seconds if seconds > 0 else start

    def due_many_ts(self, starts: npt.ArrayLike, seconds: npt.ArrayLike) -> Instants:
        start_array, second_array = _batch(starts, seconds)
        return np.where(second_array > 0, start_array + second_array, start_array)

    def next_business_day_close_ts(self, start: int) -> int:
        local_day = datetime.fromtimestamp(start, self.zone).date()
        after_next = datetime.combine(local_day + timedelta(days=2), datetime.min.time())
        return to_timestamp(after_next.replace(tzinfo=self.zone))

    def open_intervals(self, start: int, end: int) -> list[OpenInterval]:
        return [OpenInterval(start, end)] if end > start else []

    def describe(self) -> str:
        return "24x7 (elapsed real time)"


WeeklyHours = tuple[tuple[tuple[int, int], ...], ...]
"""Per weekday (Monday first), the opening intervals as local seconds since midnight."""


class BusinessCalendar(Calendar):
    """Weekly opening hours in an IANA zone, closed on given dates."""

    def __init__(
        self,
        zone: ZoneInfo,
        weekly_hours: WeeklyHours,
        closed_dates: ClosedDates = _no_closed_dates,
        name: str = "business",
    ) -> None:
        if len(weekly_hours) != 7:
            raise CalendarError("weekly hours need one entry per weekday, Monday first")
        if not any(weekly_hours):
            raise CalendarError(f"calendar {name!r} has no opening hours on any weekday")
        for day, day_hours in zip(WEEKDAYS, weekly_hours, strict=True):
            for open_s, close_s in day_hours:
                if not 0 <= open_s < close_s <= DAY:
                    raise CalendarError(f"calendar {name!r}: bad interval {open_s}-{close_s}")
            ordered = sorted(day_hours)
            if any(b[0] < a[1] for a, b in pairwise(ordered)):
                raise CalendarError(f"calendar {name!r}: {day} has overlapping intervals")
        self.zone = zone
        self.name = name
        self.weekly_hours = weekly_hours
        self._closed_dates = closed_dates
        self._lock = threading.Lock()
        self._compiled: _Compiled | None = None
        # The arrays the hot path reads, in one tuple; empty cover until first compiled.
        self._fast: tuple[list[int], list[int], list[int], int, int] = ([], [], [], 0, 0)

    @classmethod
    def weekly(
        cls,
        zone: ZoneInfo,
        hours: Mapping[str, Sequence[tuple[object, object]]],
        closed_dates: ClosedDates = _no_closed_dates,
        name: str = "business",
    ) -> BusinessCalendar:
        """Build from ``{"monday": [(time(9), time(17))], ...}``; missing days are closed."""

        def seconds(t: object) -> int:
            hour, minute, second = t.hour, t.minute, t.second  # type: ignore[attr-defined]
            return int(hour) * 3600 + int(minute) * 60 + int(second)

        weekly = tuple(
            tuple((seconds(a), seconds(b) or DAY) for a, b in hours.get(day, ()))
            for day in WEEKDAYS
        )
        return cls(zone, weekly, closed_dates, name)

    def describe(self) -> str:
        """Opening hours for people: ``Mon-Fri 09:00-17:00 (Europe/Paris)``."""
        groups: list[tuple[int, int, tuple[tuple[int, int], ...]]] = []
        for index, intervals in enumerate(self.weekly_hours):
            if groups and groups[-1][2] == intervals and groups[-1][1] == index - 1:
                groups[-1] = (groups[-1][0], index, intervals)
            else:
                groups.append((index, index, intervals))
        parts = []
        for first, last, intervals in groups:
            if intervals:
                days = WEEKDAYS[first][:3].title()
                if last > first:
                    days += "-" + WEEKDAYS[last][:3].title()
                spans = ", ".join(f"{_hhmm(a)}-{_hhmm(b)}" for a, b in intervals)
                parts.append(f"{days} {spans}")
        return f"{'; '.join(parts)} ({self.zone})"

    # Compilation.

    def _offset(self, ts: int) -> int:
        offset = datetime.fromtimestamp(ts, self.zone).utcoffset()
        assert offset is not None
        return int(offset.total_seconds())

    def _instants_showing(self, wall_start: int, wall_end: int) -> list[tuple[int, int]]:
        """UTC spans whose local wall time (as epoch-like seconds) lies in [wall_start, wall_end).

        Handles one offset change inside the window, which covers every DST change: a
        skipped hour shortens the span, a repeated hour lengthens it or splits it in two.
        """
        lo, hi = wall_start - _OFFSET_MARGIN, wall_end + _OFFSET_MARGIN
        off_lo, off_hi = self._offset(lo), self._offset(hi)
        if off_lo == off_hi:
            return [(wall_start - off_lo, wall_end - off_lo)]
        # Smallest instant already on the later offset.
        left, right = lo, hi
        while right - left > 1:
            mid = (left + right) // 2
            if self._offset(mid) == off_hi:
                right = mid
            else:
                left = mid
        change = right
        pieces: list[tuple[int, int]] = []
        for begin, end in (
            (max(lo, wall_start - off_lo), min(change, wall_end - off_lo)),
            (max(change, wall_start - off_hi), min(hi, wall_end - off_hi)),
        ):
            if begin < end:
                if pieces and pieces[-1][1] == begin:
                    pieces[-1] = (pieces[-1][0], end)
                else:
                    pieces.append((begin, end))
        return pieces

    def _compile(self, first_year: int, last_year: int) -> _Compiled:
        closed: dict[date, str] = {}
        for year in range(first_year, last_year + 1):
            closed.update(self._closed_dates(year))
        starts: list[int] = []
        ends: list[int] = []
        cum_ends: list[int] = []
        business_days: list[int] = []
        business_day_closes: list[int] = []
        total = 0
        day = date(first_year, 1, 1)
        last = date(last_year, 12, 31)
        epoch_ordinal = date(1970, 1, 1).toordinal()
        one_day = timedelta(days=1)
        while day <= last:
            intervals = self.weekly_hours[day.weekday()]
            if intervals and day not in closed:
                midnight = (day.toordinal() - epoch_ordinal) * DAY
                day_close = None
                # Fix: sort the day's UTC pieces. When a fall-back repeats an hour, the second
                # pass of an earlier interval comes after the first pass of a later one (e.g.
                # 00:00-02:30 and 02:30-24:00 in Paris), and the arrays must stay in time order.
                pieces = sorted(
                    piece
                    for open_s, close_s in intervals
                    for piece in self._instants_showing(midnight + open_s, midnight + close_s)
                )
                for begin, end in pieces:
                    starts.append(begin)
                    ends.append(end)
                    total += end - begin
                    cum_ends.append(total)
                    day_close = end
                if day_close is not None:
                    business_days.append(day.toordinal())
                    business_day_closes.append(day_close)
            day += one_day
        return _Compiled(
            first_year=first_year,
            last_year=last_year,
            cover_start=to_timestamp(datetime(first_year, 1, 1, tzinfo=self.zone)),
            cover_end=to_timestamp(datetime(last_year + 1, 1, 1, tzinfo=self.zone)),
            starts=starts,
            ends=ends,
            cum_ends=cum_ends,
            business_days=business_days,
            business_day_closes=business_day_closes,
            closed=closed,
            arrays=(
                np.asarray(starts, dtype=np.int64),
                np.asarray(ends, dtype=np.int64),
                np.asarray(cum_ends, dtype=np.int64),
            ),
        )

    def _year_of(self, ts: int) -> int:
        return datetime.fromtimestamp(ts, self.zone).year

    def _covering(self, *instants: int, years_after: int = 0) -> _Compiled:
        """The compiled span, grown first if needed to cover ``instants`` (+ years after)."""
        compiled = self._compiled
        if (
            compiled is not None
            and not years_after
            and all(compiled.cover_start <= ts < compiled.cover_end for ts in instants)
        ):
            return compiled
        with self._lock:
            compiled = self._compiled
            years = [self._year_of(ts) for ts in instants]
            if min(years) < FIRST_YEAR or max(years) > LAST_YEAR:
                raise CalendarError(
                    f"calendar {self.name!r}: instants must fall in the years {FIRST_YEAR}-"
                    f"{LAST_YEAR}; got {min(years) if min(years) < FIRST_YEAR else max(years)}"
                )
            # A fresh window around what is asked; grown from the current one when that
            # stays within bounds, so nearby queries keep sharing one compiled window.
            first, last = min(years) - 1, max(years) + 1 + years_after
            if compiled is not None:
                width = compiled.last_year - compiled.first_year + 1
                grown_first, grown_last = compiled.first_year, compiled.last_year
                if min(years) <= grown_first:
                    grown_first = min(grown_first - width, first)
                if max(years) >= grown_last or years_after:
                    grown_last = max(grown_last + max(years_after, width), last)
                if grown_last - grown_first <= _MAX_SPAN_YEARS:
                    first, last = grown_first, grown_last
            first, last = max(first, FIRST_YEAR - 1), min(last, LAST_YEAR + 1)
            if last - first > _MAX_SPAN_YEARS:
                raise CalendarError(
                    f"calendar {self.name!r}: {first}-{last} is too long a span to compute; "
                    "check the dates and durations passed in"
                )
            if compiled is None or (first, last) != (compiled.first_year, compiled.last_year):
                compiled = self._compile(first, last)
                self._compiled = compiled
                self._fast = (
                    compiled.starts,
                    compiled.ends,
                    compiled.cum_ends,
                    compiled.cover_start,
                    compiled.cover_end,
                )
            return compiled

    def cum(self, ts: int) -> int:
        return self._covering(ts).cum(ts)

    def open_seconds(self, start: int, end: int) -> int:
        if end <= start:
            return 0
        compiled = self._covering(start, end)
        return compiled.cum(end) - compiled.cum(start)

    def due(self, start: datetime, duration: timedelta) -> datetime:
        # Same as Calendar.due with the common case inlined: this is the hot path. The
        # arrays come as one tuple (one load).
        if start.tzinfo is None:
            raise CalendarError(f"datetime {start.isoformat()} has no time zone; pass an aware one")
        start_ts = _floor(start.timestamp())
        seconds = duration.days * DAY + duration.seconds
        starts, ends, cum_ends, cover_start, cover_end = self._fast
        if seconds > 0 and cover_start <= start_ts < cover_end:
            i = bisect_right(starts, start_ts) - 1
            if i >= 0:
                end = ends[i]
                if start_ts < end:
                    if start_ts + seconds <= end:  # done within the same opening
                        return _fromtimestamp(start_ts + seconds, UTC)
                    target = cum_ends[i] - end + start_ts + seconds
                else:
                    target = cum_ends[i] + seconds
                    # Started while closed: often done within the next opening.
                    if i + 1 < len(starts) and target <= cum_ends[i + 1]:
                        return _fromtimestamp(starts[i + 1] + seconds, UTC)
                j = bisect_left(cum_ends, target)
                if j < len(cum_ends):
                    return _fromtimestamp(ends[j] - (cum_ends[j] - target), UTC)
        return _fromtimestamp(self.due_ts(start_ts, seconds), UTC)

    def due_ts(self, start: int, seconds: int) -> int:
        if seconds <= 0:
            return start
        # The common case first, from the hot path's tuple: the start inside the compiled
        # window and the due date before its end (the same two searches as below).
        starts, ends, cum_ends, cover_start, cover_end = self._fast
        if cover_start <= start < cover_end:
            due = _due_within(starts, ends, cum_ends, start, seconds)
            if due is not None:
                return due
        return self._due_ts_growing(start, seconds)

    def _due_ts_growing(self, start: int, seconds: int) -> int:
        """``due_ts``, growing the compiled window until it holds the start and the due date."""
        compiled = self._compiled
        if compiled is None or not compiled.cover_start <= start < compiled.cover_end:
            compiled = self._covering(start)
        for _ in range(_MAX_SPAN_YEARS):
            due = _due_within(compiled.starts, compiled.ends, compiled.cum_ends, start, seconds)
            if due is not None:
                return due
            compiled = self._covering(start, years_after=seconds // (DAY * 365) + 1)
        raise CalendarError(f"calendar {self.name!r} never reaches the due time")

    def due_many_ts(self, starts: npt.ArrayLike, seconds: npt.ArrayLike) -> Instants:
        """``due_ts`` of each pair, vectorized: the same searches over the same arrays.

        The window is first grown to cover every start; a pair whose start it still does not
        cover, or whose due date lies past its end, is answered by ``due_ts`` (which grows
        the window or says why it cannot), so every answer is the per-call one.
        """
        start_array, second_array = _batch(starts, seconds)
        due = start_array.copy()
        if not len(start_array):
            return due
        work = second_array > 0
        if not work.any():
            return due
        compiled: _Compiled | None
        try:
            compiled = self._covering(int(start_array.min()), int(start_array.max()))
        except CalendarError:
            compiled = self._compiled  # too wide a spread, or a bad year: per call below
        if compiled is None or not compiled.starts:
            return self._due_each(start_array, second_array, due, work)
        starts_a, ends_a, cum_a = compiled.arrays
        start_w, seconds_w = start_array[work], second_array[work]
        i = np.searchsorted(starts_a, start_w, side="right") - 1
        at = np.maximum(i, 0)
        end = ends_a[at]
        done_before = np.where(start_w < end, end - start_w, 0)
        target = np.where(i < 0, seconds_w, cum_a[at] - done_before + seconds_w)
        j = np.searchsorted(cum_a, target, side="left")
        found = j < len(cum_a)
        at_j = np.minimum(j, len(cum_a) - 1)
        answered = ends_a[at_j] - (cum_a[at_j] - target)
        due[work] = answered
        # What the window cannot answer: outside it, past its end, or too long to compute.
        rest = (
            ~found
            | (start_w < compiled.cover_start)
            | (start_w >= compiled.cover_end)
            | (seconds_w > _BATCH_MAX_SECONDS)
        )
        if rest.any():
            leftover = np.zeros_like(work)
            leftover[np.flatnonzero(work)[rest]] = True
            self._due_each(start_array, second_array, due, leftover)
        return due

    def _due_each(
        self,
        starts: Instants,
        seconds: Instants,
        due: Instants,
        which: npt.NDArray[np.bool_],
    ) -> Instants:
        """Fill ``due`` where ``which`` holds, one ``due_ts`` call at a time."""
        for k in np.flatnonzero(which).tolist():
            due[k] = self.due_ts(int(starts[k]), int(seconds[k]))
        return due

    def next_business_day_close_ts(self, start: int) -> int:
        compiled = self._covering(start)
        local_ordinal = datetime.fromtimestamp(start, self.zone).date().toordinal()
        for _ in range(_MAX_SPAN_YEARS):
            days = compiled.business_days
            k = bisect_right(days, local_ordinal)
            if k < len(days):
                return compiled.business_day_closes[k]
            compiled = self._covering(start, years_after=1)
        raise CalendarError(f"calendar {self.name!r} has no business day after the start")

    def open_intervals(self, start: int, end: int) -> list[OpenInterval]:
        """The open spans inside ``[start, end)``, clipped: what an explanation shows."""
        if end <= start:
            return []
        compiled = self._covering(start, end)
        starts, ends = compiled.starts, compiled.ends
        i = max(bisect_right(starts, start) - 1, 0)
        spans = []
        while i < len(starts) and starts[i] < end:
            begin, finish = max(starts[i], start), min(ends[i], end)
            if begin < finish:
                spans.append(OpenInterval(begin, finish))
            i += 1
        return spans

    def closed_dates_between(self, start: int, end: int) -> list[tuple[date, str]]:
        """Closed dates (with their reason) whose weekday would otherwise be open."""
        if end <= start:
            return []
        compiled = self._covering(start, end)
        first = datetime.fromtimestamp(start, self.zone).date()
        last = datetime.fromtimestamp(end - 1, self.zone).date()  # end is exclusive
        return sorted(
            (day, reason)
            for day, reason in compiled.closed.items()
            if first <= day <= last and self.weekly_hours[day.weekday()]
        )


@dataclass(frozen=True, slots=True)
class _Compiled:
    """Open intervals of a span of local years, with running totals; replaced, never mutated."""

    first_year: int
    last_year: int
    cover_start: int
    cover_end: int
    starts: list[int]
    ends: list[int]
    cum_ends: list[int]
    business_days: list[int]
    business_day_closes: list[int]
    closed: dict[date, str]
    arrays: tuple[Instants, Instants, Instants]
    """``starts``, ``ends`` and ``cum_ends`` as int64 arrays: what the batch path searches."""

    def cum(self, ts: int) -> int:
        """Open seconds from the start of the span up to ``ts``."""
        i = bisect_right(self.starts, ts) - 1
        if i < 0:
            return 0
        end = self.ends[i]
        return self.cum_ends[i] - (end - ts if ts < end else 0)


def _batch(starts: npt.ArrayLike, seconds: npt.ArrayLike) -> tuple[Instants, Instants]:
    """The batch path's inputs as equal-length int64 arrays (POSIX seconds, open seconds)."""
    try:
        start_array = np.asarray(starts, dtype=np.int64)
        second_array = np.asarray(seconds, dtype=np.int64)
    except OverflowError:
        raise CalendarError(
            "a start or a duration does not fit in 64 bits; pass POSIX seconds and seconds"
        ) from None
    if start_array.ndim != 1 or start_array.shape != second_array.shape:
        raise CalendarError(
            f"{start_array.shape} starts and {second_array.shape} durations: pass two flat "
            "sequences of the same length, one duration per start"
        )
    return start_array, second_array


def _hhmm(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def _due_within(
    starts: list[int], ends: list[int], cum_ends: list[int], start: int, seconds: int
) -> int | None:
    """The instant ``seconds`` of open time after ``start`` in these compiled openings, or
    None when it falls after their end (the caller compiles further)."""
    i = bisect_right(starts, start) - 1
    if i < 0:
        target = seconds
    else:
        end = ends[i]
        target = cum_ends[i] - (end - start if start < end else 0) + seconds
    j = bisect_left(cum_ends, target)
    if j < len(cum_ends):
        return ends[j] - (cum_ends[j] - target)
    return None
