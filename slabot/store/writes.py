"""The helpdesk writes a decision calls for, and the outbox rows that owe them.

What the helpdesk shows (``Snapshot.shown``) is compared with what the decision wants
(``desired_writes``: the priority, the policy's tags, the due-date fields as ``due_text``
writes them); a write it does not show is owed once per snapshot (``idempotency_key``),
an owed one that became moot is settled as superseded (``settle``). Every outbox row is
built by ``outbox_row`` (``owe`` adds one to a session; the bulk paths insert the rows).
Everything here runs in the caller's transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from bot.compiled import Policy
from bot.engine import Decision
from slabot.store.models import OutboxItem, StoredTicket
from slabot.store.snapshot import due_target

if TYPE_CHECKING:
    from slabot.store.snapshot import Snapshot

DEFAULT_ECHO_WINDOW = timedelta(days=1)
"""How long a sent write whose echo never came keeps it from being owed again."""
SET_DUE_FIELDS = "set_due_fields"
WRITE_KINDS = ("set_priority", "set_tags", SET_DUE_FIELDS)
"""The writes a decision calls for, in the order they are owed."""
SUPERSEDED = "superseded"
"""How ``last_error`` begins for an owed write settled without being sent."""


class Owed(Protocol):
    """An owed write not done yet, as ``settle`` reads it."""

    @property
    def kind(self) -> str: ...

    @property
    def payload(self) -> Any: ...


OwedT = TypeVar("OwedT", bound=Owed)


def outbox_row(
    target: str, ticket_id: int | None, kind: str, payload: dict[str, Any], key: str, now: datetime
) -> dict[str, Any]:
    """An outbox row owing ``kind`` to ``target`` (a helpdesk, ``slack``): not sent yet, due
    ``now``. Bulk paths insert it as it is; ``owe`` adds it to a session."""
    return {
        "target_system": target,
        "ticket_id": ticket_id,
        "kind": kind,
        "payload": payload,
        "idempotency_key": key,
        "attempts": 0,
        "next_attempt_at": now,
        "last_error": None,
        "created_at": now,
        "done_at": None,
    }


def owe(
    session: Session,
    target: str,
    ticket_id: int | None,
    kind: str,
    payload: dict[str, Any],
    key: str,
    now: datetime,
    *,
    once: bool = False,
) -> bool:
    """Owe ``target`` a write in the caller's transaction (see ``outbox_row``); True when
    owed. ``once``: not when a write with this idempotency key is owed or was made already
    (this very write, for this very snapshot or moment): False then, and nothing is added."""
    if once and session.scalar(select(OutboxItem.id).where(OutboxItem.idempotency_key == key)):
        return False
    session.add(OutboxItem(**outbox_row(target, ticket_id, kind, payload, key, now)))
    return True


def settle(
    wanted: Mapping[str, dict[str, Any]], pending: Sequence[OwedT], due_fields: bool
) -> tuple[list[tuple[OwedT, str]], list[tuple[str, dict[str, Any]]]]:
    """Kind by kind (``WRITE_KINDS``; ``set_due_fields`` only when the helpdesk has
    ``due_fields``): the owed writes of ``pending`` that became moot, each with the
    ``last_error`` that settles it (the helpdesk shows the value, or a newer one is owed),
    and the ``wanted`` writes no equal one is owed for, as (kind, payload)."""
    moot: list[tuple[OwedT, str]] = []
    owing: list[tuple[str, dict[str, Any]]] = []
    for kind in WRITE_KINDS:
        if kind == SET_DUE_FIELDS and not due_fields:
            continue  # a helpdesk without due-date fields: its connector's own business
        payload = wanted.get(kind)
        already = False
        for item in pending:
            if item.kind != kind:
                continue
            if payload is not None and item.payload == payload:
                already = True
            elif payload is None:
                moot.append((item, f"{SUPERSEDED}: the helpdesk already shows the value"))
            else:
                moot.append((item, f"{SUPERSEDED} by a newer write"))
        if payload is not None and not already:
            owing.append((kind, payload))
    return moot, owing


def enqueue_writes(
    session: Session,
    row: StoredTicket,
    snapshot: Snapshot,
    decision: Decision,
    now: datetime,
    *,
    managed_tags: frozenset[str],
    echo_window: timedelta,
) -> list[str]:
    """Owe the helpdesk each write ``decision`` calls for whose value it does not show.

    ``snapshot.shown`` is what the helpdesk shows (for a stored ticket without a new
    snapshot, ``row_snapshot(row, at)``); ``snapshot.updated_at`` keys the writes, so the
    same write for the same snapshot is owed once. A write is not owed again while an
    equal one is still owed, nor when the latest one of its kind was sent after
    ``shown`` was read (``row.shown_at``) and within ``echo_window``: the helpdesk has
    it, its echo has not come back yet. Owed writes that became moot (the helpdesk
    shows the value, or a newer value is owed) are settled as superseded. Runs in the
    caller's transaction (``session``, which has ``row`` locked); returns the kinds
    enqueued, in order. ``managed_tags``: the tags the ticket's policy sets
    (``policy_tags``)."""
    wanted = desired_writes(decision, snapshot.shown, managed_tags)
    pending = session.scalars(
        select(OutboxItem).where(
            OutboxItem.ticket_id == row.id,
            OutboxItem.target_system == row.source,
            OutboxItem.done_at.is_(None),
        )
    ).all()
    shown_at = row.shown_at or row.updated_at
    since = max(shown_at, now - echo_window) if shown_at else now
    # Nothing can have been sent since a snapshot applied just now (ingest): no query.
    unechoed = _latest_sent(session, row, since) if since < now else {}
    moot, owing = settle(wanted, pending, isinstance(snapshot.shown.get("due"), Mapping))
    for item, why in moot:
        item.done_at = now
        item.next_attempt_at = None
        item.last_error = why
    enqueued = []
    for kind, payload in owing:
        sent = unechoed.get(kind)
        if sent is not None and sent.payload == payload:
            continue  # sent after the helpdesk was last read: not echoed yet
        key = idempotency_key(row, kind, payload, snapshot.updated_at)
        if owe(session, row.source, row.id, kind, payload, key, now, once=True):
            enqueued.append(kind)
    return enqueued


def note_unplaced(
    session: Session, row: StoredTicket, policy: Policy, decision: Decision, now: datetime
) -> list[str]:
    """Owe the helpdesk an internal note the first time the ticket names a plan its policy
    does not know, or carries a value it cannot use (``Decision.unknown_values``): the
    ticket is stored and evaluated all the same, and the note says what was not placed,
    what the policy knows and what applies instead. Keyed by ticket, field and value in
    the outbox, so a later ingest of the same ticket (a poll, a redelivery, another
    replica, a recompute) finds it and stays quiet. Returns the notes owed now (the
    caller logs each once)."""
    notes = unplaced_notes(row, policy, decision)
    if not notes:
        return []
    known = set(
        session.scalars(
            select(OutboxItem.idempotency_key).where(
                OutboxItem.idempotency_key.in_([key for key, _, _ in notes])
            )
        )
    )
    owed = []
    for key, note, payload in notes:
        if key in known:
            continue
        owe(session, row.source, row.id, "add_note", payload, key, now)
        owed.append(note)
    return owed


def _latest_sent(session: Session, row: StoredTicket, after: datetime) -> dict[str, OutboxItem]:
    """Kind -> the latest write to the ticket's helpdesk sent (completed, not superseded)
    after ``after``: the helpdesk has it, whatever ``shown`` still says."""
    sent = session.scalars(
        select(OutboxItem)
        .where(
            OutboxItem.ticket_id == row.id,
            OutboxItem.target_system == row.source,
            OutboxItem.done_at > after,
            or_(OutboxItem.last_error.is_(None), ~OutboxItem.last_error.startswith(SUPERSEDED)),
        )
        .order_by(OutboxItem.done_at, OutboxItem.id)
    ).all()
    return {item.kind: item for item in sent}


def desired_writes(
    decision: Decision, shown: Mapping[str, Any], managed_tags: frozenset[str]
) -> dict[str, dict[str, Any]]:
    """The helpdesk writes the decision calls for, given what the helpdesk shows.

    ``set_priority``: the final priority, when the helpdesk shows another. ``set_tags``: the
    policy's tags to add and to remove; tags the policy never sets are left alone.
    ``set_due_fields`` (only for a helpdesk whose ``shown`` has ``"due"``): ``{"fields":
    {field: text or None}}``, the due-date fields that show something else than the
    decision's due instant written as ``due_text`` writes it (None empties the field: no
    target applies, or the clock is paused).
    """
    writes: dict[str, dict[str, Any]] = {}
    if shown.get("priority") != decision.priority:
        writes["set_priority"] = {"priority": decision.priority}
    shown_tags = {t for t in shown.get("tags") or () if isinstance(t, str)} & managed_tags
    wanted_tags = set(decision.tags)
    add, remove = sorted(wanted_tags - shown_tags), sorted(shown_tags - wanted_tags)
    if add or remove:
        writes["set_tags"] = {"add": add, "remove": remove}
    fields = {
        name: wanted
        for name, wanted in wanted_due_fields(decision, shown).items()
        if shown["due"].get(name) != wanted
    }
    if fields:
        writes[SET_DUE_FIELDS] = {"fields": fields}
    return writes


def unplaced_notes(
    row: StoredTicket, policy: Policy, decision: Decision
) -> list[tuple[str, str, dict[str, Any]]]:
    """The internal notes ``note_unplaced`` owes for what ``decision`` cannot
    place (an unknown plan first, then each unknown value), whether or not already owed:
    ``(idempotency key, note, outbox payload)`` each."""
    unplaced = list(decision.unknown_values)
    if decision.unknown_plan is not None:
        unplaced.insert(0, ("plan", decision.unknown_plan))
    prefix = f"{row.source}:{row.external_key}:add_note:unknown-"
    keys = {(name, value): f"{prefix}{name}:{value}"[:255] for name, value in unplaced}
    notes = []
    for (name, value), key in keys.items():
        if name == "plan":
            note, tag = decision.unknown_plan_note, policy.spec.unknown_plan_tag
            until = "Until then"
        else:
            field = name.replace("_", " ")
            note = next((n for n in decision.notes if n.startswith(f"{field} {value!r} ")), "")
            tag = policy.spec.unknown_value_tag
            until = "Until the value is corrected"
        body = f"slabot: {note}." + (f" {until} the ticket carries the tag {tag}." if tag else "")
        notes.append((key, note, {"internal": True, "body": body, "unknown": {name: value}}))
    return notes


def wanted_due_fields(decision: Decision, shown: Mapping[str, Any]) -> dict[str, str | None]:
    """Each due-date field the helpdesk has (the keys of ``shown["due"]``) -> the text it
    should show for ``decision`` (None: empty). No fields, no entries."""
    due = shown.get("due")
    if not isinstance(due, Mapping):
        return {}
    formats = shown.get("due_format")
    formats = formats if isinstance(formats, Mapping) else {}
    wanted: dict[str, str | None] = {}
    for name in sorted(due):
        spec = formats.get(name)
        target = due_target(name, spec)
        decided = decision.targets.get(target)
        wanted[name] = due_text(decided.due if decided is not None else None, spec)
    return wanted


def due_text(instant: datetime | None, spec: Mapping[str, Any] | None = None) -> str | None:
    """A due instant as a helpdesk field shows it. ``spec["format"]``: ``instant`` (the
    default, for triggers and automations that compare it) writes ``2026-11-24T08:30:00Z``;
    ``date`` writes the date in ``spec["zone"]`` (an IANA zone, default UTC),
    ``2026-11-24``; ``local`` (for agents to read) writes the local time in ``spec["zone"]``
    with its offset and the zone's name, ``2026-11-23 19:30 -08:00 (America/Los_Angeles)``:
    one zone, named, and still unambiguous across a daylight-saving change. None (no due
    instant) stays None.

    >>> moment = datetime(2026, 11, 24, 3, 30, tzinfo=UTC)
    >>> due_text(moment), due_text(moment, {"format": "date", "zone": "America/Los_Angeles"})
    ('2026-11-24T03:30:00Z', '2026-11-23')
    >>> due_text(moment, {"format": "local", "zone": "America/Los_Angeles"})
    '2026-11-23 19:30 -08:00 (America/Los_Angeles)'
    """
    if instant is None:
        return None
    spec = spec or {}
    form = spec.get("format", "instant")
    if form in ("date", "local"):
        name = str(spec.get("zone") or "UTC")
        local = instant.astimezone(ZoneInfo(name))
        if form == "date":
            return local.date().isoformat()
        offset = local.strftime("%z")
        return f"{local:%Y-%m-%d %H:%M} {offset[:3]}:{offset[3:]} ({name})"
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def idempotency_key(
    row: StoredTicket, kind: str, payload: dict[str, Any], snapshot_at: datetime
) -> str:
    """The same write for the same snapshot gets the same key: a retried ingest cannot owe it
    twice, and the helpdesk connector can pass the key on where the helpdesk takes one."""
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    return f"{row.source}:{row.external_key}:{kind}:{int(snapshot_at.timestamp())}:{digest}"


def policy_tags(policy: Policy) -> frozenset[str]:
    """Every tag the policy's classification can set (``tag`` and ``*_tag`` settings)."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if (key == "tag" or key.endswith("_tag")) and isinstance(item, str):
                    found.add(item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(policy.spec.classification.model_dump())
    found.update(filter(None, (policy.spec.unknown_plan_tag, policy.spec.unknown_value_tag)))
    return frozenset(found)
