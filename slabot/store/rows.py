"""A stored ticket row and what it is converted to and from, for every use case of the store.

``upsert`` brings a row in line with a snapshot (both ingest paths: ``services`` and
``ingest_batch``); ``engine_ticket`` is the engine's view of a row (ingest, reclassify,
recompute, the reports and the Slack views); ``row_snapshot`` is the row as a snapshot when
no new one came in (an event, a reclassification, a recompute). No session and no clock:
the caller passes ``now``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from bot.compiled import Policy
from bot.ticket import SOLVED_STATUSES, Reclassification, Ticket
from bot.ticket import TEXT_FIELDS as _TEXT_FIELDS
from slabot.store.history import (
    Fact,
    engine_status_changes,
    history_entry,
    policy_changed,
    reopened_at,
)
from slabot.store.models import StoredTicket, TicketEvent
from slabot.store.search import search_text
from slabot.store.snapshot import COPIED_FIELDS, Outcome, Snapshot


def upsert(
    row: StoredTicket | None,
    snapshot: Snapshot,
    policy: Policy,
    rule: str | None,
    now: datetime,
    origin: str,
) -> tuple[StoredTicket, Outcome, list[TicketEvent]]:
    """The ticket ``row`` (None: not stored yet, built here) brought in line with a snapshot
    that is not stale, under ``policy`` (chosen by ``rule``), as both ingest paths apply it:
    the row, whether an engine field moved (``created``, ``updated`` or ``unchanged``; the
    status history is the caller's) and the history entries (not tied to the row yet)."""
    events: list[TicketEvent] = []
    if row is None:
        outcome: Outcome = "created"
        row = StoredTicket(
            source=snapshot.source,
            external_key=snapshot.external_key,
            first_seen_at=now,
            paused=[],
            replies={},  # the column's default, which an ORM insert would apply
            shown={},
        )
        created = history_entry("created", snapshot.created_at, now, payload=_as_json(snapshot))
        events.append(created)
        events.extend(_changes(None, snapshot, now, origin))
    else:
        events.extend(_changes(row, snapshot, now, origin))
        outcome = "unchanged"
        if row.policy != snapshot.policy:
            # Another rule matches now: the clocks are recomputed under the new policy
            # from their own starts (the ticket's instants do not move), as for a
            # reclassification; the breach already reported keeps its cycle's key.
            events.append(policy_changed(row.policy, snapshot.policy, rule, now))
    before = [getattr(row, name) for name in COPIED_FIELDS]
    before_replies = row.replies
    _apply(row, snapshot, policy)
    if outcome == "unchanged" and (
        before != [getattr(row, n) for n in COPIED_FIELDS] or before_replies != row.replies
    ):
        outcome = "updated"
    row.shown = dict(snapshot.shown)
    row.search_text = search_text(row.source, row.external_key, row.shown)
    if snapshot.routing:
        row.routing = dict(snapshot.routing)
    row.shown_at = now
    row.source_updated_at = max(filter(None, (row.source_updated_at, snapshot.updated_at)))
    row.updated_at = now
    return row, outcome, events


def _changes(
    row: StoredTicket | None, snapshot: Snapshot, now: datetime, origin: str
) -> Iterator[TicketEvent]:
    """History entries for the move from ``row`` (None: not seen before) to ``snapshot``."""
    at = snapshot.updated_at
    old_status = row.status if row is not None else None
    new_status = snapshot.status
    if old_status != new_status and not (old_status is None and new_status in ("new", "open")):
        yield history_entry(
            "status_changed", at, now, payload={"from": old_status, "to": new_status}
        )
        was_solved = old_status in SOLVED_STATUSES
        if new_status in SOLVED_STATUSES and not was_solved:
            assert snapshot.solved_at is not None  # checked by normalized
            yield history_entry("solved", snapshot.solved_at, now)
        elif was_solved and new_status not in SOLVED_STATUSES:
            yield history_entry("reopened", reopened_at(row, snapshot), now)
    old_priority = row.priority if row is not None else None
    if row is not None and old_priority != snapshot.priority:
        yield history_entry(
            "priority_changed",
            at,
            now,
            actor=snapshot.actor,
            origin=origin,
            payload={"field": "requested", "from": old_priority, "to": snapshot.priority},
        )
    replied = None
    first = snapshot.first_response_at
    known_first = row.first_response_at if row is not None else None
    if first is not None and (known_first is None or first < known_first):
        replied = first
        yield history_entry(
            "public_reply", first, now, actor=snapshot.actor, payload={"first": True}
        )
    update = snapshot.last_agent_update_at
    previous = row.last_agent_update_at if row is not None else None
    if update is not None and update != replied and (previous is None or update > previous):
        yield history_entry(
            "public_reply", update, now, actor=snapshot.actor, payload={"first": False}
        )


def _apply(row: StoredTicket, snapshot: Snapshot, policy: Policy) -> None:
    """Copy the snapshot onto the row; keep pauses and restoration cycles in step with it.

    Replies only ever add up: the first response stays the earliest one known and the last
    agent update the latest one, so a snapshot taken before a reply that an event already
    reported (it is not stale: it is newer than the last snapshot) cannot move them back.
    """
    old_status = row.status
    at = snapshot.updated_at
    if old_status in SOLVED_STATUSES and snapshot.status not in SOLVED_STATUSES:
        # A reopened ticket starts a new restoration cycle.
        row.restoration_started_at = reopened_at(row, snapshot)
    pausing = policy.spec.clocks.pausing_statuses
    was_paused = old_status in pausing
    is_paused = snapshot.status in pausing
    spans = [list(span) for span in (row.paused or [])]
    if is_paused and not was_paused:
        spans.append([at.isoformat(), None])
    elif was_paused and not is_paused and spans and spans[-1][1] is None:
        spans[-1][1] = at.isoformat()
    row.paused = spans
    first_response = _earliest(row.first_response_at, snapshot.first_response_at)
    last_update = _latest(row.last_agent_update_at, snapshot.last_agent_update_at)
    for name in COPIED_FIELDS:
        setattr(row, name, getattr(snapshot, name))
    row.first_response_at = first_response
    row.last_agent_update_at = last_update
    if snapshot.agent_replies or snapshot.customer_replies:
        row.replies = _merged_replies(row.replies, snapshot)


def _merged_replies(stored: dict[str, Any] | None, snapshot: Snapshot) -> dict[str, Any]:
    """The replies known so far and the snapshot's: they only ever add up (a snapshot read
    before a reply an event reported cannot take it back)."""
    merged: dict[str, Any] = {}
    for key, given in (("agent", snapshot.agent_replies), ("customer", snapshot.customer_replies)):
        known = {datetime.fromisoformat(text) for text in (stored or {}).get(key, ())}
        known.update(at.astimezone(UTC) for at in given)
        merged[key] = [at.isoformat() for at in sorted(known)]
    return merged


def _earliest(*instants: datetime | None) -> datetime | None:
    known = [instant for instant in instants if instant is not None]
    return min(known) if known else None


def _latest(*instants: datetime | None) -> datetime | None:
    known = [instant for instant in instants if instant is not None]
    return max(known) if known else None


def _as_json(snapshot: Snapshot) -> dict[str, Any]:
    """The snapshot's engine fields, JSON-ready (for the ``created`` entry)."""
    data: dict[str, Any] = {}
    for name in COPIED_FIELDS:
        value = getattr(snapshot, name)
        if value is not None:
            data[name] = value.isoformat() if isinstance(value, datetime) else value
    return data


def _instants(texts: list[str] | None) -> tuple[datetime, ...]:
    return tuple(datetime.fromisoformat(text) for text in texts or ())


def _pause_pairs(spans: list[Any]) -> Iterator[tuple[datetime, datetime | None]]:
    for begin, end in spans:
        yield datetime.fromisoformat(begin), None if end is None else datetime.fromisoformat(end)


_text_fields = attrgetter(*_TEXT_FIELDS)
"""The ticket's text fields, in ``TEXT_FIELDS``' order, in one call (a recompute makes the
engine's view of a thousand rows a batch)."""


def engine_ticket(row: StoredTicket, facts: Iterable[Fact] = ()) -> Ticket:
    """The engine's view of a stored ticket; ``facts``, its stored status entries
    (``stored_facts``), give the engine its status history."""
    reclassification = None
    if row.reclassified_priority is not None and row.reclassified_at is not None:
        reclassification = Reclassification(
            priority=row.reclassified_priority,
            actor=row.reclassified_by or "",
            reason=row.reclassified_reason or "",
            at=row.reclassified_at,
        )
    return Ticket(
        id=row.external_key,
        created_at=row.created_at,
        status=row.status,
        first_response_at=row.first_response_at,
        last_agent_update_at=row.last_agent_update_at,
        solved_at=row.solved_at,
        restoration_started_at=row.restoration_started_at,
        paused=tuple(_pause_pairs(row.paused)),
        reclassification=reclassification,
        agent_replies=_instants((row.replies or {}).get("agent")),
        customer_replies=_instants((row.replies or {}).get("customer")),
        status_changes=engine_status_changes(row, facts),
        **dict(zip(_TEXT_FIELDS, _text_fields(row), strict=True)),
    )


def row_snapshot(row: StoredTicket, at: datetime) -> Snapshot:
    """The stored ticket as a snapshot at ``at``, for ``TicketService.enqueue_writes`` when no
    new snapshot came in (an event, a reclassification, a recompute): it compares with what
    the last snapshot showed (``row.shown``) and keys the writes by ``at``. Only the fields
    ``enqueue_writes`` reads are filled in."""
    return Snapshot(
        source=row.source,
        external_key=row.external_key,
        policy=row.policy,
        updated_at=at,
        created_at=row.created_at,
        shown=dict(row.shown or {}),
    )
