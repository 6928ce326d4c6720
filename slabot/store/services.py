"""Services over the store: a ticket snapshot in -> history, decision and owed writes out.

No HTTP and no SDKs: connectors normalize what a helpdesk sends into a ``Snapshot`` and call
``TicketService.ingest``; the clock is injected. Everything one ingest changes is written in
one transaction, so a failure leaves the state as it was.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.compiled import Policy
from bot.engine import Decision, evaluate
from bot.errors import SlabotError
from bot.ticket import SOLVED_STATUSES, STATUSES, Reclassification, Ticket
from slabot.store.db import for_writing
from slabot.store.models import (
    OutboxItem,
    StoredDecision,
    StoredTicket,
    TicketEvent,
)

Clock = Callable[[], datetime]
Outcome = Literal["created", "updated", "unchanged", "stale"]

_TEXT_FIELDS = (
    "priority",
    "plan",
    "environment",
    "product_stage",
    "urgency",
    "impact",
    "channel",
    "customer_timezone",
    "customer_country",
)
_TIME_FIELDS = ("created_at", "first_response_at", "last_agent_update_at", "solved_at")
_COPIED_FIELDS = ("policy", "status", *_TEXT_FIELDS, *_TIME_FIELDS)
"""Snapshot fields stored as they are on the ticket row."""


class IngestError(SlabotError):
    """A snapshot cannot be applied; nothing was stored."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A ticket as its helpdesk shows it at ``updated_at``, in the engine's vocabulary.

    ``priority`` is the priority as requested (the customer's or the form's choice), not the
    priority slabot writes back. ``shown`` is what the helpdesk currently displays in the
    fields slabot writes: ``{"priority": "P2", "tags": [...]}`` (tags: at least the ones the
    policy sets; others are ignored). ``actor`` is who made the latest change, if known.
    """

    source: str
    external_key: str
    policy: str
    updated_at: datetime
    created_at: datetime
    status: str = "open"
    priority: str | None = None
    plan: str | None = None
    environment: str | None = None
    product_stage: str | None = None
    urgency: str | None = None
    impact: str | None = None
    channel: str | None = None
    customer_timezone: str | None = None
    customer_country: str | None = None
    first_response_at: datetime | None = None
    last_agent_update_at: datetime | None = None
    solved_at: datetime | None = None
    shown: Mapping[str, Any] = field(default_factory=dict)
    actor: str | None = None


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one ingest did."""

    ticket_id: int
    outcome: Outcome
    """``stale``: older than what is stored, ignored. ``unchanged``: no engine field moved."""
    events: tuple[str, ...]
    """Kinds of the history entries appended, in order."""
    decision: Decision | None
    """The decision now stored (None when the snapshot was stale)."""
    enqueued: tuple[str, ...]
    """Kinds of the outbox writes enqueued."""


class TicketService:
    """Ingests snapshots into the store; one instance per process is enough (thread-safe)."""

    def __init__(
        self,
        engine: Engine,
        policies: Mapping[str, Policy],
        clock: Clock,
        *,
        origin: str = "helpdesk",
    ) -> None:
        self.engine = engine
        self._writer = for_writing(engine)
        self.policies = dict(policies)
        self.clock = clock
        self.origin = origin
        self._managed_tags = {name: _policy_tags(p) for name, p in self.policies.items()}

    def now(self) -> datetime:
        instant = self.clock()
        if instant.tzinfo is None or instant.utcoffset() is None:
            raise IngestError("the clock returned a naive datetime; it must return aware ones")
        return instant

    def ingest(self, snapshot: Snapshot) -> IngestResult:
        """Apply a snapshot: upsert the ticket, append history, re-evaluate, store the decision
        and enqueue the helpdesk writes whose desired value the helpdesk does not show yet.

        A snapshot older than the newest one applied is ignored (``stale``); applying the same
        snapshot twice changes nothing the second time and enqueues nothing.
        """
        snapshot = _normalized(snapshot)
        policy = self._policy(snapshot)
        # Two workers may insert the same new ticket at once: the loser retries as an update.
        for attempt in range(2):
            try:
                with Session(self._writer, expire_on_commit=False) as session, session.begin():
                    return self._ingest(session, snapshot, policy)
            except IntegrityError:
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _policy(self, snapshot: Snapshot) -> Policy:
        policy = self.policies.get(snapshot.policy)
        if policy is None:
            raise IngestError(
                f"ticket {snapshot.source}:{snapshot.external_key} names policy "
                f"{snapshot.policy!r}; loaded: {', '.join(sorted(self.policies)) or 'none'}"
            )
        return policy

    def _ingest(self, session: Session, snapshot: Snapshot, policy: Policy) -> IngestResult:
        now = self.now()
        row = session.scalars(
            select(StoredTicket)
            .where(
                StoredTicket.source == snapshot.source,
                StoredTicket.external_key == snapshot.external_key,
            )
            .with_for_update()
        ).one_or_none()
        if (
            row is not None
            and row.source_updated_at
            and snapshot.updated_at < row.source_updated_at
        ):
            return IngestResult(row.id, "stale", (), None, ())

        events: list[TicketEvent] = []
        if row is None:
            outcome: Outcome = "created"
            row = StoredTicket(
                source=snapshot.source,
                external_key=snapshot.external_key,
                first_seen_at=now,
                paused=[],
                shown={},
            )
            events.append(_event("created", snapshot.created_at, now, payload=_as_json(snapshot)))
            events.extend(_changes(None, snapshot, now, self.origin))
        else:
            events.extend(_changes(row, snapshot, now, self.origin))
            moved = any(getattr(row, name) != getattr(snapshot, name) for name in _COPIED_FIELDS)
            outcome = "updated" if moved else "unchanged"
        _apply(row, snapshot, policy)
        row.shown = dict(snapshot.shown)
        row.source_updated_at = max(filter(None, (row.source_updated_at, snapshot.updated_at)))
        row.updated_at = now
        if outcome == "created":
            session.add(row)
            session.flush()
        for entry in events:
            entry.ticket_id = row.id
        session.add_all(events)

        try:
            decision = evaluate(engine_ticket(row), policy, now)
        except SlabotError as error:
            raise IngestError(
                f"ticket {snapshot.source}:{snapshot.external_key}: {error}"
            ) from None
        _store_decision(session, row.id, decision, now)
        enqueued = self._enqueue(session, row, snapshot, decision, now)
        return IngestResult(
            row.id, outcome, tuple(e.kind for e in events), decision, tuple(enqueued)
        )

    def _enqueue(
        self,
        session: Session,
        row: StoredTicket,
        snapshot: Snapshot,
        decision: Decision,
        now: datetime,
    ) -> list[str]:
        """Owe the helpdesk each write whose value it does not show; drop owed writes that
        became moot (the helpdesk shows the value, or a newer value is owed)."""
        wanted = desired_writes(decision, snapshot.shown, self._managed_tags[snapshot.policy])
        pending = session.scalars(
            select(OutboxItem).where(
                OutboxItem.ticket_id == row.id,
                OutboxItem.target_system == row.source,
                OutboxItem.done_at.is_(None),
            )
        ).all()
        enqueued = []
        for kind in _WRITE_KINDS:
            payload = wanted.get(kind)
            already = False
            for item in pending:
                if item.kind != kind:
                    continue
                if payload is not None and item.payload == payload:
                    already = True
                else:
                    item.done_at = now
                    item.next_attempt_at = None
                    item.last_error = (
                        "superseded: the helpdesk already shows the value"
                        if payload is None
                        else "superseded by a newer write"
                    )
            if payload is None or already:
                continue
            key = _idempotency_key(row, kind, payload, snapshot.updated_at)
            if session.scalar(select(OutboxItem.id).where(OutboxItem.idempotency_key == key)):
                continue  # this very write, for this very snapshot, was already made
            session.add(
                OutboxItem(
                    target_system=row.source,
                    ticket_id=row.id,
                    kind=kind,
                    payload=payload,
                    idempotency_key=key,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
            enqueued.append(kind)
        return enqueued


_WRITE_KINDS = ("set_priority", "set_tags")


def desired_writes(
    decision: Decision, shown: Mapping[str, Any], managed_tags: frozenset[str]
) -> dict[str, dict[str, Any]]:
    """The helpdesk writes the decision calls for, given what the helpdesk shows.

    ``set_priority``: the final priority, when the helpdesk shows another. ``set_tags``: the
    policy's tags to add and to remove; tags the policy never sets are left alone.
    """
    writes: dict[str, dict[str, Any]] = {}
    if shown.get("priority") != decision.priority:
        writes["set_priority"] = {"priority": decision.priority}
    shown_tags = {t for t in shown.get("tags") or () if isinstance(t, str)} & managed_tags
    wanted_tags = set(decision.tags)
    add, remove = sorted(wanted_tags - shown_tags), sorted(shown_tags - wanted_tags)
    if add or remove:
        writes["set_tags"] = {"add": add, "remove": remove}
    return writes


def engine_ticket(row: StoredTicket) -> Ticket:
    """The engine's view of a stored ticket."""
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
        **{name: getattr(row, name) for name in _TEXT_FIELDS},
    )


def _normalized(snapshot: Snapshot) -> Snapshot:
    """Text stripped (empty -> None); statuses and instants checked before anything is written."""
    where = f"ticket {snapshot.source}:{snapshot.external_key}"
    if not snapshot.source or not snapshot.external_key:
        raise IngestError("a snapshot needs its source and external key")
    if snapshot.status not in STATUSES:
        raise IngestError(
            f"{where}: status {snapshot.status!r}; expected one of {', '.join(STATUSES)}"
        )
    for name in (*_TIME_FIELDS, "updated_at"):
        value = getattr(snapshot, name)
        if value is not None and (value.tzinfo is None or value.utcoffset() is None):
            raise IngestError(f"{where}: {name} {value.isoformat()} has no time zone")
    if snapshot.status in SOLVED_STATUSES and snapshot.solved_at is None:
        raise IngestError(f"{where}: status {snapshot.status!r} needs solved_at")
    texts = {}
    for name in _TEXT_FIELDS:
        value = getattr(snapshot, name)
        if value is not None:
            value = value.strip() or None
        texts[name] = value
    return replace(snapshot, **texts)


def _changes(
    row: StoredTicket | None, snapshot: Snapshot, now: datetime, origin: str
) -> Iterator[TicketEvent]:
    """History entries for the move from ``row`` (None: not seen before) to ``snapshot``."""
    at = snapshot.updated_at
    old_status = row.status if row is not None else None
    new_status = snapshot.status
    if old_status != new_status and not (old_status is None and new_status in ("new", "open")):
        yield _event("status_changed", at, now, payload={"from": old_status, "to": new_status})
        was_solved = old_status in SOLVED_STATUSES
        if new_status in SOLVED_STATUSES and not was_solved:
            assert snapshot.solved_at is not None  # checked by _normalized
            yield _event("solved", snapshot.solved_at, now)
        elif was_solved and new_status not in SOLVED_STATUSES:
            yield _event("reopened", at, now)
    old_priority = row.priority if row is not None else None
    if row is not None and old_priority != snapshot.priority:
        yield _event(
            "priority_changed",
            at,
            now,
            actor=snapshot.actor,
            origin=origin,
            payload={"field": "requested", "from": old_priority, "to": snapshot.priority},
        )
    replied = None
    first = snapshot.first_response_at
    if first is not None and (row is None or row.first_response_at is None):
        replied = first
        yield _event("public_reply", first, now, actor=snapshot.actor, payload={"first": True})
    update = snapshot.last_agent_update_at
    previous = row.last_agent_update_at if row is not None else None
    if update is not None and update != replied and (previous is None or update > previous):
        yield _event("public_reply", update, now, actor=snapshot.actor, payload={"first": False})


def _apply(row: StoredTicket, snapshot: Snapshot, policy: Policy) -> None:
    """Copy the snapshot onto the row; keep pauses and restoration cycles in step with it."""
    old_status = row.status
    at = snapshot.updated_at
    if old_status in SOLVED_STATUSES and snapshot.status not in SOLVED_STATUSES:
        row.restoration_started_at = at  # a reopened ticket starts a new restoration cycle
    pausing = policy.spec.clocks.pausing_statuses
    was_paused = old_status in pausing
    is_paused = snapshot.status in pausing
    spans = [list(span) for span in (row.paused or [])]
    if is_paused and not was_paused:
        spans.append([at.isoformat(), None])
    elif was_paused and not is_paused and spans and spans[-1][1] is None:
        spans[-1][1] = at.isoformat()
    row.paused = spans
    for name in _COPIED_FIELDS:
        setattr(row, name, getattr(snapshot, name))


def _store_decision(session: Session, ticket_id: int, decision: Decision, now: datetime) -> None:
    stored = session.get(StoredDecision, ticket_id)
    if stored is None:
        stored = StoredDecision(ticket_id=ticket_id)
        session.add(stored)
    stored.priority = decision.priority
    stored.requested_priority = decision.requested_priority
    stored.plan = decision.plan
    stored.commitment = decision.commitment
    for name, target in decision.targets.items():
        setattr(stored, f"{name}_due", target.due)
        setattr(stored, f"{name}_state", target.state)
    stored.next_change_at = decision.next_change_at
    stored.tags = list(decision.tags)
    stored.notes = list(decision.notes)
    stored.evaluated_at = now


def _event(
    kind: str,
    occurred_at: datetime,
    now: datetime,
    *,
    actor: str | None = None,
    origin: str | None = None,
    payload: dict[str, Any] | None = None,
) -> TicketEvent:
    return TicketEvent(
        kind=kind,
        occurred_at=occurred_at,
        recorded_at=now,
        actor=actor,
        origin=origin,
        payload=payload or {},
    )


def _as_json(snapshot: Snapshot) -> dict[str, Any]:
    """The snapshot's engine fields, JSON-ready (for the ``created`` entry)."""
    data: dict[str, Any] = {}
    for name in _COPIED_FIELDS:
        value = getattr(snapshot, name)
        if value is not None:
            data[name] = value.isoformat() if isinstance(value, datetime) else value
    return data


def _pause_pairs(spans: list[Any]) -> Iterator[tuple[datetime, datetime | None]]:
    for begin, end in spans:
        yield datetime.fromisoformat(begin), None if end is None else datetime.fromisoformat(end)


def _idempotency_key(
    row: StoredTicket, kind: str, payload: dict[str, Any], snapshot_at: datetime
) -> str:
    """The same write for the same snapshot gets the same key: a retried ingest cannot owe it
    twice, and the helpdesk connector can pass the key on where the helpdesk takes one."""
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    return f"{row.source}:{row.external_key}:{kind}:{int(snapshot_at.timestamp())}:{digest}"


def _policy_tags(policy: Policy) -> frozenset[str]:
    """Every tag the policy's classification can set (``tag`` and ``*_tag`` settings)."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if (key == "tag" or key.endswith("_tag")) and isinstance(item, str):
                    found.add(item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(policy.spec.classification.model_dump())
    return frozenset(found)
