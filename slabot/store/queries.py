"""Small reads (and the poll cursor's write) that connectors need, without touching tables.

Connectors go through the services to change a ticket; what they read directly is here, so
they do not depend on the models' columns: the event keys a ticket's history holds, which
webhook delivery keys are recorded, the stored decision and due instants by the helpdesk's
own key, the helpdesk keys of stored tickets and their stored ``updated`` times, where
polling a source stopped, and the open tickets naming a plan their policy does not know
(``/metrics``, ``/readyz``). Every call is its own short transaction and rides out a
briefly unreachable database like the services (``with_retry``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bot.compiled import Policy
from bot.policy import TARGETS
from bot.ticket import SOLVED_STATUSES
from slabot.store.models import (
    PollCursor,
    StoredDecision,
    StoredTicket,
    TicketEvent,
    WebhookDelivery,
)
from slabot.store.retry import DEFAULT_RETRY, RetryPolicy, with_retry

__all__ = [
    "StoredDecisionView",
    "external_keys",
    "known_event_keys",
    "load_cursor",
    "recorded_deliveries",
    "save_cursor",
    "source_updated_at",
    "stored_decision",
    "stored_dues",
    "unknown_plans",
]


@dataclass(frozen=True, slots=True)
class StoredDecisionView:
    """The decision stored for a ticket, as plain values."""

    ticket_id: int
    source: str
    external_key: str
    priority: str
    """The final priority."""
    requested_priority: str | None
    plan: str | None
    commitment: str | None
    due: Mapping[str, datetime | None]
    """Target (``first_response``, ``restoration``, ``next_update``) -> due instant or None."""
    state: Mapping[str, str]
    """Target -> state as of ``evaluated_at`` (``met``, ``breached``, ``running``...)."""
    next_change_at: datetime | None
    tags: tuple[str, ...]
    evaluated_at: datetime


def known_event_keys(
    engine: Engine,
    source: str,
    external_key: str,
    *,
    prefix: str | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> frozenset[str]:
    """The event keys the ticket's history already holds (those starting with ``prefix``,
    when given); empty for a ticket that is not stored."""

    def work(session: Session) -> frozenset[str]:
        query = (
            select(TicketEvent.event_key)
            .join(StoredTicket, StoredTicket.id == TicketEvent.ticket_id)
            .where(
                StoredTicket.source == source,
                StoredTicket.external_key == external_key,
                TicketEvent.event_key.is_not(None),
            )
        )
        if prefix is not None:
            query = query.where(TicketEvent.event_key.startswith(prefix, autoescape=True))
        return frozenset(key for key in session.scalars(query) if key)

    return with_retry(
        engine,
        work,
        policy=retry,
        what=f"reading the event keys of ticket {source}:{external_key}",
        read_only=True,
    )


def recorded_deliveries(
    engine: Engine,
    source: str,
    delivery_keys: Iterable[str],
    *,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> frozenset[str]:
    """Which of ``delivery_keys`` are recorded as deliveries of ``source``
    (``EventService.record_delivery``); a read only: nothing is recorded."""
    wanted = sorted({key for key in delivery_keys if key})
    if not wanted:
        return frozenset()

    def work(session: Session) -> frozenset[str]:
        found: set[str] = set()
        for start in range(0, len(wanted), _IN_CHUNK):
            found.update(
                session.scalars(
                    select(WebhookDelivery.delivery_key).where(
                        WebhookDelivery.source == source,
                        WebhookDelivery.delivery_key.in_(wanted[start : start + _IN_CHUNK]),
                    )
                )
            )
        return frozenset(found)

    return with_retry(
        engine,
        work,
        policy=retry,
        what=f"reading the recorded deliveries of {source}",
        read_only=True,
    )


_IN_CHUNK = 500
"""Keys per ``IN (...)`` list: well under SQLite's limit on parameters."""


def stored_decision(
    engine: Engine, source: str, external_key: str, *, retry: RetryPolicy = DEFAULT_RETRY
) -> StoredDecisionView | None:
    """The decision stored for the ticket (None: no such ticket, or not evaluated yet)."""

    def work(session: Session) -> StoredDecisionView | None:
        found = session.execute(
            select(StoredTicket.source, StoredTicket.external_key, StoredDecision)
            .join(StoredDecision, StoredDecision.ticket_id == StoredTicket.id)
            .where(StoredTicket.source == source, StoredTicket.external_key == external_key)
        ).one_or_none()
        if found is None:
            return None
        ticket_source, key, decision = found
        return StoredDecisionView(
            ticket_id=decision.ticket_id,
            source=ticket_source,
            external_key=key,
            priority=decision.priority,
            requested_priority=decision.requested_priority,
            plan=decision.plan,
            commitment=decision.commitment,
            due={name: getattr(decision, f"{name}_due") for name in TARGETS},
            state={name: getattr(decision, f"{name}_state") for name in TARGETS},
            next_change_at=decision.next_change_at,
            tags=tuple(str(tag) for tag in decision.tags or ()),
            evaluated_at=decision.evaluated_at,
        )

    return with_retry(
        engine,
        work,
        policy=retry,
        what=f"reading the decision of ticket {source}:{external_key}",
        read_only=True,
    )


def stored_dues(
    engine: Engine, source: str, external_key: str, *, retry: RetryPolicy = DEFAULT_RETRY
) -> dict[str, datetime | None] | None:
    """Target -> the stored due instant (None where no target applies or the clock is
    paused); None when the ticket or its decision is not stored."""
    decision = stored_decision(engine, source, external_key, retry=retry)
    return None if decision is None else dict(decision.due)


def external_keys(
    engine: Engine,
    source: str,
    ticket_ids: Iterable[int] | None = None,
    *,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> dict[int, str]:
    """Stored ticket id -> the source's key, for the source's tickets among ``ticket_ids``
    (an id of another source's ticket, or of none, is left out); every ticket of the
    source when ``ticket_ids`` is None."""
    wanted = None if ticket_ids is None else sorted(set(ticket_ids))
    if wanted is not None and not wanted:
        return {}

    def work(session: Session) -> dict[int, str]:
        query = select(StoredTicket.id, StoredTicket.external_key).where(
            StoredTicket.source == source
        )
        if wanted is not None:
            query = query.where(StoredTicket.id.in_(wanted))
        return {ticket_id: key for ticket_id, key in session.execute(query)}

    return with_retry(
        engine, work, policy=retry, what=f"reading {source} ticket keys", read_only=True
    )


def source_updated_at(
    engine: Engine,
    source: str,
    keys: Iterable[str],
    *,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> dict[str, datetime]:
    """The source's key -> the ``updated`` time the store holds for that ticket, for the
    source's tickets among ``keys`` (one not stored, or stored without it, is left out)."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}

    def work(session: Session) -> dict[str, datetime]:
        rows = session.execute(
            select(StoredTicket.external_key, StoredTicket.source_updated_at).where(
                StoredTicket.source == source, StoredTicket.external_key.in_(wanted)
            )
        ).all()
        return {key: at for key, at in rows if at is not None}

    return with_retry(
        engine, work, policy=retry, what=f"reading {source} tickets' updated times", read_only=True
    )


def load_cursor(
    engine: Engine, source: str, stream: str, *, retry: RetryPolicy = DEFAULT_RETRY
) -> str | None:
    """The stored cursor of a source's stream (None: never polled)."""

    def work(session: Session) -> str | None:
        row = session.get(PollCursor, (source, stream))
        return None if row is None else row.cursor

    return with_retry(
        engine,
        work,
        policy=retry,
        what=f"reading the {source} {stream} poll cursor",
        read_only=True,
    )


def save_cursor(
    engine: Engine,
    source: str,
    stream: str,
    cursor: str,
    now: datetime,
    *,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> None:
    """Store where polling a source's stream stopped (safe to repeat, and to race: the last
    writer wins)."""

    def work(session: Session) -> None:
        dialect = session.get_bind().dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        statement = insert(PollCursor).values(
            source=source, stream=stream, cursor=cursor, updated_at=now
        )
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["source", "stream"],
                set_={
                    "cursor": statement.excluded.cursor,
                    "updated_at": statement.excluded.updated_at,
                },
            )
        )

    with_retry(engine, work, policy=retry, what=f"saving the {source} {stream} poll cursor")


def unknown_plans(
    engine: Engine, policies: Mapping[str, Policy], *, retry: RetryPolicy = DEFAULT_RETRY
) -> dict[tuple[str, str], int]:
    """``(policy, plan) -> count`` of the stored open tickets whose plan their (loaded)
    policy does not know: they have no targets, or the default plan's, until the plan is
    added to the policy or the ticket's plan corrected. One grouped query over the open
    tickets; which plans are unknown is decided here, from the policies loaded now, so a
    policy that learns the plan clears the count at once (``slabot recompute`` then clears
    the tags)."""

    def work(session: Session) -> dict[tuple[str, str], int]:
        rows = session.execute(
            select(StoredTicket.policy, StoredTicket.plan, func.count())
            .where(StoredTicket.status.not_in(SOLVED_STATUSES), StoredTicket.plan.is_not(None))
            .group_by(StoredTicket.policy, StoredTicket.plan)
        ).all()
        found: dict[tuple[str, str], int] = {}
        for policy_name, plan, count in rows:
            policy = policies.get(policy_name)
            if plan is not None and policy is not None and policy.is_unknown_plan(plan):
                found[(policy_name, plan)] = int(count)
        return found

    return with_retry(
        engine,
        work,
        policy=retry,
        what="counting open tickets with an unknown plan",
        read_only=True,
    )
