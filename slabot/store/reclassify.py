"""Reclassification: an agent sets a ticket's priority, or one set in the helpdesk is refused.

Both are audited in the ticket's history (``priority_changed``) and owe the helpdesk an
internal note saying who did what and why; a reclassification also recomputes every
target from its clock's start and owes the writes its decision calls for. A request key
(``reclassify_event_key``) makes a retried request safe. ``TicketService.reclassify`` and
``refuse_reclassification`` call these functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.engine import Decision, evaluate
from bot.engine import reclassify as engine_reclassify
from bot.errors import ReclassificationError
from slabot.store.errors import UnknownTicketError
from slabot.store.history import history_entry
from slabot.store.models import PRIORITY_ORIGINS, StoredDecision, StoredTicket, TicketEvent
from slabot.store.retry import DatabaseUnavailableError, with_retry
from slabot.store.rows import engine_ticket, row_snapshot
from slabot.store.snapshot import EVENT_KEY_LENGTH
from slabot.store.writes import owe

if TYPE_CHECKING:
    from slabot.store.services import TicketService

_RECLASSIFY_KEY_PREFIX = "reclassify:"


class UnknownOriginError(ReclassificationError):
    """A reclassification names no known origin (where the agent made it)."""


class ActorRequiredError(ReclassificationError):
    """A reclassification must say who made it."""


@dataclass(frozen=True, slots=True)
class ReclassifyResult:
    """What one reclassification did."""

    ticket_id: int
    previous_priority: str | None
    """The final priority before (None if the ticket had no stored decision)."""
    decision: Decision
    """The decision now stored, every target recomputed from its clock's start."""
    enqueued: tuple[str, ...]
    """Kinds of the helpdesk writes enqueued (``add_note`` always, last; none for a
    duplicate)."""
    duplicate: bool = False
    """The request key was seen before: the reclassification had already been applied (a
    retried request, or a retry after a lost commit acknowledgement); nothing was stored."""


def reclassify_event_key(request_key: str) -> str:
    """The event key under which ``reclassify`` keeps a reclassification made
    with ``request_key`` in the ticket's history (its presence says it was applied)."""
    return f"{_RECLASSIFY_KEY_PREFIX}{request_key.strip()}"


def reclassify(
    service: TicketService,
    source: str,
    external_key: str,
    priority: str,
    actor: str,
    reason: str,
    origin: str,
    *,
    request_key: str | None = None,
) -> ReclassifyResult:
    """An agent sets the ticket's priority: audited, recomputed, written back, noted.

    The engine validates the choice (``UnknownPriorityError``, ``ReasonRequiredError``,
    ``ProductionOnlyError``); nothing is stored when it refuses. Every target is
    recomputed from its clock's original start, so the cycle keys of the marks stay the
    same and a breach already reported is not reported again (``record_breaches``). The
    helpdesk is owed the writes whose values it does not show, and an internal note
    saying who changed the priority, from what, to what and why.

    ``request_key`` (the Slack action id, the command's request id...) makes the request
    idempotent: it is stored as the history entry's event key, and a reclassification
    whose key the ticket's history already holds is not applied again (the result says
    ``duplicate``). A briefly unreachable database is retried; a connection lost while
    committing is retried only with a request key. Without one, the outcome of that
    commit is unknown and ``DatabaseUnavailableError`` says so rather than risk a second
    audit entry and a second note.
    """
    if origin not in PRIORITY_ORIGINS:
        raise UnknownOriginError(
            f"origin {origin!r}: expected one of {', '.join(PRIORITY_ORIGINS)}"
        )
    if not actor.strip():
        raise ActorRequiredError("say who reclassifies the ticket; the actor is kept in the audit")
    actor = actor.strip()
    event_key = None
    if request_key is not None:
        if not request_key.strip():
            raise ReclassificationError("request_key, when given, must not be empty")
        event_key = reclassify_event_key(request_key)
        if len(event_key) > EVENT_KEY_LENGTH:
            raise ReclassificationError(
                f"request_key is longer than "
                f"{EVENT_KEY_LENGTH - len(_RECLASSIFY_KEY_PREFIX)} characters"
            )
    what = f"reclassifying ticket {source}:{external_key}"

    def work(session: Session) -> ReclassifyResult:
        return _reclassify(
            service, session, source, external_key, priority, actor, reason, origin, event_key
        )

    try:
        return with_retry(
            service.engine,
            work,
            policy=service.retry,
            what=what,
            retry_commit=event_key is not None,
        )
    except IntegrityError:
        # Another worker applied the same request key between our check and our insert.
        if event_key is None:
            raise
        found = with_retry(
            service.engine,
            lambda session: _reclassified(service, session, source, external_key, event_key),
            policy=service.retry,
            what=what,
            read_only=True,
        )
        if found is None:
            raise
        return found
    except DatabaseUnavailableError as error:
        if "may or may not" not in str(error):
            raise
        raise DatabaseUnavailableError(
            f"{error}; look for a priority_changed entry by {actor} in the ticket's "
            "history before reclassifying again (a request_key makes the retry safe)",
            attempts=error.attempts,
        ) from None


def refuse_reclassification(
    service: TicketService,
    source: str,
    external_key: str,
    *,
    asked: str,
    priority: str | None,
    actor: str,
    origin: str,
    why: str,
    at: datetime,
    event_key: str,
    helpdesk_name: Callable[[str], str | None],
) -> bool:
    """A person set a priority in the helpdesk that slabot does not keep: the refusal
    goes in the ticket's history and the helpdesk is owed an internal note saying who
    set what and why. True when recorded; False when ``event_key`` already was (the
    same change read again).

    ``asked`` is what they set in the helpdesk's words (``Highest``, ``urgent``; empty:
    none), ``priority`` slabot's for it (None: it maps to none), ``helpdesk_name`` names
    the kept priority in the helpdesk's words for the note. The policy's priority itself
    is not written here: the helpdesk shows another, so the ingest of the same read
    already owes it.
    """
    if origin not in PRIORITY_ORIGINS:
        raise UnknownOriginError(
            f"origin {origin!r}: expected one of {', '.join(PRIORITY_ORIGINS)}"
        )

    def work(session: Session) -> bool:
        now = service.now()
        row = _locked_ticket(session, source, external_key)
        seen = session.scalar(
            select(TicketEvent.id).where(
                TicketEvent.ticket_id == row.id, TicketEvent.event_key == event_key
            )
        )
        if seen is not None:
            return False
        stored = session.get(StoredDecision, row.id)
        kept = stored.priority if stored is not None else None
        entry = history_entry(
            "priority_changed",
            at,
            now,
            actor,
            {"field": "refused", "from": kept, "to": priority, f"{origin}_priority": asked},
            origin=origin,
        )
        _record(session, row, entry, f"refused: {why}", event_key)
        kept_name = helpdesk_name(kept) if kept else None
        note = (
            f"slabot kept the priority at {kept or 'none'}"
            f"{f' ({kept_name})' if kept_name else ''}: {actor} set "
            f"{asked or 'no priority'}, which the support policy does not allow here. {why}"
        )
        payload = {"body": note, "from": kept, "to": priority, "actor": actor, "origin": origin}
        _owe_note(session, row, entry, {**payload, "reason": why, "refused": True}, now)
        return True

    # The event key makes a retried commit safe: a second attempt finds its entry.
    return with_retry(
        service.engine,
        work,
        policy=service.retry,
        what=f"recording a refused priority of ticket {source}:{external_key}",
    )


def _locked_ticket(session: Session, source: str, external_key: str) -> StoredTicket:
    row = session.scalars(
        select(StoredTicket)
        .where(StoredTicket.source == source, StoredTicket.external_key == external_key)
        .with_for_update()
    ).one_or_none()
    if row is None:
        raise UnknownTicketError(
            f"no ticket {source}:{external_key} is stored; slabot learns a ticket from "
            "its helpdesk (webhook or poll) before it can be reclassified"
        )
    return row


def _reclassified(
    service: TicketService, session: Session, source: str, external_key: str, event_key: str
) -> ReclassifyResult | None:
    """The result of a reclassification whose request key is already in the history
    (None: it is not)."""
    row = session.scalars(
        select(StoredTicket).where(
            StoredTicket.source == source, StoredTicket.external_key == external_key
        )
    ).one_or_none()
    if row is None:
        return None
    found = _keyed_entry(session, row.id, event_key)
    return None if found is None else _duplicate(service, row, found)


def _keyed_entry(session: Session, ticket_id: int, event_key: str) -> TicketEvent | None:
    """The ticket's history entry of that event key (None: there is none)."""
    return session.scalars(
        select(TicketEvent).where(
            TicketEvent.ticket_id == ticket_id, TicketEvent.event_key == event_key
        )
    ).one_or_none()


def _duplicate(service: TicketService, row: StoredTicket, entry: TicketEvent) -> ReclassifyResult:
    decision = evaluate(engine_ticket(row), service.loaded_policy(row), service.now())
    previous = (entry.payload or {}).get("from")
    return ReclassifyResult(
        row.id, previous if isinstance(previous, str) else None, decision, (), True
    )


def _record(
    session: Session, row: StoredTicket, entry: TicketEvent, reason: str, event_key: str | None
) -> None:
    """Append ``entry`` to the ticket's history, flushed: its id keys the note it is owed."""
    entry.reason = reason
    entry.ticket_id = row.id
    entry.event_key = event_key
    session.add(entry)
    session.flush()


def _owe_note(
    session: Session, row: StoredTicket, entry: TicketEvent, payload: dict[str, Any], now: datetime
) -> None:
    """Owe the helpdesk the internal note of history entry ``entry`` (once: keyed by it)."""
    key = f"{row.source}:{row.external_key}:add_note:event-{entry.id}"
    owe(session, row.source, row.id, "add_note", {"internal": True, **payload}, key, now)


def _reclassify(
    service: TicketService,
    session: Session,
    source: str,
    external_key: str,
    priority: str,
    actor: str,
    reason: str,
    origin: str,
    event_key: str | None,
) -> ReclassifyResult:
    now = service.now()
    row = _locked_ticket(session, source, external_key)
    if event_key is not None:
        seen = _keyed_entry(session, row.id, event_key)
        if seen is not None:
            return _duplicate(service, row, seen)
    policy = service.loaded_policy(row)
    stored = session.get(StoredDecision, row.id)
    previous = stored.priority if stored is not None else None
    decision = engine_reclassify(engine_ticket(row), policy, now, priority, actor, reason)
    reason = reason.strip()
    row.reclassified_priority = priority
    row.reclassified_by = actor
    row.reclassified_reason = reason
    row.reclassified_at = now
    row.updated_at = now
    entry = history_entry(
        "priority_changed",
        now,
        now,
        actor,
        {"field": "reclassified", "from": previous, "to": priority},
        origin=origin,
    )
    _record(session, row, entry, reason, event_key)
    service.store_decision(session, row, policy, decision, now)
    enqueued = service.enqueue_writes(session, row, row_snapshot(row, now), decision, now)
    note = (
        f"Priority changed from {previous or 'none'} to {priority} by {actor} "
        f"(via {origin}): {reason}"
    )
    payload = {"body": note, "from": previous, "to": priority, "actor": actor, "origin": origin}
    _owe_note(session, row, entry, {**payload, "reason": reason}, now)
    enqueued.append("add_note")
    return ReclassifyResult(row.id, previous, decision, tuple(enqueued))
