"""The normalized ticket the engine reads, whatever helpdesk it came from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.errors import TicketError

STATUSES = ("new", "open", "pending", "on_hold", "solved", "closed")
SOLVED_STATUSES = ("solved", "closed")

_TEXT_FIELDS = (
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
_TIME_FIELDS = ("first_response_at", "last_agent_update_at", "solved_at")
KNOWN_FIELDS = frozenset(
    ("id", "created_at", "status", "paused", "restoration_started_at", *_TEXT_FIELDS, *_TIME_FIELDS)
)


@dataclass(frozen=True, slots=True)
class Reclassification:
    """An agent's choice of priority, which outranks the policy's classification."""

    priority: str
    actor: str
    reason: str
    at: datetime


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

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Ticket:
        """Build from the JSON shape of ``slabot evaluate`` input; errors name the field."""
        if not isinstance(data, Mapping):
            raise TicketError("a ticket must be a JSON object")
        unknown = sorted(set(data) - KNOWN_FIELDS)
        if unknown:
            raise TicketError(
                f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_FIELDS))}"
            )
        ticket_id = data.get("id")
        if not isinstance(ticket_id, str) or not ticket_id:
            raise TicketError("field 'id' is required and must be a non-empty string")
        values: dict[str, Any] = {"id": ticket_id, "created_at": _instant(data, "created_at")}
        if values["created_at"] is None:
            raise TicketError("field 'created_at' is required (ISO 8601 with an offset)")
        for name in _TEXT_FIELDS:
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                raise TicketError(f"field {name!r} must be a string or null, not {value!r}")
            if value is not None and value.strip():
                values[name] = value.strip()
        for name in (*_TIME_FIELDS, "restoration_started_at"):
            values[name] = _instant(data, name)
        status = data.get("status", "open")
        if status is None:
            status = "open"
        if status not in STATUSES:
            raise TicketError(
                f"field 'status' is {status!r}; expected one of {', '.join(STATUSES)}"
            )
        values["status"] = status
        values["paused"] = _pauses(data.get("paused"))
        return cls(**values)


def _instant(data: Mapping[str, Any], name: str) -> datetime | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise TicketError(f"field {name!r} must be an ISO 8601 string, not {value!r}")
    return parse_instant(value, name)


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
