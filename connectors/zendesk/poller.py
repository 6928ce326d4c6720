"""Polling Zendesk's incremental ticket export: the backstop for missed webhooks, and backfill.

The export's ``after_cursor`` is stored in the ``poll_cursors`` table (source ``zendesk``,
stream ``tickets``) after each page whose tickets were all applied, so a poll that stops
half-way (Zendesk down, the process ended) resumes at the first page not fully applied;
tickets applied twice change nothing the second time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from connectors.common import load_cursor, save_cursor
from connectors.zendesk.client import ZendeskClient, ZendeskRejectedError, ZendeskUnavailableError
from connectors.zendesk.mapping import SOURCE, PayloadError
from connectors.zendesk.sync import ZendeskSync
from slabot.store.events import EventError
from slabot.store.services import IngestError

log = logging.getLogger(__name__)

STREAM = "tickets"
FIRST_POLL_LOOKBACK = timedelta(hours=1)
"""Where the first poll of a fresh database starts (backfill imports anything older)."""


@dataclass(slots=True)
class PollReport:
    """What one poll or backfill did."""

    pages: int = 0
    tickets: int = 0
    applied: int = 0
    skipped: int = 0
    """Tickets that could not be applied (malformed, deleted, refused); logged."""
    enqueued: int = 0
    cursor: str | None = None
    complete: bool = False
    """Reached the end of the stream (False: stopped early; the next poll resumes)."""
    error: str | None = None
    errors: list[str] = field(default_factory=list)


class ZendeskPoller:
    """Reads the export from the stored cursor and applies each ticket."""

    def __init__(self, client: ZendeskClient, sync: ZendeskSync) -> None:
        self.client = client
        self.sync = sync
        self.engine = sync.tickets.engine

    def poll(self, *, max_pages: int | None = None) -> PollReport:
        """Continue from the stored cursor (first run: from an hour ago)."""
        cursor = load_cursor(self.engine, SOURCE, STREAM)
        if cursor is None:
            return self._run(None, self.sync.tickets.now() - FIRST_POLL_LOOKBACK, max_pages)
        return self._run(cursor, None, max_pages)

    def backfill(self, since: datetime, *, max_pages: int | None = None) -> PollReport:
        """Import every ticket updated since ``since``; the poller continues from its end."""
        return self._run(None, since, max_pages)

    def _run(self, cursor: str | None, since: datetime | None, max_pages: int | None) -> PollReport:
        report = PollReport(cursor=cursor)
        try:
            for page in self.client.export(cursor=cursor, start_time=since):
                report.pages += 1
                for ticket in page.tickets:
                    report.tickets += 1
                    self._apply(ticket, report)
                if page.after_cursor:
                    save_cursor(
                        self.engine, SOURCE, STREAM, page.after_cursor, self.sync.tickets.now()
                    )
                    report.cursor = page.after_cursor
                report.complete = page.end_of_stream
                if max_pages is not None and report.pages >= max_pages:
                    break
        except ZendeskUnavailableError as error:
            report.error = str(error)
            log.warning("Zendesk poll stopped: %s; the next poll resumes from the cursor", error)
        return report

    def _apply(self, ticket: dict[str, object], report: PollReport) -> None:
        raw_id = ticket.get("id")
        if ticket.get("status") == "deleted" or not isinstance(raw_id, int):
            report.skipped += 1
            return
        try:
            result = self.sync.sync_ticket(raw_id, ticket)
        except (PayloadError, IngestError, EventError, ZendeskRejectedError) as error:
            report.skipped += 1
            report.errors.append(f"ticket {raw_id}: {error}")
            log.error("Zendesk ticket %s not applied: %s", raw_id, error)
            return
        report.applied += 1
        report.enqueued += len(result.enqueued)
