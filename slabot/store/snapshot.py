"""The connector contract: what a helpdesk's connector hands the store, and what it gets back.

A connector maps what its helpdesk sends into a ``Snapshot`` (with its ``StatusChange``
history) and calls ``TicketService.ingest``; the answer is an ``IngestResult``, or an
``IngestError`` when the snapshot cannot be applied (nothing of it was stored).
``normalized`` checks a snapshot before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.engine import Decision
from bot.errors import SlabotError
from bot.policy import TARGETS
from bot.ticket import SOLVED_STATUSES, STATUSES, TEXT_FIELDS
from slabot.store.history import DELETED

Outcome = Literal["created", "updated", "unchanged", "stale"]
TIME_FIELDS = ("created_at", "first_response_at", "last_agent_update_at", "solved_at")
COPIED_FIELDS = ("policy", "status", *TEXT_FIELDS, *TIME_FIELDS)
"""Snapshot fields stored as they are on the ticket row."""

EVENT_KEY_LENGTH = 255
"""The longest event key the history stores."""


class IngestError(SlabotError):
    """A snapshot cannot be applied; nothing was stored."""


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A status the ticket took at ``at``, as its source's own history shows it (a Zendesk
    audit, a Jira changelog entry). ``key`` is the source's id for the change (stored as the
    history entry's event key), so a change seen again is stored once."""

    at: datetime
    to: str
    key: str
    actor: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A ticket as its helpdesk shows it at ``updated_at``, in the engine's vocabulary.

    ``priority`` is the priority as requested (the customer's or the form's choice), not the
    priority slabot writes back. ``shown`` is what the helpdesk currently displays in the
    fields slabot writes: ``{"priority": "P2", "tags": [...]}`` (tags: at least the ones the
    policy sets; others are ignored), and, for a helpdesk with due-date fields, ``"due"``:
    field -> the text it shows (None: empty), with ``"due_format"``: field -> ``{"target":
    ..., "format": "instant" | "date", "zone": ...}`` saying which target's due instant it
    holds and how (see ``due_text``; by default the target named like the field, as an
    ``instant``). ``actor`` is who made the latest change, if known.

    ``status_history`` (optional): the statuses the ticket took, from the source's own
    history, keyed. They are applied with the snapshot, in the same transaction, as
    ``EventService.status_changed`` would apply them one by one: changes already stored (by
    key) or dated before the ticket was created are skipped, and pauses and the restoration
    cycle are derived from the whole history.
    """

    source: str
    external_key: str
    policy: str
    updated_at: datetime
    created_at: datetime
    status: str = "open"
    priority: str | None = None
    plan: str | None = None
    environment: str | None = None
    product_stage: str | None = None
    urgency: str | None = None
    impact: str | None = None
    channel: str | None = None
    customer_timezone: str | None = None
    customer_country: str | None = None
    first_response_at: datetime | None = None
    last_agent_update_at: datetime | None = None
    solved_at: datetime | None = None
    shown: Mapping[str, Any] = field(default_factory=dict)
    actor: str | None = None
    status_history: tuple[StatusChange, ...] = ()
    agent_replies: tuple[datetime, ...] = ()
    """Every public agent reply the source's history shows, oldest first."""
    customer_replies: tuple[datetime, ...] = ()
    """Every public comment by the requester or another non-agent after the creation, oldest
    first: the events metrics such as ``next_reply`` start on (docs/metrics.md)."""
    routing: Mapping[str, Any] = field(default_factory=dict)
    """What routing rules read about the ticket (``bot.routing``: brand, group, tags,
    project, labels, fields...; ``source`` is the snapshot's own). With a router, the
    service's rules choose the policy from it and ``policy`` is not read."""


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one ingest did."""

    ticket_id: int
    outcome: Outcome
    """``stale``: older than what is stored, ignored. ``unchanged``: no engine field moved."""
    events: tuple[str, ...]
    """Kinds of the history entries appended, in order."""
    decision: Decision | None
    """The decision now stored (None when the snapshot was stale)."""
    enqueued: tuple[str, ...]
    """Kinds of the outbox writes enqueued."""
    warnings: tuple[str, ...] = ()
    """What this ingest found the policy cannot place, said for the first time (a plan or a
    value it does not know): logged once as a WARNING, and owed to the helpdesk as a note."""


DUE_FORMATS = ("instant", "date", "local")
"""How a due-date field shows its instant (``shown["due_format"][field]["format"]``; see
``slabot.store.writes.due_text``)."""


def due_target(name: str, spec: Mapping[str, Any] | None) -> str:
    """The target whose due instant field ``name`` holds: ``spec["target"]``, or the name."""
    target = (spec or {}).get("target", name)
    return str(target)


def normalized(snapshot: Snapshot) -> Snapshot:
    """Text stripped (empty -> None); statuses and instants checked before anything is written."""
    where = f"ticket {snapshot.source}:{snapshot.external_key}"
    if not snapshot.source or not snapshot.external_key:
        raise IngestError("a snapshot needs its source and external key")
    if snapshot.status not in STATUSES:
        raise IngestError(
            f"{where}: status {snapshot.status!r}; expected one of {', '.join(STATUSES)}"
        )
    for name in (*TIME_FIELDS, "updated_at"):
        value = getattr(snapshot, name)
        if value is not None and (value.tzinfo is None or value.utcoffset() is None):
            raise IngestError(f"{where}: {name} {value.isoformat()} has no time zone")
    if snapshot.status in SOLVED_STATUSES and snapshot.solved_at is None:
        raise IngestError(f"{where}: status {snapshot.status!r} needs solved_at")
    texts = {}
    for name in TEXT_FIELDS:
        value = getattr(snapshot, name)
        if value is not None:
            value = value.strip() or None
        texts[name] = value
    _check_due_fields(snapshot.shown, where)
    history = tuple(_normalized_change(change, where) for change in snapshot.status_history)
    return replace(snapshot, status_history=history, **texts)


def _check_due_fields(shown: Mapping[str, Any], where: str) -> None:
    """``shown["due"]`` and ``shown["due_format"]``, checked before anything is written."""
    due = shown.get("due")
    if due is None:
        return
    if not isinstance(due, Mapping):
        raise IngestError(f"{where}: shown['due'] must map each due-date field to its text")
    formats = shown.get("due_format") or {}
    if not isinstance(formats, Mapping):
        raise IngestError(f"{where}: shown['due_format'] must map due-date fields to formats")
    for name in due:
        spec = formats.get(name) or {}
        if not isinstance(spec, Mapping):
            raise IngestError(f"{where}: shown['due_format'][{name!r}] must be a mapping")
        target = due_target(name, spec)
        if target not in TARGETS:
            raise IngestError(
                f"{where}: due-date field {name!r} holds target {target!r}; expected one of "
                f"{', '.join(TARGETS)} (set its 'target')"
            )
        if spec.get("format", "instant") not in DUE_FORMATS:
            raise IngestError(
                f"{where}: due-date field {name!r} has format {spec.get('format')!r}; "
                f"expected one of {', '.join(DUE_FORMATS)}"
            )
        zone = spec.get("zone")
        if zone is not None:
            try:
                ZoneInfo(str(zone))
            except (ZoneInfoNotFoundError, ValueError):
                raise IngestError(
                    f"{where}: due-date field {name!r} has unknown time zone {zone!r}"
                ) from None


def _normalized_change(change: StatusChange, where: str) -> StatusChange:
    if not isinstance(change, StatusChange):
        raise IngestError(f"{where}: status_history holds {change!r}, not a StatusChange")
    key = (change.key or "").strip()
    if not key or len(key) > EVENT_KEY_LENGTH:
        raise IngestError(
            f"{where}: a status change needs a key of 1 to {EVENT_KEY_LENGTH} characters "
            f"(got {change.key[:40]!r})"
        )
    if change.to not in STATUSES and change.to != DELETED:
        raise IngestError(
            f"{where}: status change {key!r} to {change.to!r}; expected one of "
            f"{', '.join(STATUSES)} or {DELETED}"
        )
    at = change.at
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise IngestError(f"{where}: status change {key!r}: the time {at!r} has no time zone")
    actor = change.actor.strip() or None if change.actor is not None else None
    return StatusChange(at, change.to, key, actor)
