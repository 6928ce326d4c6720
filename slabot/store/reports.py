"""Compliance reports and service credits, aggregated in SQL from the stored clock outcomes.

Each decision slabot stores writes the ticket's clock cycles to ``clock_outcomes``
(``store_outcomes``): start, due, stop, the business time used and the time paused, with the
ticket's grouping columns. A report is then one ``GROUP BY`` over the cycles that started in
the period: met, breached and still running are judged there from the instants (at the
report's ``as_of``), not from counters or from the states stored at evaluation. Credits read
the same rows for the plans whose policy sets credit rules (``bot.credits``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from operator import attrgetter
from typing import Any, Literal, Protocol, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    func,
    or_,
    select,
)
from sqlalchemy.orm import Session

from bot.business_time import Pause, from_timestamp, to_timestamp
from bot.compiled import Policy
from bot.credits import CreditClock, CreditStatement, attainment_percent, credit_statement
from bot.engine import Decision
from bot.errors import SlabotError
from bot.policy import TARGETS
from bot.ticket import Ticket
from slabot.store.models import ClockOutcome, StoredTicket, TicketEvent

DIMENSIONS = (
    "policy",
    "plan",
    "commitment",
    "priority",
    "target",
    "source",
    "queue",
    "assignee",
    "organization",
)
"""What a report can be grouped by (``group`` is another name for ``queue``)."""
PriorityMode = Literal["final", "at_creation"]


class ReportError(SlabotError):
    """A report was asked for with a period, zone or grouping slabot cannot use."""


# Writing the outcomes, with each decision.


def store_outcomes(
    session: Session,
    row: StoredTicket,
    ticket: Ticket,
    policy: Policy,
    decision: Decision,
    now: datetime,
) -> None:
    """Make the ticket's stored clock cycles agree with ``decision``, evaluated at ``now``
    (in the caller's transaction; ``row`` flushed, ``ticket`` its engine view)."""
    stored = list(session.scalars(select(ClockOutcome).where(ClockOutcome.ticket_id == row.id)))

    def new_cycle(target: str, started_at: datetime) -> ClockOutcome:
        return ClockOutcome(ticket_id=row.id, target=target, cycle_started_at=started_at)

    added, removed = plan_outcomes(
        stored, new_cycle, _reclassifications(session, row), row, ticket, policy, decision, now
    )
    for outcome in removed:
        session.delete(outcome)
    session.add_all(added)


class Cycle(Protocol):
    """A clock cycle as ``plan_outcomes`` reads and sets it: a ``ClockOutcome``, or the
    batched ingest's plain copy of one (it sets the other columns by name)."""

    target: str
    cycle_started_at: datetime
    due: datetime | None
    stopped_at: datetime | None
    used_seconds: int | None
    paused_seconds: int
    created_priority: str


C = TypeVar("C", bound=Cycle)


def plan_outcomes(
    stored: list[C],
    new_cycle: Callable[[str, datetime], C],
    reclassified: tuple[int, str | None],
    row: StoredTicket,
    ticket: Ticket,
    policy: Policy,
    decision: Decision,
    now: datetime,
) -> tuple[list[C], list[C]]:
    """``store_outcomes`` without the session, for it and the batched ingest (which reads
    the cycles and the reclassifications in bulk and writes in bulk): ``stored`` (the
    ticket's cycles) is brought in line with ``decision``, in place; returns the cycles to
    add (made by ``new_cycle(target, start)``, appended to ``stored`` too) and those to
    delete. ``reclassified``: what ``reclassifications`` counts in the ticket's history."""
    times, first_priority = reclassified
    added: list[C] = []
    removed_rows: list[C] = []
    created_priority = stored[0].created_priority if stored else first_priority or decision.priority
    shown = row.shown or {}
    common: dict[str, Any] = {
        "evaluated_at": now,
        "policy": row.policy,
        "source": row.source,
        "external_key": row.external_key,
        "plan": decision.plan,
        "commitment": decision.commitment,
        "priority": decision.priority,
        "created_priority": created_priority,
        "reclassifications": times,
        "organization": _text(shown.get("organization")),
        "queue": _text(shown.get("queue")),
        "assignee": _text(shown.get("assignee_email")) or _text(shown.get("assignee_name")),
    }
    removed: set[int] = set()
    by_target: dict[str, list[C]] = {}
    for outcome in stored:
        by_target.setdefault(outcome.target, []).append(outcome)
    now_ts = to_timestamp(now)
    for name, decided in decision.targets.items():
        cycles = by_target.get(name, [])
        if decided.state == "none" or decided.started_ts is None or decided.calendar is None:
            # The final priority has no such target: its clocks are not counted.
            for outcome in cycles:
                removed_rows.append(outcome)
                removed.add(id(outcome))
            continue
        calendar = policy.calendar(decided.calendar, ticket)
        start = decided.started_ts
        stop = decided.stopped_ts
        current: C | None = None
        for outcome in cycles:
            began = to_timestamp(outcome.cycle_started_at)
            if began == start:
                current = outcome
            elif began > start:
                removed_rows.append(outcome)  # a cycle no longer in the history (stale)
                removed.add(id(outcome))
            else:
                # An earlier cycle (before a reopening, an agent update). One a later cycle
                # replaced while it ran stopped there; its due is recomputed for the target
                # the final priority sets, so a reclassification counts it under that one.
                if outcome.stopped_at is None:
                    outcome.stopped_at = decided.started_at
                ended = to_timestamp(outcome.stopped_at)  # type: ignore[arg-type]
                pauses = [p for p in decided.pauses if p[0] < ended]
                due_ts: int | None
                if decided.target_seconds is None:
                    due_ts = calendar.next_business_day_close_ts(began)
                elif pauses:
                    due_ts = calendar.due_with_pauses_ts(began, decided.target_seconds, pauses)
                else:
                    due_ts = calendar.due_ts(began, decided.target_seconds)
                due = None if due_ts is None else from_timestamp(due_ts)
                if outcome.due != due:
                    outcome.due = due
                used = calendar.elapsed_ts(began, ended, pauses)
                if outcome.used_seconds != used:
                    outcome.used_seconds = used
                paused = _paused(pauses, began, ended)
                if outcome.paused_seconds != paused:
                    outcome.paused_seconds = paused
        if current is None:
            assert decided.started_at is not None  # started_ts is not None
            current = new_cycle(name, decided.started_at)
            added.append(current)
            stored.append(current)
        current.due = decided.due
        current.stopped_at = decided.stopped_at
        current.used_seconds = (
            None if stop is None else calendar.elapsed_ts(start, stop, decided.pauses)
        )
        current.paused_seconds = _paused(decided.pauses, start, now_ts if stop is None else stop)
    kept = [outcome for outcome in stored if id(outcome) not in removed]
    # One row per ticket and target is its first cycle, one per ticket leads: a report counts
    # tickets and their reclassifications from these rows, with no DISTINCT.
    order = {name: index for index, name in enumerate(TARGETS)}
    firsts: dict[str, C] = {}
    for outcome in sorted(kept, key=lambda o: (o.cycle_started_at, order[o.target])):
        firsts.setdefault(outcome.target, outcome)
    lead = min(firsts.values(), key=lambda o: (o.cycle_started_at, order[o.target]), default=None)
    for outcome in kept:
        common["first_cycle"] = firsts.get(outcome.target) is outcome
        common["lead"] = outcome is lead
        wanted = tuple(common.values())
        if _common_columns(outcome) == wanted:
            continue  # one comparison for a cycle that holds them all already
        for key, value in zip(_COMMON_COLUMNS, wanted, strict=True):
            if getattr(outcome, key) != value:
                setattr(outcome, key, value)
    return added, removed_rows


_COMMON_COLUMNS = (
    "evaluated_at",
    "policy",
    "source",
    "external_key",
    "plan",
    "commitment",
    "priority",
    "created_priority",
    "reclassifications",
    "organization",
    "queue",
    "assignee",
    "first_cycle",
    "lead",
)
"""The columns ``plan_outcomes`` sets alike on each of a ticket's cycles (``common``, in
this order), and which one leads."""
_common_columns = attrgetter(*_COMMON_COLUMNS)


def _reclassifications(session: Session, row: StoredTicket) -> tuple[int, str | None]:
    """How many times agents reclassified the ticket, and the final priority before the
    first time (from the history); ``(0, None)`` without a reclassification."""
    if row.reclassified_at is None:
        return 0, None
    entries = session.execute(
        select(TicketEvent.payload)
        .where(TicketEvent.ticket_id == row.id, TicketEvent.kind == "priority_changed")
        .order_by(TicketEvent.occurred_at, TicketEvent.id)
    ).scalars()
    return reclassifications(entries)


def reclassifications(payloads: Iterable[Any]) -> tuple[int, str | None]:
    """From the payloads of a ticket's ``priority_changed`` entries (in history order): how
    many times agents reclassified it, and its priority before the first time."""
    agents = [p for p in payloads if (p or {}).get("field") == "reclassified"]
    first = agents[0].get("from") if agents else None
    return len(agents), first if isinstance(first, str) else None


def _paused(pauses: Sequence[Pause], start: int, end: int) -> int:
    """Real seconds of ``pauses`` within ``[start, end)``."""
    total = 0
    for begin, finish in pauses:
        low, high = max(begin, start), min(end if finish is None else finish, end)
        total += max(0, high - low)
    return total


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value[:255] or None
    if isinstance(value, Mapping):
        for key in ("name", "display_name", "email"):
            if isinstance(value.get(key), str):
                return str(value[key])[:255] or None
    return None


# Periods.


@dataclass(frozen=True, slots=True)
class Period:
    """``[start, end)`` in UTC, named as asked (``2026-11``) in ``zone``."""

    label: str
    zone: str
    start: datetime
    end: datetime


_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def period(text: str, zone: str = "UTC") -> Period:
    """The month ``2026-11``, ISO week ``2026-W47`` or day ``2026-11-20``, local to ``zone``.

    >>> p = period("2026-11", "Europe/Paris")
    >>> p.start.isoformat(), p.end.isoformat()
    ('2026-10-31T23:00:00+00:00', '2026-11-30T23:00:00+00:00')
    """
    try:
        if match := _MONTH.match(text):
            year, month = int(match[1]), int(match[2])
            first = date(year, month, 1)
            after = date(year + month // 12, month % 12 + 1, 1)
        elif match := _WEEK.match(text):
            first = date.fromisocalendar(int(match[1]), int(match[2]), 1)
            after = first + timedelta(days=7)
        elif match := _DAY.match(text):
            first = date(int(match[1]), int(match[2]), int(match[3]))
            after = first + timedelta(days=1)
        else:
            raise ValueError("no match")
    except ValueError:
        raise ReportError(
            f"period {text!r}: write a month (2026-11), an ISO week (2026-W47) or a day "
            "(2026-11-20)"
        ) from None
    return _between(text, first, after, zone)


def date_range(first: str, last: str, zone: str = "UTC") -> Period:
    """From the start of day ``first`` to the end of day ``last`` (both included)."""
    try:
        begin, end = date.fromisoformat(first), date.fromisoformat(last)
    except ValueError:
        raise ReportError(f"--from {first!r} --to {last!r}: write dates as YYYY-MM-DD") from None
    if end < begin:
        raise ReportError(f"--to {last} is before --from {first}")
    return _between(f"{first}..{last}", begin, end + timedelta(days=1), zone)


def _between(label: str, first: date, after: date, zone: str) -> Period:
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ReportError(f"zone {zone!r} is not an IANA time zone (Europe/Paris, UTC)") from None
    start = datetime.combine(first, time(), tz).astimezone(UTC)
    end = datetime.combine(after, time(), tz).astimezone(UTC)
    return Period(label, zone, start, end)


# The report.


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One group of a report."""

    group: dict[str, str | None]
    tickets: int
    clocks: int
    met: int
    breached: int
    running: int
    """Not stopped and not yet due at ``as_of`` (or held by an open-ended pause)."""
    median_seconds: int | None
    """Business time to target of the stopped clocks (nearest rank, to the minute below)."""
    p90_seconds: int | None
    paused_seconds: int
    reclassified_tickets: int
    reclassifications: int

    @property
    def attainment(self) -> Decimal | None:
        """Met over met + breached, in percent (two decimals)."""
        return attainment_percent(self.met, self.breached)


@dataclass(frozen=True, slots=True)
class Report:
    period: Period
    by: tuple[str, ...]
    priority: PriorityMode
    as_of: datetime
    rows: tuple[ReportRow, ...]


def dimensions(by: Sequence[str]) -> tuple[str, ...]:
    """``by`` checked, ``group`` read as ``queue``; ReportError naming the known ones."""
    named = tuple("queue" if name == "group" else name for name in by)
    for name in named:
        if name not in DIMENSIONS:
            raise ReportError(f"--by {name!r}: group by any of {', '.join(DIMENSIONS)} (or group)")
    if len(set(named)) != len(named):
        raise ReportError(f"--by {','.join(by)}: a dimension is named twice")
    return named


def _column(name: str, priority: PriorityMode) -> ColumnElement[Any]:
    if name == "priority":
        column = ClockOutcome.priority if priority == "final" else ClockOutcome.created_priority
        return column.label("priority")
    return getattr(ClockOutcome, name).label(name)  # type: ignore[no-any-return]


def _in_period(window: Period) -> ColumnElement[bool]:
    return and_(
        ClockOutcome.cycle_started_at >= window.start, ClockOutcome.cycle_started_at < window.end
    )


def met_clause() -> ColumnElement[bool]:
    """Stopped at or before due."""
    return and_(
        ClockOutcome.stopped_at.is_not(None),
        ClockOutcome.due.is_not(None),
        ClockOutcome.stopped_at <= ClockOutcome.due,
    )


def breached_clause(as_of: datetime) -> ColumnElement[bool]:
    """Stopped after due, or not stopped and due at or before ``as_of``."""
    return or_(
        and_(
            ClockOutcome.stopped_at.is_not(None),
            or_(ClockOutcome.due.is_(None), ClockOutcome.stopped_at > ClockOutcome.due),
        ),
        and_(ClockOutcome.stopped_at.is_(None), ClockOutcome.due <= as_of),
    )


def report_query(
    window: Period, by: Sequence[str], as_of: datetime, priority: PriorityMode = "final"
) -> Select[Any]:
    """The report in one aggregate: per group and whole minute of business time used (null
    for the cycles not stopped), the counts the report sums. One scan of the period.

    The rows are bounded by the groups times the minutes a target can take, not by the
    tickets; the median and p90 are read from the per-minute counts (nearest rank), so no
    group's values are sorted, and tickets and reclassifications are summed over one row per
    ticket (``lead``, or per ticket and target, ``first_cycle``, when grouped by target), so
    no DISTINCT is needed: the database hashes (PostgreSQL: in parallel) as for a bare count.
    Exact percentiles of seconds (``percentile_disc``) sorted every group: 6.9x a bare
    count at a million tickets (docs/reporting.md).
    """
    keys = [_column(name, priority) for name in by]
    minute = (ClockOutcome.used_seconds // 60).label("minute")
    counted = ClockOutcome.first_cycle if "target" in by else ClockOutcome.lead
    running = and_(
        ClockOutcome.stopped_at.is_(None),
        or_(ClockOutcome.due.is_(None), ClockOutcome.due > as_of),
    )
    return (
        select(
            *keys,
            minute,
            func.count(),
            func.count().filter(counted),
            # NULL when either is missing: not met.
            func.count().filter(ClockOutcome.stopped_at <= ClockOutcome.due),
            func.count().filter(running),
            func.coalesce(func.sum(ClockOutcome.paused_seconds), 0),
            func.count().filter(and_(counted, ClockOutcome.reclassifications > 0)),
            func.coalesce(func.sum(ClockOutcome.reclassifications).filter(counted), 0),
        )
        .where(_in_period(window))
        .group_by(*keys, minute)
    )


def nearest_rank(counts: Sequence[tuple[int, int]], fraction: Fraction) -> int | None:
    """The value at rank ``ceil(fraction * n)`` of the values counted in ``counts``
    (``(value, how many)`` pairs); None when there are none.

    >>> nearest_rank([(3, 2), (1, 1), (7, 1)], Fraction(1, 2))
    3
    """
    total = sum(count for _, count in counts)
    if total == 0:
        return None
    rank = -(-total * fraction.numerator // fraction.denominator)
    seen = 0
    for value, count in sorted(counts):
        seen += count
        if seen >= rank:
            return value
    raise AssertionError("unreachable: the ranks add up to the total")


def compliance_report(
    session: Session,
    window: Period,
    by: Sequence[str],
    as_of: datetime,
    priority: PriorityMode = "final",
) -> Report:
    """Attainment per group of the clocks that started in ``window``, judged at ``as_of``."""
    by = dimensions(by)
    width = len(by)
    sums: dict[tuple[Any, ...], list[int]] = {}
    minutes: dict[tuple[Any, ...], list[tuple[int, int]]] = {}
    for r in session.execute(report_query(window, by, as_of, priority)):
        key = tuple(r[:width])
        minute, clocks, *counts = r[width:]
        totals = sums.setdefault(key, [0] * 7)
        for index, value in enumerate((clocks, *counts)):
            totals[index] += int(value)
        if minute is not None:
            minutes.setdefault(key, []).append((int(minute), int(clocks)))
    rows = []
    for key, (clocks, tickets, met, running, paused, reclassified, times) in sums.items():
        counts = minutes.get(key, [])
        median, p90 = nearest_rank(counts, HALF), nearest_rank(counts, NINE_TENTHS)
        rows.append(
            ReportRow(
                dict(zip(by, key, strict=True)),
                tickets,
                clocks,
                met,
                clocks - met - running,
                running,
                None if median is None else median * 60,
                None if p90 is None else p90 * 60,
                paused,
                reclassified,
                times,
            )
        )
    rows.sort(key=lambda row: tuple((v is None, v or "") for v in row.group.values()))
    return Report(window, by, priority, as_of, tuple(rows))


HALF, NINE_TENTHS = Fraction(1, 2), Fraction(9, 10)


# Credits.


@dataclass(frozen=True, slots=True)
class CreditsReport:
    period: Period
    as_of: datetime
    statements: tuple[CreditStatement, ...]


def credits_report(
    session: Session,
    window: Period,
    policies: Mapping[str, Policy],
    as_of: datetime,
    priority: PriorityMode = "final",
) -> CreditsReport:
    """Each organization's credits owed for the clocks of ``window`` on every plan of the
    loaded ``policies`` that sets credit rules, with the clocks that caused them."""
    plans = {
        (name, plan_name): plan.credits
        for name, policy in policies.items()
        for plan_name, plan in policy.spec.plans.items()
        if plan.credits is not None and plan.commitment == "sla"
    }
    if not plans:
        return CreditsReport(window, as_of, ())
    wanted = or_(
        *(
            and_(ClockOutcome.policy == name, ClockOutcome.plan == plan_name)
            for name, plan_name in plans
        )
    )
    shown_priority = ClockOutcome.priority if priority == "final" else ClockOutcome.created_priority
    query = (
        select(
            ClockOutcome.policy,
            ClockOutcome.plan,
            ClockOutcome.organization,
            ClockOutcome.source,
            ClockOutcome.external_key,
            ClockOutcome.target,
            shown_priority,
            ClockOutcome.cycle_started_at,
            ClockOutcome.due,
            ClockOutcome.stopped_at,
            ClockOutcome.paused_seconds,
            breached_clause(as_of),
        )
        .where(_in_period(window), ClockOutcome.commitment == "sla", wanted)
        .order_by(
            ClockOutcome.policy,
            ClockOutcome.plan,
            ClockOutcome.organization,
            ClockOutcome.due,
            ClockOutcome.source,
            ClockOutcome.external_key,
            ClockOutcome.target,
        )
    )
    grouped: dict[tuple[str, str | None, str | None], list[CreditClock]] = {}
    for r in session.execute(query):
        clock = CreditClock(f"{r[3]}:{r[4]}", r[5], r[6], r[7], r[8], r[9], bool(r[11]), int(r[10]))
        grouped.setdefault((r[0], r[1], r[2]), []).append(clock)
    statements = []
    for (policy_name, plan_name, organization), clocks in grouped.items():
        rules = plans[(policy_name, str(plan_name))]
        assert rules is not None
        statements.append(credit_statement(rules, str(plan_name), organization, clocks))
    statements.sort(key=lambda s: (s.organization is None, s.organization or "", s.plan))
    return CreditsReport(window, as_of, tuple(statements))
