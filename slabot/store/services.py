"""Services over the store: a ticket snapshot in -> history, decision and owed writes out.

No HTTP and no SDKs: connectors normalize what a helpdesk sends into a ``Snapshot`` and call
``TicketService.ingest``; the clock is injected. Everything one ingest changes is written in
one transaction, so a failure leaves the state as it was.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Engine, Table, and_, exists, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.compiled import Policy
from bot.engine import Decision, evaluate, iso_z
from bot.engine import reclassify as engine_reclassify
from bot.errors import ReclassificationError, SlabotError
from bot.policy import TARGETS
from bot.routing import Router
from bot.ticket import SOLVED_STATUSES, STATUSES, Reclassification, Ticket
from slabot.store.breaches import (
    BREACH,
    DEFAULT_THRESHOLDS,
    DueTarget,
    ThresholdError,
    breached_where,
    decision_marks,
    due_targets,
    list_columns,
    reaching_where,
    store_marks,
    thresholds_permille,
    to_permille,
)
from slabot.store.db import for_writing
from slabot.store.history import (
    DELETED,
    Fact,
    derive_from_history,
    engine_status_changes,
    reads_status_history,
    status_entries,
    stored_facts,
)
from slabot.store.models import (
    PRIORITY_ORIGINS,
    Nudge,
    OutboxItem,
    StoredDecision,
    StoredTicket,
    TargetMark,
    TicketEvent,
)
from slabot.store.reports import store_outcomes
from slabot.store.retry import DEFAULT_RETRY, DatabaseUnavailableError, RetryPolicy, with_retry

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Outcome = Literal["created", "updated", "unchanged", "stale"]
DEFAULT_ECHO_WINDOW = timedelta(days=1)
"""How long a sent write whose echo never came keeps it from being owed again."""

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
class StatusChange:
    """A status the ticket took at ``at``, as its source's own history shows it (a Zendesk
    audit, a Jira changelog entry). ``key`` is the source's id for the change (stored as the
    history entry's event key), so a change seen again is stored once."""

    at: datetime
    to: str
    key: str
    actor: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A ticket as its helpdesk shows it at ``updated_at``, in the engine's vocabulary.

    ``priority`` is the priority as requested (the customer's or the form's choice), not the
    priority slabot writes back. ``shown`` is what the helpdesk currently displays in the
    fields slabot writes: ``{"priority": "P2", "tags": [...]}`` (tags: at least the ones the
    policy sets; others are ignored), and, for a helpdesk with due-date fields, ``"due"``:
    field -> the text it shows (None: empty), with ``"due_format"``: field -> ``{"target":
    ..., "format": "instant" | "date", "zone": ...}`` saying which target's due instant it
    holds and how (see ``due_text``; by default the target named like the field, as an
    ``instant``). ``actor`` is who made the latest change, if known.

    ``status_history`` (optional): the statuses the ticket took, from the source's own
    history, keyed. They are applied with the snapshot, in the same transaction, as
    ``EventService.status_changed`` would apply them one by one: changes already stored (by
    key) or dated before the ticket was created are skipped, and pauses and the restoration
    cycle are derived from the whole history.
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
    status_history: tuple[StatusChange, ...] = ()
    agent_replies: tuple[datetime, ...] = ()
    """Every public agent reply the source's history shows, oldest first."""
    customer_replies: tuple[datetime, ...] = ()
    """Every public comment by the requester or another non-agent after the creation, oldest
    first: the events metrics such as ``next_reply`` start on (docs/metrics.md)."""
    routing: Mapping[str, Any] = field(default_factory=dict)
    """What routing rules read about the ticket (``bot.routing``: brand, group, tags,
    project, labels, fields...; ``source`` is the snapshot's own). With a router, the
    service's rules choose the policy from it and ``policy`` is not read."""


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
    warnings: tuple[str, ...] = ()
    """What this ingest found the policy cannot place, said for the first time (a plan or a
    value it does not know): logged once as a WARNING, and owed to the helpdesk as a note."""


class UnknownTicketError(SlabotError):
    """No ticket with that source and key is stored."""


class PolicyNotLoadedError(SlabotError):
    """A stored ticket names a policy the service was not given."""


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


@dataclass(frozen=True, slots=True)
class Recomputed:
    """One open ticket re-evaluated against a policy: what changes, or why it cannot be."""

    ticket_id: int
    ticket: str
    """``zendesk:123``."""
    changes: tuple[str, ...]
    """Readable lines, e.g. ``first_response due 2026-11-24T08:30:00Z -> ...``."""
    error: str | None = None


class TicketService:
    """Ingests snapshots into the store; one instance per process is enough (thread-safe)."""

    def __init__(
        self,
        engine: Engine,
        policies: Mapping[str, Policy],
        clock: Clock,
        *,
        origin: str = "helpdesk",
        thresholds: Iterable[float | Fraction] = DEFAULT_THRESHOLDS,
        retry: RetryPolicy = DEFAULT_RETRY,
        echo_window: timedelta = DEFAULT_ECHO_WINDOW,
        router: Router | None = None,
    ) -> None:
        self.engine = engine
        self.router = router
        """The routing rules choosing each snapshot's policy (None: the snapshot names it)."""
        self.echo_window = echo_window
        """How long a sent write is taken as shown while its echo has not come back."""
        self.retry = retry
        """How ingest, reclassify and recompute ride out a briefly unreachable database."""
        self._writer = for_writing(engine)
        self.policies = dict(policies)
        self.clock = clock
        self.origin = origin
        self.thresholds = thresholds_permille(thresholds)
        """Fractions of each target marked (in permille; 1000, the breach, always is)."""
        self._managed_tags = {name: _policy_tags(p) for name, p in self.policies.items()}
        if router is not None:
            # A routed ticket may move between the router's policies: the tags any of them
            # sets are slabot's, so that a tag of the policy it left is taken off.
            routed = frozenset().union(*(self._managed_tags[name] for name in router.policies))
            self._managed_tags.update(dict.fromkeys(router.policies, routed))

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

        A briefly unreachable database is retried (``with_retry``; ``DatabaseUnavailableError``
        when every attempt failed). Ingest is idempotent, so a connection lost while
        committing is retried too: if that commit had in fact gone through, the retry finds
        the snapshot applied and reports ``unchanged``.
        """
        snapshot, rule = self._routed(_normalized(snapshot))
        policy = self._policy(snapshot)
        what = f"ingesting ticket {snapshot.source}:{snapshot.external_key}"
        # Two workers may insert the same new ticket at once: the loser retries as an update.
        # (with_retry never retries an IntegrityError itself.)
        for attempt in range(2):
            try:
                result = with_retry(
                    self.engine,
                    lambda session: self._ingest(session, snapshot, policy, rule),
                    policy=self.retry,
                    what=what,
                )
            except IntegrityError:
                if attempt:
                    raise
                continue
            for warning in result.warnings:
                # Once per ticket and value (the note's key), after the commit: not per poll.
                log.warning(
                    "ticket %s:%s stored: %s", snapshot.source, snapshot.external_key, warning
                )
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def ingest_many(self, snapshots: Sequence[Snapshot]) -> list[IngestResult | Exception]:
        """Apply many snapshots (a page of a backfill or a poll) in one transaction, to the
        state ``ingest`` one by one would leave: per snapshot its result, or the exception
        that kept it out (``IngestError``...), the others stored all the same.
        ``DatabaseUnavailableError`` is raised: then nothing of the batch was stored.
        See ``slabot.store.ingest_batch``."""
        from slabot.store.ingest_batch import ingest_many

        return ingest_many(self, snapshots)

    def _routed(self, snapshot: Snapshot) -> tuple[Snapshot, str | None]:
        """The snapshot under the policy the router chooses, and the rule that chose it
        (without a router: as it is, no rule)."""
        if self.router is None:
            return snapshot, None
        found = self.router.route({**snapshot.routing, "source": snapshot.source})
        return replace(snapshot, policy=found.policy), found.rule

    def _policy(self, snapshot: Snapshot) -> Policy:
        policy = self.policies.get(snapshot.policy)
        if policy is None:
            raise IngestError(
                f"ticket {snapshot.source}:{snapshot.external_key} names policy "
                f"{snapshot.policy!r}; loaded: {', '.join(sorted(self.policies)) or 'none'}"
            )
        return policy

    def _ingest(
        self, session: Session, snapshot: Snapshot, policy: Policy, rule: str | None = None
    ) -> IngestResult:
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
            outcome = "unchanged"
            if row.policy != snapshot.policy:
                # Another rule matches now: the clocks are recomputed under the new policy
                # from their own starts (the ticket's instants do not move), as for a
                # reclassification; the breach already reported keeps its cycle's key.
                events.append(policy_changed(row.policy, snapshot.policy, rule, now))
        before = [getattr(row, name) for name in _COPIED_FIELDS]
        before_replies = row.replies
        _apply(row, snapshot, policy)
        if outcome == "unchanged" and (
            before != [getattr(row, n) for n in _COPIED_FIELDS] or before_replies != row.replies
        ):
            outcome = "updated"
        row.shown = dict(snapshot.shown)
        if snapshot.routing:
            row.routing = dict(snapshot.routing)
        row.shown_at = now
        row.source_updated_at = max(filter(None, (row.source_updated_at, snapshot.updated_at)))
        row.updated_at = now
        if outcome == "created":
            session.add(row)
            session.flush()
        for entry in events:
            entry.ticket_id = row.id
        session.add_all(events)
        if snapshot.status_history:
            before_history = engine_ticket(row)
            events.extend(self._apply_status_history(session, row, snapshot, policy, now))
            if outcome == "unchanged" and engine_ticket(row) != before_history:
                outcome = "updated"

        facts = (
            stored_facts(session, [row.id]).get(row.id, ()) if reads_status_history(policy) else ()
        )
        try:
            decision = evaluate(engine_ticket(row, facts), policy, now)
        except SlabotError as error:
            raise IngestError(
                f"ticket {snapshot.source}:{snapshot.external_key}: {error}"
            ) from None
        self.store_decision(session, row, policy, decision, now, rule=rule)
        enqueued = self.enqueue_writes(session, row, snapshot, decision, now)
        warnings = self.note_unplaced(session, row, policy, decision, now)
        enqueued.extend("add_note" for _ in warnings)
        return IngestResult(
            row.id,
            outcome,
            tuple(e.kind for e in events),
            decision,
            tuple(enqueued),
            tuple(warnings),
        )

    def note_unplaced(
        self, session: Session, row: StoredTicket, policy: Policy, decision: Decision, now: datetime
    ) -> list[str]:
        """Owe the helpdesk an internal note the first time the ticket names a plan its policy
        does not know, or carries a value it cannot use (``Decision.unknown_values``): the
        ticket is stored and evaluated all the same, and the note says what was not placed,
        what the policy knows and what applies instead. Keyed by ticket, field and value in
        the outbox, so a later ingest of the same ticket (a poll, a redelivery, another
        replica, a recompute) finds it and stays quiet. Returns the notes owed now (the
        caller logs each once)."""
        notes = unplaced_notes(row, policy, decision)
        if not notes:
            return []
        known = set(
            session.scalars(
                select(OutboxItem.idempotency_key).where(
                    OutboxItem.idempotency_key.in_([key for key, _, _ in notes])
                )
            )
        )
        owed = []
        for key, note, payload in notes:
            if key in known:
                continue
            session.add(
                OutboxItem(
                    target_system=row.source,
                    ticket_id=row.id,
                    kind="add_note",
                    payload=payload,
                    idempotency_key=key,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
            owed.append(note)
        return owed

    def _apply_status_history(
        self,
        session: Session,
        row: StoredTicket,
        snapshot: Snapshot,
        policy: Policy,
        now: datetime,
    ) -> list[TicketEvent]:
        """Append the snapshot's status changes the history does not hold yet (by key), in
        time order, as ``EventService.status_changed`` would; then derive the pauses and the
        restoration cycle from the whole history. Returns the entries appended."""
        keys = sorted({change.key for change in snapshot.status_history})
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
        appended: list[TicketEvent] = []
        for change in sorted(snapshot.status_history, key=lambda c: c.at):
            if change.key in known or change.at < row.created_at:
                continue
            known.add(change.key)
            entries = status_entries(row, "status_changed", change.to, change.at, change.actor, now)
            entries[0].event_key = change.key
            for entry in entries:
                entry.ticket_id = row.id
            session.add_all(entries)
            appended.extend(entries)
        if appended:
            session.flush()
            derive_from_history(session, row, policy)
        return appended

    def enqueue_writes(
        self,
        session: Session,
        row: StoredTicket,
        snapshot: Snapshot,
        decision: Decision,
        now: datetime,
    ) -> list[str]:
        """Owe the helpdesk each write ``decision`` calls for whose value it does not show.

        ``snapshot.shown`` is what the helpdesk shows (for a stored ticket without a new
        snapshot, ``row_snapshot(row, at)``); ``snapshot.updated_at`` keys the writes, so the
        same write for the same snapshot is owed once. A write is not owed again while an
        equal one is still owed, nor when the latest one of its kind was sent after
        ``shown`` was read (``row.shown_at``) and within ``echo_window``: the helpdesk has
        it, its echo has not come back yet. Owed writes that became moot (the helpdesk
        shows the value, or a newer value is owed) are settled as superseded. Runs in the
        caller's transaction (``session``, which has ``row`` locked); returns the kinds
        enqueued, in order."""
        wanted = desired_writes(decision, snapshot.shown, self._managed_tags[snapshot.policy])
        pending = session.scalars(
            select(OutboxItem).where(
                OutboxItem.ticket_id == row.id,
                OutboxItem.target_system == row.source,
                OutboxItem.done_at.is_(None),
            )
        ).all()
        shown_at = row.shown_at or row.updated_at
        since = max(shown_at, now - self.echo_window) if shown_at else now
        # Nothing can have been sent since a snapshot applied just now (ingest): no query.
        unechoed = _latest_sent(session, row, since) if since < now else {}
        enqueued = []
        for kind in _WRITE_KINDS:
            if kind == SET_DUE_FIELDS and not isinstance(snapshot.shown.get("due"), Mapping):
                continue  # a helpdesk without due-date fields: its connector's own business
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
                        f"{SUPERSEDED}: the helpdesk already shows the value"
                        if payload is None
                        else f"{SUPERSEDED} by a newer write"
                    )
            sent = unechoed.get(kind)
            if payload is not None and sent is not None and sent.payload == payload:
                already = True  # sent after the helpdesk was last read: not echoed yet
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

    def store_decision(
        self,
        session: Session,
        row: StoredTicket,
        policy: Policy,
        decision: Decision,
        now: datetime,
        *,
        rule: str | Literal[False] | None = False,
    ) -> None:
        """Store ``decision`` (evaluated at ``now``) as the ticket's current one, with the
        threshold marks the breach queries read, in the caller's transaction. ``row`` must
        be flushed (have its id) and hold the state the decision was made from. The policy
        is stored with it, and ``rule``, the routing rule that chose the policy (False:
        the one stored stays, as for a reclassification under the same policy)."""
        decision = stored_view(decision)
        stored = _store_decision(session, row.id, decision, now)
        stored.policy = policy.name
        if rule is not False:
            stored.routing_rule = rule
        ticket = engine_ticket(row)
        marks = decision_marks(ticket, policy, decision, now, self.thresholds)
        store_marks(session, row, marks)
        store_outcomes(session, row, ticket, policy, decision, now)  # for the reports
        list_columns(row, marks)

    def loaded_policy(self, row: StoredTicket) -> Policy:
        """The loaded policy the stored ticket is under; ``PolicyNotLoadedError`` (naming the
        ticket and the policies loaded) when the service was not given it."""
        policy = self.policies.get(row.policy)
        if policy is None:
            raise PolicyNotLoadedError(
                f"ticket {row.source}:{row.external_key} is under policy {row.policy!r}, which "
                f"is not loaded (loaded: {', '.join(sorted(self.policies)) or 'none'})"
            )
        return policy

    # Reclassification.

    def reclassify(
        self,
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
            raise ActorRequiredError(
                "say who reclassifies the ticket; the actor is kept in the audit"
            )
        actor = actor.strip()
        event_key = None
        if request_key is not None:
            if not request_key.strip():
                raise ReclassificationError("request_key, when given, must not be empty")
            event_key = reclassify_event_key(request_key)
            if len(event_key) > _EVENT_KEY_LENGTH:
                raise ReclassificationError(
                    f"request_key is longer than "
                    f"{_EVENT_KEY_LENGTH - len(_RECLASSIFY_KEY_PREFIX)} characters"
                )
        what = f"reclassifying ticket {source}:{external_key}"

        def work(session: Session) -> ReclassifyResult:
            return self._reclassify(
                session, source, external_key, priority, actor, reason, origin, event_key
            )

        try:
            return with_retry(
                self.engine,
                work,
                policy=self.retry,
                what=what,
                retry_commit=event_key is not None,
            )
        except IntegrityError:
            # Another worker applied the same request key between our check and our insert.
            if event_key is None:
                raise
            found = with_retry(
                self.engine,
                lambda session: self._reclassified(session, source, external_key, event_key),
                policy=self.retry,
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

    def _locked_ticket(self, session: Session, source: str, external_key: str) -> StoredTicket:
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
        self, session: Session, source: str, external_key: str, event_key: str
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
        found = session.scalars(
            select(TicketEvent).where(
                TicketEvent.ticket_id == row.id, TicketEvent.event_key == event_key
            )
        ).one_or_none()
        return None if found is None else self._duplicate(row, found)

    def _duplicate(self, row: StoredTicket, entry: TicketEvent) -> ReclassifyResult:
        decision = evaluate(engine_ticket(row), self.loaded_policy(row), self.now())
        previous = (entry.payload or {}).get("from")
        return ReclassifyResult(
            row.id, previous if isinstance(previous, str) else None, decision, (), True
        )

    def _reclassify(
        self,
        session: Session,
        source: str,
        external_key: str,
        priority: str,
        actor: str,
        reason: str,
        origin: str,
        event_key: str | None,
    ) -> ReclassifyResult:
        now = self.now()
        row = self._locked_ticket(session, source, external_key)
        if event_key is not None:
            seen = session.scalars(
                select(TicketEvent).where(
                    TicketEvent.ticket_id == row.id, TicketEvent.event_key == event_key
                )
            ).one_or_none()
            if seen is not None:
                return self._duplicate(row, seen)
        policy = self.loaded_policy(row)
        stored = session.get(StoredDecision, row.id)
        previous = stored.priority if stored is not None else None
        decision = engine_reclassify(engine_ticket(row), policy, now, priority, actor, reason)
        reason = reason.strip()
        row.reclassified_priority = priority
        row.reclassified_by = actor
        row.reclassified_reason = reason
        row.reclassified_at = now
        row.updated_at = now
        entry = _event(
            "priority_changed",
            now,
            now,
            actor=actor,
            origin=origin,
            payload={"field": "reclassified", "from": previous, "to": priority},
        )
        entry.reason = reason
        entry.ticket_id = row.id
        entry.event_key = event_key
        session.add(entry)
        session.flush()
        self.store_decision(session, row, policy, decision, now)
        enqueued = self.enqueue_writes(session, row, row_snapshot(row, now), decision, now)
        note = (
            f"Priority changed from {previous or 'none'} to {priority} by {actor} "
            f"(via {origin}): {reason}"
        )
        session.add(
            OutboxItem(
                target_system=row.source,
                ticket_id=row.id,
                kind="add_note",
                payload={
                    "internal": True,
                    "body": note,
                    "from": previous,
                    "to": priority,
                    "actor": actor,
                    "origin": origin,
                    "reason": reason,
                },
                idempotency_key=f"{row.source}:{row.external_key}:add_note:event-{entry.id}",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
        enqueued.append("add_note")
        return ReclassifyResult(row.id, previous, decision, tuple(enqueued))

    def refuse_reclassification(
        self,
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
            now = self.now()
            row = self._locked_ticket(session, source, external_key)
            seen = session.scalar(
                select(TicketEvent.id).where(
                    TicketEvent.ticket_id == row.id, TicketEvent.event_key == event_key
                )
            )
            if seen is not None:
                return False
            stored = session.get(StoredDecision, row.id)
            kept = stored.priority if stored is not None else None
            entry = _event(
                "priority_changed",
                at,
                now,
                actor=actor,
                origin=origin,
                payload={
                    "field": "refused",
                    "from": kept,
                    "to": priority,
                    f"{origin}_priority": asked,
                },
            )
            entry.reason = f"refused: {why}"
            entry.ticket_id = row.id
            entry.event_key = event_key
            session.add(entry)
            session.flush()
            kept_name = helpdesk_name(kept) if kept else None
            note = (
                f"slabot kept the priority at {kept or 'none'}"
                f"{f' ({kept_name})' if kept_name else ''}: {actor} set "
                f"{asked or 'no priority'}, which the support policy does not allow here. {why}"
            )
            session.add(
                OutboxItem(
                    target_system=row.source,
                    ticket_id=row.id,
                    kind="add_note",
                    payload={
                        "internal": True,
                        "body": note,
                        "from": kept,
                        "to": priority,
                        "actor": actor,
                        "origin": origin,
                        "reason": why,
                        "refused": True,
                    },
                    idempotency_key=f"{row.source}:{row.external_key}:add_note:event-{entry.id}",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
            return True

        # The event key makes a retried commit safe: a second attempt finds its entry.
        return with_retry(
            self.engine,
            work,
            policy=self.retry,
            what=f"recording a refused priority of ticket {source}:{external_key}",
        )

    # Breach queries.

    def breached(self, now: datetime | None = None, limit: int | None = 100) -> list[DueTarget]:
        """Clocks of open tickets past due at ``now`` (default: the clock), earliest due first.

        Answered from the ``target_marks`` index: the cost follows the rows returned.
        """
        at = self.now() if now is None else now
        with self.engine.connect() as connection:
            return due_targets(connection, breached_where(at), limit)

    def reaching(
        self,
        fraction: float | Fraction,
        now: datetime | None = None,
        horizon: timedelta = timedelta(hours=1),
        limit: int | None = 100,
    ) -> list[DueTarget]:
        """Clocks of open tickets that reach ``fraction`` of their target in ``(now, now +
        horizon]``, earliest first: ``reaching(1.0)`` is "due within the next hour".

        ``fraction`` must be one of the service's thresholds (they are what is stored).
        """
        permille = to_permille(fraction)
        if permille not in self.thresholds:
            marked = ", ".join(f"{p / 1000:g}" for p in self.thresholds)
            raise ThresholdError(
                f"threshold {fraction} is not marked (marked: {marked}); add it to the "
                "service's thresholds and run slabot recompute to mark stored tickets"
            )
        at = self.now() if now is None else now
        with self.engine.connect() as connection:
            return due_targets(connection, reaching_where(permille, at, horizon), limit)

    def record_breaches(
        self, now: datetime | None = None, limit: int | None = 100
    ) -> list[DueTarget]:
        """Record each breach not reported yet and owe Slack a notice of it; return those.

        A breach is reported once per ticket, target and clock cycle: the nudge row's unique
        key (ticket, target, threshold 100, cycle start) settles it, even between concurrent
        callers. A reclassification keeps the cycle start, so a target breached, then given
        a later due date, then breached again is not reported twice; a new cycle (a new agent
        update, a reopening) is a new breach.
        """
        with Session(self._writer, expire_on_commit=False) as session, session.begin():
            at = self.now() if now is None else now
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
                session.add(
                    OutboxItem(
                        target_system="slack",
                        ticket_id=breach.ticket_id,
                        kind="breach_notice",
                        payload={
                            "ticket": breach.ticket,
                            "target": breach.target,
                            "due": iso_z(breach.at),
                            "cycle_started_at": iso_z(breach.cycle_started_at),
                        },
                        idempotency_key=f"slack:breach:{breach.ticket}:{breach.target}:{cycle}",
                        attempts=0,
                        next_attempt_at=at,
                        created_at=at,
                    )
                )
                recorded.append(breach)
            return recorded

    # Policy as code.

    def recompute(
        self, policy_name: str | None, *, dry_run: bool = False, batch_size: int = 1000
    ) -> Iterator[Recomputed]:
        """Re-evaluate every open ticket of the policy against the loaded version of it
        (``policy_name`` None: every open ticket, routed again by the service's router to
        the policy its rules now choose; a ticket that moves gets a ``policy_changed``
        entry, its clocks recomputed from their starts under the new policy).

        Yields, per ticket, what changes compared with the stored decision (judged at the
        same instant, so a clock that merely ran out is not a change), a batch at a time.
        Unless ``dry_run``, each batch is then stored in one transaction: decisions (with
        the policy and, when routing, the rule), marks, clock outcomes, the helpdesk writes
        that differ, a ``policy_changed`` entry where routing moves the ticket, and a
        ``priority_changed`` entry (origin ``policy``) where the final priority moves. A
        ticket the policy cannot evaluate is yielded with its error and left as it was.
        Tickets are streamed in keyed batches of ``batch_size`` and written in bulk
        (``slabot.store.recompute``).

        A briefly unreachable database is retried batch by batch. A connection lost while
        committing a batch is not retried (the lines listed for it would then read as
        unchanged if the commit had gone through): ``DatabaseUnavailableError`` says so, and
        running recompute again applies what is still to change.
        """
        # Imported here: slabot.store.recompute builds on this module's rules.
        from slabot.store.recompute import recompute

        return recompute(self, policy_name, dry_run=dry_run, batch_size=batch_size)


_WRITE_KINDS = ("set_priority", "set_tags", "set_due_fields")
SUPERSEDED = "superseded"
"""How ``last_error`` begins for an owed write settled without being sent."""


def _latest_sent(session: Session, row: StoredTicket, after: datetime) -> dict[str, OutboxItem]:
    """Kind -> the latest write to the ticket's helpdesk sent (completed, not superseded)
    after ``after``: the helpdesk has it, whatever ``shown`` still says."""
    sent = session.scalars(
        select(OutboxItem)
        .where(
            OutboxItem.ticket_id == row.id,
            OutboxItem.target_system == row.source,
            OutboxItem.done_at > after,
            or_(OutboxItem.last_error.is_(None), ~OutboxItem.last_error.startswith(SUPERSEDED)),
        )
        .order_by(OutboxItem.done_at, OutboxItem.id)
    ).all()
    return {item.kind: item for item in sent}


_RECLASSIFY_KEY_PREFIX = "reclassify:"
_EVENT_KEY_LENGTH = 255
_NUDGES = cast(Table, Nudge.__table__)


def reclassify_event_key(request_key: str) -> str:
    """The event key under which ``TicketService.reclassify`` keeps a reclassification made
    with ``request_key`` in the ticket's history (its presence says it was applied)."""
    return f"{_RECLASSIFY_KEY_PREFIX}{request_key.strip()}"


def desired_writes(
    decision: Decision, shown: Mapping[str, Any], managed_tags: frozenset[str]
) -> dict[str, dict[str, Any]]:
    """The helpdesk writes the decision calls for, given what the helpdesk shows.

    ``set_priority``: the final priority, when the helpdesk shows another. ``set_tags``: the
    policy's tags to add and to remove; tags the policy never sets are left alone.
    ``set_due_fields`` (only for a helpdesk whose ``shown`` has ``"due"``): ``{"fields":
    {field: text or None}}``, the due-date fields that show something else than the
    decision's due instant written as ``due_text`` writes it (None empties the field: no
    target applies, or the clock is paused).
    """
    writes: dict[str, dict[str, Any]] = {}
    if shown.get("priority") != decision.priority:
        writes["set_priority"] = {"priority": decision.priority}
    shown_tags = {t for t in shown.get("tags") or () if isinstance(t, str)} & managed_tags
    wanted_tags = set(decision.tags)
    add, remove = sorted(wanted_tags - shown_tags), sorted(shown_tags - wanted_tags)
    if add or remove:
        writes["set_tags"] = {"add": add, "remove": remove}
    fields = {
        name: wanted
        for name, wanted in wanted_due_fields(decision, shown).items()
        if shown["due"].get(name) != wanted
    }
    if fields:
        writes[SET_DUE_FIELDS] = {"fields": fields}
    return writes


SET_DUE_FIELDS = "set_due_fields"


def unplaced_notes(
    row: StoredTicket, policy: Policy, decision: Decision
) -> list[tuple[str, str, dict[str, Any]]]:
    """The internal notes ``TicketService.note_unplaced`` owes for what ``decision`` cannot
    place (an unknown plan first, then each unknown value), whether or not already owed:
    ``(idempotency key, note, outbox payload)`` each."""
    unplaced = list(decision.unknown_values)
    if decision.unknown_plan is not None:
        unplaced.insert(0, ("plan", decision.unknown_plan))
    prefix = f"{row.source}:{row.external_key}:add_note:unknown-"
    keys = {(name, value): f"{prefix}{name}:{value}"[:255] for name, value in unplaced}
    notes = []
    for (name, value), key in keys.items():
        if name == "plan":
            note, tag = decision.unknown_plan_note, policy.spec.unknown_plan_tag
            until = "Until then"
        else:
            field = name.replace("_", " ")
            note = next((n for n in decision.notes if n.startswith(f"{field} {value!r} ")), "")
            tag = policy.spec.unknown_value_tag
            until = "Until the value is corrected"
        body = f"slabot: {note}." + (f" {until} the ticket carries the tag {tag}." if tag else "")
        notes.append((key, note, {"internal": True, "body": body, "unknown": {name: value}}))
    return notes


DUE_FORMATS = ("instant", "date", "local")


def wanted_due_fields(decision: Decision, shown: Mapping[str, Any]) -> dict[str, str | None]:
    """Each due-date field the helpdesk has (the keys of ``shown["due"]``) -> the text it
    should show for ``decision`` (None: empty). No fields, no entries."""
    due = shown.get("due")
    if not isinstance(due, Mapping):
        return {}
    formats = shown.get("due_format")
    formats = formats if isinstance(formats, Mapping) else {}
    wanted: dict[str, str | None] = {}
    for name in sorted(due):
        spec = formats.get(name)
        target = due_target(name, spec)
        decided = decision.targets.get(target)
        wanted[name] = due_text(decided.due if decided is not None else None, spec)
    return wanted


def due_target(name: str, spec: Mapping[str, Any] | None) -> str:
    """The target whose due instant field ``name`` holds: ``spec["target"]``, or the name."""
    target = (spec or {}).get("target", name)
    return str(target)


def due_text(instant: datetime | None, spec: Mapping[str, Any] | None = None) -> str | None:
    """A due instant as a helpdesk field shows it. ``spec["format"]``: ``instant`` (the
    default, for triggers and automations that compare it) writes ``2026-11-24T08:30:00Z``;
    ``date`` writes the date in ``spec["zone"]`` (an IANA zone, default UTC),
    ``2026-11-24``; ``local`` (for agents to read) writes the local time in ``spec["zone"]``
    with its offset and the zone's name, ``2026-11-23 19:30 -08:00 (America/Los_Angeles)``:
    one zone, named, and still unambiguous across a daylight-saving change. None (no due
    instant) stays None.

    >>> moment = datetime(2026, 11, 24, 3, 30, tzinfo=UTC)
    >>> due_text(moment), due_text(moment, {"format": "date", "zone": "America/Los_Angeles"})
    ('2026-11-24T03:30:00Z', '2026-11-23')
    >>> due_text(moment, {"format": "local", "zone": "America/Los_Angeles"})
    '2026-11-23 19:30 -08:00 (America/Los_Angeles)'
    """
    if instant is None:
        return None
    spec = spec or {}
    form = spec.get("format", "instant")
    if form in ("date", "local"):
        name = str(spec.get("zone") or "UTC")
        local = instant.astimezone(ZoneInfo(name))
        if form == "date":
            return local.date().isoformat()
        offset = local.strftime("%z")
        return f"{local:%Y-%m-%d %H:%M} {offset[:3]}:{offset[3:]} ({name})"
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
    _check_due_fields(snapshot.shown, where)
    history = tuple(_normalized_change(change, where) for change in snapshot.status_history)
    return replace(snapshot, status_history=history, **texts)


def _check_due_fields(shown: Mapping[str, Any], where: str) -> None:
    """``shown["due"]`` and ``shown["due_format"]``, checked before anything is written."""
    due = shown.get("due")
    if due is None:
        return
    if not isinstance(due, Mapping):
        raise IngestError(f"{where}: shown['due'] must map each due-date field to its text")
    formats = shown.get("due_format") or {}
    if not isinstance(formats, Mapping):
        raise IngestError(f"{where}: shown['due_format'] must map due-date fields to formats")
    for name in due:
        spec = formats.get(name) or {}
        if not isinstance(spec, Mapping):
            raise IngestError(f"{where}: shown['due_format'][{name!r}] must be a mapping")
        target = due_target(name, spec)
        if target not in TARGETS:
            raise IngestError(
                f"{where}: due-date field {name!r} holds target {target!r}; expected one of "
                f"{', '.join(TARGETS)} (set its 'target')"
            )
        if spec.get("format", "instant") not in DUE_FORMATS:
            raise IngestError(
                f"{where}: due-date field {name!r} has format {spec.get('format')!r}; "
                f"expected one of {', '.join(DUE_FORMATS)}"
            )
        zone = spec.get("zone")
        if zone is not None:
            try:
                ZoneInfo(str(zone))
            except (ZoneInfoNotFoundError, ValueError):
                raise IngestError(
                    f"{where}: due-date field {name!r} has unknown time zone {zone!r}"
                ) from None


def _normalized_change(change: StatusChange, where: str) -> StatusChange:
    if not isinstance(change, StatusChange):
        raise IngestError(f"{where}: status_history holds {change!r}, not a StatusChange")
    key = (change.key or "").strip()
    if not key or len(key) > _EVENT_KEY_LENGTH:
        raise IngestError(
            f"{where}: a status change needs a key of 1 to {_EVENT_KEY_LENGTH} characters "
            f"(got {change.key[:40]!r})"
        )
    if change.to not in STATUSES and change.to != DELETED:
        raise IngestError(
            f"{where}: status change {key!r} to {change.to!r}; expected one of "
            f"{', '.join(STATUSES)} or {DELETED}"
        )
    at = change.at
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise IngestError(f"{where}: status change {key!r}: the time {at!r} has no time zone")
    actor = change.actor.strip() or None if change.actor is not None else None
    return StatusChange(at, change.to, key, actor)


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
            yield _event("reopened", _reopened_at(row, snapshot), now)
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
    known_first = row.first_response_at if row is not None else None
    if first is not None and (known_first is None or first < known_first):
        replied = first
        yield _event("public_reply", first, now, actor=snapshot.actor, payload={"first": True})
    update = snapshot.last_agent_update_at
    previous = row.last_agent_update_at if row is not None else None
    if update is not None and update != replied and (previous is None or update > previous):
        yield _event("public_reply", update, now, actor=snapshot.actor, payload={"first": False})


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
        row.restoration_started_at = _reopened_at(row, snapshot)
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
    for name in _COPIED_FIELDS:
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


def _reopened_at(row: StoredTicket | None, snapshot: Snapshot) -> datetime:
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


def _earliest(*instants: datetime | None) -> datetime | None:
    known = [instant for instant in instants if instant is not None]
    return min(known) if known else None


def _latest(*instants: datetime | None) -> datetime | None:
    known = [instant for instant in instants if instant is not None]
    return max(known) if known else None


def _store_decision(
    session: Session, ticket_id: int, decision: Decision, now: datetime
) -> StoredDecision:
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
    return stored


def policy_changed(old: str, new: str, rule: str | None, now: datetime) -> TicketEvent:
    """The history entry of a ticket moved from policy ``old`` to ``new`` by ``rule``."""
    entry = _event(
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


def _instants(texts: list[str] | None) -> tuple[datetime, ...]:
    return tuple(datetime.fromisoformat(text) for text in texts or ())


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
    found.update(filter(None, (policy.spec.unknown_plan_tag, policy.spec.unknown_value_tag)))
    return frozenset(found)


def stored_view(decision: Decision) -> Decision:
    """The decision as the store keeps it: its classic three targets. The decisions, marks
    and clock outcomes have columns (and CHECK constraints) for those only; the other
    metrics are computed wherever the engine runs (docs/metrics.md)."""
    targets = decision.targets
    if len(targets) == len(TARGETS):
        return decision
    return replace(decision, targets={name: targets[name] for name in TARGETS})


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
