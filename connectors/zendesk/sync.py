"""One Zendesk ticket into the store: fetch, map, ingest, statuses, due fields owed.

Used by the webhook worker, the poller and the backfill alike, so a ticket is handled the
same whichever way its change arrived.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.zendesk.client import ZendeskClient
from connectors.zendesk.config import ZendeskConfig
from connectors.zendesk.mapping import SOURCE, Mapped, TicketBundle, due_field_values, map_ticket
from slabot.store.db import for_writing
from slabot.store.events import EventService
from slabot.store.models import OutboxItem, StoredDecision, StoredTicket, TicketEvent
from slabot.store.services import TicketService

log = logging.getLogger(__name__)

SET_DUE_FIELDS = "set_due_fields"
_PLAIN_STATUSES = frozenset({"new", "open"})


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
        mapped = map_ticket(bundle, self.config)
        for warning in mapped.warnings:
            self.warnings += 1
            log.warning("%s", warning)
        snapshot = mapped.snapshot
        name = f"{SOURCE}:{snapshot.external_key}"
        result = self.tickets.ingest(snapshot)
        if result.outcome == "stale":
            return SyncResult(name, "stale", (), mapped.warnings)
        enqueued = list(result.enqueued)
        changes = mapped.status_changes
        if all(c.to in _PLAIN_STATUSES for c in changes) and snapshot.status in _PLAIN_STATUSES:
            changes = ()  # only new/open: no pause, solve or reopening to derive
        known = self._known_event_keys(result.ticket_id) if changes else set()
        for change in changes:
            if change.event_key in known or change.at < snapshot.created_at:
                continue
            applied = self.events.status_changed(
                SOURCE,
                snapshot.external_key,
                change.to,
                change.at,
                change.actor,
                event_key=change.event_key,
            )
            enqueued.extend(applied.enqueued)
        if self.config.due_fields and self._owe_due_fields(result.ticket_id, mapped):
            enqueued.append(SET_DUE_FIELDS)
        return SyncResult(name, result.outcome, tuple(enqueued), mapped.warnings)

    def _known_event_keys(self, ticket_id: int) -> set[str]:
        with Session(self.tickets.engine) as session:
            keys = session.scalars(
                select(TicketEvent.event_key).where(
                    TicketEvent.ticket_id == ticket_id,
                    TicketEvent.event_key.like("zendesk:audit:%"),
                )
            )
            return {key for key in keys if key}

    def _owe_due_fields(self, ticket_id: int, mapped: Mapped) -> bool:
        """Enqueue the due fields the stored decision calls for, where the ticket shows
        something else; drop owed due writes that became moot. True when one was enqueued.

        (The store's services own set_priority and set_tags; due fields are Zendesk's own
        fields, so the connector keeps them in step here, by the same rules.)
        """
        now = self.tickets.now()
        with Session(for_writing(self.tickets.engine)) as session, session.begin():
            decision = session.get(StoredDecision, ticket_id)
            row = session.get(StoredTicket, ticket_id)
            if decision is None or row is None:
                return False
            dues: dict[str, datetime | None] = {
                target: getattr(decision, f"{target}_due") for target in self.config.due_fields
            }
            wanted = due_field_values(dues, self.config)
            differing = {
                target: value
                for target, value in wanted.items()
                if mapped.due_shown.get(target) != value
            }
            pending = session.scalars(
                select(OutboxItem).where(
                    OutboxItem.ticket_id == ticket_id,
                    OutboxItem.target_system == SOURCE,
                    OutboxItem.kind == SET_DUE_FIELDS,
                    OutboxItem.done_at.is_(None),
                )
            ).all()
            payload = {"fields": differing}
            already = False
            for item in pending:
                if differing and item.payload == payload:
                    already = True
                    continue
                item.done_at = now
                item.next_attempt_at = None
                item.last_error = (
                    "superseded: Zendesk already shows the due dates"
                    if not differing
                    else "superseded by a newer write"
                )
            if not differing or already:
                return False
            digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
            key = (
                f"{SOURCE}:{row.external_key}:{SET_DUE_FIELDS}:"
                f"{int(mapped.snapshot.updated_at.timestamp())}:{digest[:16]}"
            )
            if session.scalar(select(OutboxItem.id).where(OutboxItem.idempotency_key == key)):
                return False
            session.add(
                OutboxItem(
                    target_system=SOURCE,
                    ticket_id=ticket_id,
                    kind=SET_DUE_FIELDS,
                    payload=payload,
                    idempotency_key=key,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
            return True
