"""Polling Zendesk's incremental ticket export: the backstop for missed webhooks, and backfill.

The export's ``after_cursor`` is stored in the ``poll_cursors`` table (source ``zendesk``,
stream ``tickets``) after each page, so a poll that stops half-way (Zendesk or the database
unreachable, the process ended) resumes at the first page not read to its end; tickets
applied twice change nothing the second time.

One ticket that cannot be applied never stops a poll or a backfill: it is logged (ticket id
and reason), counted in ``PollReport.failed`` with its reason in ``errors``, and the page
goes on. The cursor still moves past it (a ticket that always fails must not hold every
later change back), so it is read again when it next changes (its webhook, its next entry
in the export) or by a backfill; the service's poll job shows the failures on ``/readyz``
(activity ``ingest``) and the backfill lists them on standard error and exits 3.
A ticket deleted now (status ``deleted``) is not ingested: counted in ``skipped``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from connectors import resume
from connectors.mapping import PayloadError
from connectors.polling import HelpdeskPoller
from connectors.polling import PollReport as BasePollReport
from connectors.zendesk.client import (
    ExportPage,
    ZendeskClient,
    ZendeskRejectedError,
    ZendeskUnavailableError,
)
from connectors.zendesk.mapping import DELETED, SOURCE, DeletedTicketError, TicketBundle
from connectors.zendesk.sync import ZendeskSync
from slabot.store.queries import load_cursor, save_cursor
from slabot.store.retry import DatabaseUnavailableError
from slabot.store.snapshot import IngestError

log = logging.getLogger(__name__)

STREAM = "tickets"
Progress = Callable[[ExportPage, "PollReport"], None]
"""Called after each page is applied and its cursor stored (``slabot backfill``'s bar)."""
FIRST_POLL_LOOKBACK = timedelta(hours=1)
"""Where the first poll of a fresh database starts (backfill imports anything older)."""


@dataclass(slots=True)
class PollReport(BasePollReport):
    """What one poll or backfill did; ``skipped``: tickets deleted in Zendesk (in its
    trash), nothing to ingest."""

    tickets: int = 0


class _NoId(Exception):
    """A ticket of the export that cannot be read at all (reported, never raised)."""


class ZendeskPoller(HelpdeskPoller):
    """Reads the export from the stored cursor and applies each ticket."""

    helpdesk = "Zendesk"
    unavailable = ZendeskUnavailableError
    expected = (_NoId, PayloadError, IngestError, ZendeskRejectedError)

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

    def backfill(
        self,
        since: datetime,
        *,
        max_pages: int | None = None,
        progress: Progress | None = None,
    ) -> PollReport:
        """Import every ticket updated since ``since``; the poller continues from its end.

        A backfill since the same instant that stopped before the end (Zendesk or the
        database unreachable, the process ended) resumes at the first page it did not
        apply to its end (``connectors.resume``); ``PollReport.resumed`` says so."""
        mark = resume.resumable(self.engine, SOURCE, STREAM, since)

        def page_done(page: ExportPage, report: PollReport) -> None:
            if page.after_cursor:
                done = resume.BackfillMark(since, page.after_cursor, page.end_of_stream)
                resume.remember(self.engine, SOURCE, STREAM, done, self.sync.tickets.now())
            if progress is not None:
                progress(page, report)

        if mark is not None:
            log.info("resuming the Zendesk backfill since %s from its last page", since)
            report = self._run(mark.cursor, None, max_pages, page_done)
            report.resumed = True
            return report
        return self._run(None, since, max_pages, page_done)

    def _run(
        self,
        cursor: str | None,
        since: datetime | None,
        max_pages: int | None,
        progress: Progress | None = None,
    ) -> PollReport:
        report = PollReport(cursor=cursor)
        try:
            for page in self.client.export(cursor=cursor, start_time=since):
                report.pages += 1
                self._apply_page(page.tickets, report)
                if page.after_cursor:
                    save_cursor(
                        self.engine, SOURCE, STREAM, page.after_cursor, self.sync.tickets.now()
                    )
                    report.cursor = page.after_cursor
                report.complete = page.end_of_stream
                if progress is not None:
                    progress(page, report)
                if max_pages is not None and report.pages >= max_pages:
                    break
        except ZendeskUnavailableError as error:
            self.stopped(report, error)
        return report

    def _apply_page(self, tickets: list[dict[str, object]], report: PollReport) -> None:
        """Read each ticket's audits and people, then apply the page's tickets together
        (``ZendeskSync.apply_many``: one transaction for the page), each counted in the
        page's order. Zendesk or the database unreachable while reading: what was read is
        applied, then the poll stops (the cursor stays before this page)."""
        bundles: list[TicketBundle] = []
        steps: list[tuple[str, Exception | None]] = []
        """Per ticket read, in order: its id, and the error that kept it out before it
        could be applied (None: it is among ``bundles``)."""
        stopped: Exception | None = None
        for ticket in tickets:
            report.tickets += 1
            raw_id = ticket.get("id")
            if str(ticket.get("status") or "").strip().lower() == DELETED:
                report.skipped += 1
                continue
            if not isinstance(raw_id, int) or isinstance(raw_id, bool):
                steps.append((repr(raw_id)[:40], _NoId("the export shows no numeric ticket id")))
                continue
            try:
                bundles.append(self.sync.client.fetch(raw_id, ticket))
            except (ZendeskUnavailableError, DatabaseUnavailableError) as error:
                stopped = error
                break
            except Exception as error:
                steps.append((str(raw_id), error))
                continue
            steps.append((str(raw_id), None))
        outcomes = iter(self.sync.apply_many(bundles) if bundles else ())
        for name, refused in steps:
            self.tally(report, name, refused if refused is not None else next(outcomes))
        if stopped is not None:
            raise stopped

    def count_failure(self, report: BasePollReport, name: str, error: Exception) -> None:
        if isinstance(error, DeletedTicketError):
            report.skipped += 1  # deleted between the export and the read
            return
        super().count_failure(report, name, error)
