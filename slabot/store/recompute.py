"""Recompute: every open ticket of a policy re-evaluated against the loaded version of it,
or every open ticket routed again by the service's routing rules.

Streamed, so memory stays flat however many tickets are stored: tickets are read in keyed
batches (``id > the last id seen``, in id order, ``batch_size`` at a time; on PostgreSQL
locked ``FOR UPDATE``), each batch in its own transaction. A batch is evaluated with
``bot.engine.evaluate_many`` (the calendar batch path) and written back in a few bulk
statements: the decisions that changed in full and the others' ``evaluated_at`` in one
``UPDATE``, the threshold marks that differ, the ``policy_changed`` and ``priority_changed``
entries and the moved tickets' policy, the helpdesk writes owed or settled as superseded;
the clock outcomes the reports read are worked out by ``plan_outcomes`` ticket by ticket
on plain copies of the batch's cycles (read at once) and written in bulk. When routing, a
batch is evaluated once per policy its tickets are routed to.

What it stores is what ``TicketService.store_decision``, ``enqueue_writes`` and
``note_unplaced`` store when applied ticket by ticket (with ``policy_changed`` for a ticket
routed elsewhere), the rules of which live there; the
store tests run both on the same tickets and compare every table
(``tests/store/test_store_recompute_batch.py``).
"""

from __future__ import annotations

import functools
import gc
import json
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    Engine,
    String,
    Table,
    any_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from bot.business_time import Calendar, from_timestamp
from bot.compiled import Policy
from bot.engine import Decision, evaluate_many, iso_z, threshold_instant
from bot.errors import SlabotError
from bot.policy import TARGETS
from bot.ticket import SOLVED_STATUSES, Ticket
from slabot.store.breaches import BREACH, Mark, list_columns
from slabot.store.decisions import stored_view
from slabot.store.errors import PolicyNotLoadedError
from slabot.store.history import policy_changed, reads_status_history, stored_facts
from slabot.store.models import (
    ClockOutcome,
    OutboxItem,
    StoredDecision,
    StoredTicket,
    TargetMark,
    TicketEvent,
)
from slabot.store.reports import _reclassifications, plan_outcomes
from slabot.store.retry import DatabaseUnavailableError, with_retry
from slabot.store.rows import engine_ticket
from slabot.store.writes import SUPERSEDED, desired_writes, outbox_row, settle
from slabot.store.writes import idempotency_key as _idempotency_key

if TYPE_CHECKING:
    from slabot.store.services import TicketService

DEFAULT_BATCH_SIZE = 4000
"""Tickets per batch (and per transaction): enough to amortize each statement and each
commit (on SQLite a commit writes every index page the batch touched, and the batch's
changes are spread over the indexes: 4,000 tickets dirty not many more pages than 1,000;
about a tenth less CPU than 1,000 on both databases in bench/recompute.py), few enough that
a batch's rows, decisions, marks and cycles stay a few tens of megabytes (peak 159 MB
against 131 MB at 1,000, whatever the tickets stored) and its locks are held for under a
second (about 0.7 s a batch there)."""


_TICKETS = cast(Table, StoredTicket.__table__)
_LIST_COLUMNS = ("next_due_at", "queue", "assignee_email")
_DECISIONS = cast(Table, StoredDecision.__table__)
_MARKS = cast(Table, TargetMark.__table__)
_OUTBOX = cast(Table, OutboxItem.__table__)
_EVENTS = cast(Table, TicketEvent.__table__)
_OUTCOMES = cast(Table, ClockOutcome.__table__)
_OUTCOME_KEY = ("ticket_id", "target", "cycle_started_at")
_CYCLE_COLUMNS = tuple(c for c in _OUTCOMES.columns if c.name != "evaluated_at")
_DECISION_FIELDS = (
    "priority",
    "requested_priority",
    "plan",
    "commitment",
    "first_response_due",
    "first_response_state",
    "restoration_due",
    "restoration_state",
    "next_update_due",
    "next_update_state",
    "next_change_at",
    "tags",
    "notes",
    "policy",
)
"""The stored decision's columns besides ``ticket_id``, ``evaluated_at`` and
``routing_rule`` (written when routing)."""
_STORED_COLUMNS = tuple(_DECISIONS.c[name] for name in ("ticket_id", *_DECISION_FIELDS))
"""What a recompute reads of each stored decision (and, when routing, ``routing_rule``
after them): what it compares and its history reads."""


def open_tickets(engine: Engine, policy_name: str | None) -> int:
    """How many open tickets are stored under the policy (None: under any, as routing goes
    through them): what a recompute goes through."""
    query = (
        select(func.count()).select_from(_TICKETS).where(_TICKETS.c.status.not_in(SOLVED_STATUSES))
    )
    if policy_name is not None:
        query = query.where(_TICKETS.c.policy == policy_name)
    with engine.connect() as connection:
        return int(connection.scalar(query) or 0)


def recompute(
    service: TicketService,
    policy_name: str | None,
    *,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[Recomputed]:
    """``TicketService.recompute``: see there for what is yielded and stored."""
    if policy_name is None and service.router is None:
        raise PolicyNotLoadedError("recomputing by routing needs the routing rules")
    policy = service.policies.get(policy_name) if policy_name is not None else None
    if policy is None and policy_name is not None:
        raise PolicyNotLoadedError(
            f"policy {policy_name!r} is not loaded "
            f"(loaded: {', '.join(sorted(service.policies)) or 'none'})"
        )
    after = 0
    while True:
        work = functools.partial(
            _recompute_batch,
            service,
            policy_name=policy_name,
            policy=policy,
            after=after,
            batch_size=batch_size,
            dry_run=dry_run,
        )
        # The cyclic collector off while a batch runs: the batch makes hundreds of thousands
        # of short-lived objects (rows, instants, parameters), freed by their reference
        # counts, and each collection they trigger would walk the long-lived ones (policies,
        # calendars, the ORM's caches) again; what the batch leaves in cycles is collected
        # once it is enabled again, before the next batch.
        collecting = gc.isenabled()
        gc.disable()
        try:
            results, last = with_retry(
                service.engine,
                work,
                policy=service.retry,
                what=f"recomputing {f'policy {policy_name}' if policy_name else 'routes'} "
                f"(tickets after id {after})",
                retry_commit=False,
                read_only=dry_run,
            )
        except DatabaseUnavailableError as error:
            if "may or may not" not in str(error):
                raise
            raise DatabaseUnavailableError(
                f"{error}; the batches listed before it were applied: run slabot "
                "recompute again, it lists and applies what is still to change",
                attempts=error.attempts,
            ) from None
        finally:
            if collecting:
                gc.enable()
        if last is None:
            return
        after = last
        yield from results


def _among(session: Session, column: ColumnElement[Any], values: list[Any]) -> ColumnElement[bool]:
    """``column IN values`` with the values as one parameter (a batch's thousand ids):
    ``= ANY(array)`` on PostgreSQL, ``IN (SELECT value FROM json_each(...))`` on SQLite.
    An ``in_`` list is rendered anew for every statement, one placeholder per value, and
    psycopg parses that long statement again each time; this one is the same short text
    whatever the values, compiled and prepared once."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    each = func.json_each(bindparam(None, json.dumps(values), type_=String)).table_valued("value")
    return column.in_(select(each.c.value))


class _Evaluated(NamedTuple):
    """One ticket of a batch the policy evaluated: what the writes are made from."""

    row: Any
    """The tickets table's row (with the new ``policy`` when the ticket moved): it has the
    attributes of a ``StoredTicket`` that the service's rules read."""
    ticket: Ticket
    decision: Decision
    view: Decision
    """``stored_view(decision)``: the classic three targets the store keeps."""
    values: tuple[Any, ...]
    """``_decision_values`` of the view (with the routing rule when routing)."""
    stored: Row[Any] | None
    """The stored decision's ``_STORED_COLUMNS`` (None: none stored yet)."""
    policy: Policy
    """The policy it was evaluated under."""
    rule: str | Literal[False] | None
    """The routing rule that chose it (False: not routed, the stored one stays)."""
    moved_from: str | None
    """The policy the ticket was stored under, when routing moved it (else None)."""


def _recompute_batch(
    service: TicketService,
    session: Session,
    *,
    policy_name: str | None,
    policy: Policy | None,
    after: int,
    batch_size: int,
    dry_run: bool,
) -> tuple[list[Recomputed], int | None]:
    """One batch of ``recompute``: the results and the last ticket id (None: done)."""
    now = service.now()
    query = (
        select(_TICKETS)
        .where(_TICKETS.c.status.not_in(SOLVED_STATUSES), _TICKETS.c.id > after)
        .order_by(_TICKETS.c.id)
        .limit(batch_size)
    )
    if policy_name is not None:
        query = query.where(_TICKETS.c.policy == policy_name)
    batch = session.execute(query if dry_run else query.with_for_update()).all()
    if not batch:
        return [], None
    # The stored decisions' compared columns only, in ``_STORED_COLUMNS``' order (a row's
    # slice past ``ticket_id`` is then compared with ``_decision_values`` as one tuple).
    routed = policy is None
    columns = (*_STORED_COLUMNS, _DECISIONS.c.routing_rule) if routed else _STORED_COLUMNS
    ids = [row.id for row in batch]
    stored = {
        row[0]: row
        for row in session.execute(
            select(*columns).where(_among(session, _DECISIONS.c.ticket_id, ids))
        ).all()
    }
    # A row of the tickets table has the attributes of a StoredTicket that engine_ticket,
    # decision_changes and the idempotency key read.
    # The status history too, in bulk, when a policy's metrics read it.
    policies = [policy] if policy is not None else service.policies.values()
    reads = any(reads_status_history(p) for p in policies)
    facts = stored_facts(session, ids) if reads else {}
    tickets = [engine_ticket(cast(StoredTicket, row), facts.get(row.id, ())) for row in batch]
    # Each ticket's policy and the rule that chose it; evaluated a policy at a time.
    chosen: list[tuple[Policy, str | Literal[False] | None]] = []
    for row in batch:
        if policy is not None:
            chosen.append((policy, False))
        else:
            assert service.router is not None  # recompute checked it
            route = service.router.route({**(row.routing or {}), "source": row.source})
            chosen.append((service.policies[route.policy], route.rule))
    answers: list[Decision | SlabotError | None] = [None] * len(batch)
    by_policy: dict[str, list[int]] = defaultdict(list)
    for index, (row_policy, _) in enumerate(chosen):
        by_policy[row_policy.name].append(index)
    for indexes in by_policy.values():
        row_policy = chosen[indexes[0]][0]
        for index, found in zip(
            indexes, evaluate_many([tickets[i] for i in indexes], row_policy, now), strict=True
        ):
            answers[index] = found
    results: list[Recomputed] = []
    evaluated: list[_Evaluated] = []
    for row, ticket, maybe, (row_policy, rule) in zip(batch, tickets, answers, chosen, strict=True):
        assert maybe is not None
        answer = maybe
        name = f"{row.source}:{row.external_key}"
        if isinstance(answer, SlabotError):
            results.append(Recomputed(row.id, name, (), str(answer)))
            continue
        old = stored.get(row.id)
        decided = stored_view(answer)
        values = _decision_values(decided, row_policy)
        if routed:
            values += (rule,)
        if old is not None and old[1:] == values and not _lapsed(decided, now):
            changes = []  # what decision_changes lists for a decision equal to the stored one
        else:
            changes = decision_changes(cast(StoredDecision | None, old), decided, now)
        moved_from = None
        view: Any = row
        if row_policy.name != row.policy:
            moved_from = row.policy
            changes.insert(0, f"policy {row.policy} -> {row_policy.name} (rule {rule!r})")
            view = SimpleNamespace(**{**row._mapping, "policy": row_policy.name})
        results.append(Recomputed(row.id, name, tuple(changes)))
        evaluated.append(
            _Evaluated(view, ticket, answer, decided, values, old, row_policy, rule, moved_from)
        )
    if not dry_run and evaluated:
        _store_history(session, evaluated, now)
        moved = [
            {"k_id": item.row.id, "policy": item.policy.name}
            for item in evaluated
            if item.moved_from is not None
        ]
        if moved:
            session.execute(update(_TICKETS).where(_TICKETS.c.id == bindparam("k_id")), moved)
        _store_decisions(session, evaluated, now, routed=routed)
        _store_marks(session, evaluated, now, service.thresholds)
        _store_outcomes(session, evaluated, now)
        _enqueue_writes(session, evaluated, now, service)
        for item in evaluated:
            if item.decision.unknown_plan is not None or item.decision.unknown_values:
                # Rare (a plan or value the policy cannot place): the per-ticket rule as is.
                loaded = session.get_one(StoredTicket, item.row.id)
                service.note_unplaced(session, loaded, item.policy, item.decision, now)
    return results, batch[-1].id


def _store_history(session: Session, evaluated: Sequence[_Evaluated], now: datetime) -> None:
    """A ``policy_changed`` entry where routing moved the ticket, then a ``priority_changed``
    entry (origin ``policy``) where the final priority moves, ticket by ticket."""
    entries = []
    for item in evaluated:
        if item.moved_from is not None:
            rule = item.rule if item.rule is not False else None
            moved = policy_changed(item.moved_from, item.policy.name, rule, now)
            entries.append(
                {
                    "ticket_id": item.row.id,
                    "kind": moved.kind,
                    "occurred_at": moved.occurred_at,
                    "recorded_at": moved.recorded_at,
                    "actor": moved.actor,
                    "origin": moved.origin,
                    "reason": moved.reason,
                    "event_key": None,
                    "payload": moved.payload,
                }
            )
        previous = item.stored.priority if item.stored is not None else None
        if previous != item.decision.priority:
            entries.append(
                {
                    "ticket_id": item.row.id,
                    "kind": "priority_changed",
                    "occurred_at": now,
                    "recorded_at": now,
                    "actor": "slabot",
                    "origin": "policy",
                    "reason": f"policy {item.policy.name} recomputed",
                    "event_key": None,
                    "payload": {"field": "final", "from": previous, "to": item.decision.priority},
                }
            )
    if entries:
        session.execute(insert(_EVENTS), entries)


def _decision_values(decision: Decision, policy: Policy) -> tuple[Any, ...]:
    """The stored decision's ``_DECISION_FIELDS`` for ``decision`` (its ``stored_view``)
    under ``policy``, in that order."""
    first, restoration, update_ = (decision.targets[name] for name in TARGETS)
    return (
        decision.priority,
        decision.requested_priority,
        decision.plan,
        decision.commitment,
        first.due,
        first.state,
        restoration.due,
        restoration.state,
        update_.due,
        update_.state,
        decision.next_change_at,
        list(decision.tags),
        list(decision.notes),
        policy.name,
    )


def _lapsed(decision: Decision, now: datetime) -> bool:
    """Whether a clock of the decision still runs past its due instant at ``now``: stored
    so, ``decision_changes`` reads it as breached, a change even against an equal decision."""
    return any(
        target.state == "running" and target.due is not None and target.due <= now
        for target in decision.targets.values()
    )


def _store_decisions(
    session: Session, evaluated: Sequence[_Evaluated], now: datetime, *, routed: bool
) -> None:
    """Each decision as the ticket's current one, with the policy it was made under (and,
    when ``routed``, the rule that chose it): a decision that differs is rewritten, one
    that does not only gets its ``evaluated_at`` (one statement for the whole batch)."""
    fields = (*_DECISION_FIELDS, "routing_rule") if routed else _DECISION_FIELDS
    inserted, touched = [], []
    # The columns that differ -> the rewritten decisions: each group in one statement that
    # sets only those (and ``evaluated_at``); the others hold their values already.
    rewritten: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for item in evaluated:
        values, old = item.values, item.stored
        if old is None:
            inserted.append(
                {
                    "ticket_id": item.row.id,
                    **dict(zip(fields, values, strict=True)),
                    "evaluated_at": now,
                }
            )
            continue
        stored: tuple[Any, ...] = old[1:]
        if stored == values:
            touched.append(item.row.id)
            continue
        written = {
            name: new for name, was, new in zip(fields, stored, values, strict=True) if was != new
        }
        rewritten[tuple(written)].append(
            {
                "k_ticket": item.row.id,
                **{f"v_{k}": v for k, v in written.items()},
                "v_evaluated_at": now,
            }
        )
    if inserted:
        session.execute(insert(StoredDecision), inserted)
    for differ, parameters in rewritten.items():
        session.execute(
            update(_DECISIONS)
            .where(_DECISIONS.c.ticket_id == bindparam("k_ticket"))
            .values({name: bindparam(f"v_{name}") for name in (*differ, "evaluated_at")}),
            parameters,
        )
    if touched:
        session.execute(
            update(_DECISIONS)
            .where(_among(session, _DECISIONS.c.ticket_id, touched))
            .values(evaluated_at=now)
        )


def _store_marks(
    session: Session, evaluated: Sequence[_Evaluated], now: datetime, thresholds: Sequence[int]
) -> None:
    """Make each ticket's marks exactly its decision's, touching only the rows that differ."""
    ids = [item.row.id for item in evaluated]
    stored: dict[tuple[int, str, int], tuple[datetime, datetime]] = {
        (ticket_id, target, permille): (at, started)  # unpacked: a row's attributes cost more
        for ticket_id, target, permille, at, started in session.execute(
            select(
                _MARKS.c.ticket_id,
                _MARKS.c.target,
                _MARKS.c.threshold_permille,
                _MARKS.c.at,
                _MARKS.c.cycle_started_at,
            ).where(_among(session, _MARKS.c.ticket_id, ids))
        ).all()
    }
    added, moved, listed = [], [], []
    for item, marks in zip(evaluated, _marks(evaluated, now, thresholds), strict=True):
        row = item.row
        # The dashboard's list columns follow the marks, as ``store_decision`` sets them.
        columns = SimpleNamespace(shown=row.shown)
        list_columns(cast(StoredTicket, columns), marks)
        wanted = (columns.next_due_at, columns.queue, columns.assignee_email)
        if wanted != (row.next_due_at, row.queue, row.assignee_email):
            listed.append(dict(zip(("k_id", *_LIST_COLUMNS), (row.id, *wanted), strict=True)))
        for mark in marks:
            key = (row.id, mark.target, mark.threshold_permille)
            found = stored.pop(key, None)
            if found is None:
                added.append(
                    {
                        "ticket_id": row.id,
                        "target": mark.target,
                        "threshold_permille": mark.threshold_permille,
                        "at": mark.at,
                        "cycle_started_at": mark.cycle_started_at,
                        "source": row.source,
                        "external_key": row.external_key,
                    }
                )
            elif found != (mark.at, mark.cycle_started_at):
                moved.append(
                    {
                        "k_ticket": row.id,
                        "k_target": mark.target,
                        "k_threshold": mark.threshold_permille,
                        "at": mark.at,
                        "cycle_started_at": mark.cycle_started_at,
                    }
                )
    by_key = (
        (_MARKS.c.ticket_id == bindparam("k_ticket"))
        & (_MARKS.c.target == bindparam("k_target"))
        & (_MARKS.c.threshold_permille == bindparam("k_threshold"))
    )
    if stored:
        session.execute(
            delete(_MARKS).where(by_key),
            [{"k_ticket": t, "k_target": n, "k_threshold": p} for t, n, p in stored],
        )
    if moved:
        session.execute(update(_MARKS).where(by_key), moved)
    if added:
        session.execute(insert(_MARKS), added)
    if listed:
        session.execute(update(_TICKETS).where(_TICKETS.c.id == bindparam("k_id")), listed)


def _marks(
    evaluated: Sequence[_Evaluated], now: datetime, thresholds: Sequence[int]
) -> list[list[Mark]]:
    """``decision_marks`` of each ticket, with the commonest instants through the calendar
    batch path: a fraction of a plain duration (no pause) is ``due_ts(start, ceil(seconds x
    fraction))``, as ``threshold_instant`` computes it; any other mark is ``decision_marks``'
    own (``threshold_instant``)."""
    marks: list[list[Mark]] = []
    # calendar id -> (calendar, [(the ticket's marks, target, permille, cycle start, start,
    # seconds)]): the marks the batch path answers, filled in below.
    batches: dict[int, tuple[Calendar, list[tuple[list[Mark], str, int, datetime, int, int]]]]
    batches = {}
    partial = [p for p in thresholds if p != BREACH]
    for item in evaluated:
        mine: list[Mark] = []
        marks.append(mine)
        ticket, decision, policy = item.ticket, item.view, item.policy
        if ticket.status in SOLVED_STATUSES:
            continue
        for name, decided in decision.targets.items():
            started = decided.started_at
            if decided.state in ("met", "none") or started is None:
                continue
            if decided.due is not None and BREACH in thresholds:
                mine.append(Mark(name, BREACH, decided.due, started))
            if not partial:
                continue
            seconds = decided.target_seconds
            if seconds is None or decided.pauses or decided.calendar is None:
                for permille in partial:
                    at = threshold_instant(
                        ticket, policy, decision, name, Fraction(permille, 1000), now
                    )
                    if at is not None:
                        mine.append(Mark(name, permille, at, started))
                continue
            calendar = policy.calendar(decided.calendar, ticket)
            group = batches.setdefault(id(calendar), (calendar, []))[1]
            start = cast(int, decided.started_ts)
            for permille in partial:
                group.append((mine, name, permille, started, start, -(-seconds * permille // 1000)))
    for calendar, group in batches.values():
        dues = calendar.due_many_ts([g[4] for g in group], [g[5] for g in group]).tolist()
        for (mine, name, permille, started, _, _), due in zip(group, dues, strict=True):
            mine.append(Mark(name, permille, from_timestamp(due), started))
    return marks


class _Cycles:
    """The cycles ``plan_outcomes`` makes and drops for a batch: plain objects the batch
    writes in bulk."""

    def __init__(self) -> None:
        self.made: list[SimpleNamespace] = []
        self.dropped: list[SimpleNamespace] = []

    def make(self, ticket_id: int, target: str, started_at: datetime | None) -> SimpleNamespace:
        cycle = SimpleNamespace(**dict.fromkeys(c.name for c in _OUTCOMES.columns))
        cycle.ticket_id, cycle.target, cycle.cycle_started_at = ticket_id, target, started_at
        self.made.append(cycle)
        return cycle

    def drop(self, outcome: Any) -> None:
        self.dropped.append(outcome)


def _store_outcomes(session: Session, evaluated: Sequence[_Evaluated], now: datetime) -> None:
    """``plan_outcomes`` of each ticket (the clock cycles the reports read) on plain copies
    of the batch's stored cycles, read in one query; then written in bulk: the dropped
    cycles deleted, ``evaluated_at`` set for the batch in one ``UPDATE``, the cycles that
    changed otherwise rewritten, the new ones inserted."""
    ids = [item.row.id for item in evaluated]
    read: dict[int, list[SimpleNamespace]] = defaultdict(list)
    before: list[tuple[SimpleNamespace, dict[str, Any]]] = []
    # Read without ``evaluated_at``: each cycle kept is given ``now`` (set below for all).
    result = session.execute(
        select(*_CYCLE_COLUMNS).where(_among(session, _OUTCOMES.c.ticket_id, ids))
    )
    names = tuple(result.keys())
    for found in result.all():
        values = dict(zip(names, found, strict=True))
        values["evaluated_at"] = now
        cycle = SimpleNamespace(**values)
        read[values["ticket_id"]].append(cycle)
        before.append((cycle, values))
    cycles = _Cycles()
    for item in evaluated:
        ticket_id = item.row.id

        def new_cycle(target: str, started: datetime, ticket_id: int = ticket_id) -> Any:
            return cycles.make(ticket_id, target, started)

        _, removed = plan_outcomes(
            cast(list[Any], read[ticket_id]),
            new_cycle,
            _reclassifications(session, cast(StoredTicket, item.row)),
            cast(StoredTicket, item.row),
            item.ticket,
            item.policy,
            item.view,
            now,
        )
        for cycle in removed:
            cycles.drop(cycle)
    key = (
        (_OUTCOMES.c.ticket_id == bindparam("k_ticket"))
        & (_OUTCOMES.c.target == bindparam("k_target"))
        & (_OUTCOMES.c.cycle_started_at == bindparam("k_start"))
    )
    dropped = {id(cycle) for cycle in cycles.dropped}
    if cycles.dropped:
        session.execute(
            delete(_OUTCOMES).where(key),
            [
                {"k_ticket": c.ticket_id, "k_target": c.target, "k_start": c.cycle_started_at}
                for c in cycles.dropped
            ],
        )
    if before:
        session.execute(
            update(_OUTCOMES)
            .where(_among(session, _OUTCOMES.c.ticket_id, ids))
            .values(evaluated_at=now)
        )
    settable = [c.name for c in _OUTCOMES.columns if c.name not in _OUTCOME_KEY]
    # The columns that differ -> the changed cycles: each group in one statement that sets
    # only those (the others hold their values already).
    changed: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for cycle, values in before:
        if id(cycle) in dropped:
            continue
        now_values = vars(cycle)
        if now_values == values:
            continue
        differ = tuple(name for name in settable if now_values[name] != values[name])
        changed[differ].append(
            {
                "k_ticket": cycle.ticket_id,
                "k_target": cycle.target,
                "k_start": cycle.cycle_started_at,
                **{name: now_values[name] for name in differ},
            }
        )
    for differ, rows in changed.items():
        if differ:
            session.execute(update(_OUTCOMES).where(key), rows)
    if cycles.made:
        session.execute(insert(_OUTCOMES), [vars(cycle) for cycle in cycles.made])


def _enqueue_writes(
    session: Session,
    evaluated: Sequence[_Evaluated],
    now: datetime,
    service: TicketService,
) -> None:
    """``TicketService.enqueue_writes`` for a batch, against ``row.shown`` keyed at ``now``
    (as ``row_snapshot(row, now)`` passes it): owe each write the decision calls for that
    the helpdesk does not show, unless an equal one is still owed, was sent since ``shown``
    was read and within the echo window, or was already made for this instant; settle the
    owed ones that became moot as superseded. Which are moot and which are still to owe is
    ``writes.settle``'s answer, as for one ticket; each row owed is ``writes.outbox_row``."""
    ids = [item.row.id for item in evaluated]
    pending: dict[int, list[Row[Any]]] = defaultdict(list)
    for owed_row in session.execute(
        select(
            _OUTBOX.c.id,
            _OUTBOX.c.ticket_id,
            _OUTBOX.c.target_system,
            _OUTBOX.c.kind,
            _OUTBOX.c.payload,
        ).where(_among(session, _OUTBOX.c.ticket_id, ids), _OUTBOX.c.done_at.is_(None))
    ):
        pending[owed_row.ticket_id].append(cast(Row[Any], owed_row))
    superseded: list[dict[str, Any]] = []
    # (ticket, kind, payload, since): owed unless sent since ``since`` or already made.
    candidates: list[tuple[Row[Any], str, dict[str, Any], datetime | None]] = []
    for item in evaluated:
        row = item.row
        shown: Mapping[str, Any] = row.shown or {}
        wanted = desired_writes(item.decision, shown, service._managed_tags[item.policy.name])
        owed = [p for p in pending.get(row.id, ()) if p.target_system == row.source]
        if not wanted and not owed:
            continue
        shown_at = row.shown_at or row.updated_at
        since = max(shown_at, now - service.echo_window) if shown_at else now
        moot, owing = settle(wanted, owed, isinstance(shown.get("due"), Mapping))
        for owed_item, why in moot:
            superseded.append(
                {"k_id": owed_item.id, "done_at": now, "next_attempt_at": None, "last_error": why}
            )
        for kind, payload in owing:
            candidates.append((row, kind, payload, since if since < now else None))
    if superseded:
        session.execute(update(_OUTBOX).where(_OUTBOX.c.id == bindparam("k_id")), superseded)
    if not candidates:
        return
    sent = _latest_sent(session, candidates)
    keys = {
        id(candidate): _idempotency_key(
            cast(StoredTicket, candidate[0]), candidate[1], candidate[2], now
        )
        for candidate in candidates
    }
    made = set(
        session.scalars(
            select(_OUTBOX.c.idempotency_key).where(
                _among(session, _OUTBOX.c.idempotency_key, list(keys.values()))
            )
        )
    )
    rows = []
    for candidate in candidates:
        row, kind, payload, _ = candidate
        latest = sent.get((row.id, kind))
        key = keys[id(candidate)]
        if (latest is not None and latest == payload) or key in made:
            continue  # sent and not echoed yet, or this very write was already made
        rows.append(outbox_row(row.source, row.id, kind, payload, key, now))
    if rows:
        session.execute(insert(_OUTBOX), rows)


def _latest_sent(
    session: Session,
    candidates: Sequence[tuple[Row[Any], str, dict[str, Any], datetime | None]],
) -> dict[tuple[int, str], dict[str, Any]]:
    """(ticket, kind) -> the payload of the latest write of that kind to the ticket's
    helpdesk sent (completed, not superseded) after the candidate's ``since``."""
    since_by_ticket = {row.id: (row.source, since) for row, _, _, since in candidates if since}
    if not since_by_ticket:
        return {}
    earliest = min(since for _, since in since_by_ticket.values())
    latest: dict[tuple[int, str], tuple[tuple[datetime, int], dict[str, Any]]] = {}
    for item in session.execute(
        select(
            _OUTBOX.c.id,
            _OUTBOX.c.ticket_id,
            _OUTBOX.c.target_system,
            _OUTBOX.c.kind,
            _OUTBOX.c.payload,
            _OUTBOX.c.done_at,
        ).where(
            _among(session, _OUTBOX.c.ticket_id, list(since_by_ticket)),
            _OUTBOX.c.done_at > earliest,
            or_(_OUTBOX.c.last_error.is_(None), ~_OUTBOX.c.last_error.startswith(SUPERSEDED)),
        )
    ):
        source, since = since_by_ticket[item.ticket_id]
        if item.target_system != source or since is None or not item.done_at > since:
            continue
        key, order = (item.ticket_id, item.kind), (item.done_at, item.id)
        if key not in latest or latest[key][0] < order:
            latest[key] = (order, item.payload)
    return {key: payload for key, (_, payload) in latest.items()}


# What a recompute yields (``TicketService.recompute``).


@dataclass(frozen=True, slots=True)
class Recomputed:
    """One open ticket re-evaluated against a policy: what changes, or why it cannot be.

    ``TicketService.recompute`` yields, per ticket, what changes compared with the stored
    decision (judged at the same instant, so a clock that merely ran out is not a change),
    a batch at a time. Unless ``dry_run``, each batch is then stored in one transaction:
    decisions (with the policy and, when routing, the rule), marks, clock outcomes, the
    helpdesk writes that differ, a ``policy_changed`` entry where routing moves the ticket,
    and a ``priority_changed`` entry (origin ``policy``) where the final priority moves. A
    ticket the policy cannot evaluate is yielded with its error and left as it was.
    Tickets are streamed in keyed batches of ``batch_size`` and written in bulk.

    A briefly unreachable database is retried batch by batch. A connection lost while
    committing a batch is not retried (the lines listed for it would then read as
    unchanged if the commit had gone through): ``DatabaseUnavailableError`` says so, and
    running recompute again applies what is still to change.
    """

    ticket_id: int
    ticket: str
    """``zendesk:123``."""
    changes: tuple[str, ...]
    """Readable lines, e.g. ``first_response due 2026-11-24T08:30:00Z -> ...``."""
    error: str | None = None


def decision_changes(stored: StoredDecision | None, decision: Decision, now: datetime) -> list[str]:
    """What a new decision changes against the stored one, as lines a person can review.

    The stored states are taken as they stand at ``now`` (a running clock whose due instant
    has passed reads as breached), so only what the new decision itself moves is listed.
    """
    decision = stored_view(decision)
    lines = []
    old_priority = stored.priority if stored is not None else None
    if old_priority != decision.priority:
        lines.append(f"priority {old_priority or 'none'} -> {decision.priority}")
    for name, target in decision.targets.items():
        old_due: datetime | None = getattr(stored, f"{name}_due") if stored is not None else None
        old_state = getattr(stored, f"{name}_state") if stored is not None else "none"
        if old_state == "running" and old_due is not None and old_due <= now:
            old_state = "breached"
        parts = []
        if old_due != target.due:
            parts.append(f"due {iso_z(old_due) or 'none'} -> {iso_z(target.due) or 'none'}")
        if old_state != target.state:
            parts.append(f"state {old_state} -> {target.state}")
        if parts:
            lines.append(f"{name} {', '.join(parts)}")
    old_tags = set(stored.tags) if stored is not None else set()
    added, removed = sorted(set(decision.tags) - old_tags), sorted(old_tags - set(decision.tags))
    if added or removed:
        lines.append("tags " + " ".join([*(f"+{t}" for t in added), *(f"-{t}" for t in removed)]))
    return lines
