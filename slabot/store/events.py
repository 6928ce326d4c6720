"""Event-level ingest: one normalized change to a stored ticket (a reply, a status change).

Where a helpdesk reports single changes (Zendesk ticket audits, Jira changelog entries)
rather than whole tickets, a connector calls ``EventService``: each call appends the change
to the ticket's history, re-evaluates the ticket and stores the decision, as
``TicketService.ingest`` does for a snapshot, in one transaction.

- Idempotent: every event carries an ``event_key`` (the connector's delivery id and the
  source's event id). An event whose key the ticket's history already holds is dropped; the
  unique ``(ticket_id, event_key)`` constraint backs that up between concurrent workers.
- Order-proof: a reply older than the newest one leaves ``last_agent_update_at`` at the
  newest (and moves ``first_response_at`` back when it is the earliest). A status change
  older than the time of the current status is recorded in the history but does not change
  the current status. Pauses and restoration cycles are derived from the whole status
  history in time order, so a late event still opens or closes the pause it belongs to.
- An event for a ticket slabot has not stored raises ``UnknownTicketError``; nothing is
  stored, and the connector should ingest a snapshot of the ticket first.

Every operation goes through ``with_retry``: a database that is briefly unreachable is
retried a few times, then reported as ``DatabaseUnavailableError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.engine import Decision, evaluate
from bot.errors import SlabotError
from bot.policy import TARGETS
from bot.ticket import SOLVED_STATUSES, STATUSES
from slabot.store.deliveries import forget_delivery
from slabot.store.errors import PolicyNotLoadedError, UnknownTicketError
from slabot.store.history import (
    derive_from_history,
    history_entry,
    reads_status_history,
    status_entries,
    stored_facts,
)
from slabot.store.models import StoredDecision, StoredTicket, TicketEvent, WebhookDelivery
from slabot.store.retry import DEFAULT_RETRY, RetryPolicy, with_retry
from slabot.store.rows import engine_ticket, row_snapshot
from slabot.store.services import TicketService

__all__ = [
    "EventError",
    "EventResult",
    "EventService",
    "PolicyNotLoadedError",
    "UnknownTicketError",
]

EventOutcome = Literal["applied", "recorded", "duplicate"]

_KEY_LENGTH = 255
_SOURCE_LENGTH = 32


class EventError(SlabotError):
    """An event cannot be applied (malformed, or before the ticket existed); nothing was
    stored. An event for a ticket slabot has not stored raises ``UnknownTicketError``, one
    under a policy that is not loaded ``PolicyNotLoadedError`` (both from the services)."""


@dataclass(frozen=True, slots=True)
class EventResult:
    """What applying one event did."""

    ticket_id: int
    outcome: EventOutcome
    """``applied``: the ticket's state moved. ``recorded``: appended to the history only (an
    older reply, a stale status change, a status the ticket already had). ``duplicate``: the
    event key was seen before; nothing was stored."""
    events: tuple[str, ...]
    """Kinds of the history entries appended, in order."""
    decision: Decision | None
    """The decision now stored (None for a duplicate)."""
    enqueued: tuple[str, ...]
    """Kinds of the outbox writes enqueued (only when the priority, the tags or a due
    instant changed)."""


@dataclass(frozen=True, slots=True)
class _Change:
    """An event, validated: what the public methods hand to ``_apply``."""

    kind: Literal["public_reply", "status_changed", "solved", "reopened"]
    source: str
    external_key: str
    event_key: str
    at: datetime
    actor: str | None
    to: str | None = None
    first: bool | None = None


class EventService:
    """Applies single ticket events on top of a ``TicketService`` (its engine, policies,
    clock and write rules); thread-safe."""

    def __init__(self, tickets: TicketService, *, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        self.tickets = tickets
        self.engine: Engine = tickets.engine
        self.retry = retry

    # --- events --------------------------------------------------------------------------------

    def public_reply(
        self,
        source: str,
        external_key: str,
        at: datetime,
        actor: str | None = None,
        first: bool | None = None,
        *,
        event_key: str,
    ) -> EventResult:
        """A public agent reply at ``at``. ``first``: whether the source says it is the first
        public reply (None: decided from what is stored). ``first_response_at`` becomes the
        earliest reply known and ``last_agent_update_at`` the latest."""
        return self._run(
            _Change("public_reply", source, external_key, event_key, at, actor, None, first)
        )

    def status_changed(
        self,
        source: str,
        external_key: str,
        to: str,
        at: datetime,
        actor: str | None = None,
        *,
        event_key: str,
    ) -> EventResult:
        """The ticket's status became ``to`` at ``at``. Moving into ``solved``/``closed``
        solves it at ``at``; moving out of them reopens it (a new restoration cycle)."""
        return self._run(_Change("status_changed", source, external_key, event_key, at, actor, to))

    def solved(
        self,
        source: str,
        external_key: str,
        at: datetime,
        actor: str | None = None,
        *,
        event_key: str,
    ) -> EventResult:
        """The ticket was solved at ``at`` (its status becomes ``solved`` unless it is
        already solved or closed)."""
        return self._run(_Change("solved", source, external_key, event_key, at, actor, "solved"))

    def reopened(
        self,
        source: str,
        external_key: str,
        at: datetime,
        actor: str | None = None,
        *,
        event_key: str,
        to: str = "open",
    ) -> EventResult:
        """The ticket was reopened at ``at`` into status ``to`` (default ``open``): a new
        restoration cycle starts at ``at``."""
        return self._run(_Change("reopened", source, external_key, event_key, at, actor, to))

    # --- webhook deliveries --------------------------------------------------------------------

    def record_delivery(self, source: str, delivery_key: str) -> bool:
        """Record that a webhook delivery was received; False when it was recorded before.

        Race-safe: the unique ``(source, delivery_key)`` constraint decides, so of two
        workers handed the same delivery at once exactly one gets True. Call it first and
        process the delivery only on True; if processing then fails, call
        ``forget_delivery`` so the helpdesk's redelivery is processed (the events' own keys
        make a second processing harmless). A connection lost while committing is reported
        as ``DatabaseUnavailableError`` rather than retried, since a retry could not tell
        this delivery from a duplicate.
        """
        source, delivery_key = _delivery_key(source, delivery_key)

        def work(session: Session) -> bool:
            values = {
                "source": source,
                "delivery_key": delivery_key,
                "received_at": self.tickets.now(),
            }
            insert = (
                postgresql_insert(WebhookDelivery)
                if session.get_bind().dialect.name == "postgresql"
                else sqlite_insert(WebhookDelivery)
            )
            statement = (
                insert.values(**values)
                .on_conflict_do_nothing(index_elements=["source", "delivery_key"])
                .returning(WebhookDelivery.id)
            )
            return session.execute(statement).first() is not None

        return with_retry(
            self.engine,
            work,
            policy=self.retry,
            what=f"recording delivery {source}:{delivery_key}",
            retry_commit=False,
        )

    def forget_delivery(self, source: str, delivery_key: str) -> bool:
        """Remove a recorded delivery (its processing failed); True when there was one
        (``slabot.store.deliveries.forget_delivery``)."""
        source, delivery_key = _delivery_key(source, delivery_key)
        return forget_delivery(self.engine, source, delivery_key, retry=self.retry)

    # --- applying ------------------------------------------------------------------------------

    def _run(self, change: _Change) -> EventResult:
        change = _validated(change)
        what = f"event {change.event_key} of ticket {change.source}:{change.external_key}"
        try:
            return with_retry(
                self.engine,
                lambda session: self._apply(session, change),
                policy=self.retry,
                what=what,
            )
        except IntegrityError:
            # Another worker stored the same event key between our check and our insert (the
            # unique constraint said no and our transaction was rolled back): a duplicate.
            found = with_retry(
                self.engine,
                lambda session: self._find(session, change),
                policy=self.retry,
                what=what,
            )
            if found is None:
                raise
            return EventResult(found, "duplicate", (), None, ())

    def _find(self, session: Session, change: _Change) -> int | None:
        return session.scalar(
            select(TicketEvent.ticket_id)
            .join(StoredTicket, StoredTicket.id == TicketEvent.ticket_id)
            .where(
                StoredTicket.source == change.source,
                StoredTicket.external_key == change.external_key,
                TicketEvent.event_key == change.event_key,
            )
        )

    def _apply(self, session: Session, change: _Change) -> EventResult:
        now = self.tickets.now()
        where = f"ticket {change.source}:{change.external_key}"
        row = session.scalars(
            select(StoredTicket)
            .where(
                StoredTicket.source == change.source,
                StoredTicket.external_key == change.external_key,
            )
            .with_for_update()
        ).one_or_none()
        if row is None:
            raise UnknownTicketError(
                f"{where} is not stored, so {change.kind} event {change.event_key!r} cannot "
                "be applied (nothing was stored); ingest a snapshot of the ticket first"
            )
        seen = session.scalar(
            select(TicketEvent.id).where(
                TicketEvent.ticket_id == row.id, TicketEvent.event_key == change.event_key
            )
        )
        if seen is not None:
            return EventResult(row.id, "duplicate", (), None, ())
        policy = self.tickets.loaded_policy(row)
        if change.at < row.created_at:
            raise EventError(
                f"{where}: {change.kind} event {change.event_key!r} at {change.at.isoformat()} "
                f"is before the ticket was created ({row.created_at.isoformat()}); nothing "
                "was stored"
            )

        before = engine_ticket(row)
        if change.kind == "public_reply":
            entries = _reply(row, change, now)
        else:
            entries = _status(row, change, now)
        entries[0].event_key = change.event_key
        for entry in entries:
            entry.ticket_id = row.id
        session.add_all(entries)
        if change.kind != "public_reply":
            session.flush()
            _derive_from_history(session, row, policy)
        row.updated_at = now
        after = engine_ticket(row)
        # The status history too, for the metrics that read it (docs/metrics.md).
        facts = (
            stored_facts(session, [row.id]).get(row.id, ()) if reads_status_history(policy) else ()
        )

        try:
            decision = evaluate(engine_ticket(row, facts) if facts else after, policy, now)
        except SlabotError as error:
            raise EventError(f"{where}: {error}; nothing was stored") from None
        stored = session.get(StoredDecision, row.id)
        previous = None if stored is None else _written_state(stored)
        self.tickets.store_decision(session, row, policy, decision, now)  # with the threshold marks
        enqueued: Sequence[str] = ()
        if previous != _written_state(decision):
            enqueued = self._enqueue(session, row, change, decision, now)
        return EventResult(
            row.id,
            "applied" if after != before else "recorded",
            tuple(entry.kind for entry in entries),
            decision,
            tuple(enqueued),
        )

    def _enqueue(
        self,
        session: Session,
        row: StoredTicket,
        change: _Change,
        decision: Decision,
        now: datetime,
    ) -> Sequence[str]:
        """Owe the helpdesk the writes a changed decision calls for, by the snapshot rules:
        against what the helpdesk showed in the newest snapshot."""
        return self.tickets.enqueue_writes(
            session, row, row_snapshot(row, change.at), decision, now
        )


def _written_state(decision: StoredDecision | Decision) -> tuple[Any, ...]:
    """What of a decision the helpdesk is written: the priority, the tags, the due instants."""
    if isinstance(decision, StoredDecision):
        dues = tuple(getattr(decision, f"{name}_due") for name in TARGETS)
    else:
        dues = tuple(decision.targets[name].due for name in TARGETS)
    return decision.priority, list(decision.tags), dues


# --- what one event does to the ticket row ------------------------------------------------------


def _reply(row: StoredTicket, change: _Change, now: datetime) -> list[TicketEvent]:
    at = change.at
    first = change.first
    if first is None:
        first = row.first_response_at is None or at < row.first_response_at
    if row.first_response_at is None or at < row.first_response_at:
        row.first_response_at = at
    if row.last_agent_update_at is None or at > row.last_agent_update_at:
        row.last_agent_update_at = at
    return [_entry("public_reply", at, now, change.actor, {"first": first})]


def _status(row: StoredTicket, change: _Change, now: datetime) -> list[TicketEvent]:
    """History entries for a status event (``history.status_entries``)."""
    assert change.to is not None  # set for every status kind
    assert change.kind != "public_reply"
    return status_entries(row, change.kind, change.to, change.at, change.actor, now)


_derive_from_history = derive_from_history
_entry = history_entry


# --- validation ---------------------------------------------------------------------------------


def _validated(change: _Change) -> _Change:
    source = (change.source or "").strip()
    external_key = (change.external_key or "").strip()
    event_key = (change.event_key or "").strip()
    if not source or not external_key:
        raise EventError("an event needs its ticket's source and external key")
    where = f"ticket {source}:{external_key}"
    if not event_key:
        raise EventError(
            f"{where}: a {change.kind} event needs an event_key (the delivery id and the "
            "source's event id), so that a repeat is recognised"
        )
    if len(event_key) > _KEY_LENGTH:
        raise EventError(f"{where}: event_key is longer than {_KEY_LENGTH} characters")
    at = change.at
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise EventError(f"{where}: event {event_key!r}: the time {at!r} has no time zone")
    if change.to is not None and change.to not in STATUSES:
        raise EventError(
            f"{where}: event {event_key!r}: status {change.to!r}; expected one of "
            f"{', '.join(STATUSES)}"
        )
    if change.kind == "reopened" and change.to in SOLVED_STATUSES:
        raise EventError(f"{where}: a ticket is reopened into an open status, not {change.to!r}")
    actor = change.actor.strip() or None if change.actor is not None else None
    return _Change(change.kind, source, external_key, event_key, at, actor, change.to, change.first)


def _delivery_key(source: str, delivery_key: str) -> tuple[str, str]:
    source, delivery_key = (source or "").strip(), (delivery_key or "").strip()
    if not source or not delivery_key:
        raise EventError("a webhook delivery needs its source and delivery key")
    if len(source) > _SOURCE_LENGTH or len(delivery_key) > _KEY_LENGTH:
        raise EventError(
            f"delivery {source[:40]}:{delivery_key[:40]}...: the source is at most "
            f"{_SOURCE_LENGTH} characters and the key at most {_KEY_LENGTH}"
        )
    return source, delivery_key
