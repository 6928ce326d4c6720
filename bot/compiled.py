"""A validated policy ready to evaluate: resolves each ticket's calendars, cached per zone."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import holidays

from bot.business_time import AlwaysOpenCalendar, BusinessCalendar, Calendar
from bot.errors import PolicyError, TicketError
from bot.metrics import CompiledMetric, builtin_definitions, compile_metric
from bot.policy import (
    ALWAYS_OPEN,
    TARGETS,
    TICKET_COUNTRY_FIELDS,
    TICKET_ZONE_FIELDS,
    CalendarSpec,
    FromTicketField,
    PolicySpec,
    check_zone,
)
from bot.ticket import Ticket

_ALWAYS_OPEN = AlwaysOpenCalendar()


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return check_zone(name)


def _country_holidays(country: str, subdivision: str | None, year: int) -> dict[date, str]:
    # language pins names to English whatever the process locale (holidays follows it).
    try:
        found = holidays.country_holidays(
            country.upper(), subdiv=subdivision, years=year, language="en_US"
        )
    except NotImplementedError:
        raise TicketError(
            f"field 'customer_country': {country!r} is not a country the holidays package "
            "knows; use an ISO 3166-1 alpha-2 code such as 'US' or 'SK'"
        ) from None
    return dict(found.items())


@lru_cache(maxsize=1)
def _known_countries() -> frozenset[str]:
    return frozenset(holidays.list_supported_countries())


@lru_cache(maxsize=1024)
def usable_ticket_value(field: str, value: str) -> bool:
    """Whether a calendar can use ``value`` of the ticket field ``field``: a time zone the
    zone database has, a country the holidays package has. A calendar takes one it cannot
    use as not given (its default), and ``evaluate`` notes it."""
    if field in TICKET_ZONE_FIELDS:
        try:
            _zone(value)
        except ValueError:
            return False
        return True
    if field in TICKET_COUNTRY_FIELDS:
        return value.upper() in _known_countries()
    return True


@dataclass(frozen=True, slots=True)
class PlannedTarget:
    """A target a plan sets for a priority, resolved: what the engine's hot loop needs."""

    name: str
    seconds: int | None
    """Open seconds allowed; None means the close of the next business day."""
    calendar: str
    pausable: bool
    metric: CompiledMetric | None = None
    """The compiled definition of a metric other than the classic three (those keep the
    engine's fast path)."""


def _depends_on_ticket(spec: CalendarSpec) -> bool:
    return isinstance(spec.timezone, FromTicketField) or (
        spec.holidays is not None and isinstance(spec.holidays.country, FromTicketField)
    )


class Policy:
    """A policy spec plus the calendars compiled for it (built lazily, shared, thread-safe)."""

    def __init__(self, spec: PolicySpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.levels = tuple(p.name for p in spec.priorities)
        self._severity = {name: index for index, name in enumerate(self.levels)}
        self._calendars: dict[tuple[str, str, str | None], Calendar] = {}
        # Metric definitions, compiled once: the built-in ones beyond the classic three, then
        # the policy's own.
        definitions = {**builtin_definitions(spec.clocks), **spec.metrics}
        self._metrics = {
            name: compile_metric(name, definition)
            for name, definition in definitions.items()
            if name not in TARGETS
        }
        used = {
            name
            for plan in spec.plans.values()
            for t in plan.targets.values()
            for name in t.named()
        }
        self.metric_names: tuple[str, ...] = (
            *TARGETS,
            *(name for name in definitions if name not in TARGETS and name in used),
        )
        """What each decision reports: the classic three, then every other metric some plan
        sets a target for."""
        self._planned = {
            (plan_name, level): self._plan_targets(plan_name, level)
            for plan_name in spec.plans
            for level in self.levels
        }
        self._lock = threading.Lock()
        read: set[str] = set()
        for calendar_spec in spec.calendars.values():
            if isinstance(calendar_spec.timezone, FromTicketField):
                read.add(calendar_spec.timezone.from_field)
            source = calendar_spec.holidays
            if source is not None and isinstance(source.country, FromTicketField):
                read.add(source.country.from_field)
        self._read_by_calendars = frozenset(read)
        # Calendars that read no ticket field, by name: the common, fast case.
        self._fixed_calendars: dict[str, Calendar] = {ALWAYS_OPEN: _ALWAYS_OPEN}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Policy:
        return cls(PolicySpec.model_validate(data))

    def severity(self, priority: str) -> int:
        """0 for the most severe level."""
        return self._severity[priority]

    def _plan_targets(self, plan_name: str, priority: str) -> tuple[PlannedTarget, ...]:
        plan = self.spec.plans[plan_name]
        targets = plan.targets.get(priority)
        if targets is None:
            return ()
        planned = []
        for name in targets.named():
            spec = targets.get(name)
            if spec is None:
                continue
            calendar = spec.calendar or plan.calendar
            assert calendar is not None  # the schema guarantees it
            seconds = None if spec.next_business_day else spec.seconds
            # A next_business_day deadline is a date, not a duration: pauses do not move it.
            metric = self._metrics.get(name)
            if metric is None:
                pausable = name in self.spec.clocks.paused_targets and not spec.next_business_day
            else:
                pausable = not spec.next_business_day
            planned.append(PlannedTarget(name, seconds, calendar, pausable, metric))
        return tuple(planned)

    def planned_targets(self, plan: str, priority: str) -> tuple[PlannedTarget, ...]:
        """The targets ``plan`` sets for ``priority``, in report order."""
        return self._planned[(plan, priority)]

    def known_plans(self) -> list[str]:
        """Every plan name a ticket may carry: the plans and their aliases, sorted."""
        return sorted({*self.spec.plans, *self.spec.plan_aliases})

    def is_unknown_plan(self, plan: str | None) -> bool:
        """Whether ``plan`` is named but is neither a plan nor an alias of this policy."""
        return (
            plan is not None and plan not in self.spec.plans and plan not in self.spec.plan_aliases
        )

    def resolve_plan(self, plan: str | None) -> str | None:
        """The plan name after aliases and the default; None when the ticket names none."""
        name = plan if plan is not None else self.spec.default_plan
        if name is None:
            return None
        name = self.spec.plan_aliases.get(name, name)
        if name not in self.spec.plans:
            raise TicketError(
                f"plan {name!r} is not in policy {self.name!r}; known plans: "
                f"{', '.join(self.known_plans())}"
            )
        return name

    def calendar(self, name: str, ticket: Ticket) -> Calendar:
        """The calendar ``name`` for this ticket's time zone and country."""
        fixed = self._fixed_calendars.get(name)
        if fixed is not None:
            return fixed
        if name == ALWAYS_OPEN:
            return _ALWAYS_OPEN
        spec = self.spec.calendars.get(name)
        if spec is None:
            raise PolicyError(f"policy {self.name!r} has no calendar {name!r}")
        if spec.always_open:
            return _ALWAYS_OPEN
        zone_name = self._from_ticket(spec.timezone, ticket)
        country = None
        if spec.holidays is not None:
            country = self._from_ticket(spec.holidays.country, ticket).upper()
        key = (name, zone_name, country)
        calendar = self._calendars.get(key)
        if calendar is None:
            with self._lock:
                calendar = self._calendars.get(key)
                if calendar is None:
                    calendar = self._build(name, spec, zone_name, country)
                    self._calendars[key] = calendar
                    if _depends_on_ticket(spec):
                        return calendar
                    self._fixed_calendars[name] = calendar
        return calendar

    @staticmethod
    def _from_ticket(source: str | FromTicketField, ticket: Ticket) -> str:
        if isinstance(source, str):
            return source
        value = getattr(ticket, source.from_field)
        # A value nobody knows is taken as not given (evaluate notes it: unknown_values).
        return (
            value
            if value is not None and usable_ticket_value(source.from_field, value)
            else source.default
        )

    def fields_read_by_calendars(self) -> frozenset[str]:
        """The ticket fields some calendar of this policy reads (``customer_timezone``...)."""
        return self._read_by_calendars

    def _build(
        self, name: str, spec: CalendarSpec, zone_name: str, country: str | None
    ) -> Calendar:
        try:
            zone = _zone(zone_name)
        except ValueError as error:
            raise TicketError(f"field 'customer_timezone': {error}") from None
        extra = {day: "closed (policy)" for day in spec.closed_dates}
        removed = frozenset(spec.removed_holidays)
        subdivision = spec.holidays.subdivision if spec.holidays else None
        if country is not None:
            _country_holidays(country, subdivision, 2000)  # fail now on an unknown country

        def closed_dates(year: int) -> dict[date, str]:
            closed: dict[date, str] = {}
            if country is not None:
                closed.update(_country_holidays(country, subdivision, year))
            closed.update((day, why) for day, why in extra.items() if day.year == year)
            for day in removed:
                closed.pop(day, None)
            return closed

        return BusinessCalendar(zone, spec.weekly_seconds(), closed_dates, name=name)
