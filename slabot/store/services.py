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
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Literal

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.compiled import Policy
from bot.engine import Decision, evaluate
from bot.errors import SlabotError
from bot.routing import Router
from slabot.store import breaches, ingest_batch, recompute, writes
from slabot.store.breaches import DEFAULT_THRESHOLDS, DueTarget, thresholds_permille
from slabot.store.db import for_writing
from slabot.store.decisions import store_decision
from slabot.store.errors import PolicyNotLoadedError
from slabot.store.history import (
    apply_status_history,
    reads_status_history,
    stored_facts,
)
from slabot.store.models import StoredTicket
from slabot.store.reclassify import reclassify, refuse_reclassification
from slabot.store.recompute import Recomputed
from slabot.store.retry import DEFAULT_RETRY, RetryPolicy, with_retry
from slabot.store.rows import engine_ticket, upsert
from slabot.store.snapshot import (
    IngestError,
    IngestResult,
    Snapshot,
    normalized,
)
from slabot.store.writes import DEFAULT_ECHO_WINDOW, policy_tags

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


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

    # The other use cases, each in its own module (they build on ``rows`` and ``errors``,
    # below this module, and take the service as their first argument: the two below are
    # bound as its methods).
    refuse_reclassification = refuse_reclassification
    """A priority set in the helpdesk that slabot does not keep: audited and noted
    (``slabot.store.reclassify.refuse_reclassification``). False: already recorded."""
    reclassify = reclassify
    """An agent sets the ticket's priority: audited, recomputed, written back, noted
    (``slabot.store.reclassify.reclassify``, which says how)."""

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
        self,
        policy_name: str | None,
        *,
        dry_run: bool = False,
        batch_size: int = recompute.DEFAULT_BATCH_SIZE,
    ) -> Iterator[Recomputed]:
        """Re-evaluate every open ticket of the policy against the loaded version of it
        (``policy_name`` None: every open ticket, routed again by the service's router to
        the policy its rules now choose; a ticket that moves gets a ``policy_changed``
        entry, its clocks recomputed from their starts under the new policy).

        Yields a ``Recomputed`` per ticket, a batch at a time, and unless ``dry_run`` stores
        each batch in one transaction (``slabot.store.recompute``, where ``Recomputed``
        says what is yielded, stored and retried).
        """
        return recompute.recompute(self, policy_name, dry_run=dry_run, batch_size=batch_size)
