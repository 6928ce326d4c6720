"""What every helpdesk's write-back shares: claim the outbox, fold each ticket's items, settle.

A connector's writer subclasses ``OutboxWriter`` and gives ``send(claimed, report)``: the
vendor calls for one claimed batch (Zendesk: ``update_many`` jobs of 100 tickets; Jira:
one edit and one comment per issue), returning False when the helpdesk asked slabot to
back off. The base holds the rest:

- ``flush``: claim due items (``limit`` at a time) and send them until none is due, or the
  helpdesk says to back off; a ``WriteReport`` of what it did.
- ``by_ticket``: the claimed items grouped by the helpdesk's ticket id; an item that names
  no ticket of this helpdesk is dead-lettered.
- ``fold``: the items of one ticket -> one ``OwedChange`` (the newest item of a kind wins;
  tags added and removed cancel out; notes joined), translated on the way by the
  connector's ``priority``, ``due_field`` and ``assignee`` (each raises
  ``PermanentWriteError`` for what the helpdesk cannot be told).
- ``complete``, ``retry`` (the helpdesk unavailable: the outbox's backoff, or its
  Retry-After) and ``dead`` (refused: dead-lettered with the helpdesk's reason).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from slabot.store.outbox import ClaimedItem, Outbox, PermanentWriteError
from slabot.store.queries import external_keys

KINDS = ("set_priority", "set_tags", "add_note", "set_due_fields", "set_assignee")
"""The outbox kinds a helpdesk is written with."""

FieldT = TypeVar("FieldT")
AssigneeT = TypeVar("AssigneeT")


@dataclass(slots=True)
class WriteReport:
    """What one flush did. ``tickets``: the tickets written (Jira's issues)."""

    items: int = 0
    tickets: int = 0
    sent: int = 0
    retrying: int = 0
    dead: int = 0
    write_calls: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def issues(self) -> int:
        """``tickets``, in Jira's word."""
        return self.tickets

    @issues.setter
    def issues(self, value: int) -> None:
        self.tickets = value


@dataclass(slots=True)
class OwedChange(Generic[FieldT, AssigneeT]):
    """What one ticket is owed, folded from its outbox items, in the helpdesk's terms."""

    priority: str | None = None
    """The helpdesk's name of the priority to set (None: leave it)."""
    add_tags: set[str] = field(default_factory=set)
    remove_tags: set[str] = field(default_factory=set)
    fields: dict[FieldT, str | None] = field(default_factory=dict)
    """Due fields by the helpdesk's field id (None: clear it)."""
    notes: list[str] = field(default_factory=list)
    assignee: AssigneeT | None = None

    @property
    def note(self) -> str | None:
        """The notes as one internal comment (None: no note)."""
        return "\n\n".join(self.notes) or None


def fold(
    items: Sequence[ClaimedItem],
    *,
    helpdesk: str,
    priority: Callable[[str], str],
    due_field: Callable[[str, object], tuple[FieldT, str | None] | None],
    assignee: Callable[[str], AssigneeT],
) -> OwedChange[FieldT, AssigneeT]:
    """The one change that makes all of ``items``, oldest first so a newer item of the same
    kind wins. ``priority`` gives the helpdesk's name of slabot's priority, ``due_field``
    the field (and value) for a target's due text (None: not written to this helpdesk),
    ``assignee`` the helpdesk's agent for an e-mail address; each raises
    ``PermanentWriteError`` for what cannot be expressed, as does an unknown kind."""
    owed: OwedChange[FieldT, AssigneeT] = OwedChange()
    for item in sorted(items, key=lambda i: (i.created_at, i.id)):
        payload = item.payload
        if item.kind == "set_priority":
            owed.priority = priority(str(payload.get("priority")))
        elif item.kind == "set_tags":
            for tag in payload.get("add") or ():
                owed.add_tags.add(str(tag))
                owed.remove_tags.discard(str(tag))
            for tag in payload.get("remove") or ():
                owed.remove_tags.add(str(tag))
                owed.add_tags.discard(str(tag))
        elif item.kind == "add_note":
            body = str(payload.get("body") or "").strip()
            if body:
                owed.notes.append(body)
        elif item.kind == "set_due_fields":
            for name, value in (payload.get("fields") or {}).items():
                written = due_field(name, value)
                if written is not None:
                    owed.fields[written[0]] = written[1]
        elif item.kind == "set_assignee":
            owed.assignee = assignee(str(payload.get("email") or ""))
        else:
            raise PermanentWriteError(
                f"outbox kind {item.kind!r} is not a {helpdesk} write ({', '.join(KINDS)})"
            )
    return owed


def mapped_priority(
    wanted: str,
    name_of: Callable[[str], str | None],
    priorities: Mapping[str, str],
    *,
    helpdesk: str,
    setting: str,
) -> str:
    """The helpdesk's name of slabot's priority ``wanted`` (``name_of``: the connector
    config's mapping); ``PermanentWriteError`` naming ``setting`` when it has none."""
    name = name_of(wanted)
    if name is None:
        raise PermanentWriteError(
            f"priority {wanted!r} has no {helpdesk} priority in {setting} "
            f"({', '.join(f'{k}: {v}' for k, v in priorities.items())})"
        )
    return name


class OutboxWriter(ABC):
    """Flushes one helpdesk's outbox (``source``) through the connector's ``send``."""

    source: ClassVar[str]
    helpdesk: ClassVar[str]
    """How people name the helpdesk in messages: ``Zendesk``, ``Jira``."""
    ticket_word: ClassVar[str] = "ticket"
    """How the helpdesk names a ticket: ``ticket``, ``issue``."""
    batch_limit: ClassVar[int] = 1000
    """Items claimed at a time by default."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    @property
    def log(self) -> logging.Logger:
        """The connector's own logger (``connectors.zendesk.writeback``...)."""
        return logging.getLogger(type(self).__module__)

    @abstractmethod
    def send(self, claimed: Sequence[ClaimedItem], report: WriteReport) -> bool:
        """Send one claimed batch, settling each item; False when the helpdesk said to back
        off (the rest of the flush waits)."""

    def accepts(self, external_key: str) -> bool:
        """Whether a stored ticket's external key is one of this helpdesk's ticket ids."""
        return True

    def flush(
        self, worker_id: str, *, limit: int | None = None, max_rounds: int = 100
    ) -> WriteReport:
        """Claim due items (``limit`` at a time, default ``batch_limit``) and send them until
        none is due, or the helpdesk asks slabot to back off."""
        report = WriteReport()
        for _ in range(max_rounds):
            batch = self.batch_limit if limit is None else limit
            claimed = self.outbox.claim(self.source, worker_id, batch)
            if not claimed:
                break
            report.items += len(claimed)
            if not self.send(claimed, report):
                break
        return report

    def by_ticket(
        self, claimed: Sequence[ClaimedItem], report: WriteReport
    ) -> dict[str, list[ClaimedItem]]:
        """The items by the helpdesk's ticket id, in claim order; one that names no ticket
        of this helpdesk is dead-lettered."""
        keys = self.external_keys({item.ticket_id for item in claimed if item.ticket_id})
        grouped: dict[str, list[ClaimedItem]] = defaultdict(list)
        for item in claimed:
            external = keys.get(item.ticket_id) if item.ticket_id is not None else None
            if external is None or not self.accepts(external):
                self.dead(item, self.no_ticket(), report)
                continue
            grouped[external].append(item)
        return grouped

    def external_key(self, item: ClaimedItem) -> str:
        """The helpdesk's id of the one item's ticket (``send_one``'s senders);
        ``PermanentWriteError`` when it names none."""
        keys = self.external_keys({item.ticket_id} if item.ticket_id else set())
        external = keys.get(item.ticket_id) if item.ticket_id is not None else None
        if external is None or not self.accepts(external):
            raise PermanentWriteError(self.no_ticket())
        return external

    def no_ticket(self) -> str:
        return f"the outbox item names no {self.helpdesk} {self.ticket_word}"

    def external_keys(self, ticket_ids: set[int]) -> dict[int, str]:
        return external_keys(self.outbox.engine, self.source, ticket_ids)

    def complete(self, item: ClaimedItem, report: WriteReport) -> None:
        if self.outbox.complete(item, item.attempt):
            report.sent += 1

    def retry(self, item: ClaimedItem, error: Any, report: WriteReport) -> None:
        """The helpdesk was unavailable: try again after its Retry-After (or the backoff)."""
        retry_after: float | None = getattr(error, "retry_after", None)
        if self.outbox.fail(item, item.attempt, str(error), True, retry_after):
            report.retrying += 1

    def dead(self, item: ClaimedItem, message: str, report: WriteReport) -> None:
        """The helpdesk refused the item (or it cannot be expressed): dead-lettered."""
        report.errors.append(f"outbox item {item.id} ({item.kind}): {message}")
        self.log.error(
            "%s refused outbox item %d (%s): %s", self.helpdesk, item.id, item.kind, message
        )
        if self.outbox.fail(item, item.attempt, message, False):
            report.dead += 1
