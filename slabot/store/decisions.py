"""The decision stored: a ticket's current decision, with what is read from it.

``store_decision`` writes the ``decisions`` row (its policy and routing rule with it), the
threshold marks the breach queries read, the clock outcomes the reports read and the
dashboard's list columns, in the caller's transaction. Only the classic three targets are
stored (``stored_view``). ``ingest``, reclassify and the event service store a decision
through ``TicketService.store_decision``; ``ingest_many`` and recompute write the same rows
in bulk (``decision_values``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from bot.compiled import Policy
from bot.engine import Decision
from bot.policy import TARGETS
from bot.ticket import Ticket
from slabot.store.breaches import decision_marks, list_columns, store_marks
from slabot.store.models import StoredDecision, StoredTicket
from slabot.store.reports import store_outcomes


def store_decision(
    session: Session,
    row: StoredTicket,
    ticket: Ticket,
    policy: Policy,
    decision: Decision,
    now: datetime,
    thresholds: Sequence[int],
    *,
    rule: str | Literal[False] | None = False,
) -> None:
    """``TicketService.store_decision``: see there. ``ticket`` is ``row`` as the engine
    reads it; ``thresholds`` the fractions marked, in permille."""
    decision = stored_view(decision)
    stored = _store_decision(session, row.id, decision, now)
    stored.policy = policy.name
    if rule is not False:
        stored.routing_rule = rule
    marks = decision_marks(ticket, policy, decision, now, thresholds)
    store_marks(session, row, marks)
    store_outcomes(session, row, ticket, policy, decision, now)  # for the reports
    list_columns(row, marks)


def stored_view(decision: Decision) -> Decision:
    """The decision as the store keeps it: its classic three targets. The decisions, marks
    and clock outcomes have columns (and CHECK constraints) for those only; the other
    metrics are computed wherever the engine runs (docs/metrics.md)."""
    targets = decision.targets
    if len(targets) == len(TARGETS):
        return decision
    return replace(decision, targets={name: targets[name] for name in TARGETS})


def decision_values(decision: Decision, now: datetime) -> dict[str, Any]:
    """The ``decisions`` row's columns for ``decision`` (its stored view) evaluated at
    ``now``, but the ticket, the policy and the routing rule."""
    values: dict[str, Any] = {
        "priority": decision.priority,
        "requested_priority": decision.requested_priority,
        "plan": decision.plan,
        "commitment": decision.commitment,
    }
    for name, target in decision.targets.items():
        values[f"{name}_due"] = target.due
        values[f"{name}_state"] = target.state
    values["next_change_at"] = decision.next_change_at
    values["tags"] = list(decision.tags)
    values["notes"] = list(decision.notes)
    values["evaluated_at"] = now
    return values


def _store_decision(
    session: Session, ticket_id: int, decision: Decision, now: datetime
) -> StoredDecision:
    stored = session.get(StoredDecision, ticket_id)
    if stored is None:
        stored = StoredDecision(ticket_id=ticket_id)
        session.add(stored)
    for name, value in decision_values(decision, now).items():
        setattr(stored, name, value)
    return stored
