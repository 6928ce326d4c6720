"""Due-date fields a connector words itself (Jira's ``duedate`` and date-time field), owed
after the ingest from the decision then stored.

A helpdesk whose due-date fields ``due_text`` can word shows them in ``Snapshot.shown["due"]``
and the ingest owes them (``slabot.store.writes``). Jira's ``duedate`` is the date of a
target's due instant in the zone of the calendar that target is counted on, and a due
instant that is gone leaves the field as it is: its connector words the fields from a
``StoredDue`` and calls ``owe_due_fields`` (a use case over its ``TicketService``), which
owes the fields the helpdesk shows otherwise and settles owed due writes that became
moot, in one transaction. Connectors thus never touch the store's tables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.compiled import Policy
from bot.policy import ALWAYS_OPEN
from slabot.store.db import for_writing
from slabot.store.models import OutboxItem, StoredDecision, StoredTicket
from slabot.store.rows import engine_ticket
from slabot.store.writes import SET_DUE_FIELDS, SUPERSEDED, idempotency_key, owe

if TYPE_CHECKING:
    from slabot.store.services import TicketService


class StoredDue:
    """A stored ticket's due instants, as its stored decision has them, and the zone of
    the calendar each target is counted on: what a connector words its due fields from
    (read while ``owe_due_fields`` runs, in its transaction)."""

    __slots__ = ("_decision", "_policy", "_row")

    def __init__(self, row: StoredTicket, decision: StoredDecision, policy: Policy | None):
        self._row = row
        self._decision = decision
        self._policy = policy

    def instant(self, target: str) -> datetime | None:
        """``target``'s due instant (None: no such target applies, or its clock is paused)."""
        due: datetime | None = getattr(self._decision, f"{target}_due")
        return due

    def zone(self, target: str) -> tzinfo:
        """The zone of the calendar ``target`` is counted on; a 24x7 target takes its plan's
        calendar (its business hours say what "that day" means); else UTC."""
        policy, plan = self._policy, self._decision.plan
        if policy is None or plan is None or plan not in policy.spec.plans:
            return UTC
        try:
            planned = policy.planned_targets(plan, self._decision.priority)
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
            return policy.calendar(name, engine_ticket(self._row)).zone
        return UTC


def owe_due_fields(
    service: TicketService,
    ticket_id: int,
    wanted: Callable[[StoredDue], Mapping[str, str | None]],
    shown: Mapping[str, Any],
    snapshot_at: datetime,
    *,
    helpdesk: str,
) -> bool:
    """Owe the ticket's helpdesk the due fields its stored decision calls for
    (``wanted``: field -> text, None leaving the field alone) where it shows something
    else (``shown``), keyed by ``snapshot_at`` as the ingest keys its writes; settle the
    owed due writes that became moot. One transaction; True when a write was owed."""
    now = service.now()
    with Session(for_writing(service.engine)) as session, session.begin():
        decision = session.get(StoredDecision, ticket_id)
        row = session.get(StoredTicket, ticket_id)
        if decision is None or row is None:
            return False
        fields = wanted(StoredDue(row, decision, service.policies.get(row.policy)))
        differing = {
            name: value
            for name, value in fields.items()
            if value is not None and shown.get(name) != value
        }
        pending = session.scalars(
            select(OutboxItem).where(
                OutboxItem.ticket_id == ticket_id,
                OutboxItem.target_system == row.source,
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
                f"{SUPERSEDED}: {helpdesk} already shows the due dates"
                if not differing
                else f"{SUPERSEDED} by a newer write"
            )
        if not differing or already:
            return False
        key = idempotency_key(row, SET_DUE_FIELDS, payload, snapshot_at)
        return owe(session, row.source, ticket_id, SET_DUE_FIELDS, payload, key, now, once=True)
