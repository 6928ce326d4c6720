"""The policy engine: a ticket, a policy and ``now`` in; priority, tags and due dates out.

Pure and synchronous: no I/O, no clock reads. Callers pass ``now``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from bot.business_time import Pause, merge_pauses
from bot.compiled import Policy
from bot.errors import ReclassificationError, TicketError
from bot.policy import TARGETS, TargetSpec, format_duration
from bot.ticket import SOLVED_STATUSES, Reclassification, Ticket

State = Literal["met", "breached", "running", "paused", "none"]


class UnknownPriorityError(ReclassificationError):
    """The priority named is not a level of the ticket's policy."""


class ProductionOnlyError(ReclassificationError):
    """The priority is reserved for production, and the ticket is not in production."""


class ReasonRequiredError(ReclassificationError):
    """A reclassification must say why."""


@dataclass(frozen=True, slots=True)
class TargetDecision:
    """One clock of one ticket: when it is due and where it stands at ``now``."""

    target: str
    state: State
    due: datetime | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    target_seconds: int | None = None
    """Open seconds the target allows; None for next_business_day and for no target."""
    calendar: str | None = None
    rule: str = "no target"


@dataclass(frozen=True, slots=True)
class Classification:
    priority: str
    requested_priority: str | None
    tags: tuple[str, ...]
    notes: tuple[str, ...]
    no_targets: bool


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

    @property
    def next_change_at(self) -> datetime | None:
        """The next instant a target's state changes by time alone (its next breach)."""
        dues = [t.due for t in self.targets.values() if t.state == "running" and t.due]
        return min(dues) if dues else None

    def as_json(self) -> dict[str, Any]:
        """The ``slabot evaluate`` output object."""
        return {
            "id": self.ticket_id,
            "priority": self.priority,
            "requested_priority": self.requested_priority,
            "plan": self.plan,
            "commitment": self.commitment,
            "due": {name: iso_z(t.due) for name, t in self.targets.items()},
            "state": {name: t.state for name, t in self.targets.items()},
            "tags": list(self.tags),
            "notes": list(self.notes),
        }


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
    caps: list[str] = []
    environment_rule = rules.environment
    if environment_rule and policy.severity(classified) < policy.severity(environment_rule.cap):
        environment = ticket.environment
        if environment is None:
            if environment_rule.missing_tag:
                tags.append(environment_rule.missing_tag)
                notes.append(
                    f"{classified} applies to production only and no environment was given: "
                    f"{classified} kept until an agent confirms the environment"
                )
        elif environment.lower() not in environment_rule.production_values:
            caps.append(environment_rule.cap)
            if environment_rule.reclassified_tag:
                tags.append(environment_rule.reclassified_tag)
            notes.append(
                f"{classified} applies to production only; environment {environment!r}: "
                f"reclassified to {environment_rule.cap}"
            )
    no_targets = False
    stage_rule = rules.product_stage
    stage = ticket.product_stage
    if stage_rule and stage is not None and stage.lower() in stage_rule.stages:
        if stage_rule.effect == "no_targets":
            no_targets = True
            if stage_rule.tag:
                tags.append(stage_rule.tag)
            notes.append(f"product stage {stage!r} carries no guarantee: no due dates")
        elif stage_rule.cap and policy.severity(classified) < policy.severity(stage_rule.cap):
            caps.append(stage_rule.cap)
            if stage_rule.tag:
                tags.append(stage_rule.tag)
            notes.append(f"product stage {stage!r}: reclassified to {stage_rule.cap}")
    if caps:
        priority = max(caps, key=policy.severity)

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
        tags=tuple(sorted(set(tags))),
        notes=tuple(notes),
        no_targets=no_targets,
    )


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
    classification = classify(ticket, policy)
    plan = policy.resolve_plan(ticket.plan)
    notes = list(classification.notes)
    tags = list(classification.tags)
    if plan is None:
        notes.append("no plan given and the policy has no default plan: no targets")
        return Decision(
            ticket_id=ticket.id,
            priority=classification.priority,
            requested_priority=classification.requested_priority,
            plan=None,
            commitment=None,
            targets={name: TargetDecision(name, "none") for name in TARGETS},
            tags=tuple(tags),
            notes=tuple(notes),
        )
    plan_spec = policy.spec.plans[plan]
    if ticket.status in SOLVED_STATUSES and ticket.solved_at is None:
        raise TicketError(f"status {ticket.status!r} needs 'solved_at', the time it was solved")
    priority_targets = plan_spec.targets.get(classification.priority)
    clocks = _Clocks(ticket, policy, now)
    targets = {}
    for name in TARGETS:
        target_spec = priority_targets.get(name) if priority_targets else None
        if target_spec is None or classification.no_targets:
            targets[name] = TargetDecision(name, "none")
            continue
        calendar_name = target_spec.calendar or plan_spec.calendar
        assert calendar_name is not None  # the policy schema guarantees it
        targets[name] = clocks.decide(name, target_spec, calendar_name)
    return Decision(
        ticket_id=ticket.id,
        priority=classification.priority,
        requested_priority=classification.requested_priority,
        plan=plan,
        commitment=plan_spec.commitment,
        targets=targets,
        tags=tuple(tags),
        notes=tuple(notes),
    )


class _Clocks:
    """Start, stop and pauses of each clock of one ticket, as POSIX seconds."""

    def __init__(self, ticket: Ticket, policy: Policy, now: datetime) -> None:
        self.ticket = ticket
        self.policy = policy
        self.now = _ts(now)
        self.created = _ts(ticket.created_at)
        solved = ticket.status in SOLVED_STATUSES and ticket.solved_at is not None
        self.solved = _ts(ticket.solved_at) if solved and ticket.solved_at else None
        rules = policy.spec.clocks
        pauses: list[Pause] = [(_ts(b), None if e is None else _ts(e)) for b, e in ticket.paused]
        if ticket.status in rules.pausing_statuses and not any(e is None for _, e in pauses):
            # Waiting on the customer without a recorded start: paused from now at the latest.
            pauses.append((self.now, None))
        self.pauses = merge_pauses(pauses)
        self.paused_targets = rules.paused_targets

    def span(self, target: str) -> tuple[int, int | None]:
        ticket = self.ticket
        if target == "first_response":
            reply = _ts(ticket.first_response_at) if ticket.first_response_at else None
            stops = [s for s in (reply, self.solved) if s is not None]
            return self.created, min(stops) if stops else None
        if target == "restoration":
            start = ticket.restoration_started_at
            return (_ts(start) if start else self.created), self.solved
        updates = [
            _ts(t)
            for t in (ticket.created_at, ticket.first_response_at, ticket.last_agent_update_at)
            if t is not None
        ]
        return max(updates), self.solved

    def decide(self, target: str, spec: TargetSpec, calendar_name: str) -> TargetDecision:
        calendar = self.policy.calendar(calendar_name, self.ticket)
        start, stop = self.span(target)
        pauses = _clip(self.pauses, stop) if target in self.paused_targets else []
        seconds = None
        due: int | None
        if spec.next_business_day:
            due = calendar.next_business_day_close_ts(start)
            rule = f"close of the next business day on {calendar_name}"
        else:
            seconds = spec.seconds
            due = calendar.due_with_pauses_ts(start, seconds, pauses)
            rule = f"{format_duration(seconds)} on {calendar_name}"
        state: State
        if stop is not None:
            state = "met" if due is not None and stop <= due else "breached"
        elif due is None:
            state = "paused"
        elif self.now >= due:
            state = "breached"
        elif _paused_at(pauses, self.now):
            state = "paused"
        else:
            state = "running"
        return TargetDecision(
            target=target,
            state=state,
            due=_dt(due) if due is not None else None,
            started_at=_dt(start),
            stopped_at=_dt(stop) if stop is not None else None,
            target_seconds=seconds,
            calendar=calendar_name,
            rule=f"{rule} ({calendar.describe()})",
        )


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

    Raises ``UnknownPriorityError``, ``ReasonRequiredError`` or ``ProductionOnlyError`` with
    a message the agent can act on.
    """
    if priority not in policy.levels:
        raise UnknownPriorityError(
            f"{priority!r} is not a priority of policy {policy.name!r}; "
            f"choose one of {', '.join(policy.levels)}"
        )
    if not reason.strip():
        raise ReasonRequiredError("say why the priority changes; the reason is kept in the audit")
    rules = policy.spec.classification
    environment = ticket.environment
    env_rule = rules.environment
    if (
        env_rule
        and environment is not None
        and environment.lower() not in env_rule.production_values
        and policy.severity(priority) < policy.severity(env_rule.cap)
    ):
        allowed = [p for p in policy.levels if policy.severity(p) >= policy.severity(env_rule.cap)]
        raise ProductionOnlyError(
            f"{priority} is for production issues only and this ticket's environment is "
            f"{environment!r}: choose {' or '.join(allowed)}, or correct the environment first"
        )
    stage_rule = rules.product_stage
    stage = ticket.product_stage
    if (
        stage_rule
        and stage_rule.cap
        and stage is not None
        and stage.lower() in stage_rule.stages
        and policy.severity(priority) < policy.severity(stage_rule.cap)
    ):
        raise ProductionOnlyError(
            f"{stage!r} products are at most {stage_rule.cap} under policy {policy.name!r}: "
            f"choose {stage_rule.cap} or lower, or correct the product stage first"
        )
    change = Reclassification(priority=priority, actor=actor, reason=reason.strip(), at=now)
    return evaluate(replace(ticket, reclassification=change), policy, now)


def _ts(instant: datetime) -> int:
    return math.floor(instant.timestamp())


def _dt(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
