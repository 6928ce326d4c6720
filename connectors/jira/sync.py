"""One Jira issue into the store: fetch, map, ingest, statuses, agents' reclassifications,
due dates owed.

Used by the webhook worker, the poller and the backfill alike, so an issue is handled the
same whichever way its change arrived.

A priority an agent sets in Jira is an audited reclassification (``TicketService.reclassify``,
origin ``jira``), counted once per changelog entry: its ``request_key``
``jira:changelog:<id>`` is kept in the ticket's history in the same transaction as the audit
entry, the recomputed decision and the comment, so the change is applied entirely or not at
all, and a change read again (a redelivery, the poller, a retry after a crash or a commit
whose outcome was unknown) is not applied twice. When the policy refuses it (P1 outside
production...), the refusal is recorded in the ticket's history under its own event key, the
policy's priority is written back (the ingest owes it, since Jira shows another) and an
internal comment says why.

Before the request key, an applied change was recorded as a delivery of source
``jira-priority`` (``<issue id>:<changelog id>``) in a transaction of its own, which a crash
could leave without the change. Those records are still read, so a change applied then is
not applied again, but no longer written: the history's key says it all.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.policy import ALWAYS_OPEN
from connectors.common import AgentPriorityChange
from connectors.jira.client import JiraClient
from connectors.jira.config import JiraConfig
from connectors.jira.mapping import (
    SOURCE,
    IssueBundle,
    Mapped,
    duedate_value,
    iso_z,
    map_issue,
)
from connectors.sync import HelpdeskSync, SyncResult
from slabot.store.db import for_writing
from slabot.store.events import EventService
from slabot.store.models import OutboxItem, StoredDecision, StoredTicket
from slabot.store.rows import engine_ticket
from slabot.store.services import TicketService
from slabot.store.snapshot import IngestResult
from slabot.store.writes import idempotency_key, owe

SET_DUE_FIELDS = "set_due_fields"
RECLASSIFICATION_SOURCE = "jira-priority"
"""Deliveries of this source are changelog entries turned into reclassifications before
their request key was kept in the history: read (such a change is not applied again), no
longer written."""


class JiraSync(HelpdeskSync[IssueBundle, Mapped]):
    """Applies Jira issues to the store through the store's services."""

    source = SOURCE
    helpdesk = "Jira"
    change_key_prefix = "jira:changelog"
    legacy_source = RECLASSIFICATION_SOURCE

    def __init__(
        self,
        client: JiraClient,
        config: JiraConfig,
        tickets: TicketService,
        events: EventService | None = None,
    ) -> None:
        super().__init__(
            tickets, events, priorities=config.priorities, helpdesk_name=config.jira_priority
        )
        self.client = client
        self.config = config

    def sync_issue(self, issue_id: str, issue: Mapping[str, Any] | None = None) -> SyncResult:
        """Fetch the issue's authoritative state and apply it."""
        return self.apply(self.client.fetch(issue_id, issue))

    def map(self, bundle: IssueBundle) -> Mapped:
        """The issue mapped: its snapshot and the statuses its changelog shows (pauses,
        solves, reopenings, each at its changelog entry's ``created``), so an issue first
        seen long after a change gets that change's instant, not its ``updated`` time."""
        return map_issue(bundle, self.config)

    def after_ingest(self, mapped: Mapped, result: IngestResult) -> SyncResult:
        """Each agent's priority change not applied yet and the due fields owed, once the
        snapshot is stored."""
        snapshot = mapped.snapshot
        name = f"{SOURCE}:{snapshot.external_key}"
        if result.outcome == "stale":
            return SyncResult(name, "stale", (), (), mapped.warnings)
        enqueued = list(result.enqueued)
        reclassified = self.reclassifications.apply(
            snapshot.external_key,
            [
                AgentPriorityChange(c.change_id, c.at, c.actor, c.jira_priority, c.priority)
                for c in mapped.reclassifications
            ],
        )
        if (self.config.due_date or self.config.due_instant_field) and self._owe_due_fields(
            result.ticket_id, mapped
        ):
            enqueued.append(SET_DUE_FIELDS)
        return SyncResult(
            name, result.outcome, tuple(enqueued), tuple(reclassified), mapped.warnings
        )

    # --- due dates -----------------------------------------------------------------------------

    def wanted_due_fields(
        self, row: StoredTicket, decision: StoredDecision
    ) -> dict[str, str | None]:
        """What the due fields should show: ``duedate`` (the date of the target's due
        instant in its calendar's zone) and ``instant`` (``...Z``). None: no due instant
        (the field is then left as it is)."""
        wanted: dict[str, str | None] = {}
        due_date = self.config.due_date
        if due_date is not None:
            instant = getattr(decision, f"{due_date.target}_due")
            zone = self._zone(row, decision, due_date.target, due_date.zone)
            wanted["duedate"] = duedate_value(instant, zone)
        instant_field = self.config.due_instant_field
        if instant_field is not None:
            instant = getattr(decision, f"{instant_field.target}_due")
            wanted["instant"] = iso_z(instant) if instant is not None else None
        return wanted

    def _zone(
        self, row: StoredTicket, decision: StoredDecision, target: str, configured: str | None
    ) -> tzinfo:
        """The zone of the calendar ``target`` is counted on; a 24x7 target takes its plan's
        calendar (its business hours say what "that day" means); else UTC."""
        from zoneinfo import ZoneInfo

        if configured is not None:
            return ZoneInfo(configured)
        policy = self.tickets.policies.get(row.policy)
        plan = decision.plan
        if policy is None or plan is None or plan not in policy.spec.plans:
            return UTC
        try:
            planned = policy.planned_targets(plan, decision.priority)
        except KeyError:
            planned = ()
        names = [p.calendar for p in planned if p.name == target]
        plan_calendar = policy.spec.plans[plan].calendar
        for name in [*names, plan_calendar]:
            if name is None or name == ALWAYS_OPEN:
                continue
            spec = policy.spec.calendars.get(name)
            if spec is None or spec.always_open:
                continue
            return policy.calendar(name, engine_ticket(row)).zone
        return UTC

    def _owe_due_fields(self, ticket_id: int, mapped: Mapped) -> bool:
        """Enqueue the due fields the stored decision calls for, where Jira shows something
        else; drop owed due writes that became moot. True when one was enqueued."""
        now = self.tickets.now()
        with Session(for_writing(self.tickets.engine)) as session, session.begin():
            decision = session.get(StoredDecision, ticket_id)
            row = session.get(StoredTicket, ticket_id)
            if decision is None or row is None:
                return False
            wanted = self.wanted_due_fields(row, decision)
            differing = {
                name: value
                for name, value in wanted.items()
                if value is not None and mapped.due_shown.get(name) != value
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
                    "superseded: Jira already shows the due dates"
                    if not differing
                    else "superseded by a newer write"
                )
            if not differing or already:
                return False
            key = idempotency_key(row, SET_DUE_FIELDS, payload, mapped.snapshot.updated_at)
            return owe(session, SOURCE, ticket_id, SET_DUE_FIELDS, payload, key, now, once=True)
