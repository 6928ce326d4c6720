"""Sending the writes slabot owes Jira: outbox items -> one edit (and one comment) per issue.

Kinds: ``set_priority`` ({"priority": "P2"}, written as ``jira.priorities`` names it),
``set_tags`` ({"add": [...], "remove": [...]}, labels changed with update operations, never
replaced), ``set_due_fields`` ({"fields": {"duedate": "2026-11-24", "instant":
"2026-11-24T08:30:00Z"}}: Jira's ``duedate`` and the configured date-time field) and
``add_note`` ({"body": ...}, an internal comment) and ``set_assignee`` ({"email": ...}: the
user Jira finds by that address, ``user/search?query=``; "Assign to me" in Slack). The
items claimed for one issue become
one ``PUT /rest/api/3/issue/{id}`` and, for notes, one comment.

Outcomes per item: done when its write was made; retried later when Jira was unavailable
(429 and 503 after their Retry-After, other 5xx, time-outs, with the outbox's backoff); on a
429 or 503 the rest of the batch is not sent but rescheduled alike, so slabot backs off as a
whole. Dead-lettered with Jira's error messages when Jira refused the write (a 4xx: a
field not on the screen, a deleted issue): shown by ``Outbox.dead_letters``, replayable.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.jira.client import (
    IssueEdit,
    JiraClient,
    JiraRejectedError,
    JiraUnavailableError,
)
from connectors.jira.config import JiraConfig
from connectors.jira.mapping import SOURCE, datetime_field_value
from slabot.store.models import StoredTicket
from slabot.store.outbox import ClaimedItem, Outbox, PermanentWriteError

log = logging.getLogger(__name__)

KINDS = ("set_priority", "set_tags", "add_note", "set_due_fields", "set_assignee")
_EDIT_KINDS = frozenset({"set_priority", "set_tags", "set_due_fields", "set_assignee"})


@dataclass(slots=True)
class WriteReport:
    """What one flush did."""

    items: int = 0
    issues: int = 0
    sent: int = 0
    retrying: int = 0
    dead: int = 0
    write_calls: int = 0
    errors: list[str] = field(default_factory=list)


class JiraWriter:
    """Flushes the ``jira`` outbox, one edit per issue."""

    def __init__(self, client: JiraClient, config: JiraConfig, outbox: Outbox) -> None:
        self.client = client
        self.config = config
        self.outbox = outbox
        self._accounts: dict[str, str] = {}

    def flush(self, worker_id: str, *, limit: int = 200, max_rounds: int = 100) -> WriteReport:
        """Claim due items (``limit`` at a time) and send them until none is due, or Jira
        asks slabot to back off."""
        report = WriteReport()
        for _ in range(max_rounds):
            claimed = self.outbox.claim(SOURCE, worker_id, limit)
            if not claimed:
                break
            if not self._send(claimed, report):
                break
        return report

    def _send(self, claimed: Sequence[ClaimedItem], report: WriteReport) -> bool:
        """Send one claimed batch; False when Jira said to back off (429/503)."""
        report.items += len(claimed)
        keys = self._external_keys({item.ticket_id for item in claimed if item.ticket_id})
        by_issue: dict[str, list[ClaimedItem]] = defaultdict(list)
        for item in claimed:
            external = keys.get(item.ticket_id) if item.ticket_id is not None else None
            if external is None:
                self._settle_failed(item, "the outbox item names no Jira issue", report)
                continue
            by_issue[external].append(item)
        pending = sorted(by_issue.items())
        for index, (issue_id, items) in enumerate(pending):
            backoff = self._send_issue(issue_id, items, report)
            if backoff is not None:
                for _, later in pending[index + 1 :]:
                    for item in later:
                        self._retry(item, backoff, report)
                return False
        return True

    def _send_issue(
        self, issue_id: str, items: list[ClaimedItem], report: WriteReport
    ) -> JiraUnavailableError | None:
        """The edit, then the comment. Returns the error when Jira said to back off."""
        items, backoff = self._with_known_assignees(items, report)
        if backoff is not None:
            return backoff
        edits = [item for item in items if item.kind in _EDIT_KINDS]
        notes = [item for item in items if item.kind == "add_note"]
        for item in items:
            if item.kind not in KINDS:
                self._settle_failed(
                    item,
                    f"outbox kind {item.kind!r} is not a Jira write ({', '.join(KINDS)})",
                    report,
                )
        report.issues += 1
        for group in (edits, notes):
            if not group:
                continue
            try:
                change = self.edit_for(issue_id, group)
            except PermanentWriteError as error:
                for item in group:
                    self._settle_failed(item, str(error), report)
                continue
            if change.is_empty():
                for item in group:
                    self._complete(item, report)
                continue
            report.write_calls += 1
            try:
                self.client.edit(change)
            except JiraUnavailableError as error:
                for item in group:
                    self._retry(item, error, report)
                if error.backs_off:
                    # The rest of this issue's writes wait too (a note after its edit).
                    if group is edits:
                        for item in notes:
                            self._retry(item, error, report)
                    return error
                continue
            except JiraRejectedError as error:
                for item in group:
                    self._settle_failed(item, str(error), report)
                continue
            for item in group:
                self._complete(item, report)
        return None

    def _with_known_assignees(
        self, items: list[ClaimedItem], report: WriteReport
    ) -> tuple[list[ClaimedItem], JiraUnavailableError | None]:
        """The items whose assignee (if any) Jira finds: a ``set_assignee`` item whose address
        matches nobody is dead-lettered alone (the issue's other writes still go); when the
        lookup itself fails, the issue's items wait (and a 429/503 backs off the batch)."""
        kept = []
        for item in items:
            if item.kind == "set_assignee":
                try:
                    self._account(str(item.payload.get("email") or ""))
                except PermanentWriteError as error:
                    self._settle_failed(item, str(error), report)
                    continue
                except JiraUnavailableError as error:
                    for waiting in items:
                        self._retry(waiting, error, report)
                    return [], error if error.backs_off else None
            kept.append(item)
        return kept, None

    def _account(self, email: str) -> str:
        """The account id for an address (looked up once per writer)."""
        if email not in self._accounts:
            found = self.client.account_id_by_email(email) if email else None
            if found is None:
                raise PermanentWriteError(
                    f"Jira finds no single user with the e-mail address {email!r} (the Slack "
                    "user who pressed Assign to me): check the address in Atlassian, or "
                    "assign the issue in Jira"
                )
            self._accounts[email] = found
        return self._accounts[email]

    def edit_for(self, issue_id: str, items: Sequence[ClaimedItem]) -> IssueEdit:
        """The one edit that makes all of ``items``; raises ``PermanentWriteError`` for an
        item slabot cannot express (an unknown priority)."""
        priority: str | None = None
        add: set[str] = set()
        remove: set[str] = set()
        fields: dict[str, str | None] = {}
        notes: list[str] = []
        assignee: str | None = None
        # Oldest first, so a newer item of the same kind wins.
        for item in sorted(items, key=lambda i: (i.created_at, i.id)):
            payload = item.payload
            if item.kind == "set_priority":
                wanted = str(payload.get("priority"))
                name = self.config.jira_priority(wanted)
                if name is None:
                    raise PermanentWriteError(
                        f"priority {wanted!r} has no Jira priority in jira.priorities "
                        f"({', '.join(f'{k}: {v}' for k, v in self.config.priorities.items())})"
                    )
                priority = name
            elif item.kind == "set_tags":
                for label in payload.get("add") or ():
                    add.add(str(label))
                    remove.discard(str(label))
                for label in payload.get("remove") or ():
                    remove.add(str(label))
                    add.discard(str(label))
            elif item.kind == "add_note":
                body = str(payload.get("body") or "").strip()
                if body:
                    notes.append(body)
            elif item.kind == "set_due_fields":
                for name, value in (payload.get("fields") or {}).items():
                    self._due_field(name, value, fields)
            elif item.kind == "set_assignee":
                assignee = self._account(str(payload.get("email") or ""))
        return IssueEdit(
            issue_id=issue_id,
            priority=priority,
            fields=fields,
            add_labels=tuple(sorted(add)),
            remove_labels=tuple(sorted(remove)),
            comment="\n\n".join(notes) or None,
            assignee=assignee,
        )

    def _due_field(self, name: str, value: object, fields: dict[str, str | None]) -> None:
        if name == "duedate" and self.config.due_date is not None:
            fields["duedate"] = None if value is None else str(value)
        elif name == "instant" and self.config.due_instant_field is not None:
            instant = None if value is None else datetime.fromisoformat(str(value))
            fields[self.config.due_instant_field.id] = (
                None if instant is None else datetime_field_value(instant)
            )

    def send_one(self, item: ClaimedItem) -> None:
        """A sender for ``Outbox.flush`` (one item, one call): for callers that do not
        group by issue."""
        keys = self._external_keys({item.ticket_id} if item.ticket_id else set())
        external = keys.get(item.ticket_id) if item.ticket_id is not None else None
        if external is None:
            raise PermanentWriteError("the outbox item names no Jira issue")
        if item.kind not in KINDS:
            raise PermanentWriteError(f"outbox kind {item.kind!r} is not a Jira write")
        change = self.edit_for(external, [item])
        if not change.is_empty():
            self.client.edit(change)

    def _external_keys(self, ticket_ids: set[int]) -> dict[int, str]:
        if not ticket_ids:
            return {}
        with Session(self.outbox.engine) as session:
            rows = session.execute(
                select(StoredTicket.id, StoredTicket.external_key).where(
                    StoredTicket.id.in_(sorted(ticket_ids)), StoredTicket.source == SOURCE
                )
            ).all()
        return {row_id: key for row_id, key in rows}

    def _complete(self, item: ClaimedItem, report: WriteReport) -> None:
        if self.outbox.complete(item, item.attempt):
            report.sent += 1

    def _retry(self, item: ClaimedItem, error: JiraUnavailableError, report: WriteReport) -> None:
        if self.outbox.fail(item, item.attempt, str(error), True, error.retry_after):
            report.retrying += 1

    def _settle_failed(self, item: ClaimedItem, message: str, report: WriteReport) -> None:
        report.errors.append(f"outbox item {item.id} ({item.kind}): {message}")
        log.error("Jira refused outbox item %d (%s): %s", item.id, item.kind, message)
        if self.outbox.fail(item, item.attempt, message, False):
            report.dead += 1
