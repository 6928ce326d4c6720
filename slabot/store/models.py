"""What slabot stores: tickets, their history, decisions, the outbox and bookkeeping.

Every instant is an aware UTC datetime (``UTCDateTime``). Change the models only together
with a new Alembic revision in ``slabot/store/migrations/versions``; a test compares the two.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, mapped_column

from bot.errors import SlabotError
from bot.policy import TARGETS
from bot.ticket import STATUSES
from slabot.store.types import Id, JSONDocument, UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Deterministic constraint names, so migrations can name what they alter on every database."""

EVENT_KINDS = (
    "created",
    "priority_changed",
    "status_changed",
    "public_reply",
    "solved",
    "reopened",
    "acknowledged",
    "assigned",
    "policy_changed",
)
STATES = ("met", "breached", "running", "paused", "none")
PRIORITY_ORIGINS = ("helpdesk", "slack", "policy", "bot", "cli", "zendesk", "jira")
"""Where a priority change came from: an agent in the helpdesk (``helpdesk``, or the helpdesk
by name: ``zendesk``, ``jira``) or in Slack, a policy (re)classification, the bot's own write
echoed back, or the command line."""


def _one_of(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONDocument,
        list[Any]: JSONDocument,
    }


class StoredTicket(Base):
    """A ticket slabot watches: the fields the engine reads, normalized, plus bookkeeping.

    ``paused`` is derived from the status history (pairs of ISO 8601 instants, the last one
    open while the ticket waits on the customer); the history stays the source of truth.
    """

    __tablename__ = "tickets"
    __table_args__ = (
        UniqueConstraint("source", "external_key"),
        CheckConstraint(_one_of("status", STATUSES), name="status"),
        # The dashboard's list, a page at a time in its own order (revision 0009): each
        # filter it indexes leads an index ending in that order, so a page costs the rows
        # it shows, however many tickets are stored.
        Index(None, "next_due_at", "id"),
        Index(None, "queue", "next_due_at", "id"),
        Index(None, "assignee_email", "next_due_at", "id"),
        # The search (revision 0010): a trigram index of ``search_text`` on PostgreSQL, which
        # answers ``LIKE '%word%'``; SQLite has none (the dashboard matches as it reads).
        Index(
            "ix_tickets_search_text_trgm",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    """The system the ticket lives in: ``zendesk``, ``jira``..."""
    external_key: Mapped[str] = mapped_column(String(255))
    """The ticket's id in its source (``12345``, ``SUP-42``)."""
    policy: Mapped[str] = mapped_column(String(100))
    """The name of the policy the ticket is evaluated under."""

    created_at: Mapped[datetime]
    """When the ticket was created in its source (the engine's ``created_at``)."""
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str | None] = mapped_column(String(32))
    """The priority requested by the customer or set in the source."""
    plan: Mapped[str | None] = mapped_column(String(100))
    environment: Mapped[str | None] = mapped_column(String(100))
    product_stage: Mapped[str | None] = mapped_column(String(100))
    urgency: Mapped[str | None] = mapped_column(String(100))
    impact: Mapped[str | None] = mapped_column(String(100))
    channel: Mapped[str | None] = mapped_column(String(100))
    customer_timezone: Mapped[str | None] = mapped_column(String(64))
    customer_country: Mapped[str | None] = mapped_column(String(8))
    first_response_at: Mapped[datetime | None]
    last_agent_update_at: Mapped[datetime | None]
    solved_at: Mapped[datetime | None]
    restoration_started_at: Mapped[datetime | None]
    """Start of the current restoration cycle when the ticket was reopened."""
    paused: Mapped[list[Any]] = mapped_column(default=list)
    replies: Mapped[dict[str, Any] | None] = mapped_column(default=dict)
    """``{"agent": [...], "customer": [...]}``: every public reply the source showed, ISO 8601
    instants oldest first; they only ever add up (docs/metrics.md)."""
    routing: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    """What the routing rules read about the ticket (brand, project, tags...; bot.routing),
    as of the last snapshot (revision 0007; None before, or from a source that gives none)."""

    reclassified_priority: Mapped[str | None] = mapped_column(String(32))
    """An agent's priority, which outranks the policy's classification (audit in history)."""
    reclassified_by: Mapped[str | None] = mapped_column(String(255))
    reclassified_reason: Mapped[str | None] = mapped_column(Text)
    reclassified_at: Mapped[datetime | None]

    shown: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """What the source shows for the fields slabot writes (priority, tags, due dates), as of
    the last snapshot: the outbox is filled only when the desired state differs from it."""
    shown_at: Mapped[datetime | None]
    """When the last snapshot (and so ``shown``) was applied, by slabot's clock: a write sent
    after it has not been echoed back yet (revision 0003; None for tickets stored before)."""
    source_updated_at: Mapped[datetime | None]
    """The source's update time of the newest snapshot applied; older snapshots are stale."""
    first_seen_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    next_due_at: Mapped[datetime | None]
    """The earliest due instant of a running or breached clock (the ticket's earliest
    breach mark), None when no clock runs: the dashboard's order. Written with each decision
    (``slabot.store.breaches.list_columns``), like the other two below (revision 0009)."""
    queue: Mapped[str | None] = mapped_column(String(255))
    """``shown["queue"]`` (the Zendesk group, the Jira project), for the group filter."""
    assignee_email: Mapped[str | None] = mapped_column(String(255))
    """``shown["assignee_email"]``, lower-case; None: unassigned (the filter)."""
    search_text: Mapped[str | None] = mapped_column(Text)
    """What the dashboard's search matches: the ticket's key and shown texts, case-folded
    (``slabot.store.search.search_text``), written with ``shown`` (revision 0010)."""


class TicketEvent(Base):
    """One entry of a ticket's history. Append-only: never updated, never deleted."""

    __tablename__ = "ticket_events"
    __table_args__ = (
        CheckConstraint(_one_of("kind", EVENT_KINDS), name="kind"),
        Index(None, "ticket_id", "occurred_at"),
        UniqueConstraint("ticket_id", "event_key"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime]
    """When it happened in the source (or, for slabot's own changes, the injected clock)."""
    recorded_at: Mapped[datetime]
    """When slabot stored it."""
    actor: Mapped[str | None] = mapped_column(String(255))
    """Who made the change (an agent, ``slabot``), where known."""
    origin: Mapped[str | None] = mapped_column(String(16))
    """For priority changes: one of ``PRIORITY_ORIGINS``."""
    reason: Mapped[str | None] = mapped_column(Text)
    event_key: Mapped[str | None] = mapped_column(String(255))
    """The source's id for the change (an audit or changelog id), where it has one: the same
    change seen twice (webhook and poll) is stored once."""
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Kind-specific details, e.g. ``{"from": "P3", "to": "P1"}`` or ``{"from": "open",
    "to": "pending"}``."""


class AppendOnlyError(SlabotError):
    """Something tried to change or remove ticket history."""


@event.listens_for(TicketEvent, "before_update")
def _refuse_update(_mapper: Mapper[Any], _connection: Any, target: TicketEvent) -> None:
    raise AppendOnlyError(f"ticket history is append-only: event {target.id} cannot change")


@event.listens_for(TicketEvent, "before_delete")
def _refuse_delete(_mapper: Mapper[Any], _connection: Any, target: TicketEvent) -> None:
    raise AppendOnlyError(f"ticket history is append-only: event {target.id} cannot be deleted")


class StoredDecision(Base):
    """The engine's current decision for a ticket (one row per ticket)."""

    __tablename__ = "decisions"
    __table_args__ = tuple(
        CheckConstraint(_one_of(f"{name}_state", STATES), name=f"{name}_state") for name in TARGETS
    )

    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    priority: Mapped[str] = mapped_column(String(32))
    """The final priority."""
    requested_priority: Mapped[str | None] = mapped_column(String(32))
    plan: Mapped[str | None] = mapped_column(String(100))
    commitment: Mapped[str | None] = mapped_column(String(8))
    first_response_due: Mapped[datetime | None] = mapped_column(index=True)
    first_response_state: Mapped[str] = mapped_column(String(16))
    restoration_due: Mapped[datetime | None] = mapped_column(index=True)
    restoration_state: Mapped[str] = mapped_column(String(16))
    next_update_due: Mapped[datetime | None] = mapped_column(index=True)
    next_update_state: Mapped[str] = mapped_column(String(16))
    next_change_at: Mapped[datetime | None] = mapped_column(index=True)
    """The next instant a state changes by time alone (the earliest running due)."""
    tags: Mapped[list[Any]] = mapped_column(default=list)
    notes: Mapped[list[Any]] = mapped_column(default=list)
    evaluated_at: Mapped[datetime]
    """The ``now`` the states were judged at."""
    policy: Mapped[str | None] = mapped_column(String(100))
    """The policy the decision was made under (revision 0007; None for older decisions)."""
    routing_rule: Mapped[str | None] = mapped_column(String(100))
    """The routing rule that chose it (None: no routing, the helpdesk's ``policy``)."""


class OutboxItem(Base):
    """A write slabot owes a helpdesk or Slack; sent at least once, deduplicated by key."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    target_system: Mapped[str] = mapped_column(String(32))
    """``zendesk``, ``jira`` or ``slack``."""
    ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)
    """When to try next; NULL once done (or given up), so the index holds only pending work."""
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    done_at: Mapped[datetime | None]


class WebhookDelivery(Base):
    """A webhook delivery already processed: a second one with the same key, or with the same
    signed content (``content_digest``), is dropped.

    The vendor's id alone does not stop a replay: whoever captured one signed delivery can
    send it again under fresh ids. What the sender signed cannot be changed without the
    secret, so its digest is the same for every copy (Zendesk: SHA-256 of the signature's
    timestamp + body; Jira: of the body, which carries its own ``timestamp``). NULL for the
    deliveries recorded without one (Slack's, and those stored before revision 0004):
    NULLs never collide.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("source", "delivery_key"),
        Index(None, "source", "content_digest", unique=True),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    delivery_key: Mapped[str] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column(index=True)
    content_digest: Mapped[str | None] = mapped_column(String(64))
    """Lower-case hex SHA-256 of what the sender signed (None: not known)."""


class PollCursor(Base):
    """Where polling a source stopped (an opaque cursor or a time), per source and stream."""

    __tablename__ = "poll_cursors"

    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    stream: Mapped[str] = mapped_column(String(64), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]


class Nudge(Base):
    """A reminder or breach notice sent: at most one per ticket, target, threshold and cycle.

    ``cycle_started_at`` is the start of the clock cycle the nudge is about (a reopening or a
    new agent update starts a new one); a reclassification recomputes from the same start, so
    a breach already reported is not reported again.
    """

    __tablename__ = "nudges"
    __table_args__ = (
        UniqueConstraint("ticket_id", "target", "threshold", "cycle_started_at"),
        CheckConstraint(_one_of("target", TARGETS), name="target"),
        CheckConstraint("threshold > 0", name="threshold"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    target: Mapped[str] = mapped_column(String(32))
    threshold: Mapped[int] = mapped_column(Integer)
    """Percent of the target elapsed when the nudge fires: 75, 90, 100 (the breach)..."""
    cycle_started_at: Mapped[datetime]
    sent_at: Mapped[datetime]
    channel: Mapped[str | None] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)


class TargetMark(Base):
    """When a clock of an open ticket reaches a threshold of its target (75%, 100%...).

    Written with the decision, from the same calendar arithmetic as the due date
    (``bot.engine.threshold_instant``), for every target whose state is neither ``met`` nor
    ``none``; a solved ticket has none. The 1000 permille mark is the due instant. The
    breach queries read the ``(threshold_permille, at)`` index, so their cost follows the
    rows they return, not the tickets stored: the index holds every column they read, the
    ticket's name included (copied from the ticket, whose source and key never change), so
    they read one index range and nothing else, with no join whose plan could turn into a
    scan of the tickets. ``cycle_started_at`` is the clock's start (creation, reopening,
    last agent update): with the target and the threshold it keys the nudge sent about the
    mark, so a recomputed due date is never reported twice.
    """

    __tablename__ = "target_marks"
    __table_args__ = (
        CheckConstraint(_one_of("target", TARGETS), name="target"),
        CheckConstraint("threshold_permille > 0", name="threshold_permille"),
        # Covering: the breach queries and their counts never read the table itself.
        Index(
            "ix_target_marks_threshold_at",
            "threshold_permille",
            "at",
            "ticket_id",
            "target",
            "cycle_started_at",
            "source",
            "external_key",
        ),
    )

    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    target: Mapped[str] = mapped_column(String(32), primary_key=True)
    threshold_permille: Mapped[int] = mapped_column(Integer, primary_key=True)
    """Thousandths of the target's allowed time: 750 for 75%, 1000 for the breach."""
    at: Mapped[datetime]
    """The instant the threshold is reached."""
    cycle_started_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(32))
    """The ticket's source and key, as on the ticket."""
    external_key: Mapped[str] = mapped_column(String(255))


class ClockOutcome(Base):
    """One cycle of one clock of a ticket, as the compliance reports read it (revision 0008).

    Written with every decision (``slabot.store.reports.store_outcomes``), like the marks:
    the cycle the decision describes is upserted (a reclassification recomputes it from the
    same start, so a ticket is counted once, under its final priority), a cycle a later one
    replaced (a reopening, an agent update) is closed at the new cycle's start, and a target
    the final priority no longer has is removed. ``used_seconds`` is the open time on the
    target's calendar from the start to the stop outside the pauses that held the clock (the
    business time to target); ``paused_seconds`` the real time paused. The grouping columns
    are copied from the ticket and its decision so a report is one scan of this table.
    """

    __tablename__ = "clock_outcomes"
    __table_args__ = (
        CheckConstraint(_one_of("target", TARGETS), name="target"),
        Index(None, "cycle_started_at"),
    )

    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    target: Mapped[str] = mapped_column(String(32), primary_key=True)
    cycle_started_at: Mapped[datetime] = mapped_column(primary_key=True)
    """The clock's start: creation, a reopening, the last public agent update."""
    due: Mapped[datetime | None]
    """None while an open-ended pause holds the clock."""
    stopped_at: Mapped[datetime | None]
    """The reply, solve or next cycle that stopped the clock; None while it runs."""
    used_seconds: Mapped[int | None] = mapped_column(Integer)
    """Business seconds from start to stop outside pauses; None while it runs."""
    paused_seconds: Mapped[int] = mapped_column(Integer, default=0)
    evaluated_at: Mapped[datetime]
    policy: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(32))
    external_key: Mapped[str] = mapped_column(String(255))
    plan: Mapped[str | None] = mapped_column(String(100))
    commitment: Mapped[str | None] = mapped_column(String(8))
    priority: Mapped[str] = mapped_column(String(32))
    """The ticket's final priority (the one its targets are computed for)."""
    created_priority: Mapped[str] = mapped_column(String(32))
    """The priority of the ticket's first decision (before any agent reclassified it)."""
    reclassifications: Mapped[int] = mapped_column(Integer, default=0)
    """How many times agents reclassified the ticket (``priority_changed`` history entries)."""
    first_cycle: Mapped[bool] = mapped_column(default=False)
    """The ticket's first cycle of this target (reports count tickets per target by it)."""
    lead: Mapped[bool] = mapped_column(default=False)
    """Exactly one row per ticket: its first cycle of its first target (reports count
    tickets and reclassifications by it)."""
    organization: Mapped[str | None] = mapped_column(String(255))
    queue: Mapped[str | None] = mapped_column(String(255))
    """The helpdesk's group or queue (``shown["queue"]``)."""
    assignee: Mapped[str | None] = mapped_column(String(255))
    """The assignee's e-mail address, else their name."""
