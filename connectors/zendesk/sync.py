"""One Zendesk ticket into the store: fetch, map, ingest (statuses and due fields included),
agents' reclassifications.

Used by the webhook worker, the poller and the backfill alike, so a ticket is handled the
same whichever way its change arrived.

A priority an agent sets in Zendesk is an audited reclassification
(``TicketService.reclassify``, origin ``zendesk``), counted once per audit event (its
``<audit id>:<event id>`` is recorded as a delivery of source ``zendesk-priority``). When
the policy refuses it (P1 outside production...), the refusal is recorded in the ticket's
history, the policy's priority is written back (the ingest owes it, since Zendesk shows
another) and an internal note says why.
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
from slabot.store.events import EventService
from slabot.store.services import SET_DUE_FIELDS, TicketService

__all__ = ["RECLASSIFICATION_SOURCE", "SET_DUE_FIELDS", "SyncResult", "ZendeskSync"]

log = logging.getLogger(__name__)

RECLASSIFICATION_SOURCE = "zendesk-priority"
"""Deliveries of this source are audit events already turned into reclassifications."""


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
        for change in mapped.reclassifications:
            outcome = self._reclassify(snapshot.external_key, change)
            if outcome is not None:
                reclassified.append(outcome)
        return SyncResult(
            name, result.outcome, result.enqueued, tuple(reclassified), mapped.warnings
        )

    def _reclassify(self, external_key: str, change: PriorityChange) -> str | None:
        """Apply one agent's priority change once; returns what happened (None: seen)."""
        delivery = f"{external_key}:{change.change_id}"
        if not self.events.record_delivery(RECLASSIFICATION_SOURCE, delivery):
            return None
        try:
            if change.priority is None:
                mapping = ", ".join(f"{k}: {v}" for k, v in self.config.priorities.items())
                shown = repr(change.zendesk_priority) if change.zendesk_priority else "(none)"
                self._refuse(
                    external_key,
                    change,
                    f"Zendesk priority {shown} is not one of zendesk.priorities ({mapping})",
                )
                return f"refused {change.zendesk_priority or 'none'}"
            try:
                self.tickets.reclassify(
                    SOURCE,
                    external_key,
                    change.priority,
                    change.actor,
                    f"set the priority to {change.zendesk_priority} in Zendesk",
                    "zendesk",
                )
            except ReclassificationError as refusal:
                self._refuse(external_key, change, str(refusal))
                return f"refused {change.priority}"
            log.info(
                "zendesk:%s reclassified to %s by %s", external_key, change.priority, change.actor
            )
            return change.priority
        except Exception:
            self.events.forget_delivery(RECLASSIFICATION_SOURCE, delivery)
            raise

    def _refuse(self, external_key: str, change: PriorityChange, why: str) -> None:
        """Record the refusal in the history and owe Zendesk an internal note saying why
        (the policy's priority itself is owed by the ingest: Zendesk shows another)."""
        self.tickets.refuse_reclassification(
            SOURCE,
            external_key,
            asked=change.zendesk_priority,
            priority=change.priority,
            actor=change.actor,
            origin="zendesk",
            why=why,
            at=change.at,
            event_key=f"zendesk:audit:{change.change_id}:priority",
            helpdesk_name=self.config.zendesk_priority,
        )
        log.warning(
            "zendesk:%s: %s's priority %s refused: %s",
            external_key,
            change.actor,
            change.zendesk_priority or "(none)",
            why,
        )
