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
from typing import Any
from zoneinfo import ZoneInfo

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
from slabot.store.due_fields import StoredDue, owe_due_fields
from slabot.store.services import TicketService
from slabot.store.snapshot import IngestResult
from slabot.store.writes import SET_DUE_FIELDS

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
    ) -> None:
        super().__init__(tickets, priorities=config.priorities, helpdesk_name=config.jira_priority)
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

    def wanted_due_fields(self, due: StoredDue) -> dict[str, str | None]:
        """What the due fields should show: ``duedate`` (the date of the target's due
        instant in its calendar's zone) and ``instant`` (``...Z``). None: no due instant
        (the field is then left as it is)."""
        wanted: dict[str, str | None] = {}
        due_date = self.config.due_date
        if due_date is not None:
            target = due_date.target
            zone = ZoneInfo(due_date.zone) if due_date.zone is not None else due.zone(target)
            wanted["duedate"] = duedate_value(due.instant(target), zone)
        instant_field = self.config.due_instant_field
        if instant_field is not None:
            instant = due.instant(instant_field.target)
            wanted["instant"] = iso_z(instant) if instant is not None else None
        return wanted

    def _owe_due_fields(self, ticket_id: int, mapped: Mapped) -> bool:
        """Enqueue the due fields the stored decision calls for, where Jira shows something
        else; drop owed due writes that became moot. True when one was enqueued."""
        return owe_due_fields(
            self.tickets,
            ticket_id,
            self.wanted_due_fields,
            mapped.due_shown,
            mapped.snapshot.updated_at,
            helpdesk=self.helpdesk,
        )
