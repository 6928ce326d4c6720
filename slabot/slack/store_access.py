"""What the Slack app reads and writes in slabot's store: ticket views, nudges, snoozes, queries.

Built on the store's public pieces (models, ``engine_ticket``, the breach queries) without
changing its schema:

- A ticket's assignee, queue and Jira issue key are read from what the connector says the
  helpdesk shows (``tickets.shown``): ``assignee_email``, ``queue`` and ``key``, and its
  context: ``subject``, ``requester``, ``organization`` and ``assignee_name`` (names, not
  ids). Those keys are ignored by the store's write-back logic, which reads only
  ``priority`` and ``tags``.
- A nudge's Slack message (channel, ``ts``, language), its snoozes (who, why, until when,
  the audit) and whether it is closed are kept in the ``nudges`` row's ``payload``; the
  row's unique key (ticket, target, threshold in percent, cycle start) is what makes each
  threshold nudged once per clock cycle.
- Slack writes are owed through the outbox (``target_system = "slack"``), in the same
  transaction as the nudge row that calls for them.
- A breach's thread reply (where, when last announced) and who took the breach ("I'm on
  it", "Assign to me") are kept in the breach row's payload (``thread``, ``notified_at``,
  ``acks``); each take is also a ticket history entry (``acknowledged``, ``assigned``), and
  an assignment owes the helpdesk a ``set_assignee`` write in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Engine, Table, and_, exists, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.business_time import to_timestamp
from bot.compiled import Policy
from bot.engine import Decision, evaluate, iso_z
from bot.errors import SlabotError
from bot.ticket import SOLVED_STATUSES, Ticket
from slabot.slack.references import JIRA, ZENDESK, TicketLinks, TicketRef
from slabot.store import writes
from slabot.store.breaches import (
    BREACH,
    DueTarget,
    breached_where,
    due_targets,
    reaching_where,
)
from slabot.store.db import for_writing
from slabot.store.history import Fact, reads_status_history, stored_facts
from slabot.store.models import (
    Nudge,
    StoredDecision,
    StoredTicket,
    TargetMark,
    TicketEvent,
)
from slabot.store.outbox import COMPLETE_RETRY
from slabot.store.retry import with_retry
from slabot.store.rows import engine_ticket

log = logging.getLogger(__name__)

SLACK = "slack"
SET_ASSIGNEE = "set_assignee"
"""The helpdesk outbox kind "Assign to me" owes: ``{"email": ...}`` (the helpdesk user)."""
_NUDGES = cast(Table, Nudge.__table__)
_PAUSING_STATUSES = ("pending", "on_hold")
"""Statuses any policy may pause on; each ticket's own policy has the final word."""
_OPEN_MESSAGE_DAYS = 60
"""Nudge messages older than this are left as they are (not updated any more)."""


class TicketNotReadableError(SlabotError):
    """A stored ticket cannot be shown: its policy is not loaded, or the engine refuses it."""


@dataclass(frozen=True, slots=True)
class TicketView:
    """A stored ticket as the Slack app shows it: evaluated at ``now`` under its policy."""

    ticket_id: int
    source: str
    external_key: str
    label: str
    """``ZD-123``, ``OPS-42`` (or ``jira:10001`` while the issue key is not known)."""
    url: str | None
    status: str
    policy: Policy
    ticket: Ticket
    decision: Decision
    now: datetime
    assignee_email: str | None
    queue: str | None
    """The Zendesk group's name or the Jira project key (``shown["queue"]``)."""
    subject: str | None = None
    """The ticket's subject (Jira: summary), as the helpdesk shows it: customer data, never
    logged, escaped wherever it is shown."""
    requester: str | None = None
    """The requester's (Jira: reporter's) name."""
    organization: str | None = None
    """The requester's organization (Zendesk) or the JSM Organizations field (Jira)."""
    assignee_name: str | None = None
    """The assignee's name; with no ``assignee_email`` either, the ticket is unassigned."""
    routing_rule: str | None = None
    """The routing rule that chose the ticket's policy (None: no routing, or not looked up)."""

    @property
    def policy_title(self) -> str:
        """The policy as people know it: its title, else its name."""
        return self.policy.spec.title or self.policy.name

    @property
    def unassigned(self) -> bool:
        """Nobody is assigned in the helpdesk (neither a name nor an e-mail address)."""
        return self.assignee_name is None and self.assignee_email is None

    @property
    def ref(self) -> str:
        """``zendesk:123``: the ticket's stable name in button values and outbox payloads."""
        return f"{self.source}:{self.external_key}"

    @property
    def solved(self) -> bool:
        return self.status in SOLVED_STATUSES

    def calendar_open(self, target: str, at: datetime) -> bool:
        """Whether the calendar ``target`` is counted on is open at ``at`` (a 24x7 target
        always is; a target without a calendar never needs nudging, so counts as open)."""
        decided = self.decision.targets[target]
        if decided.calendar is None:
            return True
        calendar = self.policy.calendar(decided.calendar, self.ticket)
        ts = to_timestamp(at)
        return calendar.open_seconds(ts, ts + 1) == 1

    def open_seconds(self, target: str, start: datetime, end: datetime) -> int:
        """Open time between two instants on the target's calendar (elapsed for 24x7)."""
        decided = self.decision.targets[target]
        if decided.calendar is None:
            return max(0, int((end - start).total_seconds()))
        calendar = self.policy.calendar(decided.calendar, self.ticket)
        return calendar.open_seconds(to_timestamp(start), to_timestamp(end))

    @property
    def paused_since(self) -> datetime | None:
        """When the ticket started waiting on the customer, if it still is."""
        if self.status not in self.policy.spec.clocks.pausing_statuses:
            return None
        if self.ticket.paused and self.ticket.paused[-1][1] is None:
            return self.ticket.paused[-1][0]
        return None


@dataclass(frozen=True, slots=True)
class NudgeMessage:
    """A nudge row and, once posted, the Slack message that shows it."""

    nudge_id: int
    ticket_id: int
    target: str
    threshold: int
    """Percent of the target: 75, 100 (the breach)."""
    cycle_started_at: datetime
    channel: str | None
    ts: str | None
    language: str | None
    zone: str | None
    """The reader's time zone for a direct message; None in a channel."""
    payload: dict[str, Any]

    @property
    def closed(self) -> str | None:
        """Why the message no longer changes (``met``, ``solved``...), or None."""
        value = self.payload.get("closed")
        return str(value) if value else None

    @property
    def snoozed_until(self) -> datetime | None:
        value = self.payload.get("snoozed_until")
        return datetime.fromisoformat(value) if isinstance(value, str) else None

    @property
    def thread_ts(self) -> str | None:
        """The ``ts`` of the thread the message is in: its own for a top-level message."""
        return _text(self.payload.get("thread_ts")) or self.ts

    @property
    def acks(self) -> tuple[tuple[str, datetime], ...]:
        """Who took the breach (I'm on it, Assign to me) and when, oldest first."""
        found = []
        for entry in self.payload.get("acks") or ():
            if isinstance(entry, dict) and entry.get("by") and entry.get("at"):
                found.append((str(entry["by"]), datetime.fromisoformat(str(entry["at"]))))
        return tuple(found)

    @property
    def notified_at(self) -> datetime | None:
        """When the breach was last announced in its thread."""
        value = self.payload.get("notified_at")
        return datetime.fromisoformat(value) if isinstance(value, str) else None


class SlackStore:
    """The Slack app's access to the store; thread-safe, one per process."""

    def __init__(
        self, engine: Engine, policies: Mapping[str, Policy], links: TicketLinks | None = None
    ) -> None:
        self.engine = engine
        self._writer = for_writing(engine)
        self.policies = dict(policies)
        self.links = links or TicketLinks()

    # --- tickets ---------------------------------------------------------------------------

    def find(self, ref: TicketRef, now: datetime) -> TicketView | None:
        """The stored ticket an agent named, evaluated at ``now``; None when not stored."""
        query = select(StoredTicket).where(StoredTicket.source == ref.source)
        if ref.source == JIRA and not ref.key.isdigit():
            # Jira issues are stored by id; the key is what the connector says Jira shows.
            query = query.where(
                or_(
                    StoredTicket.external_key == ref.key,
                    StoredTicket.shown["key"].as_string() == ref.key,
                )
            )
        else:
            query = query.where(StoredTicket.external_key == ref.key)
        with Session(self.engine) as session:
            row = session.scalars(query.limit(1)).first()
            return None if row is None else self._view(row, now, session)

    def view(self, ticket_id: int, now: datetime) -> TicketView | None:
        with Session(self.engine) as session:
            row = session.get(StoredTicket, ticket_id)
            return None if row is None else self._view(row, now, session)

    def view_by_ref(self, ref: str, now: datetime) -> TicketView | None:
        """The ticket named ``zendesk:123`` (a ``TicketView.ref``)."""
        source, _, key = ref.partition(":")
        with Session(self.engine) as session:
            row = session.scalars(
                select(StoredTicket).where(
                    StoredTicket.source == source, StoredTicket.external_key == key
                )
            ).first()
            return None if row is None else self._view(row, now, session)

    def views(self, ticket_ids: Iterable[int], now: datetime) -> dict[int, TicketView]:
        """The readable tickets among ``ticket_ids``; unreadable ones are logged and left out."""
        wanted = sorted(set(ticket_ids))
        found: dict[int, TicketView] = {}
        with Session(self.engine) as session:
            for start in range(0, len(wanted), 500):
                batch = wanted[start : start + 500]
                # The status history, in bulk, for the policies whose metrics read it.
                reads = any(reads_status_history(p) for p in self.policies.values())
                facts = stored_facts(session, batch) if reads else {}
                for row in session.scalars(select(StoredTicket).where(StoredTicket.id.in_(batch))):
                    try:
                        found[row.id] = self._view(row, now, facts=facts.get(row.id, ()))
                    except TicketNotReadableError as error:
                        log.warning("slack: ticket left out: %s", error)
        return found

    def _view(
        self,
        row: StoredTicket,
        now: datetime,
        session: Session | None = None,
        facts: Sequence[Fact] = (),
    ) -> TicketView:
        """The view of ``row``; with ``session``, also the routing rule that chose its policy
        (one ticket's card and explanation show it; lists of tickets do not need it)."""
        name = f"{row.source}:{row.external_key}"
        policy = self.policies.get(row.policy)
        if policy is None:
            raise TicketNotReadableError(
                f"ticket {name} is under policy {row.policy!r}, which is not loaded "
                f"(loaded: {', '.join(sorted(self.policies)) or 'none'})"
            )
        if session is not None and reads_status_history(policy):
            facts = stored_facts(session, [row.id]).get(row.id, ())
        ticket = engine_ticket(row, facts)
        try:
            decision = evaluate(ticket, policy, now)
        except SlabotError as error:
            raise TicketNotReadableError(f"ticket {name}: {error}") from None
        shown = row.shown or {}
        jira_key = _text(shown.get("key")) if row.source == JIRA else None
        if row.source == ZENDESK:
            label = f"ZD-{row.external_key}"
        elif jira_key:
            label = jira_key
        else:
            label = name
        return TicketView(
            ticket_id=row.id,
            source=row.source,
            external_key=row.external_key,
            label=label,
            url=self.links.url(row.source, row.external_key, jira_key),
            status=row.status,
            policy=policy,
            ticket=ticket,
            decision=decision,
            now=now,
            assignee_email=(_text(shown.get("assignee_email")) or "").lower() or None,
            queue=_text(shown.get("queue")),
            subject=_text(shown.get("subject")),
            requester=_text(shown.get("requester")),
            organization=_text(shown.get("organization")),
            assignee_name=_text(shown.get("assignee_name")),
            routing_rule=(
                session.scalar(
                    select(StoredDecision.routing_rule).where(StoredDecision.ticket_id == row.id)
                )
                if session is not None
                else None
            ),
        )

    # --- breach queries ----------------------------------------------------------------------

    def breached(self, now: datetime, limit: int | None = None) -> list[DueTarget]:
        with self.engine.connect() as connection:
            return due_targets(connection, breached_where(now), limit)

    def due_before(
        self, now: datetime, until: datetime, limit: int | None = None
    ) -> list[DueTarget]:
        """Clocks of open tickets due in ``(now, until]``."""
        with self.engine.connect() as connection:
            return due_targets(connection, reaching_where(BREACH, now, until - now), limit)

    def at_risk(self, permille: int, now: datetime, until: datetime) -> list[DueTarget]:
        """Clocks that reach ``permille`` of their target by ``until`` (breached ones too)."""
        where = or_(
            and_(TargetMark.threshold_permille == permille, TargetMark.at <= until),
            breached_where(now),
        )
        with self.engine.connect() as connection:
            return due_targets(connection, where, None)

    def paused_tickets(self, limit: int = 2000) -> list[int]:
        """Ids of open tickets in a status that waits on the customer."""
        with Session(self.engine) as session:
            return list(
                session.scalars(
                    select(StoredTicket.id)
                    .where(StoredTicket.status.in_(_PAUSING_STATUSES))
                    .order_by(StoredTicket.id)
                    .limit(limit)
                )
            )

    # --- nudges ------------------------------------------------------------------------------

    def unnudged(
        self, permille: int, targets: Iterable[str], now: datetime, limit: int | None = 200
    ) -> list[DueTarget]:
        """Clocks of ``targets`` that reached ``permille`` of their target by ``now`` and have
        no nudge row for that threshold in their current cycle."""
        nudged = exists().where(
            Nudge.ticket_id == TargetMark.ticket_id,
            Nudge.target == TargetMark.target,
            Nudge.threshold == permille // 10,
            Nudge.cycle_started_at == TargetMark.cycle_started_at,
        )
        where: ColumnElement[bool] = and_(
            TargetMark.threshold_permille == permille,
            TargetMark.at <= now,
            TargetMark.target.in_(sorted(targets)),
            ~nudged,
        )
        with self.engine.connect() as connection:
            return due_targets(connection, where, limit)

    def record_nudge(
        self,
        mark: DueTarget,
        percent: int,
        now: datetime,
        *,
        owe: tuple[str, dict[str, Any], str] | None,
        note: Mapping[str, Any] | None = None,
    ) -> bool:
        """Insert the nudge row of ``mark`` at ``percent`` and, in the same transaction, owe
        Slack ``owe`` = (kind, payload, idempotency key). False when the row already existed
        (another worker nudged first): nothing is owed then."""
        with Session(self._writer, expire_on_commit=False) as session, session.begin():
            values = {
                "ticket_id": mark.ticket_id,
                "target": mark.target,
                "threshold": percent,
                "cycle_started_at": mark.cycle_started_at,
                "sent_at": now,
                "payload": {"at": iso_z(mark.at), **(note or {})},
            }
            dialect = session.get_bind().dialect.name
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            inserted = session.execute(
                insert(_NUDGES)
                .values(**values)
                .on_conflict_do_nothing(
                    index_elements=["ticket_id", "target", "threshold", "cycle_started_at"]
                )
                .returning(_NUDGES.c.id)
            ).first()
            if inserted is None:
                return False
            if owe is not None:
                kind, payload, key = owe
                writes.owe(session, SLACK, mark.ticket_id, kind, payload, key, now, once=True)
            return True

    def owe(
        self, ticket_id: int | None, kind: str, payload: dict[str, Any], key: str, now: datetime
    ) -> bool:
        """Owe Slack a write (once per idempotency key); False when it was owed already."""
        with Session(self._writer, expire_on_commit=False) as session, session.begin():
            return writes.owe(session, SLACK, ticket_id, kind, payload, key, now, once=True)

    def message(
        self, ticket_id: int, target: str, cycle_started_at: datetime
    ) -> NudgeMessage | None:
        """The Slack message posted about this clock cycle (the latest), if any."""
        posted = [
            m
            for m in self._nudges(
                Nudge.ticket_id == ticket_id,
                Nudge.target == target,
                Nudge.cycle_started_at == cycle_started_at,
            )
            if m.ts
        ]
        if not posted:
            return None
        return max(posted, key=lambda m: (str(m.payload.get("posted_at") or ""), m.nudge_id))

    def nudge(self, nudge_id: int) -> NudgeMessage | None:
        found = self._nudges(Nudge.id == nudge_id)
        return found[0] if found else None

    def nudge_for(
        self, ticket_id: int, target: str, percent: int, cycle_started_at: datetime
    ) -> NudgeMessage | None:
        found = self._nudges(
            Nudge.ticket_id == ticket_id,
            Nudge.target == target,
            Nudge.threshold == percent,
            Nudge.cycle_started_at == cycle_started_at,
        )
        return found[0] if found else None

    def open_messages(self, now: datetime, ticket_id: int | None = None) -> list[NudgeMessage]:
        """Posted nudge messages that may still change (not closed, not too old)."""
        conditions = [
            Nudge.channel.is_not(None),
            Nudge.sent_at >= now - timedelta(days=_OPEN_MESSAGE_DAYS),
        ]
        if ticket_id is not None:
            conditions.append(Nudge.ticket_id == ticket_id)
        return [m for m in self._nudges(*conditions) if m.ts and not m.closed]

    def ticket_thread(self, ticket_id: int, now: datetime) -> NudgeMessage | None:
        """The ticket's open message (any target) whose thread later nudges of the ticket
        join: one message per ticket, not per target. The latest posted, or None."""
        posted = self.open_messages(now, ticket_id=ticket_id)
        if not posted:
            return None
        return max(posted, key=lambda m: (str(m.payload.get("posted_at") or ""), m.nudge_id))

    def record_message(
        self,
        nudge_id: int,
        channel: str,
        ts: str,
        language: str,
        zone: str | None,
        now: datetime,
        thread_ts: str | None = None,
    ) -> None:
        """Remember where the nudge's message is, so later changes update it in place;
        ``thread_ts`` when it is a reply in the thread of the ticket's message."""
        self._update_payload(
            nudge_id,
            {
                "ts": ts,
                "language": language,
                "zone": zone,
                "posted_at": iso_z(now),
                "thread_ts": thread_ts,
            },
            channel=channel,
        )

    def record_breach_thread(
        self, nudge_id: int, channel: str, thread_ts: str, now: datetime
    ) -> None:
        """The breach was announced in this thread at ``now`` (re-announcements count from it)."""
        self._update_payload(
            nudge_id,
            {"thread": {"channel": channel, "ts": thread_ts}, "notified_at": iso_z(now)},
        )

    def mark_notified(self, nudge_id: int, now: datetime) -> None:
        self._update_payload(nudge_id, {"notified_at": iso_z(now)})

    def announced_breaches(self, now: datetime) -> list[NudgeMessage]:
        """Breach rows announced in a thread that nobody has taken yet (recent ones)."""
        rows = self._nudges(
            Nudge.threshold == BREACH // 10,
            Nudge.sent_at >= now - timedelta(days=_OPEN_MESSAGE_DAYS),
        )
        return [m for m in rows if m.payload.get("thread") and not m.acks]

    def take(
        self,
        nudge: NudgeMessage,
        user: str,
        actor: str,
        now: datetime,
        *,
        assign_email: str | None = None,
    ) -> NudgeMessage | None:
        """Record that ``user`` took the breach of ``nudge``'s clock ("I'm on it"; with
        ``assign_email``, "Assign to me"): an entry in the breach row's ``acks`` (which stops
        its re-announcements), a ticket history entry (``acknowledged`` / ``assigned``) and,
        for an assignment, the helpdesk write ``set_assignee`` owed in the same transaction.
        Returns the breach row as recorded, or None when this user had already done the same
        (a double click records nothing)."""
        breach = self.nudge_for(nudge.ticket_id, nudge.target, BREACH // 10, nudge.cycle_started_at)
        target = breach or nudge
        kind = "assigned" if assign_email else "acknowledged"
        key = f"slack:{kind}:{target.nudge_id}:{user}"
        with Session(self._writer, expire_on_commit=False) as session, session.begin():
            seen = session.scalar(
                select(TicketEvent.id).where(
                    TicketEvent.ticket_id == nudge.ticket_id, TicketEvent.event_key == key
                )
            )
            ticket = session.get(StoredTicket, nudge.ticket_id)
            row = session.get(Nudge, target.nudge_id, with_for_update=True)
            if seen is not None or ticket is None or row is None:
                return None
            details: dict[str, Any] = {
                "nudge": target.nudge_id,
                "target": nudge.target,
                "slack_user": user,
            }
            if assign_email:
                details["email"] = assign_email
            session.add(
                TicketEvent(
                    ticket_id=nudge.ticket_id,
                    kind=kind,
                    occurred_at=now,
                    recorded_at=now,
                    actor=actor,
                    event_key=key,
                    payload=details,
                )
            )
            entry = {"by": user, "at": iso_z(now), "assigned": bool(assign_email)}
            row.payload = {**(row.payload or {}), "acks": [*row.payload.get("acks", []), entry]}
            if assign_email:
                key = (
                    f"{ticket.source}:{ticket.external_key}:{SET_ASSIGNEE}:"
                    f"{int(now.timestamp())}:{assign_email}"
                )
                payload = {"email": assign_email}
                writes.owe(session, ticket.source, ticket.id, SET_ASSIGNEE, payload, key, now)
        return self.nudge(target.nudge_id)

    def close_message(self, nudge_id: int, why: str) -> None:
        self._update_payload(nudge_id, {"closed": why})

    def snooze(
        self, nudge_id: int, user: str, reason: str, until: datetime, now: datetime
    ) -> NudgeMessage | None:
        """Hold the nudge's reminders until ``until``; the snooze is appended to the row's
        audit (who, when, until, why). None when the nudge does not exist."""
        current = self.nudge(nudge_id)
        if current is None:
            return None
        entry = {"by": user, "at": iso_z(now), "until": iso_z(until), "reason": reason}
        snoozes = [*current.payload.get("snoozes", []), entry]
        self._update_payload(
            nudge_id,
            {"snoozes": snoozes, "snoozed_until": until.isoformat(), "reminded": False},
        )
        return self.nudge(nudge_id)

    def mark_reminded(self, nudge_id: int) -> None:
        self._update_payload(nudge_id, {"reminded": True})

    def _nudges(self, *conditions: ColumnElement[bool]) -> list[NudgeMessage]:
        with Session(self.engine) as session:
            rows = session.scalars(select(Nudge).where(*conditions).order_by(Nudge.id)).all()
            return [_message(row) for row in rows]

    def _update_payload(
        self, nudge_id: int, changes: Mapping[str, Any], channel: str | None = None
    ) -> None:
        """Change the nudge row; patient with the database (``COMPLETE_RETRY``): this runs
        after a message was posted, and failing here fails the outbox item, which posts the
        message again."""

        def work(session: Session) -> None:
            row = session.get(Nudge, nudge_id, with_for_update=True)
            if row is None:
                return
            row.payload = {**(row.payload or {}), **changes}  # a new dict: the ORM sees it
            if channel is not None:
                row.channel = channel

        with_retry(
            self.engine,
            work,
            policy=COMPLETE_RETRY,
            what=f"recording nudge {nudge_id}'s message",
        )


def _message(row: Nudge) -> NudgeMessage:
    payload = dict(row.payload or {})
    return NudgeMessage(
        nudge_id=row.id,
        ticket_id=row.ticket_id,
        target=row.target,
        threshold=row.threshold,
        cycle_started_at=row.cycle_started_at,
        channel=row.channel,
        ts=_text(payload.get("ts")),
        language=_text(payload.get("language")),
        zone=_text(payload.get("zone")),
        payload=payload,
    )


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None
