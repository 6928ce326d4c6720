"""Threshold marks, and the breach queries they answer from an index.

When a decision is stored, each clock of an open ticket that is neither met nor without a
target gets one row in ``target_marks`` per configured threshold: the instant it reaches
that fraction of its target (``bot.engine.threshold_instant``; 1.0 is the due instant).
"Breached now" is then the marks at 1.0 with ``at <= now``, and "reaching 75% within the
next hour" the marks at 0.75 with ``now < at <= now + 1h``: both a range of the
``(threshold_permille, at)`` index, so they cost what they return, however many tickets are
stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Executable,
    Select,
    Table,
    and_,
    event,
    exists,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.compiled import Policy
from bot.engine import Decision, iso_z, threshold_instant
from bot.errors import SlabotError
from bot.ticket import SOLVED_STATUSES, Ticket
from slabot.store.models import Nudge, StoredTicket, TargetMark
from slabot.store.writes import owe

BREACH = 1000
"""The threshold of the due instant itself, in permille."""
DEFAULT_THRESHOLDS = (0.75, 1.0)
"""Fractions of each target marked unless the service is configured otherwise."""


class ThresholdError(SlabotError):
    """A threshold is not a positive whole permille, or is not one the store marks."""


def to_permille(fraction: float | Fraction) -> int:
    """``0.75`` -> ``750``; a fraction must be positive and a whole number of permille."""
    ratio = Fraction(str(fraction)) if isinstance(fraction, float) else Fraction(fraction)
    permille = ratio * 1000
    if ratio <= 0 or permille.denominator != 1:
        raise ThresholdError(
            f"threshold {fraction} must be a fraction of the target above 0 with at most three "
            "decimals, like 0.75 or 1.0"
        )
    return int(permille)


def thresholds_permille(fractions: Iterable[float | Fraction]) -> tuple[int, ...]:
    """The configured fractions in permille, sorted; 1.0 is always included (breaches)."""
    return tuple(sorted({BREACH, *(to_permille(f) for f in fractions)}))


@dataclass(frozen=True, slots=True)
class Mark:
    """One threshold of one clock: when it is reached, and the start of the clock's cycle."""

    target: str
    threshold_permille: int
    at: datetime
    cycle_started_at: datetime


def decision_marks(
    ticket: Ticket,
    policy: Policy,
    decision: Decision,
    now: datetime,
    thresholds: Sequence[int],
) -> list[Mark]:
    """The marks a stored decision carries: none for a solved ticket, none for a target met
    or without a target; a threshold an open-ended pause holds unreached has none either."""
    if ticket.status in SOLVED_STATUSES:
        return []
    marks = []
    for name, decided in decision.targets.items():
        started = decided.started_at
        if decided.state in ("met", "none") or started is None:
            continue
        for permille in thresholds:
            if permille == BREACH:
                at = decided.due
            else:
                fraction = Fraction(permille, 1000)
                at = threshold_instant(ticket, policy, decision, name, fraction, now)
            if at is not None:
                marks.append(Mark(name, permille, at, started))
    return marks


def store_marks(session: Session, ticket: StoredTicket, marks: Sequence[Mark]) -> None:
    """Make the ticket's stored marks exactly ``marks``, touching only the rows that differ."""
    ticket_id = ticket.id
    stored = {
        (row.target, row.threshold_permille): row
        for row in session.scalars(select(TargetMark).where(TargetMark.ticket_id == ticket_id))
    }
    for mark in marks:
        row = stored.pop((mark.target, mark.threshold_permille), None)
        if row is None:
            session.add(
                TargetMark(
                    ticket_id=ticket_id,
                    target=mark.target,
                    threshold_permille=mark.threshold_permille,
                    at=mark.at,
                    cycle_started_at=mark.cycle_started_at,
                    source=ticket.source,
                    external_key=ticket.external_key,
                )
            )
            continue
        if row.at != mark.at:
            row.at = mark.at
        if row.cycle_started_at != mark.cycle_started_at:
            row.cycle_started_at = mark.cycle_started_at
    for row in stored.values():
        session.delete(row)


def list_columns(ticket: StoredTicket, marks: Sequence[Mark]) -> None:
    """Set the columns the dashboard's list is ordered and filtered by, from the ticket's
    new marks and what its helpdesk shows: ``next_due_at`` (its earliest breach mark),
    ``queue`` and ``assignee_email`` (as ``TicketView`` reads them from ``shown``)."""
    breaches = [mark.at for mark in marks if mark.threshold_permille == BREACH]
    ticket.next_due_at = min(breaches) if breaches else None
    shown = ticket.shown or {}
    ticket.queue = _shown_text(shown.get("queue"))
    email = _shown_text(shown.get("assignee_email"))
    ticket.assignee_email = email.lower() if email else None


def _shown_text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


class DueTarget(NamedTuple):
    """A clock at a threshold: breached, or reaching a fraction of its target.

    A named tuple: the queries build one per row, and a tuple is the cheapest to build.
    """

    ticket_id: int
    source: str
    external_key: str
    target: str
    at: datetime
    """When the threshold is (or was) reached; for a breach, the due instant."""
    cycle_started_at: datetime

    @property
    def ticket(self) -> str:
        """``zendesk:123``: how people name the ticket."""
        return f"{self.source}:{self.external_key}"


def breached_where(now: datetime) -> ColumnElement[bool]:
    """Marks of clocks past due at ``now`` (of open tickets: solved ones carry no marks)."""
    return and_(TargetMark.threshold_permille == BREACH, TargetMark.at <= now)


def reaching_where(permille: int, now: datetime, horizon: timedelta) -> ColumnElement[bool]:
    """Marks of clocks that reach ``permille`` of their target in ``(now, now + horizon]``."""
    return and_(
        TargetMark.threshold_permille == permille,
        TargetMark.at > now,
        TargetMark.at <= now + horizon,
    )


DueTargetRow = Select[int, str, str, str, datetime, datetime]


def due_targets_query(where: ColumnElement[bool], limit: int | None) -> DueTargetRow:
    """The marks matching ``where`` in the order they are reached, with the ticket's name.

    Every column read is in the index, in the index's own order (threshold, at, ticket,
    target): the database reads the matching range of the index in order, stops at
    ``limit``, and touches nothing else.
    """
    query = (
        select(
            TargetMark.ticket_id,
            TargetMark.source,
            TargetMark.external_key,
            TargetMark.target,
            TargetMark.at,
            TargetMark.cycle_started_at,
        )
        .where(where)
        .order_by(TargetMark.at, TargetMark.ticket_id, TargetMark.target)
    )
    return query if limit is None else query.limit(limit)


def count_query(where: ColumnElement[bool]) -> Select[int]:
    """How many marks match ``where``: the floor a query over the same rows is judged by."""
    return select(func.count()).select_from(TargetMark).where(where)


def due_targets(
    connection: Connection | Session, where: ColumnElement[bool], limit: int | None
) -> list[DueTarget]:
    """Run ``due_targets_query``; a plain connection skips the ORM's per-row work, and
    fetching every row at once (``all``) the per-row fetch calls."""
    rows = connection.execute(due_targets_query(where, limit)).all()
    return list(map(DueTarget._make, rows))


def explain(session: Session, statement: Executable) -> list[str]:
    """How the database runs ``statement``, one line per step (for tests and the bench).

    The statement is run once as it is, and the SQL and parameters the driver received are
    explained: SQLite's ``EXPLAIN QUERY PLAN`` details, or PostgreSQL's ``EXPLAIN`` lines.
    """
    captured: list[tuple[str, Any]] = []
    connection = session.connection()

    def capture(*args: Any) -> None:
        captured.append((args[2], args[3]))  # (conn, cursor, statement, parameters, ...)

    event.listen(connection, "before_cursor_execute", capture)
    try:
        session.execute(statement).all()
    finally:
        event.remove(connection, "before_cursor_execute", capture)
    sql, parameters = captured[-1]
    prefix = "EXPLAIN QUERY PLAN " if connection.dialect.name == "sqlite" else "EXPLAIN "
    rows = connection.exec_driver_sql(prefix + sql, parameters).all()
    return [str(row[-1]) for row in rows]


# The breach queries (``TicketService.breached``, ``reaching``, ``record_breaches``).

_NUDGES = cast(Table, Nudge.__table__)


def breached(engine: Engine, at: datetime, limit: int | None = 100) -> list[DueTarget]:
    """Clocks of open tickets past due at ``at``, earliest due first.

    Answered from the ``target_marks`` index: the cost follows the rows returned.
    """
    with engine.connect() as connection:
        return due_targets(connection, breached_where(at), limit)


def reaching(
    engine: Engine,
    thresholds: Sequence[int],
    fraction: float | Fraction,
    at: datetime,
    horizon: timedelta = timedelta(hours=1),
    limit: int | None = 100,
) -> list[DueTarget]:
    """Clocks of open tickets that reach ``fraction`` of their target in ``(at, at +
    horizon]``, earliest first: ``reaching(1.0)`` is "due within the next hour".

    ``fraction`` must be one of the ``thresholds`` marked (in permille: what is stored).
    """
    permille = to_permille(fraction)
    if permille not in thresholds:
        marked = ", ".join(f"{p / 1000:g}" for p in thresholds)
        raise ThresholdError(
            f"threshold {fraction} is not marked (marked: {marked}); add it to the "
            "service's thresholds and run slabot recompute to mark stored tickets"
        )
    with engine.connect() as connection:
        return due_targets(connection, reaching_where(permille, at, horizon), limit)


def record_breaches(
    writer: Engine, clock: Callable[[], datetime], limit: int | None = 100
) -> list[DueTarget]:
    """Record each breach not reported yet at ``clock()`` (read in the transaction) and owe
    Slack a notice of it; return those. ``writer``: the engine for writing (``for_writing``).

    A breach is reported once per ticket, target and clock cycle: the nudge row's unique
    key (ticket, target, threshold 100, cycle start) settles it, even between concurrent
    callers. A reclassification keeps the cycle start, so a target breached, then given
    a later due date, then breached again is not reported twice; a new cycle (a new agent
    update, a reopening) is a new breach.
    """
    with Session(writer, expire_on_commit=False) as session, session.begin():
        at = clock()
        reported = exists().where(
            Nudge.ticket_id == TargetMark.ticket_id,
            Nudge.target == TargetMark.target,
            Nudge.threshold == BREACH // 10,
            Nudge.cycle_started_at == TargetMark.cycle_started_at,
        )
        found = due_targets(session, and_(breached_where(at), ~reported), limit)
        insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else None
        recorded = []
        for breach in found:
            values = {
                "ticket_id": breach.ticket_id,
                "target": breach.target,
                "threshold": BREACH // 10,
                "cycle_started_at": breach.cycle_started_at,
                "sent_at": at,
                "payload": {"due": iso_z(breach.at)},
            }
            statement = (insert or sqlite.insert)(_NUDGES).values(**values)
            inserted = session.execute(
                statement.on_conflict_do_nothing(
                    index_elements=["ticket_id", "target", "threshold", "cycle_started_at"]
                ).returning(_NUDGES.c.id)
            ).first()
            if inserted is None:
                continue  # another worker reported it first
            cycle = int(breach.cycle_started_at.timestamp())
            payload = {
                "ticket": breach.ticket,
                "target": breach.target,
                "due": iso_z(breach.at),
                "cycle_started_at": iso_z(breach.cycle_started_at),
            }
            key = f"slack:breach:{breach.ticket}:{breach.target}:{cycle}"
            owe(session, "slack", breach.ticket_id, "breach_notice", payload, key, at)
            recorded.append(breach)
        return recorded
