"""The dashboard's Reports page: what ``GET /reports`` shows, computed for its template.

Attainment per priority day by day, breaches by target and the credits owed, for a period
(``?period=2026-11&tz=Europe/Paris&priority=final``; default: the current month in UTC), from
``slabot.store.reports``. The charts are inline SVG drawn by the template from the
coordinates computed here (no script, nothing external: the page's CSP allows neither).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bot.compiled import Policy
from bot.policy import format_duration
from slabot.store.reports import (
    CreditsReport,
    Period,
    PriorityMode,
    Report,
    ReportError,
    compliance_report,
    credits_report,
    period,
)

WIDTH, HEIGHT = 640, 220
"""The trend chart's drawing area, in SVG units (the SVG scales to the page's width)."""
LEFT, BOTTOM, TOP = 40, 24, 8
SERIES_CLASSES = ("s0", "s1", "s2", "s3", "s4", "s5")
"""CSS classes of the lines, one per priority in order (colours in reports.html)."""
TARGET_TITLES = {
    "first_response": "First response",
    "restoration": "Restoration",
    "next_update": "Next update",
}


@dataclass(frozen=True, slots=True)
class Series:
    priority: str
    css: str
    segments: tuple[str, ...]
    """SVG ``points`` of each run of days with an attainment (a day without any is a gap)."""
    dots: tuple[tuple[float, float, str], ...]
    """x, y and the dot's title (``P1 2026-11-03: 97.50%``)."""


@dataclass(frozen=True, slots=True)
class Trend:
    days: tuple[date, ...]
    series: tuple[Series, ...]
    x_labels: tuple[tuple[float, str], ...]
    y_lines: tuple[tuple[float, str], ...]
    table: tuple[tuple[str, tuple[str, ...]], ...]
    """Per day: the date and each priority's attainment, as text (the chart's data)."""


@dataclass(frozen=True, slots=True)
class Bar:
    target: str
    title: str
    breached: int
    met: int
    running: int
    breached_width: float
    """Percent of the widest bar."""
    met_width: float


@dataclass(frozen=True, slots=True)
class ReportsPage:
    window: Period
    priority: PriorityMode
    by_priority: Report
    trend: Trend
    bars: tuple[Bar, ...]
    credits: CreditsReport


def choose(params: Mapping[str, str], now: datetime) -> tuple[Period, PriorityMode]:
    """The period and priority mode in the address; ReportError says what to write."""
    zone = params.get("tz") or "UTC"
    label = params.get("period") or ""
    if not label:
        try:
            label = f"{now.astimezone(ZoneInfo(zone)):%Y-%m}"
        except (KeyError, ValueError):
            label = f"{now:%Y-%m}"
    mode = params.get("priority") or "final"
    if mode not in ("final", "at_creation"):
        raise ReportError(f"priority {mode!r}: choose final or at_creation")
    return period(label, zone), "final" if mode == "final" else "at_creation"


def reports_page(
    engine: Engine,
    policies: Mapping[str, Policy],
    window: Period,
    priority: PriorityMode,
    now: datetime,
) -> ReportsPage:
    """Everything the page shows, judged at ``now``."""
    zone = ZoneInfo(window.zone)
    first = window.start.astimezone(zone).date()
    last = (window.end - timedelta(seconds=1)).astimezone(zone).date()
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    with Session(engine) as session:
        by_priority = compliance_report(session, window, ["priority"], now, priority)
        by_target = compliance_report(session, window, ["target"], now, priority)
        daily = [
            compliance_report(
                session, period(day.isoformat(), window.zone), ["priority"], now, priority
            )
            for day in days
        ]
        owed = credits_report(session, window, policies, now, priority)
    levels = sorted({str(row.group["priority"]) for row in by_priority.rows})
    return ReportsPage(
        window, priority, by_priority, _trend(days, levels, daily), _bars(by_target), owed
    )


def _trend(days: list[date], levels: list[str], daily: list[Report]) -> Trend:
    span = max(len(days) - 1, 1)

    def x(index: int) -> float:
        return round(LEFT + (WIDTH - LEFT - 8) * index / span, 1)

    def y(percent: Decimal) -> float:
        return round(TOP + (HEIGHT - TOP - BOTTOM) * (1 - float(percent) / 100), 1)

    attained: dict[str, list[Decimal | None]] = {level: [] for level in levels}
    for report in daily:
        found = {str(row.group["priority"]): row.attainment for row in report.rows}
        for level in levels:
            attained[level].append(found.get(level))
    series = []
    for number, level in enumerate(levels):
        segments: list[list[str]] = [[]]
        dots = []
        for index, value in enumerate(attained[level]):
            if value is None:
                if segments[-1]:
                    segments.append([])
                continue
            segments[-1].append(f"{x(index)},{y(value)}")
            dots.append((x(index), y(value), f"{level} {days[index].isoformat()}: {value}%"))
        css = SERIES_CLASSES[number % len(SERIES_CLASSES)]
        series.append(Series(level, css, tuple(" ".join(s) for s in segments if s), tuple(dots)))
    step = max(1, len(days) // 6)
    x_labels = tuple((x(i), f"{day:%d %b}") for i, day in enumerate(days) if i % step == 0)
    y_lines = tuple((y(Decimal(p)), f"{p}%") for p in (0, 25, 50, 75, 100))
    table = tuple(
        (
            day.isoformat(),
            tuple(
                "-" if attained[level][i] is None else f"{attained[level][i]}%" for level in levels
            ),
        )
        for i, day in enumerate(days)
    )
    return Trend(tuple(days), tuple(series), x_labels, y_lines, table)


def _bars(by_target: Report) -> tuple[Bar, ...]:
    widest = max((row.breached + row.met for row in by_target.rows), default=0) or 1
    bars = []
    for row in by_target.rows:
        target = str(row.group["target"])
        bars.append(
            Bar(
                target,
                TARGET_TITLES.get(target, target),
                row.breached,
                row.met,
                row.running,
                round(100 * row.breached / widest, 1),
                round(100 * row.met / widest, 1),
            )
        )
    return tuple(bars)


def duration(seconds: int | None) -> str:
    """``5400`` -> ``1h30m`` (``-`` for none): the template's filter."""
    return "-" if seconds is None else format_duration(seconds)
