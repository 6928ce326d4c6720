"""Metrics as configuration: a clock defined by the ticket events that start and stop it.

A policy's targets name metrics. The three classic ones (``first_response``,
``restoration``, ``next_update``) keep the engine's hand-written fast path (each has its
definition here too, which the property tests hold the fast path to); every other metric
is compiled once per policy into a ``CompiledMetric`` and run over the ticket's events by
``run_metric``. docs/metrics.md explains each built-in metric with a worked example.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from bot.business_time import Pause, aware_seconds
from bot.policy import ClockRules, MetricPause, MetricSpec
from bot.ticket import SOLVED_STATUSES, STATUSES, Ticket, net_status_changes

# Event codes. Events at the same instant are taken in code order: a creation first, a
# reopening before the status it enters, replies before a solve made with them (an agent who
# solves with a reply has replied, then solved).
CREATED = 0
REOPENED = 1
_STATUS_BASE = 2
CUSTOMER_REPLY = _STATUS_BASE + len(STATUSES)
AGENT_REPLY = CUSTOMER_REPLY + 1
SOLVED = AGENT_REPLY + 1
_STATUS_CODE = {status: _STATUS_BASE + index for index, status in enumerate(STATUSES)}
_SOLVED = frozenset(SOLVED_STATUSES)


_floor = math.floor

Event = tuple[int, int]
"""``(POSIX second, event code)``."""


def event_code(name: str) -> int:
    """The code of an event name of a policy file (``agent_reply``, ``status:pending``)."""
    fixed = {
        "created": CREATED,
        "reopened": REOPENED,
        "customer_reply": CUSTOMER_REPLY,
        "agent_reply": AGENT_REPLY,
        "solved": SOLVED,
    }
    if name in fixed:
        return fixed[name]
    return _STATUS_CODE[name.removeprefix("status:")]


def builtin_definitions(clocks: ClockRules) -> dict[str, MetricSpec]:
    """Every built-in metric as events; the classic three pause as ``clocks`` says."""

    def classic_pause(name: str) -> MetricPause:
        return MetricPause(ticket_pauses=name in clocks.paused_targets)

    return {
        "first_response": MetricSpec(
            description="Time from the creation to the first public agent reply.",
            start=["created"],
            stop=["agent_reply", "solved"],
            pause=classic_pause("first_response"),
            cycle="once",
        ),
        "restoration": MetricSpec(
            description="Time from the creation, or the latest reopening, to the solve.",
            start=["created", "reopened"],
            stop=["solved"],
            pause=classic_pause("restoration"),
            cycle="every",
        ),
        "next_update": MetricSpec(
            description="Time between public agent updates (the creation before the first; "
            "the reopening after one).",
            start=["created", "agent_reply", "reopened"],
            stop=["agent_reply", "solved"],
            pause=classic_pause("next_update"),
            cycle="every",
        ),
        "next_reply": MetricSpec(
            description="Time from a customer's reply to the next public agent reply "
            "(Zendesk's next reply time).",
            start=["customer_reply"],
            stop=["agent_reply", "solved"],
            cycle="every",
        ),
        "agent_work": MetricSpec(
            description="Time the ticket spends new or open, added up until the solve "
            "(Zendesk's agent work time).",
            start=["created", "reopened"],
            stop=["solved"],
            pause=MetricPause(statuses=["pending", "on_hold"]),
            cycle="cumulative",
        ),
        "requester_wait": MetricSpec(
            description="Time the requester waits (new, open or on hold), added up until the "
            "solve (Zendesk's requester wait time).",
            start=["created", "reopened"],
            stop=["solved"],
            pause=MetricPause(statuses=["pending"]),
            cycle="cumulative",
        ),
    }


@dataclass(frozen=True, slots=True)
class CompiledMetric:
    """A metric definition in the form the engine's loop reads, built once per policy."""

    name: str
    starts: frozenset[int]
    stops: frozenset[int]
    cycle: str
    pause_statuses: frozenset[str]
    ticket_pauses: bool
    pause_fields: tuple[tuple[str, frozenset[str]], ...]
    cycle_key: tuple[Any, ...]
    """What the reported cycle depends on: the start and stop events and the cycle."""
    own_pauses: bool
    """Whether statuses or fields pause it (``status_pauses`` has something to find)."""


def compile_metric(name: str, spec: MetricSpec) -> CompiledMetric:
    # A solve stops every clock, whether the definition names it or not.
    starts = frozenset(event_code(e) for e in spec.start)
    stops = frozenset({SOLVED, *(event_code(e) for e in spec.stop)})
    return CompiledMetric(
        name=name,
        starts=starts,
        stops=stops,
        cycle=spec.cycle,
        cycle_key=(starts, stops, spec.cycle),
        own_pauses=bool(spec.pause.statuses or spec.pause.fields),
        pause_statuses=frozenset(spec.pause.statuses),
        ticket_pauses=spec.pause.ticket_pauses,
        pause_fields=tuple((name, frozenset(values)) for name, values in spec.pause.fields.items()),
    )


Cycle = tuple[int, int | None, tuple[Pause, ...]]
"""``(start, stop or None while running, gaps between cycles that do not count)``."""


@dataclass(slots=True)
class TicketEvents:
    """What every metric of one evaluation reads, computed once per ticket."""

    events: list[Event]
    """The ticket's events up to ``now``, in order."""
    statuses: list[tuple[int, str]]
    """The status changes that count (``net_status_changes``) up to ``now``."""
    cycles: dict[tuple[Any, ...], Cycle | None] = field(default_factory=dict)
    """``run_metric``'s results by the metric's events and cycle."""


def ticket_events(ticket: Ticket, now: int, created: int | None = None) -> TicketEvents:
    """The ticket's events and status changes up to ``now``.

    Replies come from ``agent_replies`` (else the first response and the last agent update)
    and ``customer_replies``; solves and reopenings from ``status_changes`` when the ticket
    has them, else from ``solved_at`` (when solved) and ``restoration_started_at``.
    """
    # Instants are aware (the ticket checked them): whole seconds without to_timestamp's
    # check, through timestamp() itself for UTC (the quickest there).
    seconds, floor = aware_seconds, _floor
    if created is None:
        created = seconds(ticket.created_at)
    events: list[Event] = [(created, CREATED)]
    append = events.append
    agent = ticket.agent_replies or tuple(
        {t for t in (ticket.first_response_at, ticket.last_agent_update_at) if t is not None}
    )
    for at in agent:
        instant = floor(at.timestamp()) if at.tzinfo is UTC else seconds(at)
        if instant <= now:
            append((instant, AGENT_REPLY))
    for at in ticket.customer_replies:
        instant = floor(at.timestamp()) if at.tzinfo is UTC else seconds(at)
        if instant <= now:
            append((instant, CUSTOMER_REPLY))
    statuses: list[tuple[int, str]] = []
    if ticket.status_changes:
        previous: str | None = None
        codes = _STATUS_CODE
        for at, status in net_status_changes(ticket.status_changes):
            instant = floor(at.timestamp()) if at.tzinfo is UTC else seconds(at)
            if instant > now:
                break
            statuses.append((instant, status))
            if status == previous:
                continue
            append((instant, codes[status]))
            if status in _SOLVED:
                if previous not in _SOLVED:
                    append((instant, SOLVED))
            elif previous in _SOLVED:
                append((instant, REOPENED))
            previous = status
    else:
        if ticket.solved_at is not None and ticket.status in _SOLVED:
            instant = seconds(ticket.solved_at)
            if instant <= now:
                events.append((instant, SOLVED))
        if ticket.restoration_started_at is not None:
            instant = seconds(ticket.restoration_started_at)
            if instant <= now:
                events.append((instant, REOPENED))
    events.sort()
    return TicketEvents(events, statuses)


def run_metric(metric: CompiledMetric, seen: TicketEvents) -> Cycle | None:
    """The cycle a metric reports, from the ticket's ordered events; None if never started.

    A start while the clock runs does not restart it; an event that stops and starts it
    ends one cycle and begins the next. While the ticket is solved nothing starts, until it
    is reopened. ``once`` reports the first cycle, ``every`` the latest, ``cumulative`` one
    clock from the first start to the latest stop with the gaps between cycles as pauses.
    Metrics with the same events and cycle (agent work and requester wait) share the run.
    """
    key = metric.cycle_key
    cycles = seen.cycles
    if key in cycles:
        return cycles[key]
    starts, stops = metric.starts, metric.stops
    once, cumulative = metric.cycle == "once", metric.cycle == "cumulative"
    first = begin = end = None
    gaps: list[Pause] = []
    running = solved = False
    for at, code in seen.events:
        if code == REOPENED:
            solved = False
        if running and code in stops:
            end = at
            running = False
        if code == SOLVED:
            solved = True
        elif not running and not solved and code in starts:
            if first is None:
                first = at
            elif once:
                continue
            if cumulative and end is not None:
                gaps.append((end, at))
            begin, end, running = at, None, True
    found: Cycle | None
    if first is None or begin is None:
        found = None
    elif cumulative:
        found = (first, end, tuple(gaps))
    else:
        found = (begin, end, ())
    cycles[key] = found
    return found


def status_pauses(
    metric: CompiledMetric, ticket: Ticket, seen: TicketEvents, now: int
) -> list[Pause]:
    """The spans, up to ``now``, the ticket spent in the metric's pausing statuses, and the
    pauses its pausing field values hold (from ``now``: fields keep no history)."""
    pauses: list[Pause] = []
    statuses = metric.pause_statuses
    if statuses:
        if ticket.status_changes:
            begun: int | None = None
            for instant, status in seen.statuses:
                if status in statuses:
                    if begun is None:
                        begun = instant
                elif begun is not None:
                    pauses.append((begun, instant))
                    begun = None
            if begun is not None:
                pauses.append((begun, None))
        elif ticket.status in statuses:
            pauses.append((now, None))
    for name, values in metric.pause_fields:
        value = getattr(ticket, name)
        if value is not None and value.lower() in values:
            pauses.append((now, None))
    return pauses
