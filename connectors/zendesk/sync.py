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

from collections.abc import Mapping
from typing import Any

from connectors.common import AgentPriorityChange
from connectors.sync import HelpdeskSync, SyncResult
from connectors.zendesk.client import ZendeskClient
from connectors.zendesk.config import ZendeskConfig
from connectors.zendesk.mapping import SOURCE, Mapped, TicketBundle, map_ticket
from slabot.store.services import TicketService
from slabot.store.snapshot import IngestResult
from slabot.store.writes import SET_DUE_FIELDS

__all__ = ["RECLASSIFICATION_SOURCE", "SET_DUE_FIELDS", "SyncResult", "ZendeskSync"]

RECLASSIFICATION_SOURCE = "zendesk-priority"
"""Deliveries of this source are audit events turned into reclassifications before their
request key was kept in the history: read (such a change is not applied again), no longer
written."""


class ZendeskSync(HelpdeskSync[TicketBundle, Mapped]):
    """Applies Zendesk tickets to the store through the store's services."""

    source = SOURCE
    helpdesk = "Zendesk"
    change_key_prefix = "zendesk:audit"
    legacy_source = RECLASSIFICATION_SOURCE

    def __init__(
        self,
        client: ZendeskClient,
        config: ZendeskConfig,
        tickets: TicketService,
    ) -> None:
        super().__init__(
            tickets, priorities=config.priorities, helpdesk_name=config.zendesk_priority
        )
        self.client = client
        self.config = config

    def sync_ticket(self, ticket_id: int, ticket: Mapping[str, Any] | None = None) -> SyncResult:
        """Fetch the ticket's authoritative state and apply it."""
        return self.apply(self.client.fetch(ticket_id, ticket))

    def map(self, bundle: TicketBundle) -> Mapped:
        """The ticket mapped: its snapshot, the statuses its audits show (pauses, solves,
        reopenings) and the due fields Zendesk shows; ingesting it owes the writes Zendesk
        lacks, due-date fields included."""
        return map_ticket(bundle, self.config)

    def after_ingest(self, mapped: Mapped, result: IngestResult) -> SyncResult:
        """Each agent's priority change not applied yet, once the snapshot is stored."""
        snapshot = mapped.snapshot
        name = f"{SOURCE}:{snapshot.external_key}"
        if result.outcome == "stale":
            return SyncResult(name, "stale", (), (), mapped.warnings)
        reclassified = self.reclassifications.apply(
            snapshot.external_key,
            [
                AgentPriorityChange(c.change_id, c.at, c.actor, c.zendesk_priority, c.priority)
                for c in mapped.reclassifications
            ],
        )
        return SyncResult(
            name, result.outcome, result.enqueued, tuple(reclassified), mapped.warnings
        )
