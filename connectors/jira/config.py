"""The ``jira:`` section of ``config/slabot.yaml``: what to watch and how Jira fields map to
slabot's.

Read with ``slabot.configuration.parse_section``: unknown keys are refused, errors name the
file and ``jira.<key>``. docs/jira.md describes every key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from bot.errors import SlabotError
from connectors.mapping import EngineField, sources_in_order
from slabot import configuration
from slabot.configuration import StrictModel

_FIELD_ID = re.compile(r"^(customfield_\d+|[a-z][A-Za-z]*)$")
_PROJECT_KEY = re.compile(r"^[A-Z][A-Z0-9_]{0,254}$")


class JiraConfigError(SlabotError):
    """The ``jira:`` section is missing or invalid; the message names the key."""


def _field_id(value: str) -> str:
    if not _FIELD_ID.match(value):
        raise ValueError(
            f"{value!r} is not a Jira field id; use the id, like customfield_10050 "
            "(Settings > Issues > Custom fields, or GET /rest/api/3/field)"
        )
    return value


class IssueFieldSource(StrictModel):
    """An issue field by its id (``customfield_10050``, or a system field like
    ``components``). Select lists give their option's ``value``, users their
    ``displayName``, lists their first item."""

    source: Literal["field"] = Field(alias="from")
    """``field``."""
    id: str
    """The field's id (``customfield_10050``, or a system field)."""
    values: dict[str, str] = Field(default_factory=dict)
    """Optional renaming of the field's values (Jira's option -> slabot's word)."""

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        return _field_id(value)


class LabelSource(StrictModel):
    """A label with a prefix: ``prefix: "plan_"`` reads label ``plan_premier`` as
    ``premier``."""

    source: Literal["label"] = Field(alias="from")
    """``label``."""
    prefix: str = Field(min_length=1)
    """The label's prefix; the rest of the label is the value."""
    values: dict[str, str] = Field(default_factory=dict)
    """Optional renaming of the values -> slabot's word."""


class ReporterTimeZoneSource(StrictModel):
    """The reporter's own time-zone setting (``fields.reporter.timeZone``, an IANA name)."""

    source: Literal["reporter_time_zone"] = Field(alias="from")
    """``reporter_time_zone``."""
    values: dict[str, str] = Field(default_factory=dict)
    """Optional renaming of the values -> an IANA zone."""


FieldSource = Annotated[
    IssueFieldSource | LabelSource | ReporterTimeZoneSource,
    Field(discriminator="source"),
]


class Agents(StrictModel):
    """Who counts as an agent: whose public comments are replies (the first response, the
    last update) and whose priority changes are reclassifications.

    With neither ``groups`` nor ``roles``: anyone but the reporter (and slabot). Otherwise
    members of any of the groups, or of any of the project roles (users named in the role,
    or members of a group named in it)."""

    groups: list[str] = Field(default_factory=list)
    """Jira groups whose members are agents."""
    roles: list[str] = Field(default_factory=list)
    """Project roles whose users (and groups' members) are agents."""

    @property
    def anyone_but_reporter(self) -> bool:
        return not self.groups and not self.roles


class DueDate(StrictModel):
    """Jira's own ``duedate`` (a date): the date of ``target``'s due instant in the zone of
    the policy calendar that target is counted on (``zone`` overrides it)."""

    target: Literal["first_response", "restoration", "next_update"] = "restoration"
    """The target whose due date is written."""
    zone: str | None = None
    """The zone whose date is written (default: the target's calendar's)."""

    @field_validator("zone")
    @classmethod
    def _check_zone(cls, value: str | None) -> str | None:
        return None if value is None else configuration.time_zone(value)


class DueInstantField(StrictModel):
    """A custom **date-time** field that receives ``target``'s exact due instant."""

    id: str
    """The custom field's id, ``customfield_N``."""
    target: Literal["first_response", "restoration", "next_update"] = "restoration"
    """The target whose due instant is written."""

    @field_validator("id")
    @classmethod
    def _custom(cls, value: str) -> str:
        if not value.startswith("customfield_"):
            raise ValueError(f"{value!r}: the due instant goes to a custom field, customfield_N")
        return _field_id(value)


def _default_priorities() -> dict[str, str]:
    return {"P1": "Highest", "P2": "High", "P3": "Medium", "P4": "Low"}


SlabotStatus = Literal["new", "open", "pending", "on_hold", "solved", "closed"]


def _default_statuses() -> dict[str, SlabotStatus]:
    return {
        "waiting for customer": "pending",
        "pending": "pending",
        "on hold": "on_hold",
        "resolved": "solved",
        "done": "solved",
        "closed": "closed",
        "canceled": "closed",
        "cancelled": "closed",
    }


class JiraConfig(StrictModel):
    """The ``jira:`` section."""

    policy: str | None = Field(default=None, min_length=1)
    """The policy every watched Jira issue is evaluated under (its ``name``). Required unless the
    file has a ``routing:`` section, whose rules then decide per ticket (and override it)."""
    projects: list[str] = Field(default_factory=list)
    """Project keys to watch; becomes ``project in (...)``."""
    jql: str | None = None
    """Or any JQL (without ORDER BY); with ``projects`` both must match."""
    priorities: dict[str, str] = Field(default_factory=_default_priorities)
    """slabot priority -> Jira priority name; each Jira priority at most once."""
    fields: dict[Literal[EngineField, "channel"], FieldSource | list[FieldSource]] = Field(
        default_factory=dict
    )
    """Where each engine field comes from; a list is tried in order (first value wins)."""
    statuses: dict[str, SlabotStatus] = Field(default_factory=_default_statuses)
    """Jira status name (case-insensitive) -> slabot status. Unlisted statuses follow their
    category: To Do and In Progress are ``open``, Done is ``solved``. Map the statuses that
    wait on the customer to ``pending`` or ``on_hold``: the policy pauses those."""
    agents: Agents = Field(default_factory=Agents)
    """Who counts as an agent."""
    due_date: DueDate | None = Field(default_factory=DueDate)
    """Jira's ``duedate``; ``null`` leaves it alone."""
    due_instant_field: DueInstantField | None = None
    """A date-time custom field that receives a target's due instant."""
    organizations_field: str | None = Field(default=None, pattern=r"^customfield_\d+$")
    """The Jira Service Management "Organizations" field (``customfield_10002``: its id
    differs per site, see ``GET /rest/api/2/field``): the names of its organizations are
    shown as the requester's organization. Unset: no organization is shown."""
    poll_interval_seconds: int = Field(default=60, ge=10)
    """How often the poller searches for changed issues (the backstop for missed webhooks)."""
    poll_overlap_seconds: int = Field(default=120, ge=60)
    """How far back each poll reaches before its cursor (JQL compares whole minutes, and
    the search index is eventually consistent)."""
    page_size: int = Field(default=50, ge=1, le=100)
    """Issues per search page."""
    webhook_max_age_seconds: int = Field(default=3600, ge=300)
    """How old (or how far ahead) a webhook body's own ``timestamp`` may be: an older one
    is refused (401 ``stale``), since Jira's signature has no time of its own and a
    captured body would otherwise be good forever. Jira retries a failed delivery for up to
    about 30 minutes, with the first attempt's body: keep this above that."""

    @field_validator("projects")
    @classmethod
    def _project_keys(cls, value: list[str]) -> list[str]:
        for key in value:
            if not _PROJECT_KEY.match(key):
                raise ValueError(f"{key!r} is not a project key (upper case, like SUP)")
        return value

    @field_validator("jql")
    @classmethod
    def _no_order(cls, value: str | None) -> str | None:
        if value is not None and "order by" in value.lower():
            raise ValueError("leave ORDER BY out of jira.jql: slabot orders by updated itself")
        return value.strip() or None if value is not None else None

    @field_validator("priorities")
    @classmethod
    def _one_to_one(cls, value: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for ours, theirs in value.items():
            if theirs.lower() in seen:
                raise ValueError(
                    f"Jira priority {theirs!r} is given to both {seen[theirs.lower()]} and "
                    f"{ours}; each Jira priority can stand for one slabot priority only"
                )
            seen[theirs.lower()] = ours
        return value

    @field_validator("statuses")
    @classmethod
    def _by_lower_case_name(cls, value: dict[str, SlabotStatus]) -> dict[str, SlabotStatus]:
        return {name.strip().lower(): status for name, status in value.items()}

    @model_validator(mode="after")
    def _something_to_watch(self) -> JiraConfig:
        if not self.projects and self.jql is None:
            raise ValueError("say what to watch: projects: [SUP] or jql: 'project = SUP AND ...'")
        return self

    def watched_jql(self) -> str:
        """The JQL of the watched issues (no ordering)."""
        parts = []
        if self.projects:
            parts.append(f"project in ({', '.join(self.projects)})")
        if self.jql:
            parts.append(f"({self.jql})")
        return " AND ".join(parts)

    def sources(self, name: str) -> list[Any]:
        """The sources of the field ``name``, in the order they are tried."""
        return sources_in_order(self.fields.get(name))  # type: ignore[call-overload]

    def jira_priority(self, priority: str) -> str | None:
        return self.priorities.get(priority)

    def slabot_priority(self, jira_priority: str | None) -> str | None:
        if jira_priority is None:
            return None
        for ours, theirs in self.priorities.items():
            if theirs.lower() == jira_priority.strip().lower():
                return ours
        return None

    def status(self, name: str | None, category: str | None) -> str | None:
        """slabot's status for a Jira status name and its category key (``new``,
        ``indeterminate``, ``done``); None when neither is known."""
        if name is not None:
            mapped = self.statuses.get(name.strip().lower())
            if mapped is not None:
                return mapped
        return {"new": "open", "indeterminate": "open", "done": "solved"}.get(category or "")


def parse_jira_config(data: Any, where: str = "config") -> JiraConfig:
    """Validate the ``jira:`` section given as data; errors name ``jira.<key>``."""
    return configuration.parse_section(JiraConfig, "jira", data, where, JiraConfigError)


def load_jira_config(path: str | Path = configuration.DEFAULT_CONFIG_PATH) -> JiraConfig:
    """Read and validate the ``jira:`` section of a config file."""
    return configuration.load_section(JiraConfig, "jira", path, JiraConfigError)
