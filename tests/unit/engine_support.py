"""Small helpers the engine tests share: tickets from JSON-like fields, local ISO times."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import holidays

from bot.compiled import Policy
from bot.engine import Decision, evaluate
from bot.ticket import Ticket

BRATISLAVA = ZoneInfo("Europe/Bratislava")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
TARGET_NAMES = ("first_response", "restoration", "next_update")


def make_ticket(**fields: Any) -> Ticket:
    """A ticket built through the same path as ``slabot evaluate`` input."""
    return Ticket.from_mapping({"id": "T-1", **fields})


def decide(policy: Policy, now: str, **fields: Any) -> Decision:
    """Evaluate a ticket given as JSON-like fields at the ISO instant ``now``."""
    return evaluate(make_ticket(**fields), policy, datetime.fromisoformat(now))


def local_iso(instant: datetime | None, zone: ZoneInfo) -> str | None:
    """``instant`` as local ISO 8601 in ``zone``: what the expected values are written in."""
    return None if instant is None else instant.astimezone(zone).isoformat()


def dues(decision: Decision, zone: ZoneInfo) -> tuple[str | None, ...]:
    """Due instants of first response, restoration and next update, local to ``zone``."""
    return tuple(local_iso(decision.targets[name].due, zone) for name in TARGET_NAMES)


def states(decision: Decision) -> dict[str, str]:
    return {name: target.state for name, target in decision.targets.items()}


def holiday(country: str, year: int, name: str) -> date:
    """The date the ``holidays`` package gives the holiday whose English name contains ``name``."""
    found = holidays.country_holidays(country, years=year, language="en_US")
    matches = [day for day, label in found.items() if name.lower() in label.lower()]
    assert len(matches) == 1, f"{country} {year}: expected one holiday named {name!r}: {matches}"
    return matches[0]


def is_holiday(country: str, day: date) -> bool:
    return day in holidays.country_holidays(country, years=day.year)


def at(day: date, hh_mm: str, zone: ZoneInfo) -> str:
    """ISO instant of local wall time ``hh_mm`` on ``day`` in ``zone``."""
    hour, minute = (int(part) for part in hh_mm.split(":"))
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone).isoformat()


def first_response_due(decision: Decision, zone: ZoneInfo) -> str | None:
    return local_iso(decision.targets["first_response"].due, zone)
