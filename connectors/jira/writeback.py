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

from collections.abc import Sequence
from datetime import datetime

from connectors.jira.client import (
    IssueEdit,
    JiraClient,
    JiraRejectedError,
    JiraUnavailableError,
)
from connectors.jira.config import JiraConfig
from connectors.jira.mapping import SOURCE, datetime_field_value
from connectors.writeback import KINDS, OutboxWriter, WriteReport, fold, mapped_priority
from slabot.store.outbox import ClaimedItem, Outbox, PermanentWriteError

__all__ = ["KINDS", "JiraWriter", "WriteReport"]

_EDIT_KINDS = frozenset({"set_priority", "set_tags", "set_due_fields", "set_assignee"})


class JiraWriter(OutboxWriter):
    """Flushes the ``jira`` outbox, one edit per issue."""

    source = SOURCE
    helpdesk = "Jira"
    ticket_word = "issue"
    batch_limit = 200

    def __init__(self, client: JiraClient, config: JiraConfig, outbox: Outbox) -> None:
        super().__init__(outbox)
        self.client = client
        self.config = config
        self._accounts: dict[str, str] = {}

    def send(self, claimed: Sequence[ClaimedItem], report: WriteReport) -> bool:
        """Send one claimed batch; False when Jira said to back off (429/503)."""
        pending = sorted(self.by_ticket(claimed, report).items())
        for index, (issue_id, items) in enumerate(pending):
            backoff = self._send_issue(issue_id, items, report)
            if backoff is not None:
                for _, later in pending[index + 1 :]:
                    for item in later:
                        self.retry(item, backoff, report)
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
                self.dead(
                    item,
                    f"outbox kind {item.kind!r} is not a Jira write ({', '.join(KINDS)})",
                    report,
                )
        report.tickets += 1
        for group in (edits, notes):
            if not group:
                continue
            try:
                change = self.edit_for(issue_id, group)
            except PermanentWriteError as error:
                for item in group:
                    self.dead(item, str(error), report)
                continue
            if change.is_empty():
                for item in group:
                    self.complete(item, report)
                continue
            report.write_calls += 1
            try:
                self.client.edit(change)
            except JiraUnavailableError as error:
                for item in group:
                    self.retry(item, error, report)
                if error.backs_off:
                    # The rest of this issue's writes wait too (a note after its edit).
                    if group is edits:
                        for item in notes:
                            self.retry(item, error, report)
                    return error
                continue
            except JiraRejectedError as error:
                for item in group:
                    self.dead(item, str(error), report)
                continue
            for item in group:
                self.complete(item, report)
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
                    self.dead(item, str(error), report)
                    continue
                except JiraUnavailableError as error:
                    for waiting in items:
                        self.retry(waiting, error, report)
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
        owed = fold(
            items,
            helpdesk=self.helpdesk,
            priority=self._priority,
            due_field=self._due_field,
            assignee=self._account,
        )
        return IssueEdit(
            issue_id=issue_id,
            priority=owed.priority,
            fields=owed.fields,
            add_labels=tuple(sorted(owed.add_tags)),
            remove_labels=tuple(sorted(owed.remove_tags)),
            comment=owed.note,
            assignee=owed.assignee,
        )

    def _priority(self, wanted: str) -> str:
        return mapped_priority(
            wanted,
            self.config.jira_priority,
            self.config.priorities,
            helpdesk=self.helpdesk,
            setting="jira.priorities",
        )

    def _due_field(self, name: str, value: object) -> tuple[str, str | None] | None:
        if name == "duedate" and self.config.due_date is not None:
            return "duedate", None if value is None else str(value)
        if name == "instant" and self.config.due_instant_field is not None:
            instant = None if value is None else datetime.fromisoformat(str(value))
            shown = None if instant is None else datetime_field_value(instant)
            return self.config.due_instant_field.id, shown
        return None

    def send_one(self, item: ClaimedItem) -> None:
        """A sender for ``Outbox.flush`` (one item, one call): for callers that do not
        group by issue."""
        external = self.external_key(item)
        if item.kind not in KINDS:
            raise PermanentWriteError(f"outbox kind {item.kind!r} is not a Jira write")
        change = self.edit_for(external, [item])
        if not change.is_empty():
            self.client.edit(change)
