"""The policy engine: a ticket, a policy and ``now`` in; priority, tags and due dates out.

Pure and synchronous: no I/O, no clock reads. Callers pass ``now``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from fractions import Fraction
from time import gmtime as _gmtime
from time import strftime as _strftime
from typing import Any, Literal, get_args

from bot.business_time import (
    DAY,
    Calendar,
    Pause,
    aware_seconds,
    from_timestamp,
    merge_pauses,
    to_timestamp,
)
from bot.compiled import PlannedTarget, Policy, usable_ticket_value
from bot.errors import ReclassificationError, SlabotError, TicketError
from bot.metrics import TicketEvents, run_metric, status_pauses, ticket_events
from bot.policy import TARGETS, format_duration
from bot.records import quick_init
from bot.ticket import SOLVED_STATUSES, Reclassification, Ticket

State = Literal["met", "breached", "running", "paused", "none"]


class UnknownPriorityError(ReclassificationError):
    """The priority named is not a level of the ticket's policy."""


class PriorityCapError(ReclassificationError):
    """The priority is above a cap the policy sets for this ticket."""


class ProductionOnlyError(PriorityCapError):
    """The priority is reserved for production, and the ticket is not in production."""


class ProductStageCapError(PriorityCapError):
    """The product's stage (beta, preview...) caps the priority."""


class ReasonRequiredError(ReclassificationError):
    """A reclassification must say why."""


@quick_init
@dataclass(frozen=True, slots=True)
class TargetDecision:
    """One clock of one ticket: when it is due and where it stands at ``now``.

    Instants are kept as POSIX seconds (``*_ts``); the datetime properties derive from them.
    """

    target: str
    state: State
    due_ts: int | None = None
    started_ts: int | None = None
    stopped_ts: int | None = None
    target_seconds: int | None = None
    """Open seconds the target allows; None for next_business_day and for no target."""
    calendar: str | None = None
    pauses: tuple[Pause, ...] = ()
    """The pauses that held this clock (merged, clipped at its stop), as POSIX seconds."""

    @property
    def due(self) -> datetime | None:
        return _dt(self.due_ts) if self.due_ts is not None else None

    @property
    def started_at(self) -> datetime | None:
        return _dt(self.started_ts) if self.started_ts is not None else None

    @property
    def stopped_at(self) -> datetime | None:
        return _dt(self.stopped_ts) if self.stopped_ts is not None else None

    @property
    def rule(self) -> str:
        """The target as a person reads it: ``9h on business``."""
        if self.calendar is None:
            return "no target"
        if self.target_seconds is None:
            return f"close of the next business day on {self.calendar}"
        return f"{format_duration(self.target_seconds)} on {self.calendar}"


@quick_init
@dataclass(frozen=True, slots=True)
class Classification:
    priority: str
    requested_priority: str | None
    tags: tuple[str, ...]
    notes: tuple[str, ...]
    no_targets: bool


@quick_init
@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy says about a ticket at ``now``."""

    ticket_id: str
    priority: str
    requested_priority: str | None
    plan: str | None
    commitment: str | None
    targets: dict[str, TargetDecision]
    tags: tuple[str, ...]
    notes: tuple[str, ...]
    unknown_plan: str | None = None
    """The plan the ticket names when the policy does not know it (it was then evaluated
    under the default plan, or without targets): what operators are warned about."""
    unknown_values: tuple[tuple[str, str], ...] = ()
    """``(field, value)`` of each ticket value the policy cannot use, ignored as if not given:
    a priority that is not a level, an urgency or impact the matrix lacks, an unknown zone or
    country a calendar reads."""

    @property
    def unknown_plan_note(self) -> str:
        """The note about the plan the policy does not know ("" when the plan is known)."""
        plan = self.unknown_plan
        if plan is None:
            return ""
        return next((n for n in self.notes if n.startswith(f"plan {plan!r} ")), "")

    @property
    def next_change_at(self) -> datetime | None:
        """The next instant a target's state changes by time alone (its next breach)."""
        dues = [t.due for t in self.targets.values() if t.state == "running" and t.due]
        return min(dues) if dues else None

    def as_json(self) -> dict[str, Any]:
        """The ``slabot evaluate`` output object (other metrics after the classic three)."""
        targets = self.targets
        first_response, restoration, next_update = (
            targets["first_response"],
            targets["restoration"],
            targets["next_update"],
        )
        due = {
            "first_response": _iso_ts(first_response.due_ts),
            "restoration": _iso_ts(restoration.due_ts),
            "next_update": _iso_ts(next_update.due_ts),
        }
        state = {
            "first_response": first_response.state,
            "restoration": restoration.state,
            "next_update": next_update.state,
        }
        if len(targets) > 3:
            for name, decided in targets.items():
                if name not in state:
                    due[name] = _iso_ts(decided.due_ts)
                    state[name] = decided.state
        return {
            "id": self.ticket_id,
            "priority": self.priority,
            "requested_priority": self.requested_priority,
            "plan": self.plan,
            "commitment": self.commitment,
            "due": due,
            "state": state,
            "tags": list(self.tags),
            "notes": list(self.notes),
        }

    def as_json_line(self) -> str:
        """``json.dumps(self.as_json(), ensure_ascii=False)`` with a newline: the same text,
        built without the intermediate objects (``slabot evaluate`` writes one per ticket).

        >>> decided = Decision("7", "P2", None, None, None, dict(_NO_TARGETS), ("vip",), ())
        >>> decided.as_json_line() == json.dumps(decided.as_json(), ensure_ascii=False) + "\\n"
        True
        """
        targets = self.targets
        names = tuple(targets)
        order = _JSON_ORDERS.get(names)
        if order is None:
            order = _json_order(names)
        due, state = [], []
        for name, key, key_states in order:
            decided = targets[name]
            due_ts = decided.due_ts
            due.append(f"{key}null" if due_ts is None else f'{key}"{_iso_ts(due_ts)}"')
            state.append(key_states[decided.state])
        requested, plan, commitment = self.requested_priority, self.plan, self.commitment
        return (
            f'{{"id": {_json_text(self.ticket_id)}, "priority": {_json_text(self.priority)}, '
            f'"requested_priority": {"null" if requested is None else _json_text(requested)}, '
            f'"plan": {"null" if plan is None else _json_text(plan)}, '
            f'"commitment": {"null" if commitment is None else _json_text(commitment)}, '
            f'"due": {{{", ".join(due)}}}, "state": {{{", ".join(state)}}}, '
            f'"tags": [{", ".join(map(_json_text, self.tags))}], '
            f'"notes": [{", ".join(map(_json_text, self.notes))}]}}\n'
        )


_json_text = json.encoder.encode_basestring
"""A string as JSON text, as ``json.dumps(..., ensure_ascii=False)`` writes it."""
_JsonOrder = tuple[tuple[str, str, dict[str, str]], ...]
_JSON_ORDERS: dict[tuple[str, ...], _JsonOrder] = {}
"""By a decision's target names: each name in ``as_json`` order, with its JSON key text and
that key with each state's text."""


def _json_order(names: tuple[str, ...]) -> _JsonOrder:
    ordered = (*TARGETS, *(name for name in names if name not in TARGETS))
    order = tuple(
        (
            name,
            f"{_json_text(name)}: ",
            {state: f"{_json_text(name)}: {_json_text(state)}" for state in get_args(State)},
        )
        for name in ordered
    )
    if len(_JSON_ORDERS) < 256:  # a policy's metrics: a handful of shapes
        _JSON_ORDERS[names] = order
    return order


def _iso_ts(ts: int | None) -> str | None:
    # The date part through gmtime + strftime once per day, the time of day from tables:
    # half the cost of formatting each instant whole (hot path; the same text).
    if ts is None:
        return None
    day, second = divmod(ts, DAY)
    date_text = _DATE_TEXTS.get(day)
    if date_text is None:
        if len(_DATE_TEXTS) >= _DATE_TEXTS_KEPT:
            _DATE_TEXTS.clear()
        date_text = _DATE_TEXTS[day] = _strftime("%Y-%m-%dT", _gmtime(ts - second))
    minute, second = divmod(second, 60)
    return date_text + _MINUTE_TEXTS[minute] + _SECOND_TEXTS[second]


_DATE_TEXTS: dict[int, str] = {}
"""``YYYY-MM-DDT`` by POSIX day (days since 1970-01-01), as ``_iso_ts`` has met them."""
_DATE_TEXTS_KEPT = 8192
_MINUTE_TEXTS = tuple(f"{hour:02d}:{minute:02d}" for hour in range(24) for minute in range(60))
_SECOND_TEXTS = tuple(f":{second:02d}Z" for second in range(60))


def iso_z(instant: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, to the second."""
    if instant is None:
        return None
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def classify(ticket: Ticket, policy: Policy) -> Classification:
    """Final priority with its reasons: agent choice, matrix, request or default, then caps.

    Caps (production-only, product stage) are judged against the priority before any cap,
    so a ticket that breaks two rules carries both tags; the least severe cap wins.
    """
    spec = policy.spec
    rules = spec.classification
    tags: list[str] = []
    notes: list[str] = []
    requested = _known_priority(ticket.priority, policy, "priority")

    if ticket.reclassification is not None:
        change = ticket.reclassification
        priority = change.priority
        notes.append(f"reclassified to {priority} by {change.actor}: {change.reason}")
    else:
        from_matrix = _matrix_priority(ticket, policy)
        if requested and from_matrix:
            matrix = rules.matrix
            assert matrix is not None
            if matrix.customer_priority_overrides:
                priority = requested
                if requested != from_matrix:
                    if matrix.disagreement_tag:
                        tags.append(matrix.disagreement_tag)
                    notes.append(
                        f"customer chose {requested}; urgency {ticket.urgency} x impact "
                        f"{ticket.impact} gives {from_matrix}; the customer's choice stands"
                    )
                else:
                    notes.append(f"customer chose {requested}, as the matrix gives")
            else:
                priority = from_matrix
                notes.append(
                    f"urgency {ticket.urgency} x impact {ticket.impact} gives {from_matrix}; "
                    f"the requested {requested} is not used by this policy"
                )
        elif requested:
            priority = requested
            notes.append(f"requested {requested}")
        elif from_matrix:
            priority = from_matrix
            notes.append(f"urgency {ticket.urgency} x impact {ticket.impact} gives {from_matrix}")
        else:
            priority = spec.default_priority
            notes.append(f"no priority given: default {priority}")

    classified = priority
    environment_rule = rules.environment
    if (
        environment_rule
        and environment_rule.missing_tag
        and ticket.environment is None
        and policy.severity(classified) < policy.severity(environment_rule.cap)
    ):
        tags.append(environment_rule.missing_tag)
        notes.append(
            f"{classified} applies to production only and no environment was given: "
            f"{classified} kept until an agent confirms the environment"
        )
    no_targets = False
    stage_rule = rules.product_stage
    stage = ticket.product_stage
    if stage_rule and stage_rule.effect == "no_targets" and _in_stage(stage, stage_rule.stages):
        no_targets = True
        if stage_rule.tag:
            tags.append(stage_rule.tag)
        notes.append(f"product stage {stage!r} carries no guarantee: no due dates")
    caps = _caps_over(ticket, policy, classified)
    for cap in caps:
        if cap.tag:
            tags.append(cap.tag)
        notes.append(f"{classified} {cap.why}: reclassified to {cap.cap}")
    if caps:
        priority = max((cap.cap for cap in caps), key=policy.severity)

    channel_rule = rules.channel
    if channel_rule and priority in channel_rule.priorities:
        channel = (ticket.channel or "").lower()
        if channel not in channel_rule.channels:
            tags.append(channel_rule.tag)
            notes.append(
                f"{priority} must be reported by {' or '.join(channel_rule.channels)} and came by "
                f"{ticket.channel or 'an unknown channel'}: call the customer"
            )
    return Classification(
        priority=priority,
        requested_priority=requested,
        tags=tuple(sorted(set(tags))) if len(tags) > 1 else tuple(tags),
        notes=tuple(notes),
        no_targets=no_targets,
    )


@dataclass(frozen=True, slots=True)
class _Cap:
    """A policy rule that caps this ticket's priority, and why."""

    cap: str
    tag: str | None
    why: str
    error: type[PriorityCapError]
    correct: str
    """The ticket field an agent would correct if the cap is wrong."""


def _in_stage(stage: str | None, stages: list[str]) -> bool:
    return stage is not None and stage.lower() in stages


def _caps_over(ticket: Ticket, policy: Policy, priority: str) -> list[_Cap]:
    """The caps (production-only, product stage) that ``priority`` is more severe than.

    Shared by classification (which applies them) and reclassification (which refuses an
    agent's choice above them), so the two can never disagree.
    """
    rules = policy.spec.classification
    severity = policy.severity(priority)
    caps = []
    environment = ticket.environment
    env_rule = rules.environment
    if (
        env_rule
        and environment is not None
        and environment.lower() not in env_rule.production_values
        and severity < policy.severity(env_rule.cap)
    ):
        caps.append(
            _Cap(
                env_rule.cap,
                env_rule.reclassified_tag,
                f"applies to production only and this ticket's environment is {environment!r}",
                ProductionOnlyError,
                "environment",
            )
        )
    stage_rule = rules.product_stage
    if (
        stage_rule
        and stage_rule.effect == "cap"
        and stage_rule.cap
        and _in_stage(ticket.product_stage, stage_rule.stages)
        and severity < policy.severity(stage_rule.cap)
    ):
        caps.append(
            _Cap(
                stage_rule.cap,
                stage_rule.tag,
                f"is more than product stage {ticket.product_stage!r} allows "
                f"({stage_rule.cap} at most)",
                ProductStageCapError,
                "product stage",
            )
        )
    return caps


def _known_priority(value: str | None, policy: Policy, field: str) -> str | None:
    if value is None:
        return None
    if value not in policy.levels:
        raise TicketError(
            f"field {field!r} is {value!r}; policy {policy.name!r} has {', '.join(policy.levels)}"
        )
    return value


def _matrix_priority(ticket: Ticket, policy: Policy) -> str | None:
    matrix = policy.spec.classification.matrix
    if matrix is None or ticket.urgency is None or ticket.impact is None:
        return None
    row = matrix.table.get(ticket.urgency.lower())
    if row is None:
        raise TicketError(
            f"field 'urgency' is {ticket.urgency!r}; expected one of {', '.join(matrix.table)}"
        )
    priority = row.get(ticket.impact.lower())
    if priority is None:
        raise TicketError(f"field 'impact' is {ticket.impact!r}; expected one of {', '.join(row)}")
    return priority


def _undecided(ticket: Ticket, policy: Policy, now: datetime) -> tuple[Decision, list[_Clock]]:
    """Everything ``evaluate`` decides but the due instants: the decision without targets,
    and the clocks whose due instants and states are still to compute."""
    if now.tzinfo is None:
        raise TicketError(f"now {now.isoformat()} has no time zone; pass an aware datetime")
    unknown_values = _unknown_values(ticket, policy)
    if unknown_values:
        # Ignored as if not given, never refused: the ticket is still evaluated and stored.
        cleared: dict[str, Any] = {name: None for name, _ in unknown_values}
        ticket = replace(ticket, **cleared)
    classification = classify(ticket, policy)
    notes, tags = classification.notes, classification.tags
    if unknown_values:
        notes += tuple(_unknown_value_note(name, value, policy) for name, value in unknown_values)
        if policy.spec.unknown_value_tag:
            tags = tuple(sorted({*tags, policy.spec.unknown_value_tag}))
    unknown_plan = ticket.plan if policy.is_unknown_plan(ticket.plan) else None
    if unknown_plan is not None:
        # Never refused: a ticket slabot cannot place is still stored, tagged and noted, so
        # that people see it (docs/policies.md, "Unknown plans").
        plan = policy.resolve_plan(None)
        notes += (_unknown_plan_note(unknown_plan, policy, plan),)
        if policy.spec.unknown_plan_tag:
            tags = tuple(sorted({*tags, policy.spec.unknown_plan_tag}))
    else:
        plan = policy.resolve_plan(ticket.plan)
        if plan is None:
            notes += ("no plan given and the policy has no default plan: no targets",)
    commitment = None if plan is None else policy.spec.plans[plan].commitment
    if ticket.status in SOLVED_STATUSES and ticket.solved_at is None:
        raise TicketError(f"status {ticket.status!r} needs 'solved_at', the time it was solved")
    names = policy.metric_names
    none = _NO_TARGETS if len(names) == 3 else _no_targets(names)
    clocks: list[_Clock] = []
    if plan is not None and not classification.no_targets:
        planned = policy.planned_targets(plan, classification.priority)
        if planned:
            clocks = _clocks(ticket, policy, _now_seconds(now), planned)
    decision = Decision(
        ticket_id=ticket.id,
        priority=classification.priority,
        requested_priority=classification.requested_priority,
        plan=plan,
        commitment=commitment,
        targets=dict(none),
        tags=tags,
        notes=notes,
        unknown_plan=unknown_plan,
        unknown_values=unknown_values,
    )
    return decision, clocks


_BATCH_MIN = 48
"""Fewer due dates than this on one calendar are cheaper per call than in a numpy pass."""


def evaluate_many(
    tickets: Sequence[Ticket], policy: Policy, now: datetime
) -> list[Decision | SlabotError]:
    """``evaluate`` of each ticket at ``now``, the due dates through the calendar batch path.

    Each ticket's answer is what ``evaluate`` gives (its decision, or the error it raises):
    classification and clocks are worked out per ticket, then the due dates of every clock
    that runs a plain duration (no pause) are computed in one ``due_many_ts`` per calendar
    (when it has enough of them to pay for the pass). What the batch path cannot take (a
    next-business-day close, pauses) is computed per call.
    """
    if now.tzinfo is None:
        raise TicketError(f"now {now.isoformat()} has no time zone; pass an aware datetime")
    at = _ts(now)
    answers: list[Decision | SlabotError] = []
    pending: list[tuple[int, Decision, list[_Clock]]] = []
    batches: dict[int, tuple[Calendar, list[_Clock]]] = {}
    for ticket in tickets:
        try:
            decision, clocks = _undecided(ticket, policy, now)
        except SlabotError as error:
            answers.append(error)
            continue
        for clock in clocks:
            if clock.seconds is not None and not clock.pauses:
                group = batches.get(id(clock.calendar))
                if group is None:
                    batches[id(clock.calendar)] = (clock.calendar, [clock])
                else:
                    group[1].append(clock)
        pending.append((len(answers), decision, clocks))
        answers.append(decision)
    failed: dict[int, SlabotError] = {}
    for calendar, batch in batches.values():
        if len(batch) < _BATCH_MIN:
            continue  # cheaper per call (in _decided) than one numpy pass
        try:
            dues = calendar.due_many_ts(
                [c.start for c in batch], [c.seconds or 0 for c in batch]
            ).tolist()
        except SlabotError:
            # One bad instant fails only its own ticket, as evaluate would: per call.
            dues = []
            for clock in batch:
                try:
                    dues.append(clock.calendar.due_ts(clock.start, clock.seconds or 0))
                except SlabotError as error:
                    failed[id(clock)] = error
                    dues.append(None)
        for clock, due in zip(batch, dues, strict=True):
            clock.due = due
            clock.computed = True
    for index, decision, clocks in pending:
        if failed:
            refused = next((failed[id(c)] for c in clocks if id(c) in failed), None)
            if refused is not None:
                answers[index] = refused
                continue
        try:
            answers[index] = _decided(decision, clocks, at)
        except SlabotError as failure:
            answers[index] = failure
    return answers


def evaluate(ticket: Ticket, policy: Policy, now: datetime) -> Decision:
    """Classify the ticket and compute each target's due instant and state at ``now``.

    >>> import yaml
    >>> policy = Policy.from_mapping(yaml.safe_load(open("config/policies/cloudtalk.yaml")))
    >>> ticket = Ticket(id="1", created_at=datetime(2026, 11, 20, 15, 30, tzinfo=UTC),
    ...                 plan="professional", environment="production")
    >>> decision = evaluate(ticket, policy, now=datetime(2026, 11, 20, 16, tzinfo=UTC))
    >>> decision.priority, iso_z(decision.targets["first_response"].due)
    ('P3', '2026-11-24T08:30:00Z')
    """
    decision, clocks = _undecided(ticket, policy, now)
    return _decided(decision, clocks, _now_seconds(now)) if clocks else decision


def _now_seconds(now: datetime) -> int:
    """``to_timestamp(now)``, remembered for the last ``now`` given (a bulk evaluation passes
    the same one for every ticket; datetimes are immutable, so the same object has the same
    seconds)."""
    global _LAST_NOW
    last = _LAST_NOW
    if last[0] is now:
        return last[1]
    at = _ts(now)
    _LAST_NOW = (now, at)  # one assignment: threads see the old pair or the new one
    return at


_LAST_NOW: tuple[datetime | None, int] = (None, 0)


def _decided(decision: Decision, clocks: list[_Clock], now: int) -> Decision:
    """The decision with each clock's due instant and state at ``now`` filled in."""
    targets = decision.targets  # this decision's own dict, not shared yet
    for clock in clocks:
        targets[clock.target.name] = clock.decide(now)
    return decision


def _unknown_values(ticket: Ticket, policy: Policy) -> tuple[tuple[str, str], ...]:
    """``(field, value)`` of each value the policy cannot use: a requested priority that is
    not a level (or a reclassification to one: the policy dropped it since), an urgency or
    impact the matrix lacks, a zone or country a calendar reads and nobody knows."""
    found: list[tuple[str, str]] = []
    if ticket.priority is not None and ticket.priority not in policy.levels:
        found.append(("priority", ticket.priority))
    change = ticket.reclassification
    if change is not None and change.priority not in policy.levels:
        # An agent's choice of a level the policy has since dropped.
        found.append(("reclassification", change.priority))
    matrix = policy.spec.classification.matrix
    if matrix is not None and ticket.urgency is not None and ticket.impact is not None:
        row = matrix.table.get(ticket.urgency.lower())
        if row is None:
            found.append(("urgency", ticket.urgency))
        elif ticket.impact.lower() not in row:
            found.append(("impact", ticket.impact))
    read = policy.fields_read_by_calendars()
    for name in ("customer_timezone", "customer_country"):
        value = getattr(ticket, name)
        if value is not None and name in read and not usable_ticket_value(name, value):
            found.append((name, value))
    return tuple(found)


def _unknown_value_note(name: str, value: str, policy: Policy) -> str:
    field = name.replace("_", " ")
    if name == "priority":
        known = f"its priorities are {', '.join(policy.levels)}"
        then = "ignored (as if none was asked)"
    elif name == "reclassification":
        known = f"its priorities are {', '.join(policy.levels)}"
        then = "the agent's reclassification is ignored; reclassify the ticket again"
    elif name in ("urgency", "impact"):
        matrix = policy.spec.classification.matrix
        assert matrix is not None
        values = (
            list(matrix.table) if name == "urgency" else list(next(iter(matrix.table.values())))
        )
        known = f"its matrix has {', '.join(values)}"
        then = "ignored (the matrix is not used)"
    elif name == "customer_timezone":
        known = "it is not an IANA time zone"
        then = "the calendar's default zone applies"
    else:
        known = "the holidays package does not know it (ISO 3166-1 alpha-2, such as GB)"
        then = "the calendar's default country applies"
    return f"{field} {value!r} cannot be used by policy {policy.name!r} ({known}): {then}"


def _unknown_plan_note(named: str, policy: Policy, plan: str | None) -> str:
    """What a person reads about a ticket whose plan the policy does not know."""
    what = (
        f"evaluated under the default plan {plan!r}"
        if plan is not None
        else "no targets (the policy has no default plan)"
    )
    return (
        f"plan {named!r} is not in policy {policy.name!r} (known plans: "
        f"{', '.join(policy.known_plans())}): {what}; add the plan to the policy, or correct "
        "the ticket's plan"
    )


_NO_TARGETS = {name: TargetDecision(name, "none") for name in TARGETS}
_NONE_BY_METRICS: dict[tuple[str, ...], dict[str, TargetDecision]] = {}


def _no_targets(names: tuple[str, ...]) -> dict[str, TargetDecision]:
    """Each metric a policy reports, without a target: what its decisions start from."""
    none = _NONE_BY_METRICS.get(names)
    if none is None:
        none = _NONE_BY_METRICS[names] = {name: TargetDecision(name, "none") for name in names}
    return none


class _Clock:
    """One target's clock worked out up to its due instant: what the due date takes."""

    __slots__ = ("calendar", "computed", "due", "pauses", "seconds", "start", "stop", "target")

    def __init__(
        self,
        target: PlannedTarget,
        calendar: Calendar,
        start: int,
        stop: int | None,
        pauses: list[Pause],
    ) -> None:
        self.target = target
        self.calendar = calendar
        self.start = start
        self.stop = stop
        self.pauses = pauses
        self.seconds = target.seconds
        self.due: int | None = None
        self.computed = False

    def decide(self, now: int) -> TargetDecision:
        """The due instant (computed here unless the batch path did) and the state at now."""
        if not self.computed:
            calendar, seconds = self.calendar, self.seconds
            if seconds is None:
                self.due = calendar.next_business_day_close_ts(self.start)
            elif self.pauses:
                self.due = calendar.due_with_pauses_ts(self.start, seconds, self.pauses)
            else:
                self.due = calendar.due_ts(self.start, seconds)
            self.computed = True
        due, stop, clock_pauses = self.due, self.stop, self.pauses
        state: State
        if stop is not None:
            state = "met" if due is not None and stop <= due else "breached"
        elif due is None:
            state = "paused"
        elif now >= due:
            state = "breached"
        elif clock_pauses and _paused_at(clock_pauses, now):
            state = "paused"
        else:
            state = "running"
        target = self.target
        return TargetDecision(
            target.name,
            state,
            due,
            self.start,
            stop,
            self.seconds,
            target.calendar,
            tuple(clock_pauses) if clock_pauses else (),
        )


def _clocks(
    ticket: Ticket, policy: Policy, now: int, planned: tuple[PlannedTarget, ...]
) -> list[_Clock]:
    """Start, stop, pauses and calendar of each clock the plan sets for this priority.

    The ticket is read as of ``now``: a reply, update, solve or pause recorded after ``now``
    has not happened yet (what-if evaluations at an earlier instant stay consistent).
    """
    # The ticket's instants are aware (it checks them): whole seconds without to_timestamp.
    seconds = aware_seconds
    created = seconds(ticket.created_at)
    solved_at = ticket.solved_at
    solved = (
        seconds(solved_at) if solved_at is not None and ticket.status in SOLVED_STATUSES else None
    )
    if solved is not None and solved > now:
        solved = None
    first_response_at = ticket.first_response_at
    reply = seconds(first_response_at) if first_response_at is not None else None
    if reply is not None and reply > now:
        reply = None
    pauses: list[Pause] = []
    if ticket.paused or ticket.status in policy.spec.clocks.pausing_statuses:
        pauses = _pauses(ticket, policy, now)
    clocks = []
    events: TicketEvents | None = None
    # A plan's targets mostly share one calendar: resolved once per name for this ticket.
    calendars: dict[str, Calendar] = {}
    for target in planned:
        name = target.name
        if target.metric is not None:
            if events is None:
                events = ticket_events(ticket, now, created)
            clock = _metric_clock(ticket, policy, calendars, now, target, events, pauses)
            if clock is not None:
                clocks.append(clock)
            # else the metric reports no cycle: its "none" decision stands
            continue
        if name == "first_response":
            start = created
            stop = reply if solved is None or (reply is not None and reply < solved) else solved
        elif name == "restoration":
            begun = ticket.restoration_started_at
            start, stop = (seconds(begun) if begun else created), solved
        else:
            # From the last public agent update, or from the start of the current restoration
            # cycle (a reopened ticket owes its first update from the reopening).
            start = created
            if ticket.agent_replies:
                start = _last_update(ticket, created, now if solved is None else solved)
                candidates: tuple[int | datetime | None, ...] = (ticket.restoration_started_at,)
            else:
                candidates = (reply, ticket.last_agent_update_at, ticket.restoration_started_at)
            for instant in candidates:
                if instant is not None:
                    at = instant if isinstance(instant, int) else seconds(instant)
                    if start < at <= now:
                        start = at
            stop = solved
        clock_pauses = _clip(pauses, stop) if target.pausable and pauses else []
        calendar = calendars.get(target.calendar)
        if calendar is None:
            calendar = calendars[target.calendar] = policy.calendar(target.calendar, ticket)
        clocks.append(_Clock(target, calendar, start, stop, clock_pauses))
    return clocks


def _last_update(ticket: Ticket, created: int, until: int) -> int:
    """The last agent reply at or before ``until`` (the solve, when solved): a comment on a
    solved ticket starts no update clock."""
    for instant in reversed(ticket.agent_replies):
        at = aware_seconds(instant)
        if at <= until:
            return max(at, created)
    return created


def _metric_clock(
    ticket: Ticket,
    policy: Policy,
    calendars: dict[str, Calendar],
    now: int,
    target: PlannedTarget,
    seen: TicketEvents,
    ticket_pauses: list[Pause],
) -> _Clock | None:
    """A metric defined by events (docs/metrics.md): its reported cycle and pauses, as a
    clock whose due date is still to compute; None when the metric reports no cycle."""
    metric = target.metric
    assert metric is not None
    cycle = run_metric(metric, seen)
    if cycle is None:
        return None
    start, stop, gaps = cycle
    clock_pauses: list[Pause] = []
    if target.pausable:
        found = status_pauses(metric, ticket, seen, now) if metric.own_pauses else []
        if metric.ticket_pauses:
            found += ticket_pauses
        if gaps:
            found += gaps
        if found:
            clock_pauses = _clip(merge_pauses(found), stop)
    elif gaps:
        clock_pauses = list(gaps)
    calendar = calendars.get(target.calendar)
    if calendar is None:
        calendar = calendars[target.calendar] = policy.calendar(target.calendar, ticket)
    return _Clock(target, calendar, start, stop, clock_pauses)


def _pauses(ticket: Ticket, policy: Policy, now: int) -> list[Pause]:
    """The ticket's pauses as of ``now``, merged; a pause still running at ``now`` is open."""
    pauses: list[Pause] = []
    for begin, end in ticket.paused:
        begin_ts = aware_seconds(begin)
        if begin_ts > now:
            continue
        end_ts = None if end is None else aware_seconds(end)
        pauses.append((begin_ts, None if end_ts is None or end_ts > now else end_ts))
    if ticket.status in policy.spec.clocks.pausing_statuses and all(
        e is not None for _, e in pauses
    ):
        # Waiting on the customer without a recorded start: paused from now at the latest.
        pauses.append((now, None))
    return merge_pauses(pauses)


def _clip(pauses: list[Pause], stop: int | None) -> list[Pause]:
    """Pauses as they stood when the clock stopped: nothing after ``stop`` counts."""
    if stop is None:
        return pauses
    clipped: list[Pause] = []
    for begin, end in pauses:
        if begin >= stop:
            break
        clipped.append((begin, stop if end is None or end > stop else end))
    return clipped


def _paused_at(pauses: list[Pause], instant: int) -> bool:
    return any(b <= instant and (e is None or instant < e) for b, e in pauses)


def reclassify(
    ticket: Ticket,
    policy: Policy,
    now: datetime,
    priority: str,
    actor: str,
    reason: str,
) -> Decision:
    """An agent's new priority: validated, then every target recomputed from its clock's start.

    Raises ``UnknownPriorityError``, ``ReasonRequiredError`` or a ``PriorityCapError``
    (``ProductionOnlyError``, ``ProductStageCapError``) with a message the agent can act on.
    """
    if priority not in policy.levels:
        raise UnknownPriorityError(
            f"{priority!r} is not a priority of policy {policy.name!r}; "
            f"choose one of {', '.join(policy.levels)}"
        )
    if not reason.strip():
        raise ReasonRequiredError("say why the priority changes; the reason is kept in the audit")
    for cap in _caps_over(ticket, policy, priority):
        allowed = [p for p in policy.levels if policy.severity(p) >= policy.severity(cap.cap)]
        raise cap.error(
            f"{priority} {cap.why}: choose {' or '.join(allowed)}, "
            f"or correct the {cap.correct} first"
        )
    change = Reclassification(priority=priority, actor=actor, reason=reason.strip(), at=now)
    return evaluate(replace(ticket, reclassification=change), policy, now)


def threshold_instant(
    ticket: Ticket,
    policy: Policy,
    decision: Decision,
    target: str,
    fraction: float | Fraction,
    now: datetime,
) -> datetime | None:
    """The instant at which ``fraction`` of a target's allowed open time has elapsed.

    Counted exactly as the due date is: from the clock's start, on the target's calendar,
    outside the pauses that hold that clock, to the whole second (rounded up). ``fraction``
    1 gives the due instant itself, 0.75 the moment a quarter of the time is left, 1.5 half
    the target after the breach. For a ``next_business_day`` target the allowed time is the
    open time between the start and that close. ``decision`` is ``evaluate(ticket, policy,
    now)``: a ticket waiting on the customer with no recorded pause start is paused from
    ``now``, as there. None when the target does not apply, or while an open-ended pause
    holds the clock before the fraction is reached.

    >>> import yaml
    >>> policy = Policy.from_mapping(yaml.safe_load(open("config/policies/cloudtalk.yaml")))
    >>> ticket = Ticket(id="1", created_at=datetime(2026, 11, 20, 15, 30, tzinfo=UTC),
    ...                 plan="professional", environment="production")
    >>> now = datetime(2026, 11, 20, 16, tzinfo=UTC)
    >>> decision = evaluate(ticket, policy, now)  # P3: first response in 9 business hours
    >>> iso_z(threshold_instant(ticket, policy, decision, "first_response", 0.75, now))
    '2026-11-23T14:15:00Z'
    >>> iso_z(threshold_instant(ticket, policy, decision, "first_response", 1, now))
    '2026-11-24T08:30:00Z'
    """
    if target not in decision.targets:
        known = ", ".join(decision.targets)
        raise ValueError(f"target {target!r}: expected one of {known}")
    ratio = Fraction(str(fraction)) if isinstance(fraction, float) else Fraction(fraction)
    if ratio <= 0:
        raise ValueError(f"fraction {fraction} must be more than 0")
    decided = decision.targets[target]
    start = decided.started_ts
    if start is None or decided.calendar is None:
        return None
    calendar = policy.calendar(decided.calendar, ticket)
    if decided.target_seconds is None:
        # Close of the next business day: pauses do not move it, and its allowed time is the
        # open time up to that close.
        close = calendar.next_business_day_close_ts(start)
        allowed = _ceil_times(calendar.open_seconds(start, close), ratio)
        return _dt(calendar.due_ts(start, allowed))
    seconds = _ceil_times(decided.target_seconds, ratio)
    if not decided.pauses:
        return _dt(calendar.due_ts(start, seconds))
    reached = calendar.due_with_pauses_ts(start, seconds, decided.pauses)
    return None if reached is None else _dt(reached)


def _ceil_times(seconds: int, ratio: Fraction) -> int:
    """``ceil(seconds * ratio)`` in exact arithmetic (0.9 of an hour is 3240 s, not 3241)."""
    return -(-seconds * ratio.numerator // ratio.denominator)


_ts = to_timestamp
_dt = from_timestamp
