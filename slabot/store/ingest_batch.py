"""Many snapshots in one transaction: ``TicketService.ingest_many``, for backfills and polls.

A page of a helpdesk's export (up to 1,000 tickets) is applied as ``TicketService.ingest``
would apply its snapshots one after the other, to the same stored state, but with the reads
done in bulk (the tickets locked, their decisions, marks, owed writes, status history, clock
outcomes, reclassifications and the write keys already used: one query each), each snapshot
routed as ``ingest`` routes it (the service's router; a ticket moved gets its
``policy_changed`` entry, the decision its policy and rule), the engine's decisions made in
one pass over the page, and the rows written in a few multi-row statements. What a
snapshot guarantees holds for each one: a stale one changes nothing, one applied twice
changes nothing the second time, one that cannot be applied stores nothing of itself and is
reported with its error while the others are stored.

The same ticket twice in a batch: the batch is cut into runs in which each ticket appears
once, each run reading what the runs before it wrote (same transaction). Anything the bulk
path does not expect (a constraint violated by a concurrent writer, a bug) rolls the whole
batch back and it is applied again one snapshot at a time through ``ingest``, so each
snapshot gets its own outcome or error; only an unreachable database stops the batch
(``DatabaseUnavailableError``: nothing of it was stored).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from bot.compiled import Policy
from bot.engine import Decision, evaluate
from bot.errors import SlabotError
from bot.ticket import Ticket
from slabot.store.breaches import decision_marks, list_columns
from slabot.store.bulk import Keys, delete_rows, insert_rows, update_rows
from slabot.store.decisions import decision_values, stored_view
from slabot.store.history import (
    STATUS_KINDS,
    Fact,
    derive_from_facts,
    new_status_entries,
    reads_status_history,
    stored_facts,
)
from slabot.store.models import (
    ClockOutcome,
    OutboxItem,
    StoredDecision,
    StoredTicket,
    TargetMark,
    TicketEvent,
)
from slabot.store.reports import plan_outcomes, reclassifications
from slabot.store.retry import DatabaseUnavailableError, with_retry
from slabot.store.rows import engine_ticket, upsert
from slabot.store.snapshot import IngestError, IngestResult, Snapshot, normalized
from slabot.store.writes import desired_writes, idempotency_key, outbox_row, settle, unplaced_notes

if TYPE_CHECKING:
    from slabot.store.services import TicketService

Ingested = IngestResult | Exception

log = logging.getLogger(__name__)

CHUNK = 500
"""Values per ``IN (...)`` list: well under SQLite's and PostgreSQL's parameter limits."""

Ready = tuple[int, "Snapshot", Policy, str | None]
"""A snapshot to apply: its place in the batch, itself (normalized, under the policy the
router chose), that policy, and the routing rule that chose it (None without a router)."""


@dataclass(slots=True)
class _Planned:
    """One snapshot of a run, computed in memory, waiting for the run's writes."""

    index: int
    snapshot: Snapshot
    row: StoredTicket
    outcome: str
    events: list[TicketEvent]
    decision: Decision
    now: datetime
    needs_id: list[tuple[Table, dict[str, Any]]] = field(default_factory=list)
    """New rows of other tables (decision, marks, owed writes) that take the ticket's id
    once it has one."""
    updates: list[tuple[Table, dict[str, Any]]] = field(default_factory=list)
    """Stored rows to change (``b_key``: the row's key), written in bulk."""
    deletes: list[tuple[Table, dict[str, Any]]] = field(default_factory=list)
    """Stored rows to delete (marks no longer carried), by their key."""
    writes: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    """Owed writes (kind, payload, idempotency key), pending the check of their keys."""
    notes: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    """Unplaced-value notes (key, note, payload), pending the same check."""


def ingest_many(service: TicketService, snapshots: Sequence[Snapshot]) -> list[Ingested]:
    """Per snapshot, in order, its ``IngestResult`` or the exception that kept it out
    (``IngestError`` for a snapshot that cannot be applied). ``DatabaseUnavailableError``
    is raised, not returned: the database, not a snapshot, is at fault, and nothing of the
    batch was stored."""
    results: list[Ingested | None] = [None] * len(snapshots)
    ready: list[Ready] = []
    for index, snapshot in enumerate(snapshots):
        try:
            normal, rule = service._routed(normalized(snapshot))
            ready.append((index, normal, service._policy(normal), rule))
        except IngestError as error:
            results[index] = error
    if ready:
        try:
            done = with_retry(
                service.engine,
                lambda session: _apply_batch(service, session, ready),
                policy=service.retry,
                what=f"ingesting a batch of {len(ready)} tickets",
            )
        except DatabaseUnavailableError:
            raise
        except Exception as error:
            log.info(
                "a batch of %d snapshots could not be applied at once (%s: %s); applying "
                "them one by one",
                len(ready),
                type(error).__name__,
                error,
            )
            done = _one_by_one(service, [(item[0], snapshots[item[0]]) for item in ready])
        else:
            for index, outcome in done.items():
                if isinstance(outcome, Exception):
                    continue
                # Once per ticket and value (the note's key), after the commit, as ``ingest``.
                for warning in outcome.warnings:
                    shown = snapshots[index]
                    log.warning(
                        "ticket %s:%s stored: %s", shown.source, shown.external_key, warning
                    )
        for index, outcome in done.items():
            results[index] = outcome
    assert all(outcome is not None for outcome in results)
    return [outcome for outcome in results if outcome is not None]


def _one_by_one(
    service: TicketService, snapshots: list[tuple[int, Snapshot]]
) -> dict[int, Ingested]:
    """The fallback: each snapshot through ``ingest`` (which logs its warnings itself)."""
    done: dict[int, Ingested] = {}
    for index, snapshot in snapshots:
        try:
            done[index] = service.ingest(snapshot)
        except DatabaseUnavailableError:
            raise
        except Exception as error:  # this snapshot's outcome; the others go on
            done[index] = error
    return done


def _runs(ready: list[Ready]) -> Iterator[list[Ready]]:
    """Consecutive runs in which each ticket appears at most once (order kept)."""
    run: list[Ready] = []
    seen: set[tuple[str, str]] = set()
    for item in ready:
        key = (item[1].source, item[1].external_key)
        if key in seen:
            yield run
            run, seen = [], set()
        run.append(item)
        seen.add(key)
    if run:
        yield run


def _apply_batch(
    service: TicketService, session: Session, ready: list[Ready]
) -> dict[int, Ingested]:
    done: dict[int, Ingested] = {}
    for run in _runs(ready):
        done.update(_apply_run(service, session, run))
        # The next run reads what this one wrote as ``ingest`` would: from the database.
        session.expire_all()
    return done


@dataclass(slots=True)
class _Pending:
    """An owed write not done yet, as ``enqueue_writes`` reads it."""

    id: int
    target_system: str
    kind: str
    payload: Any


@dataclass(slots=True)
class _Stored:
    """What the store holds for the tickets of a run, read in bulk before anything moves."""

    rows: dict[tuple[str, str], StoredTicket]
    """The stored tickets, as plain objects (``_StoredRow``)."""
    read: dict[int, dict[str, Any]]
    """Per ticket: its columns as read, which ``_changed_values`` compares the row with."""
    decisions: set[int]
    """The tickets that have a stored decision."""
    marks: dict[int, dict[tuple[str, int], tuple[datetime, datetime]]]
    """Per ticket: (target, threshold) -> (at, cycle start)."""
    pending: dict[int, list[_Pending]]
    event_keys: dict[int, set[str]]
    """Per ticket with status history in its snapshot: the keys of its stored entries that
    the snapshot carries too."""
    facts: dict[int, list[tuple[str, datetime, Any]]]
    outcomes: dict[int, list[dict[str, Any]]]
    """Per ticket: its clock cycles (``clock_outcomes`` rows, column -> value)."""
    reclassified: dict[int, tuple[int, str | None]]
    """Per reclassified ticket: what ``store_outcomes`` counts in its history."""


def _read(session: Session, run: list[Ready]) -> _Stored:
    """One query per table for the whole run (in chunks of ``CHUNK``): the tickets, locked
    as ``ingest`` locks its one (``FOR UPDATE``, in id order), and what hangs on them."""
    by_source: dict[str, list[str]] = defaultdict(list)
    for _, snapshot, _, _ in run:
        by_source[snapshot.source].append(snapshot.external_key)
    rows: dict[tuple[str, str], StoredTicket] = {}
    read: dict[int, dict[str, Any]] = {}
    for source, keys in by_source.items():
        for chunk in _chunks(keys):
            query = (
                select(*_TICKETS.columns)
                .where(_TICKETS.c.source == source, _TICKETS.c.external_key.in_(chunk))
                .order_by(_TICKETS.c.id)
                .with_for_update()
            )
            for values in session.execute(query):
                columns = dict(zip(_TICKET_KEYS, values, strict=True))
                read[columns["id"]] = columns
                rows[(source, columns["external_key"])] = cast(StoredTicket, _StoredRow(columns))
    ids = sorted(row.id for row in rows.values())
    decisions: set[int] = set()
    marks: dict[int, dict[tuple[str, int], tuple[datetime, datetime]]] = defaultdict(dict)
    pending: dict[int, list[_Pending]] = defaultdict(list)
    outcomes: dict[int, list[dict[str, Any]]] = defaultdict(list)
    # Plain rows, not ORM objects: what changes is written back in bulk (``_apply_run``).
    for chunk_ids in _chunks(ids):
        decisions.update(
            session.scalars(
                select(StoredDecision.ticket_id).where(StoredDecision.ticket_id.in_(chunk_ids))
            )
        )
        for ticket_id, target, permille, at, cycle in session.execute(
            select(
                TargetMark.ticket_id,
                TargetMark.target,
                TargetMark.threshold_permille,
                TargetMark.at,
                TargetMark.cycle_started_at,
            ).where(TargetMark.ticket_id.in_(chunk_ids))
        ):
            marks[ticket_id][(target, permille)] = (at, cycle)
        for item_id, ticket_id, target_system, kind, payload in session.execute(
            select(
                OutboxItem.id,
                OutboxItem.ticket_id,
                OutboxItem.target_system,
                OutboxItem.kind,
                OutboxItem.payload,
            )
            .where(OutboxItem.ticket_id.in_(chunk_ids), OutboxItem.done_at.is_(None))
            .order_by(OutboxItem.id)
        ):
            pending[ticket_id].append(_Pending(item_id, target_system, kind, payload))
        for stored_cycle in session.execute(
            select(_OUTCOMES).where(_OUTCOMES.c.ticket_id.in_(chunk_ids))
        ).mappings():
            outcomes[stored_cycle["ticket_id"]].append(dict(stored_cycle))
    # The agents' reclassifications, for the tickets reclassified (``_reclassifications``).
    payloads: dict[int, list[Any]] = defaultdict(list)
    for chunk_ids in _chunks(sorted(r.id for r in rows.values() if r.reclassified_at)):
        for ticket_id, payload in session.execute(
            select(TicketEvent.ticket_id, TicketEvent.payload)
            .where(TicketEvent.ticket_id.in_(chunk_ids), TicketEvent.kind == "priority_changed")
            .order_by(TicketEvent.ticket_id, TicketEvent.occurred_at, TicketEvent.id)
        ):
            payloads[ticket_id].append(payload)
    reclassified = {
        row.id: reclassifications(payloads[row.id])
        for row in rows.values()
        if row.reclassified_at is not None
    }
    # Status history: the keys already stored, and the entries derive_from_history reads.
    with_history = {
        rows[(s.source, s.external_key)].id: s
        for _, s, _, _ in run
        if s.status_history and (s.source, s.external_key) in rows
    }
    event_keys: dict[int, set[str]] = defaultdict(set)
    history_ids = sorted(with_history)
    wanted = {c.key for s in with_history.values() for c in s.status_history}
    # The tickets' keyed entries, filtered here: an ``IN`` list of keys beside the one of
    # tickets made SQLite probe the unique index once per pair (a third of the update pass).
    for chunk_ids in _chunks(history_ids):
        for ticket_id, key in session.execute(
            select(TicketEvent.ticket_id, TicketEvent.event_key).where(
                TicketEvent.ticket_id.in_(chunk_ids), TicketEvent.event_key.is_not(None)
            )
        ):
            if key and key in wanted:
                event_keys[ticket_id].add(key)
    # The stored entries: for those, and for the engine under a policy that reads them.
    reading = [
        rows[(s.source, s.external_key)].id
        for _, s, p, _ in run
        if reads_status_history(p) and (s.source, s.external_key) in rows
    ]
    facts = stored_facts(session, [*history_ids, *reading])
    return _Stored(rows, read, decisions, marks, pending, event_keys, facts, outcomes, reclassified)


def _chunks(values: Sequence[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), CHUNK):
        yield list(values[start : start + CHUNK])


def _as_stored(at: datetime) -> datetime:
    """An instant as the database hands it back (``UTCDateTime``: in UTC)."""
    return at.astimezone(UTC)


def _apply_run(service: TicketService, session: Session, run: list[Ready]) -> dict[int, Ingested]:
    """``TicketService._ingest`` for each snapshot of a run (each ticket once), its reads
    answered from ``_read``, its writes made together at the end."""
    stored = _read(session, run)
    done: dict[int, Ingested] = {}
    planned: list[_Planned] = []
    with session.no_autoflush:
        for index, snapshot, policy, rule in run:
            plan = _plan(service, session, stored, index, snapshot, policy, rule)
            if isinstance(plan, Exception):
                done[index] = plan
            elif isinstance(plan, _Planned):
                planned.append(plan)
            else:
                done[index] = plan  # stale
        # The write keys already used, in bulk (ingest asks once per write).
        candidates = [key for plan in planned for _, _, key in plan.writes]
        candidates += [key for plan in planned for key, _, _ in plan.notes]
        used: set[str] = set()
        for chunk in _chunks(sorted(set(candidates))):
            used.update(
                session.scalars(
                    select(OutboxItem.idempotency_key).where(OutboxItem.idempotency_key.in_(chunk))
                )
            )
    # Writes: the new tickets first (their ids), then everything that hangs on them.
    # The stored tickets are written back in bulk, not by the ORM row by row.
    changed = [
        values
        for plan in planned
        if plan.outcome != "created" and (values := _changed_values(plan.row, stored.read))
    ]
    new_rows = [plan.row for plan in planned if plan.outcome == "created"]
    if new_rows:
        # Inserted in their order (executemany), then their ids read back by key: a RETURNING
        # in parameter order would go row by row on SQLite.
        insert_rows(session, _TICKETS, [_row_values(row) for row in new_rows])
        by_key = {(row.source, row.external_key): row for row in new_rows}
        for source in {row.source for row in new_rows}:
            keys = [key for (of, key) in by_key if of == source]
            for chunk in _chunks(keys):
                for ticket_id, key in session.execute(
                    select(_TICKETS.c.id, _TICKETS.c.external_key).where(
                        _TICKETS.c.source == source, _TICKETS.c.external_key.in_(chunk)
                    )
                ):
                    by_key[(source, key)].id = ticket_id
    updates: dict[Table, list[dict[str, Any]]] = defaultdict(list)
    updates[_TICKETS] = changed
    deletes: dict[Table, list[dict[str, Any]]] = defaultdict(list)
    for plan in planned:
        for table, values in plan.updates:
            updates[table].append(values)
        for table, key_values in plan.deletes:
            deletes[table].append(key_values)
    for table, table_rows in updates.items():
        for same in _same_keys(table_rows):
            update_rows(session, table, _keys(table), same)
    for table, table_rows in deletes.items():
        delete_rows(session, table, _keys(table), table_rows)
    inserts: dict[Any, list[dict[str, Any]]] = {table: [] for table in _DEPENDENTS}
    results: list[tuple[_Planned, list[str], list[str]]] = []
    for plan in planned:
        row = plan.row
        enqueued: list[str] = []
        for kind, payload, key in plan.writes:
            if key in used:
                continue  # this very write, for this very snapshot, was already made
            plan.needs_id.append(_owed(row, kind, payload, key, plan.now))
            enqueued.append(kind)
        warnings: list[str] = []
        for key, note, payload in plan.notes:
            if key in used:
                continue
            plan.needs_id.append(_owed(row, "add_note", payload, key, plan.now))
            warnings.append(note)
        enqueued.extend("add_note" for _ in warnings)
        for entry in plan.events:
            inserts[_EVENTS].append(_values(entry, row.id))
        for table, values in plan.needs_id:
            inserts[table].append({**values, "ticket_id": row.id})
        results.append((plan, enqueued, warnings))
    # In the order ``ingest`` writes them, so each table's ids come in the same order.
    for table, table_rows in inserts.items():
        insert_rows(session, table, table_rows)
    for plan, enqueued, warnings in results:
        done[plan.index] = IngestResult(
            plan.row.id,
            plan.outcome,  # type: ignore[arg-type]
            tuple(e.kind for e in plan.events),
            plan.decision,
            tuple(enqueued),
            tuple(warnings),
        )
    return done


_TICKETS = cast(Table, StoredTicket.__table__)
_EVENTS = cast(Table, TicketEvent.__table__)
_OUTCOMES = cast(Table, ClockOutcome.__table__)
_DEPENDENTS = (
    _EVENTS,
    cast(Table, StoredDecision.__table__),
    cast(Table, TargetMark.__table__),
    cast(Table, OutboxItem.__table__),
    _OUTCOMES,
)
"""The tables a ticket's id is written into, inserted in bulk (multi-row statements)."""


def _mark_key(ticket_id: int, target: str, permille: int) -> dict[str, Any]:
    return {"b_ticket": ticket_id, "b_target": target, "b_permille": permille}


def _keys(table: Table) -> Keys:
    """The columns a bulk update or delete parameter set names its row by (``b_*``)."""
    if table is _DEPENDENTS[2]:
        return {
            "b_ticket": table.c.ticket_id,
            "b_target": table.c.target,
            "b_permille": table.c.threshold_permille,
        }
    if table is _OUTCOMES:
        return {
            "b_ticket": table.c.ticket_id,
            "b_target": table.c.target,
            "b_cycle": table.c.cycle_started_at,
        }
    if table is _DEPENDENTS[1]:
        return {"b_key": table.c.ticket_id}
    return {"b_key": table.c.id}


def _row_values(row: StoredTicket) -> dict[str, Any]:
    """A stored ticket's columns as ``_apply`` and the history left them."""
    return {
        column.key: getattr(row, column.key) for column in _TICKETS.columns if column.key != "id"
    }


def _changed_values(row: StoredTicket, read: Mapping[int, dict[str, Any]]) -> dict[str, Any] | None:
    """The columns of a stored ticket whose value ``_apply`` and the history changed, with
    its key (``b_key``), or None if they changed none: what the ORM's flush writes for
    ``ingest`` (each column whose value differs from the one read, compared as the column's
    type compares; a JSON document is replaced, never changed in place), not every column of
    every row."""
    before = read[row.id]
    values = {
        key: value
        for key, same in _TICKET_COLUMNS.items()
        if not same(value := getattr(row, key), before[key])
    }
    return {"b_key": row.id, **values} if values else None


class _StoredRow:
    """A stored ticket as the batch reads it: a plain object with one attribute per column
    (``_read``), which ``upsert`` and the helpers it shares with ``ingest`` read and set as
    they do a ``StoredTicket``'s. The ORM's instrumentation of those reads and sets (dozens
    of sets and a hundred-odd reads a snapshot) cost more than the rest of ``upsert``; what
    changed is found by comparison with the values read (``_changed_values``)."""

    def __init__(self, columns: dict[str, Any]) -> None:
        self.__dict__.update(columns)


_TICKET_KEYS = tuple(column.key for column in _TICKETS.columns)
_TICKET_COLUMNS = {
    column.key: column.type.compare_values for column in _TICKETS.columns if column.key != "id"
}
"""The columns a stored ticket's update may set, each with how its type compares values."""


def _same_keys(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """The rows grouped by the columns they set (one multi-row statement per group)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for values in rows:
        groups[tuple(values)].append(values)
    yield from groups.values()


def _values(entry: TicketEvent, ticket_id: int) -> dict[str, Any]:
    """A history entry built by the helpers ``ingest`` uses, as the row to insert."""
    # A new entry's instance dict holds what was set; a column never set reads None, as
    # ``getattr`` reads it (without the attribute instrumentation).
    given = entry.__dict__
    values = {key: given.get(key) for key in _EVENT_COLUMNS}
    values["ticket_id"] = ticket_id
    values["payload"] = values["payload"] if values["payload"] is not None else {}
    return values


_EVENT_COLUMNS = tuple(column.key for column in _EVENTS.columns if column.key != "id")


def _owed(
    row: StoredTicket, kind: str, payload: dict[str, Any], key: str, now: datetime
) -> tuple[Table, dict[str, Any]]:
    """An outbox row, as ``ingest`` owes it (not sent yet, due now); its ticket id is set
    with the others' (``needs_id``)."""
    return _DEPENDENTS[3], outbox_row(row.source, row.id, kind, payload, key, now)


def _plan(
    service: TicketService,
    session: Session,
    stored: _Stored,
    index: int,
    snapshot: Snapshot,
    policy: Policy,
    rule: str | None,
) -> _Planned | Ingested:
    """What ``TicketService._ingest`` does to one snapshot, step for step, in memory: the
    row upserted, the history appended, the decision, its marks and the owed writes; a
    stale snapshot's result, or the ``IngestError`` of one the engine cannot evaluate (its
    row is then left as stored)."""
    now = service.now()
    row = stored.rows.get((snapshot.source, snapshot.external_key))
    if row is not None and row.source_updated_at and snapshot.updated_at < row.source_updated_at:
        return IngestResult(row.id, "stale", (), None, ())
    row, outcome, events = upsert(row, snapshot, policy, rule, now, service.origin)
    # The engine's view of the row, built once it is final and shared by the evaluation
    # (without facts it is the same ticket) and the marks and cycles (``_plan_decision``).
    ticket = engine_ticket(row)
    if snapshot.status_history:
        before_history = ticket
        events.extend(_status_history(stored, row, snapshot, policy, now, events))
        ticket = engine_ticket(row)
        if outcome == "unchanged" and ticket != before_history:
            outcome = "updated"
    facts = _facts(stored, row, events) if reads_status_history(policy) else []
    try:
        decision = evaluate(engine_ticket(row, facts) if facts else ticket, policy, now)
    except SlabotError as error:
        if outcome != "created":
            row.__dict__.update(stored.read[row.id])  # as ``ingest``'s rollback leaves it
        return IngestError(f"ticket {snapshot.source}:{snapshot.external_key}: {error}")
    plan = _Planned(index, snapshot, row, outcome, events, decision, now)
    _plan_decision(service, stored, plan, ticket, policy, rule)
    plan.writes = _plan_writes(service, stored, plan)
    plan.notes = unplaced_notes(row, policy, decision)
    return plan


def _status_history(
    stored: _Stored,
    row: StoredTicket,
    snapshot: Snapshot,
    policy: Policy,
    now: datetime,
    so_far: list[TicketEvent],
) -> list[TicketEvent]:
    """``slabot.store.history.apply_status_history`` over the keys and entries read in bulk: the
    stored entries, then this snapshot's (``so_far`` and those appended here) in the order
    ``ingest`` inserts them, which is the order of their ids."""
    stored_id = row.id
    known = set(stored.event_keys.get(stored_id, ())) if stored_id is not None else set()
    appended = new_status_entries(row, snapshot.status_history, known, now)
    if appended:
        derive_from_facts(row, policy, _facts(stored, row, (*so_far, *appended)))
    return appended


def _facts(stored: _Stored, row: StoredTicket, entries: Iterable[TicketEvent]) -> list[Fact]:
    """The row's status entries as ``ingest`` reads them back: the stored ones, then the
    new ``entries`` in the order it inserts them (the order of their ids)."""
    stored_id = row.id
    facts = list(stored.facts.get(stored_id, ())) if stored_id is not None else []
    facts += [
        (entry.kind, _as_stored(entry.occurred_at), entry.payload)
        for entry in entries
        if entry.kind in STATUS_KINDS
    ]
    facts.sort(key=lambda fact: fact[1])  # stable: the stored ones first on a tie
    return facts


def _plan_decision(
    service: TicketService,
    stored: _Stored,
    plan: _Planned,
    ticket: Ticket,
    policy: Policy,
    rule: str | None,
) -> None:
    """``TicketService.store_decision``: the decision row (with its policy and routing
    rule), the marks and the clock cycles, only the marks and cycles that differ touched;
    ``ticket`` is the engine's view of the row as applied (``engine_ticket``, no facts)."""
    row, decision, now = plan.row, stored_view(plan.decision), plan.now
    values = {**decision_values(decision, now), "policy": policy.name, "routing_rule": rule}
    if row.id is not None and row.id in stored.decisions:
        plan.updates.append((_DEPENDENTS[1], {"b_key": row.id, **values}))
    else:
        plan.needs_id.append((_DEPENDENTS[1], values))
    marks = decision_marks(ticket, policy, decision, now, service.thresholds)
    existing = dict(stored.marks.get(row.id, {})) if row.id is not None else {}
    for mark in marks:
        found = existing.pop((mark.target, mark.threshold_permille), None)
        if found is None:
            new_mark = {
                "target": mark.target,
                "threshold_permille": mark.threshold_permille,
                "at": mark.at,
                "cycle_started_at": mark.cycle_started_at,
                "source": row.source,
                "external_key": row.external_key,
            }
            plan.needs_id.append((_DEPENDENTS[2], new_mark))
            continue
        at, cycle = found
        if at != mark.at or cycle != mark.cycle_started_at:
            changed = {"at": mark.at, "cycle_started_at": mark.cycle_started_at}
            keys = _mark_key(row.id, mark.target, mark.threshold_permille)
            plan.updates.append((_DEPENDENTS[2], {**keys, **changed}))
    for mark_target, permille in existing:
        plan.deletes.append((_DEPENDENTS[2], _mark_key(row.id, mark_target, permille)))
    _plan_outcomes(stored, plan, ticket, policy, decision)
    list_columns(row, marks)  # the dashboard's columns, written back with the row


@dataclass(slots=True)
class _Cycle:
    """A ``clock_outcomes`` row as a plain object: ``plan_outcomes`` sets a ``ClockOutcome``'s
    attributes, which on thousands of ORM objects costs more than the rest of the cycles'
    work (``test_the_plain_cycle_copy_has_every_column`` keeps the two alike)."""

    ticket_id: int | None
    target: str
    cycle_started_at: datetime
    due: datetime | None = None
    stopped_at: datetime | None = None
    used_seconds: int | None = None
    paused_seconds: int = 0
    evaluated_at: datetime | None = None
    policy: str = ""
    source: str = ""
    external_key: str = ""
    plan: str | None = None
    commitment: str | None = None
    priority: str = ""
    created_priority: str = ""
    reclassifications: int = 0
    first_cycle: bool = False
    lead: bool = False
    organization: str | None = None
    queue: str | None = None
    assignee: str | None = None


_CYCLE_COLUMNS = tuple(column.key for column in _OUTCOMES.columns if column.key != "ticket_id")
"""A cycle's columns but the ticket id (an update does not set it; a new ticket's cycle
takes its id once it has one)."""


def _plan_outcomes(
    stored: _Stored, plan: _Planned, ticket: Ticket, policy: Policy, decision: Decision
) -> None:
    """``store_outcomes`` over the cycles read in bulk: ``plan_outcomes`` brings plain
    copies of them in line with the decision; the cycles it added, removed or changed are
    written in bulk, by their key (ticket, target, start)."""
    row = plan.row
    ticket_id = row.id
    read = stored.outcomes.get(ticket_id, []) if ticket_id is not None else []
    cycles = [_Cycle(**values) for values in read]
    copies = list(cycles)  # plan_outcomes appends the cycles it adds to ``cycles``
    reclassified = stored.reclassified.get(ticket_id, (0, None)) if ticket_id else (0, None)

    def new_cycle(target: str, started_at: datetime) -> _Cycle:
        return _Cycle(ticket_id, target, started_at)

    added, removed = plan_outcomes(
        cycles, new_cycle, reclassified, row, ticket, policy, decision, plan.now
    )
    gone = {id(cycle) for cycle in removed}
    for values, cycle in zip(read, copies, strict=True):
        key = {
            "b_ticket": ticket_id,
            "b_target": values["target"],
            "b_cycle": values["cycle_started_at"],
        }
        if id(cycle) in gone:
            plan.deletes.append((_OUTCOMES, key))
            continue
        # Only the columns that changed (most often the evaluation instant alone).
        differ = {
            name: now for name in _CYCLE_COLUMNS if (now := getattr(cycle, name)) != values[name]
        }
        if differ:
            plan.updates.append((_OUTCOMES, {**key, **differ}))
    for cycle in added:
        plan.needs_id.append((_OUTCOMES, {name: getattr(cycle, name) for name in _CYCLE_COLUMNS}))


def _plan_writes(
    service: TicketService, stored: _Stored, plan: _Planned
) -> list[tuple[str, dict[str, Any], str]]:
    """``TicketService.enqueue_writes`` for a snapshot just applied: owed writes that became
    moot are settled as superseded now; the writes to owe are returned with their keys,
    which ``_apply_run`` checks in bulk. (Nothing can have been sent since ``shown`` was read
    just now, so no sent-but-not-echoed write is looked for, as in ``ingest``.)"""
    row, snapshot, now = plan.row, plan.snapshot, plan.now
    wanted = desired_writes(plan.decision, snapshot.shown, service._managed_tags[snapshot.policy])
    pending = [
        item
        for item in (stored.pending.get(row.id, ()) if row.id is not None else ())
        if item.target_system == row.source
    ]
    moot, owing = settle(wanted, pending, isinstance(snapshot.shown.get("due"), Mapping))
    for item, why in moot:
        settled = {"b_key": item.id, "done_at": now, "next_attempt_at": None, "last_error": why}
        plan.updates.append((_DEPENDENTS[3], settled))
    return [
        (kind, payload, idempotency_key(row, kind, payload, snapshot.updated_at))
        for kind, payload in owing
    ]
