"""A ticket's status history: the entries a status change appends, and what it implies.

Shared by ``EventService`` (one status event at a time) and ``TicketService.ingest`` (a
snapshot's ``status_history``): a status change older than the ticket's current status is
recorded, not applied; pauses and the current restoration cycle are then derived from the
whole history in time order, so a late change still opens or closes the pause it belongs to.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.compiled import Policy
from bot.policy import TARGETS
from bot.ticket import SOLVED_STATUSES, STATUSES
from slabot.store.models import StoredTicket, TicketEvent

if TYPE_CHECKING:
    from slabot.store.snapshot import Snapshot, StatusChange

StatusKind = Literal["status_changed", "solved", "reopened"]
STATUS_KINDS: tuple[StatusKind, ...] = ("status_changed", "solved", "reopened")
"""The history entries that say what the status was when."""
DELETED = "deleted"
"""Not a ticket status: the helpdesk had the ticket deleted (in its trash) from then until
the next status change (its restoration). A span with no working status: it pauses the
clocks a waiting status pauses, whatever the status before, and neither solves nor reopens
the ticket. Only a source's history carries it (a deleted ticket is not ingested)."""


def status_entries(
    row: StoredTicket,
    kind: StatusKind,
    to: str,
    at: datetime,
    actor: str | None,
    now: datetime,
) -> list[TicketEvent]:
    """The history entries for one status event, and the row moved by it: ``kind``
    ``status_changed`` (the status became ``to`` at ``at``), ``solved`` or ``reopened`` (into
    ``to``). The row moves only when the event is not older than the status it has (ties:
    the later arrival wins); an older one is recorded as ``stale`` for
    ``derive_from_history``. The first entry is the event's own (the one to key)."""
    current = row.status
    if to == DELETED:
        # Recorded for derive_from_history; the row keeps its (working) status.
        payload: dict[str, Any] = {"from": current, "to": to}
        if at < (row.source_updated_at or row.created_at):
            payload = {"from": None, "to": to, "stale": True}
        return [history_entry("status_changed", at, now, actor, payload)]
    if kind == "solved" and current in SOLVED_STATUSES:
        to = current  # already solved or closed: the status stays
    as_of = row.source_updated_at or row.created_at
    if at < as_of:
        stale = {"from": None, "to": to, "stale": True}
        entries = [history_entry("status_changed", at, now, actor, stale)]
        if kind in ("solved", "reopened"):
            entries.insert(0, history_entry(kind, at, now, actor, {"stale": True}))
        if kind == "solved" and row.solved_at is None:
            row.solved_at = at  # kept for the record; it counts only while solved
        return entries

    entries = [history_entry("status_changed", at, now, actor, {"from": current, "to": to})]
    solving = to in SOLVED_STATUSES and current not in SOLVED_STATUSES
    reopening = current in SOLVED_STATUSES and to not in SOLVED_STATUSES
    if solving or kind == "solved":
        entries.append(history_entry("solved", at, now, actor))
        if solving:
            row.solved_at = at
    if reopening or kind == "reopened":
        entries.append(history_entry("reopened", at, now, actor))
        if row.restoration_started_at is None or at > row.restoration_started_at:
            row.restoration_started_at = at
    if kind in ("solved", "reopened"):
        # The event's own entry first: it carries the event key.
        own = next(e for e in entries if e.kind == kind)
        entries.remove(own)
        entries.insert(0, own)
    row.status = to
    row.source_updated_at = at
    return entries


def derive_from_history(session: Session, row: StoredTicket, policy: Policy) -> None:
    """Pauses and the restoration cycle from the whole status history, in time order.

    The history holds every status change slabot saw (from snapshots and from events, late
    ones included); the ticket's current status, as of ``source_updated_at``, closes it. A
    span in a pausing status, or ``deleted``, is a pause; the last move out of
    ``solved``/``closed``, or the last ``reopened`` entry, starts the current restoration
    cycle.

    Everything is derived from the entries alone, never from what the row held before: a
    value inferred from a partial history (the current status closing a history that ends
    in ``solved`` looks like a reopening at ``source_updated_at``) must not outlive the
    entries that later show when the reopening really was (issue 14: a Jira issue first
    seen after its reopening got its restoration cycle from its ``updated`` time).
    """
    facts = session.execute(
        select(TicketEvent.kind, TicketEvent.occurred_at, TicketEvent.payload)
        .where(TicketEvent.ticket_id == row.id, TicketEvent.kind.in_(STATUS_KINDS))
        .order_by(TicketEvent.occurred_at, TicketEvent.id)
    ).all()
    derive_from_facts(row, policy, [(kind, at, payload) for kind, at, payload in facts])


def derive_from_facts(
    row: StoredTicket, policy: Policy, facts: Iterable[tuple[str, datetime, Any]]
) -> None:
    """``derive_from_history`` over the status entries given, ``(kind, occurred_at,
    payload)`` in time order (ties: in the order they were appended), as the database
    returns them: what a batched ingest uses, which read the stored ones in bulk."""
    pausing = policy.spec.clocks.pausing_statuses
    spans: list[list[datetime | None]] = []
    status: str | None = None
    deleted = False
    cycle: datetime | None = None
    last = row.created_at

    def move(to: str, at: datetime) -> None:
        nonlocal status, cycle, deleted
        was_paused = deleted or status in pausing
        if to == DELETED:
            # No working status: paused from here; ``status`` stays the one it had, so a
            # solved ticket deleted and restored as solved is not reopened.
            if not was_paused:
                spans.append([at, None])
            deleted = True
            return
        deleted = False
        if to in pausing and not was_paused:
            spans.append([at, None])
        elif was_paused and to not in pausing and spans:
            spans[-1][1] = at
        if status in SOLVED_STATUSES and to not in SOLVED_STATUSES:
            cycle = at if cycle is None else max(cycle, at)
        status = to

    for kind, at, payload in facts:
        last = max(last, at)
        if kind == "status_changed":
            to = (payload or {}).get("to")
            if isinstance(to, str):
                move(to, at)
        elif kind == "solved":
            if status not in SOLVED_STATUSES:
                move("solved", at)
        else:  # reopened: the source says a new restoration cycle began here
            cycle = at if cycle is None else max(cycle, at)
    move(row.status, max(last, row.source_updated_at or last))

    derived = [
        [begin.isoformat() if begin else None, end.isoformat() if end else None]
        for begin, end in spans
    ]
    if _instants(derived) != _instants(row.paused or []):
        row.paused = derived
    row.restoration_started_at = cycle


Fact = tuple[str, datetime, Any]
"""A status entry of the history as ``derive_from_facts`` reads it: ``(kind, occurred_at,
payload)``."""


def reads_status_history(policy: Policy) -> bool:
    """Whether the engine reads a ticket's status history under ``policy``: only the metrics
    beyond the classic three do (docs/metrics.md), so only then is it loaded."""
    return len(policy.metric_names) > len(TARGETS)


def stored_facts(session: Session, ticket_ids: Sequence[int]) -> dict[int, list[Fact]]:
    """The status entries of each of these tickets, in time order (ties: in the order they
    were appended), read in bulk (one query per 500 tickets)."""
    facts: dict[int, list[Fact]] = {}
    ids = sorted(set(ticket_ids))
    for start in range(0, len(ids), 500):
        for ticket_id, kind, at, payload in session.execute(
            select(
                TicketEvent.ticket_id,
                TicketEvent.kind,
                TicketEvent.occurred_at,
                TicketEvent.payload,
            )
            .where(
                TicketEvent.ticket_id.in_(ids[start : start + 500]),
                TicketEvent.kind.in_(STATUS_KINDS),
            )
            .order_by(TicketEvent.ticket_id, TicketEvent.occurred_at, TicketEvent.id)
        ):
            facts.setdefault(ticket_id, []).append((kind, at, payload))
    return facts


def engine_status_changes(
    row: StoredTicket, facts: Iterable[Fact]
) -> tuple[tuple[datetime, str], ...]:
    """The stored status history as the engine reads it (``Ticket.status_changes``): each
    status the ticket entered, in time order, from the status before the first change (its
    ``from``, at the creation) to the row's current status, which closes it as in
    ``derive_from_facts``. ``deleted`` spans are not statuses (the pauses hold them); a
    history with no status change gives none, and the engine falls back on the row's
    summary fields (docs/metrics.md)."""
    created = row.created_at
    changes: list[tuple[datetime, str]] = []
    for kind, at, payload in facts:
        if kind != "status_changed" or at < created:
            continue
        to = (payload or {}).get("to")
        if to not in STATUSES:
            continue  # deleted, or nothing the engine knows
        if not changes:
            before = (payload or {}).get("from")
            if at > created and before in STATUSES:
                changes.append((created, before))
        changes.append((at, to))
    if not changes:
        return ()
    if changes[-1][1] != row.status:
        changes.append((max(changes[-1][0], row.source_updated_at or created), row.status))
    return tuple(changes)


def _instants(spans: Iterable[Any]) -> list[tuple[datetime, datetime | None]]:
    return [
        (datetime.fromisoformat(begin), None if end is None else datetime.fromisoformat(end))
        for begin, end in spans
    ]


def history_entry(
    kind: str,
    at: datetime,
    now: datetime,
    actor: str | None = None,
    payload: dict[str, Any] | None = None,
    *,
    origin: str | None = None,
) -> TicketEvent:
    """A history entry (not yet added to a session or tied to a ticket); ``origin``: where
    a priority change was made (``PRIORITY_ORIGINS``)."""
    return TicketEvent(
        kind=kind,
        occurred_at=at,
        recorded_at=now,
        actor=actor,
        origin=origin,
        payload=payload or {},
    )


def apply_status_history(
    session: Session,
    row: StoredTicket,
    changes: Sequence[StatusChange],
    policy: Policy,
    now: datetime,
) -> list[TicketEvent]:
    """Append a snapshot's status changes the history does not hold yet (by key), in time
    order, as ``EventService.status_changed`` would; then derive the pauses and the
    restoration cycle from the whole history. Returns the entries appended (``ingest``;
    ``ingest_many`` reads the keys and entries in bulk)."""
    keys = sorted({change.key for change in changes})
    known: set[str] = set()
    for start in range(0, len(keys), 500):
        known.update(
            key
            for key in session.scalars(
                select(TicketEvent.event_key).where(
                    TicketEvent.ticket_id == row.id,
                    TicketEvent.event_key.in_(keys[start : start + 500]),
                )
            )
            if key
        )
    appended = new_status_entries(row, changes, known, now)
    for entry in appended:
        entry.ticket_id = row.id
    session.add_all(appended)
    if appended:
        session.flush()
        derive_from_history(session, row, policy)
    return appended


def new_status_entries(
    row: StoredTicket, changes: Iterable[StatusChange], known: set[str], now: datetime
) -> list[TicketEvent]:
    """The history entries of the status changes not held yet, the row moved by them: in
    time order, those whose key is not in ``known`` (added to it) and not dated before the
    ticket was created; each change's first entry keyed by it (not tied to the row yet)."""
    appended: list[TicketEvent] = []
    for change in sorted(changes, key=lambda c: c.at):
        if change.key in known or change.at < row.created_at:
            continue
        known.add(change.key)
        entries = status_entries(row, "status_changed", change.to, change.at, change.actor, now)
        entries[0].event_key = change.key
        appended.extend(entries)
    return appended


def policy_changed(old: str, new: str, rule: str | None, now: datetime) -> TicketEvent:
    """The history entry of a ticket moved from policy ``old`` to ``new`` by ``rule``."""
    entry = history_entry(
        "policy_changed",
        now,
        now,
        actor="slabot",
        origin="policy",
        payload={"from": old, "to": new, "rule": rule},
    )
    entry.reason = (
        f"routing rule {rule!r} matches: evaluated under policy {new} (was {old})"
        if rule is not None
        else f"evaluated under policy {new} (was {old})"
    )
    return entry


def reopened_at(row: StoredTicket | None, snapshot: Snapshot) -> datetime:
    """When a ticket stored as solved and now shown open was reopened: the source's own
    history says so when it holds the move out of ``solved``/``closed`` (after the solve
    stored, at or before the snapshot); else the snapshot's ``updated_at``, the earliest
    instant known to follow it. A ticket seen hours after its reopening thus keeps the
    reopening's instant (issue 14), whether its history came with this snapshot or before.
    """
    solved_at = row.solved_at if row is not None else None
    reopened: datetime | None = None
    status: str | None = None
    for change in sorted(snapshot.status_history, key=lambda c: c.at):
        if change.to == DELETED:
            continue  # no working status: neither solves nor reopens
        if status in SOLVED_STATUSES and change.to not in SOLVED_STATUSES:
            reopened = change.at
        status = change.to
    if (
        reopened is not None
        and reopened <= snapshot.updated_at
        and (solved_at is None or reopened >= solved_at)
    ):
        return reopened
    return snapshot.updated_at
