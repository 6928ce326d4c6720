"""One Zendesk ticket into the store: fetch, map, ingest (statuses and due fields included).

Used by the webhook worker, the poller and the backfill alike, so a ticket is handled the
same whichever way its change arrived.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors.zendesk.client import ZendeskClient
from connectors.zendesk.config import ZendeskConfig
from connectors.zendesk.mapping import SOURCE, TicketBundle, map_ticket
from slabot.store.events import EventService
from slabot.store.services import SET_DUE_FIELDS, TicketService

__all__ = ["SET_DUE_FIELDS", "SyncResult", "ZendeskSync"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What syncing one ticket did."""

    ticket: str
    outcome: str
    """The ingest's outcome: ``created``, ``updated``, ``unchanged`` or ``stale``."""
    enqueued: tuple[str, ...]
    warnings: tuple[str, ...]


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
        due-date fields included."""
        mapped = map_ticket(bundle, self.config)
        for warning in mapped.warnings:
            self.warnings += 1
            log.warning("%s", warning)
        snapshot = mapped.snapshot
        name = f"{SOURCE}:{snapshot.external_key}"
        result = self.tickets.ingest(snapshot)
        return SyncResult(name, result.outcome, result.enqueued, mapped.warnings)
