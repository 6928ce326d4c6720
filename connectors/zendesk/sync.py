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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.common import AgentPriorityChange, AgentReclassifications
from connectors.zendesk.client import ZendeskClient
from connectors.zendesk.config import ZendeskConfig
from connectors.zendesk.mapping import SOURCE, Mapped, TicketBundle, map_ticket
from slabot.store.events import EventService
from slabot.store.retry import DatabaseUnavailableError
from slabot.store.services import TicketService
from slabot.store.snapshot import IngestResult
from slabot.store.writes import SET_DUE_FIELDS

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
        self.reclassifications = AgentReclassifications(
            tickets,
            source=SOURCE,
            helpdesk="Zendesk",
            key_prefix="zendesk:audit",
            legacy_source=RECLASSIFICATION_SOURCE,
            priorities=config.priorities,
            priorities_setting="zendesk.priorities",
            helpdesk_name=config.zendesk_priority,
        )
        self.warnings = 0
        """Mapping warnings seen (unknown time zones...), for metrics."""

    def sync_ticket(self, ticket_id: int, ticket: Mapping[str, Any] | None = None) -> SyncResult:
        """Fetch the ticket's authoritative state and apply it."""
        return self.apply(self.client.fetch(ticket_id, ticket))

    def apply_many(self, bundles: Sequence[TicketBundle]) -> list[SyncResult | Exception]:
        """``apply`` for a page of tickets: mapped one by one, ingested together
        (``TicketService.ingest_many``: one transaction, to the same stored state), then
        each agent's priority change not applied yet. Per bundle, in order, its result or
        the exception that kept it out (the others are applied all the same);
        ``DatabaseUnavailableError`` is raised."""
        outcomes: list[SyncResult | Exception | None] = [None] * len(bundles)
        mapped_ones: list[tuple[int, Mapped]] = []
        for index, bundle in enumerate(bundles):
            try:
                mapped = map_ticket(bundle, self.config)
            except Exception as error:  # this ticket's outcome, as apply would raise it
                outcomes[index] = error
                continue
            for warning in mapped.warnings:
                self.warnings += 1
                log.warning("%s", warning)
            mapped_ones.append((index, mapped))
        ingested = self.tickets.ingest_many([mapped.snapshot for _, mapped in mapped_ones])
        for (index, mapped), result in zip(mapped_ones, ingested, strict=True):
            if isinstance(result, Exception):
                outcomes[index] = result
                continue
            try:
                outcomes[index] = self._after_ingest(mapped, result)
            except DatabaseUnavailableError:
                raise
            except Exception as error:
                outcomes[index] = error
        return [outcome for outcome in outcomes if outcome is not None]

    def apply(self, bundle: TicketBundle) -> SyncResult:
        """Map the ticket and ingest it: one transaction stores the snapshot, the statuses
        its audits show (pauses, solves, reopenings) and the writes Zendesk is owed,
        due-date fields included; then each agent's priority change not applied yet."""
        mapped = map_ticket(bundle, self.config)
        for warning in mapped.warnings:
            self.warnings += 1
            log.warning("%s", warning)
        return self._after_ingest(mapped, self.tickets.ingest(mapped.snapshot))

    def _after_ingest(self, mapped: Mapped, result: IngestResult) -> SyncResult:
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
