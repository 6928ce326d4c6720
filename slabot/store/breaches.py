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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Connection, Executable, Select, and_, event, func, select
from sqlalchemy.orm import Session

from bot.compiled import Policy
from bot.engine import Decision, threshold_instant
from bot.errors import SlabotError
from bot.ticket import SOLVED_STATUSES, Ticket
from slabot.store.models import StoredTicket, TargetMark

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
