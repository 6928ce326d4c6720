"""Ingest: a ticket snapshot in -> history, decision and owed writes out.

No HTTP and no SDKs: connectors normalize what a helpdesk sends into a ``Snapshot``
(``slabot.store.snapshot``, the contract) and call ``TicketService.ingest``; the clock is
injected. Everything one ingest changes is written in one transaction, so a failure leaves
the state as it was. ``TicketService`` is also the facade of the store's other use cases,
each in its own module: the writes owed (``writes``), reclassification (``reclassify``),
recompute (``recompute``), the breach queries (``breaches``), many snapshots at once
(``ingest_batch``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.compiled import Policy
from bot.engine import Decision, evaluate
from bot.errors import SlabotError
from bot.routing import Router
from bot.ticket import SOLVED_STATUSES, Reclassification, Ticket
from bot.ticket import TEXT_FIELDS as _TEXT_FIELDS
from slabot.store import breaches, writes
from slabot.store.breaches import DEFAULT_THRESHOLDS, DueTarget, thresholds_permille
from slabot.store.db import for_writing
from slabot.store.decisions import store_decision
from slabot.store.history import (
    Fact,
    apply_status_history,
    engine_status_changes,
    history_entry,
    policy_changed,
    reads_status_history,
    reopened_at,
    stored_facts,
)
from slabot.store.models import StoredTicket, TicketEvent
from slabot.store.retry import DEFAULT_RETRY, RetryPolicy, with_retry
from slabot.store.search import search_text
from slabot.store.snapshot import (
    COPIED_FIELDS,
    IngestError,
    IngestResult,
    Outcome,
    Snapshot,
    normalized,
)
from slabot.store.writes import DEFAULT_ECHO_WINDOW, policy_tags

if TYPE_CHECKING:
    from slabot.store.reclassify import ReclassifyResult
    from slabot.store.recompute import Recomputed

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class UnknownTicketError(SlabotError):
    """No ticket with that source and key is stored."""


class PolicyNotLoadedError(SlabotError):
    """A stored ticket names a policy the service was not given."""


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
        self._managed_tags = {name: policy_tags(p) for name, p in self.policies.items()}
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
        snapshot, rule = self._routed(normalized(snapshot))
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
        from slabot.store import ingest_batch  # builds on this module (see the note above)

        return ingest_batch.ingest_many(self, snapshots)

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
        row, outcome, events = upsert(row, snapshot, policy, rule, now, self.origin)
        if outcome == "created":
            session.add(row)
            session.flush()
        for entry in events:
            entry.ticket_id = row.id
        session.add_all(events)
        if snapshot.status_history:
            before_history = engine_ticket(row)
            events.extend(apply_status_history(session, row, snapshot.status_history, policy, now))
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
        warnings = writes.note_unplaced(session, row, policy, decision, now)
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
        """Owe the helpdesk a note the first time the ticket names a plan or a value its
        policy cannot place (``slabot.store.writes.note_unplaced``); returns the notes owed."""
        return writes.note_unplaced(session, row, policy, decision, now)

    def enqueue_writes(
        self,
        session: Session,
        row: StoredTicket,
        snapshot: Snapshot,
        decision: Decision,
        now: datetime,
    ) -> list[str]:
        """Owe the helpdesk each write ``decision`` calls for whose value it does not show, in
        the caller's transaction (``slabot.store.writes.enqueue_writes``, which says when);
        returns the kinds enqueued, in order."""
        return writes.enqueue_writes(
            session,
            row,
            snapshot,
            decision,
            now,
            managed_tags=self._managed_tags[snapshot.policy],
            echo_window=self.echo_window,
        )

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
        ticket = engine_ticket(row)
        store_decision(session, row, ticket, policy, decision, now, self.thresholds, rule=rule)

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

    # The other use cases, each in its own module. Those building on this module's rules
    # (engine_ticket, row_snapshot, the errors) are imported when called: they import it.

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
        """An agent sets the ticket's priority: audited, recomputed, written back, noted
        (``slabot.store.reclassify.reclassify``, which says how)."""
        from slabot.store import reclassify

        return reclassify.reclassify(
            self, source, external_key, priority, actor, reason, origin, request_key=request_key
        )

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
        """A priority set in the helpdesk that slabot does not keep: audited and noted
        (``slabot.store.reclassify.refuse_reclassification``). False: already recorded."""
        from slabot.store import reclassify

        return reclassify.refuse_reclassification(
            self,
            source,
            external_key,
            asked=asked,
            priority=priority,
            actor=actor,
            origin=origin,
            why=why,
            at=at,
            event_key=event_key,
            helpdesk_name=helpdesk_name,
        )

    def breached(self, now: datetime | None = None, limit: int | None = 100) -> list[DueTarget]:
        """Clocks of open tickets past due at ``now`` (default: the clock), earliest due first
        (``slabot.store.breaches.breached``)."""
        return breaches.breached(self.engine, self.now() if now is None else now, limit)

    def reaching(
        self,
        fraction: float | Fraction,
        now: datetime | None = None,
        horizon: timedelta = timedelta(hours=1),
        limit: int | None = 100,
    ) -> list[DueTarget]:
        """Clocks of open tickets that reach ``fraction`` (one of the service's thresholds) of
        their target in ``(now, now + horizon]`` (``slabot.store.breaches.reaching``)."""
        at = self.now() if now is None else now
        return breaches.reaching(self.engine, self.thresholds, fraction, at, horizon, limit)

    def record_breaches(
        self, now: datetime | None = None, limit: int | None = 100
    ) -> list[DueTarget]:
        """Record each breach not reported yet and owe Slack a notice of it; return those
        (``slabot.store.breaches.record_breaches``)."""

        def clock() -> datetime:  # read in the transaction, as the breaches are
            return self.now() if now is None else now

        return breaches.record_breaches(self._writer, clock, limit)

    def recompute(
        self, policy_name: str | None, *, dry_run: bool = False, batch_size: int = 1000
    ) -> Iterator[Recomputed]:
        """Re-evaluate every open ticket of the policy against the loaded version of it
        (``policy_name`` None: every open ticket, routed again by the service's router to
        the policy its rules now choose; a ticket that moves gets a ``policy_changed``
        entry, its clocks recomputed from their starts under the new policy).

        Yields a ``Recomputed`` per ticket, a batch at a time, and unless ``dry_run`` stores
        each batch in one transaction (``slabot.store.recompute``, where ``Recomputed``
        says what is yielded, stored and retried).
        """
        from slabot.store import recompute

        return recompute.recompute(self, policy_name, dry_run=dry_run, batch_size=batch_size)


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
