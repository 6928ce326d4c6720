"""Sending the writes slabot owes Zendesk: outbox items -> one update per ticket, batched.

Kinds: ``set_priority`` ({"priority": "P2"}), ``set_tags`` ({"add": [...], "remove":
[...]}), ``add_note`` ({"body": ...}, a private internal comment) and ``set_due_fields``
({"fields": {"first_response": "2026-11-24T08:30:00Z" | null, ...}}) and ``set_assignee``
({"email": ...}: the agent with that address, looked up with ``users/search``; "Assign to
me" in Slack). All items claimed
for one ticket become one ticket update; up to 100 updates go in one ``update_many`` job,
whose status is followed to the end, so 1,000 tickets cost 10 write calls.

Outcomes per item: done when its ticket was updated; retried later when Zendesk was
unavailable (429 with its Retry-After, 5xx, time-outs); dead-lettered with Zendesk's
description when Zendesk refused the ticket's update (a 4xx, a failed job result).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connectors.writeback import KINDS, OutboxWriter, WriteReport, fold, mapped_priority
from connectors.zendesk.client import (
    UPDATE_MANY_LIMIT,
    TicketUpdate,
    ZendeskClient,
    ZendeskRejectedError,
    ZendeskUnavailableError,
)
from connectors.zendesk.config import ZendeskConfig
from connectors.zendesk.mapping import SOURCE
from slabot.store.outbox import ClaimedItem, Outbox, PermanentWriteError

__all__ = ["KINDS", "WriteReport", "ZendeskWriter"]


class ZendeskWriter(OutboxWriter):
    """Flushes the ``zendesk`` outbox through ``update_many``."""

    source = SOURCE
    helpdesk = "Zendesk"
    batch_limit = 1000

    def __init__(self, client: ZendeskClient, config: ZendeskConfig, outbox: Outbox) -> None:
        super().__init__(outbox)
        self.client = client
        self.config = config
        self._agents: dict[str, int | None] = {}

    def accepts(self, external_key: str) -> bool:
        return external_key.isdigit()

    def send(self, claimed: Sequence[ClaimedItem], report: WriteReport) -> bool:
        by_ticket = sorted(
            (int(key), items) for key, items in self.by_ticket(claimed, report).items()
        )
        updates: list[tuple[TicketUpdate, list[ClaimedItem]]] = []
        for ticket_id, items in by_ticket:
            items = self._with_known_assignees(items, report)
            if not items:
                continue
            try:
                update = self.update_for(ticket_id, items)
            except PermanentWriteError as error:
                for item in items:
                    self.dead(item, str(error), report)
                continue
            except ZendeskUnavailableError as error:  # the assignee's lookup: retried later
                for item in items:
                    self.retry(item, error, report)
                continue
            if update.is_empty():
                for item in items:
                    self.complete(item, report)
                continue
            updates.append((update, items))
        report.tickets += len(updates)
        for start in range(0, len(updates), UPDATE_MANY_LIMIT):
            self._send_chunk(updates[start : start + UPDATE_MANY_LIMIT], report)
        return True

    def _send_chunk(
        self, chunk: Sequence[tuple[TicketUpdate, list[ClaimedItem]]], report: WriteReport
    ) -> None:
        report.write_calls += 1
        try:
            outcome = self.client.update_many([update for update, _ in chunk])
        except ZendeskUnavailableError as error:
            for _, items in chunk:
                for item in items:
                    self.retry(item, error, report)
            return
        except ZendeskRejectedError as error:
            for _, items in chunk:
                for item in items:
                    self.dead(item, str(error), report)
            return
        updated: list[ClaimedItem] = []
        for update, items in chunk:
            failure = outcome.failures.get(update.ticket_id)
            for item in items:
                if failure is None:
                    updated.append(item)
                else:
                    self.dead(item, failure, report)
        report.sent += self.outbox.complete_all(updated)  # one commit for the whole job

    def _with_known_assignees(
        self, items: list[ClaimedItem], report: WriteReport
    ) -> list[ClaimedItem]:
        """The items whose assignee (if any) Zendesk knows: an ``set_assignee`` item whose
        address no agent has is dead-lettered alone (the ticket's other writes still go),
        one whose lookup failed for now is retried alone."""
        kept = []
        for item in items:
            if item.kind != "set_assignee":
                kept.append(item)
                continue
            try:
                self._agent(str(item.payload.get("email") or ""))
            except PermanentWriteError as error:
                self.dead(item, str(error), report)
                continue
            except ZendeskUnavailableError as error:
                self.retry(item, error, report)
                continue
            kept.append(item)
        return kept

    def _agent(self, email: str) -> int:
        """The agent id for an address (looked up once per writer)."""
        if email not in self._agents:
            self._agents[email] = self.client.agent_id_by_email(email) if email else None
        agent = self._agents[email]
        if agent is None:
            del self._agents[email]  # asked again next time: the agent may be added
            raise PermanentWriteError(
                f"no Zendesk agent has the e-mail address {email!r} (the Slack user who "
                "pressed Assign to me): give the agent that address in Zendesk, or assign "
                "the ticket there"
            )
        return agent

    def update_for(self, ticket_id: int, items: Sequence[ClaimedItem]) -> TicketUpdate:
        """The one ticket update that makes all of ``items``; raises ``PermanentWriteError``
        for an item slabot cannot express (an unknown kind or priority)."""
        owed = fold(
            items,
            helpdesk=self.helpdesk,
            priority=self._priority,
            due_field=self._due_field,
            assignee=self._agent,
        )
        return TicketUpdate(
            ticket_id=ticket_id,
            priority=owed.priority,
            add_tags=tuple(sorted(owed.add_tags)),
            remove_tags=tuple(sorted(owed.remove_tags)),
            custom_fields=owed.fields,
            note=owed.note,
            assignee_id=owed.assignee,
        )

    def _priority(self, wanted: str) -> str:
        return mapped_priority(
            wanted,
            self.config.zendesk_priority,
            self.config.priorities,
            helpdesk=self.helpdesk,
            setting="zendesk.priorities",
        )

    def _due_field(self, target: Any, value: object) -> tuple[int, str | None] | None:
        due = self.config.due_fields.get(target)
        if due is None:
            return None
        return due.id, None if value is None else str(value)

    def send_one(self, item: ClaimedItem) -> None:
        """A sender for ``Outbox.flush`` (one item, one PUT): for callers that do not batch."""
        update = self.update_for(int(self.external_key(item)), [item])
        if not update.is_empty():
            self.client.update(update)
