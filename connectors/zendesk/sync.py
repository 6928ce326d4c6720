"""One Zendesk ticket into the store: fetch, map, ingest (statuses and due fields included),
agents' reclassifications.

Used by the webhook worker, the poller and the backfill alike, so a ticket is handled the
same whichever way its change arrived.

A priority an agent sets in Zendesk is an audited reclassification
(``TicketService.reclassify``, origin ``zendesk``), counted once per audit event: its
``request_key`` ``zendesk:audit:<audit id>:<event id>`` is kept in the ticket's history in
the same transaction as the audit entry, the recomputed decision and the note, so the change
is applied entirely or not at all, and a change read again (a redelivery, the poller, a
retry after a crash or a commit whose outcome was unknown) is not applied twice. When the
policy refuses it (P1 outside production...), the refusal is recorded in the ticket's
history under its own event key, the policy's priority is written back (the ingest owes it,
since Zendesk shows another) and an internal note says why.

Before the request key, an applied change was recorded as a delivery of source
``zendesk-priority`` (``<ticket id>:<audit id>:<event id>``) in a transaction of its own,
which a crash could leave without the change. Those records are still read, so a change
applied then is not applied again, but no longer written: the history's key says it all.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.errors import ReclassificationError
from connectors.zendesk.client import ZendeskClient
from connectors.zendesk.config import ZendeskConfig
from connectors.zendesk.mapping import SOURCE, PriorityChange, TicketBundle, map_ticket
from slabot.store import queries
from slabot.store.events import EventService
from slabot.store.services import SET_DUE_FIELDS, TicketService, reclassify_event_key

__all__ = ["RECLASSIFICATION_SOURCE", "SET_DUE_FIELDS", "SyncResult", "ZendeskSync"]

log = logging.getLogger(__name__)

RECLASSIFICATION_SOURCE = "zendesk-priority"
"""Deliveries of this source are audit events turned into reclassifications before their
request key was kept in the history: read (such a change is not applied again), no longer
written."""


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What syncing one ticket did."""

    ticket: str
    outcome: str
    """The ingest's outcome: ``created``, ``updated``, ``unchanged`` or ``stale``."""
    enqueued: tuple[str, ...]
    reclassified: tuple[str, ...] = ()
    """Per agent priority change applied: ``P1`` (accepted) or ``refused P1``."""
    warnings: tuple[str, ...] = ()


class ZendeskSync:
    """Applies Zendesk tickets to the store through the store's services."""

    def __init__(
        self,
        client: ZendeskClient,
        config: ZendeskConfig,
        tickets: TicketService,
        events: EventService | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.tickets = tickets
        self.events = events or EventService(tickets)
        self.warnings = 0
        """Mapping warnings seen (unknown time zones...), for metrics."""

    def sync_ticket(self, ticket_id: int, ticket: Mapping[str, Any] | None = None) -> SyncResult:
        """Fetch the ticket's authoritative state and apply it."""
        return self.apply(self.client.fetch(ticket_id, ticket))

    def apply(self, bundle: TicketBundle) -> SyncResult:
        """Map the ticket and ingest it: one transaction stores the snapshot, the statuses
        its audits show (pauses, solves, reopenings) and the writes Zendesk is owed,
        due-date fields included; then each agent's priority change not applied yet."""
        mapped = map_ticket(bundle, self.config)
        for warning in mapped.warnings:
            self.warnings += 1
            log.warning("%s", warning)
        snapshot = mapped.snapshot
        name = f"{SOURCE}:{snapshot.external_key}"
        result = self.tickets.ingest(snapshot)
        if result.outcome == "stale":
            return SyncResult(name, "stale", (), (), mapped.warnings)
        reclassified = []
        done = self._done(snapshot.external_key, mapped.reclassifications)
        for change in mapped.reclassifications:
            if change.change_id in done:
                continue
            outcome = self._reclassify(snapshot.external_key, change)
            if outcome is not None:
                reclassified.append(outcome)
        return SyncResult(
            name, result.outcome, result.enqueued, tuple(reclassified), mapped.warnings
        )

    def _done(self, external_key: str, changes: tuple[PriorityChange, ...]) -> set[str]:
        """The ids of the changes already applied or refused: the ticket's history holds
        their request key or their refusal's event key, or (applied before the request key)
        a delivery of source ``zendesk-priority`` records them. A shortcut only: the
        reclassification and the refusal check their own key again under the ticket's
        lock."""
        if not changes:
            return set()
        engine, retry = self.tickets.engine, self.tickets.retry
        keys = queries.known_event_keys(engine, SOURCE, external_key, retry=retry)
        legacy = queries.recorded_deliveries(
            engine,
            RECLASSIFICATION_SOURCE,
            [f"{external_key}:{change.change_id}" for change in changes],
            retry=retry,
        )
        return {
            change.change_id
            for change in changes
            if reclassify_event_key(_request_key(change)) in keys
            or _refusal_key(change) in keys
            or f"{external_key}:{change.change_id}" in legacy
        }

    def _reclassify(self, external_key: str, change: PriorityChange) -> str | None:
        """Apply one agent's priority change once; returns what happened (None: it already
        was). One transaction applies it with its request key, or records its refusal with
        its event key: nothing is half done if the process dies, and a retry finds it."""
        if change.priority is None:
            mapping = ", ".join(f"{k}: {v}" for k, v in self.config.priorities.items())
            shown = repr(change.zendesk_priority) if change.zendesk_priority else "(none)"
            why = f"Zendesk priority {shown} is not one of zendesk.priorities ({mapping})"
            if not self._refuse(external_key, change, why):
                return None
            return f"refused {change.zendesk_priority or 'none'}"
        try:
            result = self.tickets.reclassify(
                SOURCE,
                external_key,
                change.priority,
                change.actor,
                f"set the priority to {change.zendesk_priority} in Zendesk",
                "zendesk",
                request_key=_request_key(change),
            )
        except ReclassificationError as refusal:
            if not self._refuse(external_key, change, str(refusal)):
                return None
            return f"refused {change.priority}"
        if result.duplicate:
            return None
        log.info("zendesk:%s reclassified to %s by %s", external_key, change.priority, change.actor)
        return change.priority

    def _refuse(self, external_key: str, change: PriorityChange, why: str) -> bool:
        """Record the refusal in the history and owe Zendesk an internal note saying why
        (the policy's priority itself is owed by the ingest: Zendesk shows another). False:
        it was recorded before."""
        if not self.tickets.refuse_reclassification(
            SOURCE,
            external_key,
            asked=change.zendesk_priority,
            priority=change.priority,
            actor=change.actor,
            origin="zendesk",
            why=why,
            at=change.at,
            event_key=_refusal_key(change),
            helpdesk_name=self.config.zendesk_priority,
        ):
            return False
        log.warning(
            "zendesk:%s: %s's priority %s refused: %s",
            external_key,
            change.actor,
            change.zendesk_priority or "(none)",
            why,
        )
        return True


def _request_key(change: PriorityChange) -> str:
    """The reclassification's request key: its audit event."""
    return f"zendesk:audit:{change.change_id}"


def _refusal_key(change: PriorityChange) -> str:
    """The refusal's event key in the ticket's history."""
    return f"zendesk:audit:{change.change_id}:priority"
