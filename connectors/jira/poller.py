"""Polling Jira with JQL ``updated >= "<cursor>"``: the backstop for missed webhooks, and
backfill.

The cursor is the ``updated`` time of the newest issue applied, stored in the
``poll_cursors`` table (source ``jira``, stream ``issues``) after each page whose issues were
all applied. Each poll searches from the cursor minus ``jira.poll_overlap_seconds``: JQL
compares whole minutes, in the time zone of slabot's Jira account, and the Cloud search is
eventually consistent, so an issue updated just before the last poll may only show now.
What the overlap brings back again is skipped without a read when the store already holds
that issue at that ``updated`` time (its ``source_updated_at``).

One issue that cannot be applied never stops a poll or a backfill: it is logged (issue key
and reason), counted in ``PollReport.failed`` with its reason in ``errors``, and the page
goes on. The cursor still moves past it (an issue that always fails must not hold every
later change back), so it is read again when it next changes (its webhook, the next poll
that finds it) or by a backfill; the service's poll job shows the failures on ``/readyz``
(activity ``ingest``) and the backfill lists them on standard error and exits 3.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from connectors import resume
from connectors.jira.client import JiraClient, JiraRejectedError, JiraUnavailableError
from connectors.jira.mapping import SOURCE, IssueBundle, issue_id_of, parse_instant
from connectors.jira.sync import JiraSync
from connectors.mapping import PayloadError
from connectors.polling import HelpdeskPoller
from connectors.polling import PollReport as BasePollReport
from slabot.store.queries import load_cursor, save_cursor, source_updated_at
from slabot.store.retry import DatabaseUnavailableError
from slabot.store.snapshot import IngestError

log = logging.getLogger(__name__)

STREAM = "issues"
Progress = Callable[[bool, "PollReport"], None]
"""Called after each page is applied and the cursor stored, with whether it was the last
(``slabot backfill``'s bar)."""
FIRST_POLL_LOOKBACK = timedelta(hours=1)
"""Where the first poll of a fresh database starts (backfill imports anything older)."""

__all__ = ["STREAM", "JiraPoller", "PollReport", "jql_since", "load_cursor"]


@dataclass(slots=True)
class PollReport(BasePollReport):
    """What one poll or backfill did; ``skipped`` is kept for the report's shape: Jira's
    search shows no deleted issues."""

    issues: int = 0
    already: int = 0
    """Issues the overlap brought back that were already applied at that time."""
    jql: str = ""


def jql_since(watched: str, since: datetime, zone: Any) -> str:
    """``(watched) AND updated >= "2026-11-16 09:00" ORDER BY updated ASC``, the time
    written in ``zone`` (JQL reads it in the searching account's zone) and rounded down
    to the minute (JQL's precision)."""
    local = since.astimezone(zone)
    return f'({watched}) AND updated >= "{local:%Y-%m-%d %H:%M}" ORDER BY updated ASC, key ASC'


class JiraPoller(HelpdeskPoller):
    """Searches the watched issues updated since the stored cursor and applies each."""

    helpdesk = "Jira"
    ticket_word = "issue"
    unavailable = JiraUnavailableError
    expected = (PayloadError, IngestError, JiraRejectedError)

    def __init__(self, client: JiraClient, sync: JiraSync) -> None:
        self.client = client
        self.sync = sync
        self.config = sync.config
        self.engine: Engine = sync.tickets.engine

    def poll(self, *, max_pages: int | None = None) -> PollReport:
        """Continue from the stored cursor, less the overlap (first run: an hour ago)."""
        cursor = load_cursor(self.engine, SOURCE, STREAM)
        if cursor is None:
            since = self.sync.tickets.now() - FIRST_POLL_LOOKBACK
        else:
            since = datetime.fromisoformat(cursor) - timedelta(
                seconds=self.config.poll_overlap_seconds
            )
        return self._run(since, cursor, max_pages)

    def backfill(
        self,
        since: datetime,
        *,
        max_pages: int | None = None,
        progress: Progress | None = None,
    ) -> PollReport:
        """Import every watched issue updated since ``since``; polling continues from its
        end.

        A backfill since the same instant that stopped before the end (Jira or the database
        unreachable, the process ended) resumes from the ``updated`` time of the newest
        issue it applied (``connectors.resume``; what it brings back again is skipped as
        already applied); ``PollReport.resumed`` says so."""
        mark = resume.resumable(self.engine, SOURCE, STREAM, since)

        def page_done(last: bool, report: PollReport) -> None:
            if report.cursor is not None:
                done = resume.BackfillMark(since, report.cursor, last)
                resume.remember(self.engine, SOURCE, STREAM, done, self.sync.tickets.now())
            if progress is not None:
                progress(last, report)

        cursor = load_cursor(self.engine, SOURCE, STREAM)
        if mark is not None:
            log.info("resuming the Jira backfill since %s from %s", since, mark.cursor)
            report = self._run(datetime.fromisoformat(mark.cursor), cursor, max_pages, page_done)
            report.resumed = True
            return report
        return self._run(since, cursor, max_pages, page_done)

    def _run(
        self,
        since: datetime,
        cursor: str | None,
        max_pages: int | None,
        progress: Progress | None = None,
    ) -> PollReport:
        report = PollReport(cursor=cursor)
        newest = datetime.fromisoformat(cursor) if cursor else None
        try:
            report.jql = jql_since(self.config.watched_jql(), since, self.client.account_zone())
            for page in self.client.pages(report.jql, max_results=self.config.page_size):
                report.pages += 1
                updated = self._apply_page(page.issues, report)
                if updated is not None and (newest is None or updated > newest):
                    newest = updated
                if newest is not None and newest.isoformat() != report.cursor:
                    report.cursor = newest.isoformat()
                    save_cursor(self.engine, SOURCE, STREAM, report.cursor, self.sync.tickets.now())
                if page.next_page_token is None:
                    report.complete = True
                if progress is not None:
                    progress(report.complete, report)
                if max_pages is not None and report.pages >= max_pages:
                    break
        except JiraUnavailableError as error:
            self.stopped(report, error)
        return report

    def _apply_page(self, issues: list[dict[str, Any]], report: PollReport) -> datetime | None:
        """Apply a page of issues from the search: each one's changelog read, then the
        page's issues applied together (``JiraSync.apply_many``: one transaction), each
        counted in the page's order. The newest ``updated`` time that counts for the cursor
        (applied now, or before). Jira or the database unreachable while reading: what was
        read is applied, then the poll stops (the cursor stays before this page)."""
        applied = source_updated_at(self.engine, SOURCE, _readable_ids(issues))
        newest: datetime | None = None
        bundles: list[IssueBundle] = []
        steps: list[tuple[str, datetime | None, Exception | None]] = []
        """Per issue read, in order: its name, ``updated``, and the error that kept it
        out before it could be applied (None: it is among ``bundles``)."""
        stopped: Exception | None = None
        for issue in issues:
            report.issues += 1
            try:
                issue_id = issue_id_of(issue)
                fields = issue.get("fields") or {}
                updated = parse_instant(fields.get("updated"), f"Jira issue {issue_id}: updated")
            except PayloadError as error:
                steps.append(("", None, error))
                continue
            if updated is not None and applied.get(issue_id, datetime.min.replace(tzinfo=UTC)) >= (
                updated
            ):
                report.already += 1
                newest = _later(newest, updated)
                continue
            name = str(issue.get("key") or issue_id)
            try:
                bundles.append(self.sync.client.fetch(issue_id, issue))
            except (JiraUnavailableError, DatabaseUnavailableError) as error:
                stopped = error
                break
            except Exception as error:
                steps.append((name, updated, error))
                continue
            steps.append((name, updated, None))
        outcomes = iter(self.sync.apply_many(bundles) if bundles else ())
        for name, updated, refused in steps:
            if not name:
                assert refused is not None
                report.failed += 1
                report.errors.append(str(refused))
                log.error("Jira search returned an issue slabot cannot read: %s", refused)
                continue
            newest = _later(newest, updated)
            self.tally(report, name, refused if refused is not None else next(outcomes))
        if stopped is not None:
            raise stopped
        return newest


def _later(newest: datetime | None, updated: datetime | None) -> datetime | None:
    if updated is None:
        return newest
    return updated if newest is None or updated > newest else newest


def _readable_ids(issues: list[dict[str, Any]]) -> list[str]:
    """The ids of the issues that have one (one without is reported by ``_apply``, and must
    not stop the page)."""
    ids = []
    for issue in issues:
        try:
            ids.append(issue_id_of(issue))
        except PayloadError:
            continue
    return ids
