"""The normalized ticket the engine reads, whatever helpdesk it came from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any

from bot.business_time import FIRST_YEAR, LAST_YEAR
from bot.errors import TicketError
from bot.records import quick_init

STATUSES = ("new", "open", "pending", "on_hold", "solved", "closed")
SOLVED_STATUSES = ("solved", "closed")
_KNOWN_STATUSES = frozenset(STATUSES)

TEXT_FIELDS = (
    "priority",
    "plan",
    "environment",
    "product_stage",
    "urgency",
    "impact",
    "channel",
    "customer_timezone",
    "customer_country",
)
"""The text fields of a ticket (the store copies them as a snapshot gives them)."""
_TIME_FIELDS = ("first_response_at", "last_agent_update_at", "solved_at")
_TEXT, _TIME = "text", "time"
_FIELD_KINDS = {
    **{name: _TEXT for name in TEXT_FIELDS},
    **{name: _TIME for name in (*_TIME_FIELDS, "created_at", "restoration_started_at")},
}
ROUTING_ATTRIBUTES = frozenset(
    (
        "source",
        "brand",
        "group",
        "organization",
        "form",
        "tags",
        "custom_fields",
        "organization_fields",
        "project",
        "issue_type",
        "components",
        "labels",
        "fields",
    )
)
"""What routing rules read (``bot.routing.ATTRIBUTES``); a ticket mapping may carry them."""

_LIST_FIELDS = ("agent_replies", "customer_replies")
KNOWN_FIELDS = frozenset(
    (
        "id",
        "created_at",
        "status",
        "paused",
        "restoration_started_at",
        "status_changes",
        *TEXT_FIELDS,
        *_TIME_FIELDS,
        *_LIST_FIELDS,
    )
)


@dataclass(frozen=True, slots=True)
class Reclassification:
    """An agent's choice of priority, which outranks the policy's classification."""

    priority: str
    actor: str
    reason: str
    at: datetime


@quick_init
@dataclass(frozen=True, slots=True)
class Ticket:
    """What the engine needs to know about a ticket; times are aware datetimes."""

    id: str
    created_at: datetime
    priority: str | None = None
    plan: str | None = None
    environment: str | None = None
    product_stage: str | None = None
    urgency: str | None = None
    impact: str | None = None
    channel: str | None = None
    customer_timezone: str | None = None
    customer_country: str | None = None
    status: str = "open"
    first_response_at: datetime | None = None
    last_agent_update_at: datetime | None = None
    solved_at: datetime | None = None
    paused: tuple[tuple[datetime, datetime | None], ...] = ()
    restoration_started_at: datetime | None = None
    """Start of the current restoration cycle; a reopened ticket starts a new one."""
    reclassification: Reclassification | None = field(default=None)
    agent_replies: tuple[datetime, ...] = ()
    """Every public agent reply, oldest first (the events metrics such as ``next_reply``
    stop on); when empty, ``first_response_at`` and ``last_agent_update_at`` stand for them,
    and when those are not given they are taken from it."""
    customer_replies: tuple[datetime, ...] = ()
    """Every public comment by the requester or another non-agent after the creation, oldest
    first (``next_reply`` starts on them)."""
    status_changes: tuple[tuple[datetime, str], ...] = ()
    """``(instant, status)`` the ticket entered, oldest first, the creation's status
    included; metrics pausing on statuses and starting or stopping on ``status:<name>``
    read them (without them, the current status stands from ``now``)."""

    def __post_init__(self) -> None:
        # Naive times would be read in the host's zone, and events before the ticket existed
        # would count as met: refuse both, naming the field.
        created = self.created_at
        if created.tzinfo is None:
            raise TicketError(f"ticket {self.id}: created_at has no time zone")
        for name in ("first_response_at", "last_agent_update_at", "solved_at"):
            value = getattr(self, name)
            if value is None:
                continue
            if value.tzinfo is None:
                raise TicketError(f"ticket {self.id}: {name} has no time zone")
            if value < created:
                raise TicketError(
                    f"ticket {self.id}: {name} {value.isoformat()} is before created_at "
                    f"{created.isoformat()}"
                )
        started = self.restoration_started_at
        if started is not None and (started.tzinfo is None or started < created):
            raise TicketError(
                f"ticket {self.id}: restoration_started_at must be an aware instant after "
                "created_at"
            )
        for begin, end in self.paused:
            if begin.tzinfo is None or (end is not None and end.tzinfo is None):
                raise TicketError(f"ticket {self.id}: paused spans need time zones")
        if self.agent_replies or self.customer_replies or self.status_changes:
            self._check_events(created)

    def _check_events(self, created: datetime) -> None:
        for name in _LIST_FIELDS:
            values = getattr(self, name)
            if not values or _aware_from(values, created):
                continue
            for index, value in enumerate(values):
                if value.tzinfo is None or value < created:
                    raise TicketError(
                        f"ticket {self.id}: {name}[{index}] must be an aware instant at or "
                        "after created_at"
                    )
        solved = False
        for index, (value, status) in enumerate(self.status_changes):
            if value.tzinfo is None or value < created:
                raise TicketError(
                    f"ticket {self.id}: status_changes[{index}] must be an aware instant at or "
                    "after created_at"
                )
            if status not in _KNOWN_STATUSES:
                raise TicketError(
                    f"ticket {self.id}: status_changes[{index}] is {status!r}; expected one "
                    f"of {', '.join(STATUSES)}"
                )
            solved = solved or status in SOLVED_STATUSES
        if solved and (
            self.restoration_started_at is None
            or (self.solved_at is None and self.status in SOLVED_STATUSES)
        ):
            self._fill_from_statuses()
        replies = self.agent_replies
        if replies and self.first_response_at is None:
            # The replies themselves say when the first and the last were.
            object.__setattr__(self, "first_response_at", min(replies))
        if replies and self.last_agent_update_at is None:
            object.__setattr__(self, "last_agent_update_at", max(replies))

    def _fill_from_statuses(self) -> None:
        """The latest reopening and (when solved) solve, from the status history, when the
        summary fields do not give them."""
        previous: str | None = None
        solved = reopened = None
        for at, status in net_status_changes(self.status_changes):
            if status in SOLVED_STATUSES and previous not in SOLVED_STATUSES:
                solved = at
            elif previous in SOLVED_STATUSES and status not in SOLVED_STATUSES:
                reopened = at
            previous = status
        if self.restoration_started_at is None and reopened is not None:
            object.__setattr__(self, "restoration_started_at", reopened)
        if self.solved_at is None and self.status in SOLVED_STATUSES and solved is not None:
            object.__setattr__(self, "solved_at", solved)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Ticket:
        """Build from the JSON shape of ``slabot evaluate`` input; errors name the field."""
        if type(data) is not dict and not isinstance(data, Mapping):
            raise TicketError("a ticket must be a JSON object")
        values: dict[str, Any] = {}
        # One pass over the fields present: this runs once per ticket of a bulk evaluation.
        for name, value in data.items():
            if value is None:
                continue
            kind = _FIELD_KINDS.get(name)
            if kind is _TEXT:
                if not isinstance(value, str):
                    raise TicketError(f"field {name!r} must be a string or null, not {value!r}")
                value = value.strip()
                if value:
                    values[name] = value
            elif kind is _TIME:
                if type(value) is str:
                    # The well-formed instant first, without a call (hot path); anything
                    # else goes through parse_instant for its error.
                    try:
                        parsed = _fromisoformat(value)
                    except ValueError:
                        pass
                    else:
                        if parsed.tzinfo is not None and FIRST_YEAR <= parsed.year <= LAST_YEAR:
                            values[name] = parsed
                            continue
                if not isinstance(value, str):
                    raise TicketError(f"field {name!r} must be an ISO 8601 string, not {value!r}")
                values[name] = parse_instant(value, name)
            elif name == "paused":
                values[name] = _pauses(value)
            elif name in _LIST_FIELDS:
                values[name] = _instants(value, name)
            elif name == "status_changes":
                values[name] = _status_changes(value)
            elif name in ("id", "status"):
                values[name] = value
            elif name in ROUTING_ATTRIBUTES:
                continue  # read by the routing rules (bot.routing), not by the engine
            else:
                known = ", ".join(sorted(KNOWN_FIELDS | ROUTING_ATTRIBUTES))
                unknown = ", ".join(sorted(set(data) - KNOWN_FIELDS - ROUTING_ATTRIBUTES))
                raise TicketError(f"unknown field(s) {unknown}; known: {known}")
        ticket_id = values.get("id")
        if not isinstance(ticket_id, str) or not ticket_id:
            raise TicketError("field 'id' is required and must be a non-empty string")
        if "created_at" not in values:
            raise TicketError("field 'created_at' is required (ISO 8601 with an offset)")
        status = values.get("status", "open")
        if status not in STATUSES:
            raise TicketError(
                f"field 'status' is {status!r}; expected one of {', '.join(STATUSES)}"
            )
        return cls(**values)


def parse_instant(value: str, name: str) -> datetime:
    """An ISO 8601 instant with an offset (``Z`` allowed); a naive time is refused."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise TicketError(
            f"field {name!r}: {value!r} is not ISO 8601 (like 2026-03-02T09:30:00+01:00)"
        ) from None
    if parsed.tzinfo is None:
        raise TicketError(
            f"field {name!r}: {value!r} has no offset; add one such as 'Z' or '+01:00'"
        )
    if not FIRST_YEAR <= parsed.year <= LAST_YEAR:
        raise TicketError(
            f"field {name!r}: {value!r} is outside the years {FIRST_YEAR}-{LAST_YEAR} "
            "slabot computes in"
        )
    return parsed


def _pauses(value: Any) -> tuple[tuple[datetime, datetime | None], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise TicketError("field 'paused' must be a list of [from, to-or-null] pairs")
    pauses = []
    for index, pair in enumerate(value):
        if not isinstance(pair, list | tuple) or len(pair) != 2 or not isinstance(pair[0], str):
            raise TicketError(
                f"field 'paused'[{index}] must be a [from, to-or-null] pair of ISO 8601 strings"
            )
        begin = parse_instant(pair[0], f"paused[{index}][0]")
        end = None
        if pair[1] is not None:
            if not isinstance(pair[1], str):
                raise TicketError(f"field 'paused'[{index}][1] must be an ISO 8601 string or null")
            end = parse_instant(pair[1], f"paused[{index}][1]")
            if end < begin:
                raise TicketError(f"field 'paused'[{index}] ends before it starts")
        pauses.append((begin, end))
    return tuple(pauses)


def _instants(value: Any, name: str) -> tuple[datetime, ...]:
    if type(value) is not list:
        raise TicketError(f"field {name!r} must be a list of ISO 8601 strings")
    found = []
    for index, item in enumerate(value):
        found.append(_list_instant(item, name, index))
    found.sort()
    return tuple(found)


def _list_instant(item: Any, name: str, index: int) -> datetime:
    """``parse_instant`` for an item of a list field, naming the item only on an error
    (lists are the bulk of a ticket with its events: this is the hot path)."""
    if type(item) is str:
        try:
            parsed = _fromisoformat(item)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None and FIRST_YEAR <= parsed.year <= LAST_YEAR:
                return parsed
    if not isinstance(item, str):
        raise TicketError(f"field {name!r}[{index}] must be an ISO 8601 string")
    return parse_instant(item, f"{name}[{index}]")


def _status_changes(value: Any) -> tuple[tuple[datetime, str], ...]:
    if type(value) is not list:
        raise TicketError("field 'status_changes' must be a list of [instant, status] pairs")
    changes = []
    for index, pair in enumerate(value):
        if type(pair) is not list or len(pair) != 2 or type(pair[1]) is not str:
            raise TicketError(
                f"field 'status_changes'[{index}] must be an [ISO 8601 instant, status] pair"
            )
        changes.append((_list_instant(pair[0], "status_changes", index), pair[1]))
    # Oldest first; a stable sort keeps same-instant changes in their given order.
    changes.sort(key=_first)
    return tuple(changes)


_fromisoformat = datetime.fromisoformat


def _aware_from(instants: tuple[datetime, ...], created: datetime) -> bool:
    """Whether every instant is aware and at or after ``created``: one ``min`` (comparing a
    naive instant with an aware one raises TypeError, which answers no)."""
    try:
        return min(instants) >= created
    except TypeError:
        return False


_first = itemgetter(0)


def net_status_changes(
    changes: tuple[tuple[datetime, str], ...],
) -> list[tuple[datetime, str]]:
    """The changes that count: of several in one second, the last (a solve undone at once
    neither solves nor reopens)."""
    if len(changes) < 2:
        return list(changes)
    kept = []
    previous = changes[0]
    for change in changes[1:]:
        if change[0] != previous[0]:
            kept.append(previous)
        previous = change
    kept.append(previous)
    return kept
