"""What every helpdesk's mapping shares: reading instants, texts, zones, countries and field
sources, the one ``PayloadError`` (pure: no network, no clock, no SDK).

Each helpdesk's ``mapping.py`` reads its own JSON (``TicketBundle``, ``IssueBundle``) into a
``Snapshot`` with these helpers, so that the same drift fails with the same words. What cannot
be read raises ``PayloadError`` naming where (``Jira issue SUP-1: created is missing``); what is
merely unusable (a time zone nobody knows) is dropped and its warning added to the list the
caller passes (it ends up in ``Mapped.warnings``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Literal, Protocol, Self, TypeVar, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.errors import SlabotError
from slabot.store.snapshot import Snapshot
from slabot.store.snapshot import StatusChange as StoredStatusChange

EngineField = Literal[
    "plan",
    "environment",
    "product_stage",
    "urgency",
    "impact",
    "customer_timezone",
    "customer_country",
]
"""The engine's ticket fields a helpdesk's ``fields:`` config can say where to read."""
ENGINE_FIELDS: tuple[str, ...] = get_args(EngineField)


class PayloadError(SlabotError):
    """A helpdesk payload lacks what slabot needs, or carries a value it cannot read."""


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A status the ticket took, from its history (the key makes a repeat harmless)."""

    event_key: str
    at: datetime
    to: str
    actor: str | None


Change = TypeVar("Change")
"""A helpdesk's own record of an agent's priority change (``PriorityChange``)."""


@dataclass(frozen=True, slots=True)
class Mapped(Generic[Change]):
    """One ticket in slabot's terms: what a helpdesk's ``map_*`` returns."""

    snapshot: Snapshot
    status_changes: tuple[StatusChange, ...]
    """Every status the history shows, oldest first (creation included): pauses come from
    these, not from guesses."""
    reclassifications: tuple[Change, ...]
    """Priority changes made by agents, oldest first."""
    due_shown: dict[str, str | None]
    """What the helpdesk's due fields show now, by the names its write-back uses."""
    warnings: tuple[str, ...] = ()

    @classmethod
    def read(
        cls,
        snapshot: Snapshot,
        history: History[Change],
        due_shown: dict[str, str | None],
        warnings: Iterable[str],
    ) -> Self:
        """The ticket as its snapshot and its history show it."""
        return cls(
            snapshot, history.status_changes, history.reclassifications, due_shown, tuple(warnings)
        )


@dataclass(slots=True)
class History(Generic[Change]):
    """What a ticket's history says (audits, a changelog, comments): replies, statuses,
    priorities. A helpdesk's mapping fills it in as it reads."""

    first_reply_at: datetime | None = None
    last_reply_at: datetime | None = None
    solved_at: datetime | None = None
    requested_priority: str | None = None
    last_actor: str | None = None
    status_changes: tuple[StatusChange, ...] = ()
    reclassifications: tuple[Change, ...] = ()
    agent_replies: list[datetime] = field(default_factory=list)
    """Public comments by agents, oldest first."""
    customer_replies: list[datetime] = field(default_factory=list)
    """Public comments by the requester or another person who is not an agent, not by
    slabot nor an app, after the ticket's creation (its description is not a reply)."""

    def agent_replied(self, at: datetime) -> None:
        """An agent's public comment at ``at``: the first response, the last update."""
        if self.first_reply_at is None:
            self.first_reply_at = at
        self.last_reply_at = at
        self.agent_replies.append(at)


_PLAIN_STATUSES = frozenset({"new", "open"})


def status_history(changes: Sequence[StatusChange], status: str) -> tuple[StoredStatusChange, ...]:
    """The history's statuses for the store, which derives pauses, solves and reopenings from
    them; none for a ticket that was only ever new or open (nothing to derive)."""
    if status in _PLAIN_STATUSES and all(change.to in _PLAIN_STATUSES for change in changes):
        return ()
    return tuple(
        StoredStatusChange(change.at, change.to, change.event_key, change.actor)
        for change in changes
    )


def json_object(body: bytes) -> dict[str, Any]:
    """A webhook body as the JSON object it must be; ``PayloadError`` says what it is not."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise PayloadError(f"the body is not JSON: {error}") from None
    except RecursionError:  # found by tests/proof/test_proof_fuzz.py: a 500 before
        raise PayloadError("the body is JSON nested too deeply to be a webhook") from None
    if not isinstance(data, dict):
        raise PayloadError("the body must be a JSON object")
    return data


def parse_instant(value: Any, name: str, *, required: bool = False) -> datetime | None:
    """An ISO 8601 instant with its offset (Jira's ``2026-11-16T17:45:00.000+0000`` too) in
    UTC; None when absent, unless ``required``.

    >>> parse_instant("2026-11-16T18:45:00+01:00", "created")
    datetime.datetime(2026, 11, 16, 17, 45, tzinfo=datetime.timezone.utc)
    """
    if value is None or value == "":
        if required:
            raise PayloadError(f"{name} is missing")
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{name} {value!r} is not an ISO 8601 instant")
    try:
        instant = datetime.fromisoformat(value.strip())
    except ValueError:
        raise PayloadError(f"{name} {value!r} is not an ISO 8601 instant") from None
    if instant.tzinfo is None:
        raise PayloadError(f"{name} {value!r} has no time zone")
    return instant.astimezone(UTC)


def text(value: Any) -> str | None:
    """A field's value as trimmed text: a list by its first item; None when empty."""
    if value is None or value is False:
        return None
    if isinstance(value, list):
        return text(value[0]) if value else None
    stripped = str(value).strip()
    return stripped or None


def one_line(value: Any) -> str | None:
    """A subject or a name as one trimmed line (helpdesks keep what was typed, line breaks
    included); None when empty or not a text."""
    if not isinstance(value, str):
        return None
    return " ".join(value.split()) or None


def string_set(value: Any, what: str) -> set[str]:
    """Tags or labels: a list of strings (absent: none); ``what`` names them in the error."""
    if value is None:
        return set()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PayloadError(f"{what} must be a list of strings")
    return set(value)


def known_zone(name: str) -> str | None:
    """``name`` when it is an IANA time zone Python knows, else None."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def customer_zone(
    value: str | None,
    where: str,
    warnings: list[str],
    to_iana: Callable[[str], str | None] = known_zone,
) -> str | None:
    """The customer's IANA zone; a zone ``to_iana`` cannot name is dropped with a warning
    (the policy's default zone then applies)."""
    if value is None:
        return None
    zone = to_iana(value)
    if zone is None:
        warnings.append(f"{where}: unknown time zone {value!r}; the policy's default applies")
    return zone


def customer_country(value: str | None, where: str, warnings: list[str]) -> str | None:
    """The customer's two-letter ISO country code, upper case; anything else is dropped with
    a warning (the policy's default then applies)."""
    if value is None:
        return None
    code = value.strip().upper()
    if len(code) != 2 or not code.isalpha():
        warnings.append(
            f"{where}: customer country {value!r} is not a two-letter ISO code; the "
            "policy's default applies"
        )
        return None
    return code


class FieldSource(Protocol):
    """A configured place to read an engine field from, with its renaming of values."""

    @property
    def values(self) -> Mapping[str, str]: ...


Source = TypeVar("Source", bound=FieldSource)


def sources_in_order(configured: Source | Sequence[Source] | None) -> list[Source]:
    """A field's configured sources (one, or a list), in the order they are tried."""
    if configured is None:
        return []
    if isinstance(configured, Sequence):
        return list(configured)
    return [configured]


def first_value(
    sources: Iterable[Source],
    read: Callable[[Source], Any],
    as_text: Callable[[Any], str | None] = text,
) -> str | None:
    """The first value a source gives (``read`` gets its raw value, ``as_text`` its text),
    renamed by that source's ``values``; None when none gives one."""
    for source in sources:
        value = as_text(read(source))
        if value is not None:
            return source.values.get(value, value)
    return None
