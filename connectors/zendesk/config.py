"""The ``zendesk:`` section of ``config/slabot.yaml``: how Zendesk fields map to slabot's.

Read with ``slabot.configuration.parse_section``: unknown keys are refused, errors name the
file and ``zendesk.<key>``. docs/zendesk.md describes every key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from bot.errors import SlabotError
from connectors.mapping import EngineField, sources_in_order
from slabot import configuration
from slabot.configuration import StrictModel


class ZendeskConfigError(SlabotError):
    """The ``zendesk:`` section is missing or invalid; the message names the key."""


class TicketFieldSource(StrictModel):
    """A ticket custom field, by its numeric id (Admin Center > Objects > Tickets > Fields)."""

    source: Literal["ticket_field"] = Field(alias="from")
    """``ticket_field``."""
    id: int = Field(gt=0)
    """The custom field's numeric id."""
    values: dict[str, str] = Field(default_factory=dict)
    """Optional renaming of the field's values (a drop-down's tag -> slabot's word)."""


class OrganizationFieldSource(StrictModel):
    """A field of the requester's organization, by its key (``organization_fields``)."""

    source: Literal["organization_field"] = Field(alias="from")
    """``organization_field``."""
    key: str = Field(min_length=1)
    """The organization field's key."""
    values: dict[str, str] = Field(default_factory=dict)
    """Optional renaming of the field's values -> slabot's word."""


class UserFieldSource(StrictModel):
    """A field of the requester, by its key (``user_fields``)."""

    source: Literal["user_field"] = Field(alias="from")
    """``user_field``."""
    key: str = Field(min_length=1)
    """The user field's key."""
    values: dict[str, str] = Field(default_factory=dict)
    """Optional renaming of the field's values -> slabot's word."""


class TagSource(StrictModel):
    """A ticket tag with a prefix: ``prefix: "plan_"`` reads ``plan_premier`` as ``premier``."""

    source: Literal["tag"] = Field(alias="from")
    """``tag``."""
    prefix: str = Field(min_length=1)
    """The tag's prefix; the rest of the tag is the value."""
    values: dict[str, str] = Field(default_factory=dict)
    """Optional renaming of the values -> slabot's word."""


class RequesterTimeZoneSource(StrictModel):
    """The requester's own time-zone setting (``iana_time_zone``, else ``time_zone``)."""

    source: Literal["requester_time_zone"] = Field(alias="from")
    """``requester_time_zone``."""
    values: dict[str, str] = Field(default_factory=dict)
    """Optional renaming of the values (a Rails zone name -> an IANA one)."""


FieldSource = Annotated[
    TicketFieldSource
    | OrganizationFieldSource
    | UserFieldSource
    | TagSource
    | RequesterTimeZoneSource,
    Field(discriminator="source"),
]


class DueField(StrictModel):
    """A ticket custom field that receives a due instant.

    ``format: instant`` (a text field) receives ``2026-11-24T08:30:00Z``; ``format: date``
    (a date field) receives ``2026-11-24``, the date in ``zone`` (default UTC); ``format:
    local`` (a text field agents read) receives ``2026-11-24 09:30 +01:00 (Europe/Paris)``,
    the local time in ``zone`` with its offset and name.
    """

    id: int = Field(gt=0)
    """The custom field's numeric id."""
    format: Literal["instant", "date", "local"] = "instant"
    """``instant`` (a text field gets ``2026-11-24T08:30:00Z``, for triggers that compare it),
    ``date`` (a date field gets ``2026-11-24``) or ``local`` (a text field for agents to read
    gets ``2026-11-24 09:30 +01:00 (Europe/Paris)``)."""
    zone: str = "UTC"
    """With ``format: date`` or ``local``: the zone whose date or local time is written (the
    team's zone, e.g. ``Europe/Paris``)."""

    @field_validator("zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return configuration.time_zone(value)


ZendeskPriority = Literal["urgent", "high", "normal", "low"]


def _default_priorities() -> dict[str, ZendeskPriority]:
    return {"P1": "urgent", "P2": "high", "P3": "normal", "P4": "low"}


def _default_channels() -> dict[str, str]:
    return {"voice": "phone"}


class ZendeskConfig(StrictModel):
    """The ``zendesk:`` section."""

    policy: str | None = Field(default=None, min_length=1)
    """The policy every Zendesk ticket is evaluated under (its ``name``). Required unless the
    file has a ``routing:`` section, whose rules then decide per ticket (and override it)."""
    priorities: dict[str, ZendeskPriority] = Field(default_factory=_default_priorities)
    """slabot priority -> Zendesk priority; each Zendesk priority at most once."""
    fields: dict[EngineField, FieldSource | list[FieldSource]] = Field(default_factory=dict)
    """Where each engine field comes from; a list is tried in order (first value wins)."""
    channels: dict[str, str] = Field(default_factory=_default_channels)
    """Zendesk ``via.channel`` -> slabot channel; unlisted channels pass through."""
    due_fields: dict[Literal["first_response", "restoration", "next_update"], DueField] = Field(
        default_factory=dict
    )
    """The custom fields that receive each target's due instant."""
    poll_interval_seconds: int = Field(default=60, ge=10)
    """How often the poller reads the incremental export (its limit is 10 requests/minute)."""
    export_requests_per_minute: int = Field(default=10, ge=1, le=10)
    """The incremental export's request budget (Zendesk allows 10 a minute)."""

    @field_validator("priorities")
    @classmethod
    def _one_to_one(cls, value: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for ours, theirs in value.items():
            if theirs in seen:
                raise ValueError(
                    f"Zendesk priority {theirs!r} is given to both {seen[theirs]} and {ours}; "
                    "each Zendesk priority can stand for one slabot priority only"
                )
            seen[theirs] = ours
        return value

    def sources(self, name: str) -> list[Any]:
        """The sources of the engine field ``name``, in the order they are tried."""
        return sources_in_order(self.fields.get(name))  # type: ignore[call-overload]

    def zendesk_priority(self, priority: str) -> str | None:
        return self.priorities.get(priority)

    def slabot_priority(self, zendesk_priority: str | None) -> str | None:
        if zendesk_priority is None:
            return None
        for ours, theirs in self.priorities.items():
            if theirs == zendesk_priority.lower():
                return ours
        return None


def parse_zendesk_config(data: Any, where: str = "config") -> ZendeskConfig:
    """Validate the ``zendesk:`` section given as data; errors name ``zendesk.<key>``."""
    return configuration.parse_section(ZendeskConfig, "zendesk", data, where, ZendeskConfigError)


def load_zendesk_config(path: str | Path = configuration.DEFAULT_CONFIG_PATH) -> ZendeskConfig:
    """Read and validate the ``zendesk:`` section of a config file."""
    return configuration.load_section(ZendeskConfig, "zendesk", path, ZendeskConfigError)
