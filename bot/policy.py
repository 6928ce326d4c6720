"""The policy file schema (pydantic v2): priorities, classification rules, calendars, plans."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from contextvars import ContextVar
from datetime import date
from functools import lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from bot.credits import CreditRules
from bot.ticket import STATUSES

TARGETS = ("first_response", "restoration", "next_update")
"""The clocks a plan can set a target for, in the order they are reported."""

TargetName = Literal["first_response", "restoration", "next_update"]
BUILTIN_METRICS = (*TARGETS, "next_reply", "agent_work", "requester_wait")
"""Metrics every policy has; ``metrics:`` in a policy file defines more (docs/metrics.md)."""
METRIC_EVENTS = ("created", "customer_reply", "agent_reply", "solved", "reopened")
"""Events a metric can start or stop on; ``status:<name>`` (entering a status) also."""
_METRIC_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_POLICY_METRICS: ContextVar[tuple[str, ...]] = ContextVar("_POLICY_METRICS", default=())
TICKET_ZONE_FIELDS = ("customer_timezone",)
TICKET_COUNTRY_FIELDS = ("customer_country",)
ALWAYS_OPEN = "24x7"
"""A calendar every policy has: elapsed real time."""

MAX_TARGET_HOURS = 8760
"""The longest target a policy may set: longer ones are surely a typo."""
_DURATION = re.compile(r"^\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m(?:in)?)?\s*(?:(\d+)\s*s)?\s*$")
_INTERVAL = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_DAY_KEYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@lru_cache(maxsize=1024)
def parse_duration(text: str) -> int:
    """Seconds in a duration such as ``"15m"``, ``"3h"``, ``"1h30m"`` or ``"90s"``.

    >>> parse_duration("1h30m")
    5400
    """
    match = _DURATION.match(text)
    if not match or not any(match.groups()):
        raise ValueError(
            f"{text!r} is not a duration: write hours, minutes and seconds such as "
            "'15m', '3h', '1h30m' or '90s'"
        )
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ValueError(f"{text!r}: a target must be longer than zero (use 'none' for no target)")
    if total > MAX_TARGET_HOURS * 3600:
        raise ValueError(
            f"{text!r} is longer than {MAX_TARGET_HOURS}h (a year); write the target in hours, "
            "such as '720h' for 30 days"
        )
    return total


def format_duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts) or "0s"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PriorityLevel(_Model):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")]
    """The level's name, used everywhere else in the file (``P1``): letters, digits, ``-`` and
    ``_``."""
    label: str
    """The name people use (``Business Critical``), shown with the level."""
    definition: str = ""
    """When this level applies, for people (shown by ``slabot explain`` and in Slack)."""


class FromTicketField(_Model):
    """A value read from a ticket field, with the value to use when the ticket has none."""

    from_field: str
    """The ticket field to read (``customer_timezone``, ``customer_country``)."""
    default: str
    """The value when the ticket has none."""


def _checked_source(
    value: str | FromTicketField,
    what: str,
    fields: tuple[str, ...],
    check: Callable[[str], object],
) -> str | FromTicketField:
    """A fixed value checked, or a ticket field among ``fields`` with its default checked:
    the shape a calendar's country and time zone both take."""
    if isinstance(value, FromTicketField):
        if value.from_field not in fields:
            raise ValueError(
                f"from_field: the {what} can come from {', '.join(fields)}, "
                f"not {value.from_field!r}"
            )
        try:
            check(value.default)
        except ValueError as error:
            raise ValueError(f"default: {error}") from None
    else:
        check(value)
    return value


class HolidaySource(_Model):
    """Public holidays from the ``holidays`` package."""

    country: str | FromTicketField
    """ISO 3166-1 alpha-2 code of the country whose public holidays close the calendar (``SK``), or
    read from the ticket."""
    subdivision: str | None = None
    """A state or region of that country with its own holidays (``CA``, ``BY``)."""

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str | FromTicketField) -> str | FromTicketField:
        return _checked_source(value, "country", TICKET_COUNTRY_FIELDS, check_country)

    @model_validator(mode="after")
    def _known_subdivision(self) -> HolidaySource:
        if self.subdivision is None:
            return self
        if not isinstance(self.country, str):
            raise ValueError(
                "subdivision: a subdivision needs a fixed country (country: 'US'), "
                "not one read from the ticket"
            )
        try:
            holidays.country_holidays(self.country.upper(), subdiv=self.subdivision)
        except NotImplementedError:
            known = holidays.list_supported_countries().get(self.country.upper(), [])
            raise ValueError(
                f"subdivision: {self.subdivision!r} is not a subdivision of "
                f"{self.country.upper()} ("
                + (f"known: {', '.join(known)}" if known else "it has none")
                + ")"
            ) from None
        return self


def check_country(code: str) -> None:
    if code.upper() not in holidays.list_supported_countries():
        raise ValueError(
            f"{code!r} is not a country code the holidays package knows (ISO 3166-1 alpha-2, "
            "such as 'SK', 'US', 'FR')"
        )


def check_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name!r} is not an IANA time zone (such as 'Europe/Bratislava' or "
            "'America/Los_Angeles')"
        ) from None


class CalendarSpec(_Model):
    """Weekly opening hours in a zone with closed dates, or ``always_open`` (24x7)."""

    always_open: bool = False
    """``true`` makes the calendar elapsed real time, like ``24x7`` (then no hours, holidays or
    closed dates)."""
    timezone: str | FromTicketField = "UTC"
    """The zone the opening hours are in: an IANA name, or read from the ticket."""
    hours: dict[str, list[str]] = Field(default_factory=dict)
    """Weekly opening hours: ``weekdays`` (Monday to Friday) or a day name (``saturday``) ->
    its ``"HH:MM-HH:MM"`` spans. Required unless ``always_open``."""
    holidays: HolidaySource | None = None
    """Public holidays that close the calendar (from the ``holidays`` package)."""
    closed_dates: list[date] = Field(default_factory=list)
    """Extra dates closed all day: company days off, a closure."""
    removed_holidays: list[date] = Field(default_factory=list)
    """Public holidays the organisation works anyway: these dates open as usual."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | FromTicketField) -> str | FromTicketField:
        return _checked_source(value, "time zone", TICKET_ZONE_FIELDS, check_zone)

    @field_validator("hours")
    @classmethod
    def _valid_hours(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        # Messages start with the key as written ('weekdays.1: ...') so that the file
        # loader can point at its line.
        expanded: dict[str, list[str]] = {}
        for key, intervals in value.items():
            days = _DAY_KEYS[:5] if key == "weekdays" else (key,)
            if key != "weekdays" and key not in _DAY_KEYS:
                raise ValueError(
                    f"{key}: not a day of the week; use monday ... sunday, or weekdays for "
                    "Monday to Friday"
                )
            for day in days:
                if day in expanded:
                    raise ValueError(
                        f"{key}: {day} is given twice (by 'weekdays' and '{day}'); give each "
                        "day once"
                    )
                expanded[day] = list(intervals)
            spans = sorted(
                (*_parse_interval(text, f"{key}.{index}"), text)
                for index, text in enumerate(intervals)
            )
            for (_, end, first), (start, _, second) in itertools.pairwise(spans):
                if start < end:
                    raise ValueError(
                        f"{key}: opening intervals {first!r} and {second!r} overlap; give each "
                        "open period once, such as ['09:00-12:00', '13:00-17:00']"
                    )
        return expanded

    @model_validator(mode="after")
    def _open_somewhere(self) -> CalendarSpec:
        if self.always_open:
            if self.hours or self.holidays or self.closed_dates or self.removed_holidays:
                raise ValueError("an always_open calendar takes no hours, holidays or dates")
        elif not any(self.hours.values()):
            raise ValueError(
                "a calendar needs opening hours (for example hours: {weekdays: ['09:00-17:00']}) "
                "or always_open: true"
            )
        return self

    def weekly_seconds(self) -> tuple[tuple[tuple[int, int], ...], ...]:
        return tuple(
            tuple(sorted(_parse_interval(text, day) for text in self.hours.get(day, [])))
            for day in _DAY_KEYS
        )


def _parse_interval(text: str, day: str) -> tuple[int, int]:
    match = _INTERVAL.match(text)
    if not match:
        raise ValueError(f"{day}: {text!r} is not an opening interval such as '09:00-17:00'")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
        raise ValueError(f"{day}: {text!r} has an impossible time (hours 00-24, minutes 00-59)")
    start, end = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
    if start >= end:
        raise ValueError(
            f"{day}: {text!r} closes before it opens; split a night shift into "
            "'22:00-24:00' and '00:00-06:00' of the next day"
        )
    return start, end


class TargetSpec(_Model):
    """One target: a duration of open time on a calendar, or the next business day's close."""

    after: str | None = None
    """Open time allowed, in hours, minutes and seconds: ``3h``, ``15m``, ``1h30m``, ``90s``."""
    next_business_day: bool = False
    """Due at the close of the first business day after the day the clock starts."""
    calendar: str | None = None
    """The calendar this target is counted on; default: the plan's (``24x7`` is always there)."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value == "next_business_day":
                return {"next_business_day": True}
            return {"after": value}
        if not isinstance(value, dict):
            raise ValueError(
                f"{value!r} is not a target: write a duration with its unit ('90m', '3h'), "
                "next_business_day, none, or {after: '1h', calendar: 24x7}"
            )
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> TargetSpec:
        if self.next_business_day == (self.after is not None):
            raise ValueError(
                "a target is either a duration ('3h', or {after: '1h', calendar: 24x7}) or "
                "next_business_day, not both and not neither"
            )
        if self.after is not None:
            parse_duration(self.after)
        return self

    @property
    def seconds(self) -> int:
        return parse_duration(self.after) if self.after is not None else 0


class PriorityTargets(_Model):
    """Targets of one priority; a missing target, ``none`` or null means no target. Besides
    the three below, any other metric (``next_reply``, ``agent_work``, ``requester_wait``,
    or one of the policy's ``metrics``) takes a target by its name."""

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, TargetSpec | None] = Field(init=False)

    first_response: TargetSpec | None = None
    """Time to the first public agent reply."""
    restoration: TargetSpec | None = None
    """Time to the solve (from the creation, or from a reopening)."""
    next_update: TargetSpec | None = None
    """Time between public agent updates (from the last one; the creation before the first)."""

    @model_validator(mode="wrap")
    @classmethod
    def _known_metrics(cls, value: Any, handler: ModelWrapValidatorHandler[PriorityTargets]) -> Any:
        if isinstance(value, dict):
            # A key is a metric's name: built in, or under the policy's metrics: (which the
            # policy's validation puts in _POLICY_METRICS). Anything else is a typo, reported
            # at its own key like any unknown key.
            known = _POLICY_METRICS.get()
            unknown = [key for key in value if key not in BUILTIN_METRICS and key not in known]
            if unknown:
                raise ValidationError.from_exception_data(
                    cls.__name__,
                    [
                        InitErrorDetails(
                            type="extra_forbidden",
                            loc=(key,),
                            input=value[key],
                            # What the message lists: every metric this policy knows.
                            ctx={
                                "known": [
                                    *BUILTIN_METRICS,
                                    *(name for name in known if name not in BUILTIN_METRICS),
                                ]
                            },
                        )
                        for key in unknown
                    ],
                )
            value = {key: None if item == "none" else item for key, item in value.items()}
        return handler(value)

    def get(self, target: str) -> TargetSpec | None:
        if target in TARGETS:
            value: TargetSpec | None = getattr(self, target)
            return value
        return (self.__pydantic_extra__ or {}).get(target)

    def named(self) -> tuple[str, ...]:
        """Every metric these targets name, the three classic ones included."""
        return (*TARGETS, *(self.__pydantic_extra__ or {}))


class MetricPause(_Model):
    """What holds a metric's clock."""

    statuses: list[str] = Field(default_factory=list)
    """Ticket statuses that pause it, for as long as the ticket is in them (from the
    ticket's status history; without one, from ``now`` while the ticket is in one)."""
    ticket_pauses: bool = False
    """Also the ticket's recorded pauses (``paused``: the policy's ``clocks.pausing_statuses``
    as the store records them)."""
    fields: dict[str, list[str]] = Field(default_factory=dict)
    """Ticket field -> values that pause it while the ticket shows one (``environment:
    [waiting_on_vendor]``); the ticket keeps no history of fields, so the pause runs from
    ``now``, as a status without history does."""

    @field_validator("statuses")
    @classmethod
    def _known_statuses(cls, values: list[str]) -> list[str]:
        for index, value in enumerate(values):
            if value not in STATUSES:
                raise ValueError(
                    f"{index}: {value!r} is not a ticket status; expected one of "
                    f"{', '.join(STATUSES)}"
                )
        return values

    @field_validator("fields")
    @classmethod
    def _text_fields(cls, values: dict[str, list[str]]) -> dict[str, list[str]]:
        for name in values:
            if name not in METRIC_PAUSE_FIELDS:
                raise ValueError(
                    f"{name}: not a ticket field a pause can read; expected one of "
                    f"{', '.join(METRIC_PAUSE_FIELDS)}"
                )
        return {name: [v.lower() for v in items] for name, items in values.items()}


METRIC_PAUSE_FIELDS = (
    "plan",
    "environment",
    "product_stage",
    "urgency",
    "impact",
    "channel",
)


class MetricSpec(_Model):
    """A metric: a clock defined by the ticket events that start and stop it, what pauses
    it, and whether it runs once, once per cycle, or adds up over its cycles."""

    description: str = ""
    """What the metric measures, for people."""
    start: list[str]
    """Events that start the clock: ``created``, ``customer_reply``, ``agent_reply``,
    ``solved``, ``reopened`` or ``status:<name>`` (the ticket enters that status). An event
    while the clock runs does not restart it."""
    stop: list[str]
    """Events that stop it (same names); an event that both stops and starts it (an agent
    reply for an update cadence) ends one cycle and begins the next."""
    pause: MetricPause = MetricPause()
    """What holds the clock while it runs."""
    cycle: Literal["once", "every", "cumulative"] = "every"
    """``once``: only the first start counts (first reply); ``every``: each start after a stop
    begins a new cycle, and the current one is reported (next reply); ``cumulative``: the
    open time of every cycle adds up against one target (agent work time)."""

    @field_validator("start", "stop")
    @classmethod
    def _known_events(cls, values: list[str]) -> list[str]:
        if not values:
            raise ValueError("name at least one event")
        for index, value in enumerate(values):
            check_metric_event(value, str(index))
        return values


def check_metric_event(value: str, where: str) -> None:
    if value in METRIC_EVENTS:
        return
    kind, _, status = value.partition(":")
    if kind == "status" and status in STATUSES:
        return
    raise ValueError(
        f"{where}: {value!r} is not an event; expected one of {', '.join(METRIC_EVENTS)} or "
        f"status:<one of {', '.join(STATUSES)}>"
    )


class PlanSpec(_Model):
    commitment: Literal["sla", "slo"]
    """``sla``: a commitment with service credits; ``slo``: an objective without."""
    calendar: str | None = None
    """The calendar of every target of this plan that names none."""
    description: str = ""
    """What the plan is, for people."""
    targets: dict[str, PriorityTargets] = Field(default_factory=dict)
    """Priority -> its targets; a priority left out has no targets on this plan."""
    credits: CreditRules | None = None
    """Service credits owed per customer organization and month (commitment ``sla`` only):
    docs/reporting.md."""


class MatrixRule(_Model):
    """Priority from two ticket fields: ``table[urgency][impact]``."""

    rows: Literal["urgency"] = "urgency"
    """The ticket field that picks the row."""
    columns: Literal["impact"] = "impact"
    """The ticket field that picks the column."""
    table: dict[str, dict[str, str]]
    """Row value -> column value -> priority."""
    customer_priority_overrides: bool = True
    """Whether a priority the customer chose wins over the matrix's."""
    disagreement_tag: str | None = None
    """Tag for a ticket whose chosen priority differs from the matrix's."""

    @field_validator("table")
    @classmethod
    def _square(cls, table: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        rows = list(table.items())
        for name, row in rows[1:]:
            if set(row) != set(rows[0][1]):
                raise ValueError(
                    f"{name}: names the columns {sorted(row)} but {rows[0][0]} names "
                    f"{sorted(rows[0][1])}; every row of the matrix must name the same columns"
                )
        # Tickets' values are compared lower-cased, so keys differing only in case would
        # silently merge: refuse them.
        for keys, what in ((list(table), "rows"), (list(rows[0][1]) if rows else [], "columns")):
            lowered = [key.lower() for key in keys]
            if len(set(lowered)) != len(lowered):
                raise ValueError(f"two {what} differ only in case ({', '.join(keys)})")
        return {r.lower(): {c.lower(): p for c, p in row.items()} for r, row in table.items()}


class EnvironmentRule(_Model):
    """Priorities above ``cap`` are for production only."""

    production_values: list[str] = Field(default_factory=lambda: ["production"])
    """The ``environment`` values that count as production."""
    cap: str
    """The most severe priority allowed outside production."""
    reclassified_tag: str | None = None
    """Tag for a ticket capped because it is not in production."""
    missing_tag: str | None = None
    """Tag for a ticket above the cap that does not say its environment (it keeps its priority until
    an agent confirms it)."""

    @field_validator("production_values")
    @classmethod
    def _lower(cls, values: list[str]) -> list[str]:
        return [value.lower() for value in values]  # tickets' values are compared lower-cased


class ProductStageRule(_Model):
    """Products in these stages get no guarantee: no targets, or a cap on priority."""

    stages: list[str]
    """The ``product_stage`` values (``beta``, ``preview``) the rule applies to."""
    effect: Literal["no_targets", "cap"]
    """``no_targets``: the priority is kept but nothing is due; ``cap``: the priority is capped at
    ``cap``."""
    cap: str | None = None
    """With ``effect: cap``: the most severe priority allowed."""
    tag: str | None = None
    """Tag for a ticket the rule applied to."""

    @field_validator("stages")
    @classmethod
    def _lower(cls, values: list[str]) -> list[str]:
        return [value.lower() for value in values]  # tickets' values are compared lower-cased

    @model_validator(mode="after")
    def _cap_when_capping(self) -> ProductStageRule:
        if self.effect == "cap" and self.cap is None:
            raise ValueError(
                "effect: 'cap' needs the priority to cap at; add one such as cap: P4 "
                "(or use effect: no_targets)"
            )
        if self.effect != "cap" and self.cap is not None:
            raise ValueError(
                f"cap: only effect 'cap' takes a cap; effect {self.effect!r} removes the targets"
            )
        return self


class ChannelRule(_Model):
    """These priorities must arrive by one of these channels; otherwise the ticket is tagged."""

    priorities: list[str]
    """The priorities the rule is about (``[P1]``)."""
    channels: list[str]
    """The channels those priorities must come by (``[phone]``)."""
    tag: str
    """Tag for a ticket of those priorities that came by another channel."""

    @field_validator("channels")
    @classmethod
    def _lower(cls, values: list[str]) -> list[str]:
        return [value.lower() for value in values]  # tickets' values are compared lower-cased


class Classification(_Model):
    matrix: MatrixRule | None = None
    """Priority from urgency and impact."""
    environment: EnvironmentRule | None = None
    """Severe priorities for production only."""
    product_stage: ProductStageRule | None = None
    """No guarantee (or a cap) for betas and previews."""
    channel: ChannelRule | None = None
    """Severe priorities by a given channel only."""


class ClockRules(_Model):
    """Which ticket statuses pause which clocks."""

    pausing_statuses: list[str] = Field(default_factory=lambda: ["pending", "on_hold"])
    """Ticket statuses that wait on the customer."""
    paused_targets: list[TargetName] = Field(
        default_factory=lambda: list[TargetName](["restoration", "next_update"])
    )
    """The clocks those statuses pause (first response is not paused by default)."""

    @field_validator("pausing_statuses")
    @classmethod
    def _known_statuses(cls, values: list[str]) -> list[str]:
        for index, value in enumerate(values):
            if value not in STATUSES:
                raise ValueError(
                    f"{index}: {value!r} is not a ticket status; expected one of "
                    f"{', '.join(STATUSES)}"
                )
        return values


class PolicySpec(_Model):
    """A whole policy file."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9_-]+$")]
    """The policy's name: lower-case letters, digits, ``-`` and ``_``; connectors and tickets name
    the policy by it."""
    title: str = ""
    """A human title, shown by ``slabot explain``."""
    source: str = ""
    """Where the policy was read from (document, languages, date)."""
    priorities: list[PriorityLevel]
    """The priority levels, most severe first."""
    default_priority: str
    """The priority of a ticket that names none and that no matrix classifies."""
    classification: Classification = Classification()
    """Rules that decide or limit a ticket's priority."""
    clocks: ClockRules = ClockRules()
    """Which ticket statuses pause which clocks."""
    metrics: dict[str, MetricSpec] = Field(default_factory=dict)
    """Metrics of this policy besides the built-in ones (``first_response``, ``restoration``,
    ``next_update``, ``next_reply``, ``agent_work``, ``requester_wait``): name -> its events.
    A plan's targets name them like the built-in ones (docs/metrics.md)."""
    calendars: dict[str, CalendarSpec] = Field(default_factory=dict)
    """Named business-hours calendars (``24x7`` always exists)."""
    plans: dict[str, PlanSpec]
    """The support plans, each with its commitment and its targets per priority."""
    plan_aliases: dict[str, str] = Field(default_factory=dict)
    """Other names tickets use for a plan -> the plan."""
    default_plan: str | None = None
    """The plan of a ticket that names none, and of one naming a plan this policy does not
    know."""
    unknown_plan_tag: str | None = "sla_unknown_plan"
    """Tag for a ticket naming a plan this policy does not know (a plan the organization
    has and the policy lacks, a typo): the ticket is still stored and evaluated, under
    ``default_plan`` (or without targets when there is none), with a note naming the plan and
    the known ones; null: no tag (the note and the metric remain)."""
    unknown_value_tag: str | None = "sla_unknown_value"
    """Tag for a ticket carrying a value this policy cannot use: a requested priority that is not
    one of its levels, an urgency or impact its matrix lacks, a time zone or country (read by a
    calendar) nobody knows. The value is ignored as if not given (the default priority, the
    calendar's default zone or country), with a note naming it; null: no tag."""
    action_notes: dict[str, str] = Field(default_factory=dict)
    """Tag -> what an agent should do about a ticket that carries it, shown in Slack and by
    ``slabot explain`` next to the bare tag (``sla_p1_not_by_phone: "Call the customer back:
    a P1 must be reported by phone"``). Every key must be a tag this policy's rules set."""

    @model_validator(mode="wrap")
    @classmethod
    def _with_metric_names(cls, value: Any, handler: ModelWrapValidatorHandler[PolicySpec]) -> Any:
        # The plans' targets may name this policy's metrics: let their validation know them.
        metrics = value.get("metrics") if isinstance(value, dict) else None
        names = tuple(str(k) for k in metrics) if isinstance(metrics, dict) else ()
        token = _POLICY_METRICS.set(names)
        try:
            return handler(value)
        finally:
            _POLICY_METRICS.reset(token)

    @model_validator(mode="after")
    def _references_resolve(self) -> PolicySpec:
        levels = [p.name for p in self.priorities]
        for index, level in enumerate(levels):
            if level in levels[:index]:
                raise ValueError(
                    f"priorities.{index}.name: {level!r} is given twice; each priority "
                    "needs its own name"
                )

        def need_priority(name: str, where: str) -> None:
            if name not in levels:
                raise ValueError(f"{where}: {name!r} is not a priority of this policy {levels}")

        def need_calendar(name: str, where: str) -> None:
            if name != ALWAYS_OPEN and name not in self.calendars:
                known = [*self.calendars, ALWAYS_OPEN]
                raise ValueError(f"{where}: calendar {name!r} is not defined (known: {known})")

        need_priority(self.default_priority, "default_priority")
        rules = self.classification
        if rules.matrix:
            for row, cells in rules.matrix.table.items():
                for column, priority in cells.items():
                    need_priority(priority, f"classification.matrix.table.{row}.{column}")
        if rules.environment:
            need_priority(rules.environment.cap, "classification.environment.cap")
        if rules.product_stage and rules.product_stage.cap:
            need_priority(rules.product_stage.cap, "classification.product_stage.cap")
        if rules.channel:
            for index, priority in enumerate(rules.channel.priorities):
                need_priority(priority, f"classification.channel.priorities.{index}")
        if ALWAYS_OPEN in self.calendars:
            raise ValueError(
                f"calendars.{ALWAYS_OPEN}: the calendar {ALWAYS_OPEN!r} is built in (elapsed real "
                "time); give yours another name"
            )
        for plan_name, plan in self.plans.items():
            if plan.calendar:
                need_calendar(plan.calendar, f"plans.{plan_name}.calendar")
            if plan.credits is not None:
                if plan.commitment != "sla":
                    raise ValueError(
                        f"plans.{plan_name}.credits: only a plan with commitment 'sla' owes "
                        f"service credits; this one is {plan.commitment!r}"
                    )
                for priority in sorted(plan.credits.priorities()):
                    need_priority(priority, f"plans.{plan_name}.credits")
            for priority, targets in plan.targets.items():
                need_priority(priority, f"plans.{plan_name}.targets.{priority}")
                for target in targets.named():
                    spec = targets.get(target)
                    if spec is None:
                        continue
                    where = f"plans.{plan_name}.targets.{priority}.{target}"
                    calendar = spec.calendar or plan.calendar
                    if calendar is None:
                        raise ValueError(
                            f"{where}: no calendar; set one on the target or the plan's calendar"
                        )
                    need_calendar(calendar, where)
                    if spec.next_business_day and (
                        calendar == ALWAYS_OPEN or self.calendars[calendar].always_open
                    ):
                        raise ValueError(
                            f"{where}: next_business_day needs a business calendar with opening "
                            f"hours and a time zone, not the always-open {calendar!r}"
                        )
        for metric in self.metrics:
            if metric in BUILTIN_METRICS:
                raise ValueError(
                    f"metrics.{metric}: {metric!r} is a built-in metric; give yours another name"
                )
            if not _METRIC_NAME.match(metric):
                raise ValueError(
                    f"metrics.{metric}: a metric's name is lower-case letters, digits and _, "
                    "starting with a letter"
                )
        for alias, plan_name in self.plan_aliases.items():
            if alias in self.plans:
                raise ValueError(f"plan_aliases.{alias}: {alias!r} is already a plan")
            if plan_name not in self.plans:
                raise ValueError(
                    f"plan_aliases.{alias}: {plan_name!r} is not a plan of this policy "
                    f"{list(self.plans)}"
                )
        tags = self.rule_tags()
        for tag, note in self.action_notes.items():
            if tag not in tags:
                raise ValueError(
                    f"action_notes.{tag}: no rule of this policy sets the tag {tag!r} "
                    f"(its rules set: {', '.join(sorted(tags)) or 'none'})"
                )
            if not note.strip():
                raise ValueError(f"action_notes.{tag}: the note is empty; say what to do")
        if self.default_plan and self.default_plan not in {*self.plans, *self.plan_aliases}:
            raise ValueError(
                f"default_plan: {self.default_plan!r} is not a plan or plan alias of this "
                f"policy {[*self.plans, *self.plan_aliases]}"
            )
        return self

    def rule_tags(self) -> frozenset[str]:
        """Every tag the classification rules can set (their ``tag`` and ``*_tag`` settings)."""
        rules = self.classification
        found = [
            rules.matrix and rules.matrix.disagreement_tag,
            rules.environment and rules.environment.reclassified_tag,
            rules.environment and rules.environment.missing_tag,
            rules.product_stage and rules.product_stage.tag,
            rules.channel and rules.channel.tag,
        ]
        return frozenset(tag for tag in found if tag)

    def action_note(self, tag: str) -> str | None:
        """The note an agent reads for ``tag`` (``action_notes``), or None."""
        return self.action_notes.get(tag)

    def severity(self, priority: str) -> int:
        """Position in the priority list: 0 is the most severe."""
        return [p.name for p in self.priorities].index(priority)
