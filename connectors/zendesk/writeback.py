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

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

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
from slabot.store.queries import external_keys

log = logging.getLogger(__name__)

KINDS = ("set_priority", "set_tags", "add_note", "set_due_fields", "set_assignee")


@dataclass(slots=True)
class WriteReport:
    """What one flush did."""

    items: int = 0
    tickets: int = 0
    sent: int = 0
    retrying: int = 0
    dead: int = 0
    write_calls: int = 0
    errors: list[str] = field(default_factory=list)


class ZendeskWriter:
    """Flushes the ``zendesk`` outbox through ``update_many``."""

    def __init__(self, client: ZendeskClient, config: ZendeskConfig, outbox: Outbox) -> None:
        self.client = client
        self.config = config
        self.outbox = outbox
        self._agents: dict[str, int | None] = {}

    def flush(self, worker_id: str, *, limit: int = 1000, max_rounds: int = 100) -> WriteReport:
        """Claim due items (``limit`` at a time) and send them until none is due."""
        report = WriteReport()
        for _ in range(max_rounds):
            claimed = self.outbox.claim(SOURCE, worker_id, limit)
            if not claimed:
                break
            self._send(claimed, report)
        return report

    def _send(self, claimed: Sequence[ClaimedItem], report: WriteReport) -> None:
        report.items += len(claimed)
        keys = self._external_keys({item.ticket_id for item in claimed if item.ticket_id})
        by_ticket: dict[int, list[ClaimedItem]] = defaultdict(list)
        for item in claimed:
            external = keys.get(item.ticket_id) if item.ticket_id is not None else None
            if external is None or not external.isdigit():
                self._settle_failed(item, "the outbox item names no Zendesk ticket", report)
                continue
            by_ticket[int(external)].append(item)
        updates: list[tuple[TicketUpdate, list[ClaimedItem]]] = []
        for ticket_id, items in sorted(by_ticket.items()):
            items = self._with_known_assignees(items, report)
            if not items:
                continue
            try:
                update = self.update_for(ticket_id, items)
            except PermanentWriteError as error:
                for item in items:
                    self._settle_failed(item, str(error), report)
                continue
            except ZendeskUnavailableError as error:  # the assignee's lookup: retried later
                for item in items:
                    if self.outbox.fail(item, item.attempt, str(error), True, error.retry_after):
                        report.retrying += 1
                continue
            if update.is_empty():
                for item in items:
                    self._complete(item, report)
                continue
            updates.append((update, items))
        report.tickets += len(updates)
        for start in range(0, len(updates), UPDATE_MANY_LIMIT):
            self._send_chunk(updates[start : start + UPDATE_MANY_LIMIT], report)

    def _send_chunk(
        self, chunk: Sequence[tuple[TicketUpdate, list[ClaimedItem]]], report: WriteReport
    ) -> None:
        report.write_calls += 1
        try:
            outcome = self.client.update_many([update for update, _ in chunk])
        except ZendeskUnavailableError as error:
            for _, items in chunk:
                for item in items:
                    if self.outbox.fail(item, item.attempt, str(error), True, error.retry_after):
                        report.retrying += 1
            return
        except ZendeskRejectedError as error:
            for _, items in chunk:
                for item in items:
                    self._settle_failed(item, str(error), report)
            return
        updated: list[ClaimedItem] = []
        for update, items in chunk:
            failure = outcome.failures.get(update.ticket_id)
            for item in items:
                if failure is None:
                    updated.append(item)
                else:
                    self._settle_failed(item, failure, report)
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
                self._settle_failed(item, str(error), report)
                continue
            except ZendeskUnavailableError as error:
                if self.outbox.fail(item, item.attempt, str(error), True, error.retry_after):
                    report.retrying += 1
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
        priority: str | None = None
        add: set[str] = set()
        remove: set[str] = set()
        fields: dict[int, str | None] = {}
        notes: list[str] = []
        assignee: int | None = None
        # Oldest first, so a newer item of the same kind wins.
        for item in sorted(items, key=lambda i: (i.created_at, i.id)):
            payload = item.payload
            if item.kind == "set_priority":
                wanted = str(payload.get("priority"))
                zendesk = self.config.zendesk_priority(wanted)
                if zendesk is None:
                    raise PermanentWriteError(
                        f"priority {wanted!r} has no Zendesk priority in zendesk.priorities "
                        f"({', '.join(f'{k}: {v}' for k, v in self.config.priorities.items())})"
                    )
                priority = zendesk
            elif item.kind == "set_tags":
                for tag in payload.get("add") or ():
                    add.add(str(tag))
                    remove.discard(str(tag))
                for tag in payload.get("remove") or ():
                    remove.add(str(tag))
                    add.discard(str(tag))
            elif item.kind == "add_note":
                body = str(payload.get("body") or "").strip()
                if body:
                    notes.append(body)
            elif item.kind == "set_due_fields":
                for target, value in (payload.get("fields") or {}).items():
                    due = self.config.due_fields.get(target)
                    if due is not None:
                        fields[due.id] = None if value is None else str(value)
            elif item.kind == "set_assignee":
                assignee = self._agent(str(payload.get("email") or ""))
            else:
                raise PermanentWriteError(
                    f"outbox kind {item.kind!r} is not a Zendesk write ({', '.join(KINDS)})"
                )
        return TicketUpdate(
            ticket_id=ticket_id,
            priority=priority,
            add_tags=tuple(sorted(add)),
            remove_tags=tuple(sorted(remove)),
            custom_fields=fields,
            note="\n\n".join(notes) or None,
            assignee_id=assignee,
        )

    def send_one(self, item: ClaimedItem) -> None:
        """A sender for ``Outbox.flush`` (one item, one PUT): for callers that do not batch."""
        keys = self._external_keys({item.ticket_id} if item.ticket_id else set())
        external = keys.get(item.ticket_id) if item.ticket_id is not None else None
        if external is None or not external.isdigit():
            raise PermanentWriteError("the outbox item names no Zendesk ticket")
        update = self.update_for(int(external), [item])
        if not update.is_empty():
            self.client.update(update)

    def _external_keys(self, ticket_ids: set[int]) -> dict[int, str]:
        return external_keys(self.outbox.engine, SOURCE, ticket_ids)

    def _complete(self, item: ClaimedItem, report: WriteReport) -> None:
        if self.outbox.complete(item, item.attempt):
            report.sent += 1

    def _settle_failed(self, item: ClaimedItem, message: str, report: WriteReport) -> None:
        report.errors.append(f"outbox item {item.id} ({item.kind}): {message}")
        log.error("Zendesk refused outbox item %d (%s): %s", item.id, item.kind, message)
        if self.outbox.fail(item, item.attempt, message, False):
            report.dead += 1
