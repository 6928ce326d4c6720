"""Every metric against a slow, minute-by-minute model of its definition (docs/metrics.md).

A ticket's life is drawn as a timeline (replies, status changes, solves, reopenings) on
whole minutes. The model replays the timeline's events one by one, in the documented order
for events at the same instant, to find the cycle a metric reports, then walks forward
minute by minute counting the minutes that are open on the target's calendar and not
paused, to find the due instant. The engine must agree on the state, the due instant, and
the cycle's start and stop: the built-in metrics, the policy-defined ones, and the classic
three both through their fast path (from the summary fields only) and through their event
definitions.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bot.compiled import Policy
from bot.engine import evaluate
from bot.metrics import builtin_definitions
from bot.policy import BUILTIN_METRICS, ClockRules, MetricSpec, PolicySpec
from bot.ticket import SOLVED_STATUSES, Ticket

BASE = datetime(2026, 6, 8, 6, 0, tzinfo=UTC)  # a Monday 06:00 UTC
PAUSING = ("pending", "on_hold")  # the policy's clocks.pausing_statuses (the default)

CUSTOM: dict[str, dict[str, Any]] = {
    # Until an agent first takes the ticket up; waiting on the customer does not count.
    "triage": {"start": ["created"], "stop": ["status:open"], "cycle": "once",
               "pause": {"statuses": ["pending"]}},
    # Replies owed to the customer, paused while we wait on a vendor (a ticket field).
    "vendor_cadence": {"start": ["created", "customer_reply"], "stop": ["agent_reply"],
                       "pause": {"fields": {"environment": ["waiting_on_vendor"]},
                                 "ticket_pauses": True}},
    # All the time spent pending, added up.
    "pending_total": {"start": ["status:pending"], "stop": ["status:open", "agent_reply"],
                      "cycle": "cumulative"},
}  # fmt: skip
# The classic three through the generic evaluator: their event definitions, renamed.
CLASSIC_AS_EVENTS = {
    f"{name}_events": definition.model_dump()
    for name, definition in builtin_definitions(ClockRules()).items()
    if name in ("first_response", "restoration", "next_update")
}
ALL_METRICS = (*BUILTIN_METRICS, *CUSTOM, *CLASSIC_AS_EVENTS)


@dataclass(frozen=True)
class Entry:
    """One thing that happened: a reply (``customer_reply``, ``agent_reply``) or a status."""

    at: datetime
    kind: str
    status: str | None = None


# The timeline.

ACTIONS = (
    "customer_reply",
    "agent_reply",
    "pending",
    "on_hold",
    "open",
    "solve",
    "reopen",
    "close",
)


@st.composite
def timelines(draw: st.DrawFn) -> tuple[datetime, list[Entry]]:
    """A ticket's life as a helpdesk records it: a customer's reply reopens a solved ticket,
    an agent's does not, a closed ticket stays closed."""
    created = BASE + timedelta(minutes=draw(st.integers(0, 6 * 24 * 60)))
    entries = [Entry(created, "status", "new")]
    status, at = "new", created
    for delta, action in draw(
        st.lists(st.tuples(st.integers(0, 400), st.sampled_from(ACTIONS)), max_size=12)
    ):
        at += timedelta(minutes=delta)
        if status == "closed":
            break
        solved = status == "solved"
        target: str | None = None
        if action == "customer_reply":
            if solved:
                entries.append(Entry(at, "status", "open"))
                status = "open"
            entries.append(Entry(at, "customer_reply"))
        elif action == "agent_reply":
            entries.append(Entry(at, "agent_reply"))  # on a solved ticket too: it stays solved
        elif action in ("pending", "on_hold", "open"):
            target = None if solved or status == action else action
        elif action == "solve":
            target = None if solved else "solved"
        elif action == "reopen":
            target = "open" if solved else None
        else:
            target = "closed" if solved else None
        if target is not None:
            entries.append(Entry(at, "status", target))
            status = target
    return created, entries


def ticket_at(
    created: datetime, entries: list[Entry], now: datetime, *, events: bool, **fields: Any
) -> Ticket:
    """The ticket as its helpdesk shows it at ``now`` (what happened after is not known yet):
    the summary fields, and with ``events`` the replies and status changes themselves."""
    seen = [e for e in entries if e.at <= now]
    agent = [e.at for e in seen if e.kind == "agent_reply"]
    statuses = [(e.at, e.status) for e in seen if e.kind == "status" and e.status]
    status = statuses[-1][1]
    solved_at = reopened_at = None
    paused: list[tuple[datetime, datetime | None]] = []
    previous = None
    # Of several changes in one second the last counts, for the summary fields as for the
    # engine's events (a solve undone in the same second neither solves nor reopens).
    net = [change for change, after in zip(statuses, [*statuses[1:], None], strict=True)
           if after is None or after[0] != change[0]]  # fmt: skip
    for at, entered in net:
        if entered in SOLVED_STATUSES and previous not in SOLVED_STATUSES:
            solved_at = at
        if previous in SOLVED_STATUSES and entered not in SOLVED_STATUSES:
            reopened_at = at
        if entered in PAUSING and previous not in PAUSING:
            paused.append((at, None))
        elif previous in PAUSING and entered not in PAUSING:
            paused[-1] = (paused[-1][0], at)
        previous = entered
    extra: dict[str, Any] = {}
    if events:
        extra = {
            "agent_replies": tuple(agent),
            "customer_replies": tuple(e.at for e in seen if e.kind == "customer_reply"),
            "status_changes": tuple(statuses),
        }
    return Ticket(
        id="T-1",
        created_at=created,
        plan="p",
        status=status,
        first_response_at=agent[0] if agent else None,
        last_agent_update_at=agent[-1] if agent else None,
        solved_at=solved_at if status in SOLVED_STATUSES else None,
        restoration_started_at=reopened_at,
        paused=tuple(paused),
        **extra,
        **fields,
    )


# The model.

# Events at the same instant are taken in this order (docs/metrics.md).
RANK = {"created": 0, "reopened": 1, "status": 2, "customer_reply": 3, "agent_reply": 4}
RANK["solved"] = 5


def model_events(created: datetime, entries: list[Entry], now: datetime) -> list[tuple[int, str]]:
    """``(POSIX second, event name)`` of everything up to ``now``, in order."""
    found: list[tuple[int, int, str]] = [(int(created.timestamp()), 0, "created")]
    previous: str | None = None
    statuses = [e for e in entries if e.kind == "status" and e.at <= now]
    # Of several status changes in one second, only the last counts.
    kept = {id(e) for e, after in zip(statuses, [*statuses[1:], None], strict=True)
            if after is None or after.at != e.at}  # fmt: skip
    for order, entry in enumerate(entries, 1):
        if entry.at > now:
            continue
        ts = int(entry.at.timestamp())
        if entry.kind != "status":
            found.append((ts, RANK[entry.kind] * 1000 + order, entry.kind))
            continue
        if entry.status == previous or id(entry) not in kept:
            continue
        assert entry.status is not None
        if previous in SOLVED_STATUSES and entry.status not in SOLVED_STATUSES:
            found.append((ts, RANK["reopened"] * 1000 + order, "reopened"))
        found.append((ts, RANK["status"] * 1000 + order, f"status:{entry.status}"))
        if entry.status in SOLVED_STATUSES and previous not in SOLVED_STATUSES:
            found.append((ts, RANK["solved"] * 1000 + order, "solved"))
        previous = entry.status
    found.sort()
    return [(ts, name) for ts, _, name in found]


def model_cycle(
    definition: MetricSpec, events: list[tuple[int, str]]
) -> tuple[int, int | None, list[tuple[int, int]]] | None:
    """The reported cycle: ``(start, stop, gaps that do not count)``, or None."""
    cycles: list[list[Any]] = []
    solved = False
    for ts, name in events:
        running = bool(cycles) and cycles[-1][1] is None
        if name == "reopened":
            solved = False
        if running and (name in definition.stop or name == "solved"):
            cycles[-1][1] = ts
            running = False
        if name == "solved":
            solved = True
            continue
        if running or solved or name not in definition.start:
            continue
        if definition.cycle == "once" and cycles:
            continue
        cycles.append([ts, None])
    if not cycles:
        return None
    if definition.cycle == "once":
        return cycles[0][0], cycles[0][1], []
    if definition.cycle == "every":
        return cycles[-1][0], cycles[-1][1], []
    gaps = [(a[1], b[0]) for a, b in itertools.pairwise(cycles)]
    return cycles[0][0], cycles[-1][1], gaps


def is_open(calendar: str, ts: int) -> bool:
    if calendar == "24x7":
        return True
    local = datetime.fromtimestamp(ts, UTC)
    return local.weekday() < 5 and 9 <= local.hour < 17


def status_at(entries: list[Entry], ts: int) -> str:
    status = "new"
    for entry in entries:
        if entry.kind == "status" and entry.status and int(entry.at.timestamp()) <= ts:
            status = entry.status
    return status


def model_decision(
    definition: MetricSpec,
    minutes: int,
    calendar: str,
    created: datetime,
    entries: list[Entry],
    now: datetime,
    environment: str | None,
) -> tuple[str, int | None, int | None, int | None]:
    """``(state, due, start, stop)`` straight from the definition, minute by minute."""
    now_ts = int(now.timestamp())
    cycle = model_cycle(definition, model_events(created, entries, now))
    if cycle is None:
        return "none", None, None, None
    start, stop, gaps = cycle
    pause = definition.pause
    statuses = set(pause.statuses) | (set(PAUSING) if pause.ticket_pauses else set())
    by_field = environment is not None and environment in pause.fields.get("environment", [])

    def paused(ts: int) -> bool:
        if stop is not None and ts >= stop:
            return False  # a stopped clock's pauses end at its stop
        if any(begin <= ts < end for begin, end in gaps):
            return True
        if by_field and ts >= now_ts:
            return True
        return status_at(entries, min(ts, now_ts)) in statuses

    counted, minute, due = 0, start, None
    while due is None:
        if stop is None and minute >= now_ts and paused(minute):
            break  # held from now on by a pause with no end: no due instant
        if is_open(calendar, minute) and not paused(minute):
            counted += 1
            if counted == minutes:
                due = minute + 60
        minute += 60
    if stop is not None:
        state = "met" if due is not None and stop <= due else "breached"
    elif due is None:
        state = "paused"
    elif now_ts >= due:
        state = "breached"
    elif paused(now_ts):
        state = "paused"
    else:
        state = "running"
    return state, due, start, stop


def policy_with(targets: dict[str, tuple[int, str]]) -> Policy:
    return Policy.from_mapping(
        {
            "name": "metrics-test",
            "priorities": [{"name": "P1", "label": "Urgent"}],
            "default_priority": "P1",
            "calendars": {"business": {"timezone": "UTC", "hours": {"weekdays": ["09:00-17:00"]}}},
            "metrics": {**CUSTOM, **CLASSIC_AS_EVENTS},
            "plans": {
                "p": {
                    "commitment": "sla",
                    "calendar": "business",
                    "targets": {
                        "P1": {
                            name: {"after": f"{minutes}m", "calendar": calendar}
                            for name, (minutes, calendar) in targets.items()
                        }
                    },
                }
            },
        }
    )


def definition_of(name: str) -> MetricSpec:
    builtin = builtin_definitions(ClockRules())
    if name in builtin:
        return builtin[name]
    return MetricSpec.model_validate({**CUSTOM, **CLASSIC_AS_EVENTS}[name])


_TARGET = st.tuples(st.integers(1, 240), st.sampled_from(["24x7", "business"]))
targets_drawn = st.fixed_dictionaries({name: _TARGET for name in ALL_METRICS})


def decided(policy: Policy, ticket: Ticket, now: datetime, name: str) -> tuple[Any, ...]:
    target = evaluate(ticket, policy, now).targets[name]
    return target.state, target.due_ts, target.started_ts, target.stopped_ts


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    timeline=timelines(),
    later=st.integers(0, 4 * 24 * 60),
    targets=targets_drawn,
    environment=st.sampled_from([None, "production", "waiting_on_vendor"]),
)
def test_every_metric_agrees_with_the_minute_by_minute_model(
    timeline: tuple[datetime, list[Entry]],
    later: int,
    targets: dict[str, tuple[int, str]],
    environment: str | None,
) -> None:
    created, entries = timeline
    now = created + timedelta(minutes=later)
    policy = policy_with(targets)
    ticket = ticket_at(created, entries, now, events=True, environment=environment)
    for name in ALL_METRICS:
        if name == "first_response" and _unrepresentable_first_response(entries, now):
            continue  # the fast path reads the summary fields: see the next test
        minutes, calendar = targets[name]
        expected = model_decision(
            definition_of(name), minutes, calendar, created, entries, now, environment
        )
        assert decided(policy, ticket, now, name) == expected, name


def _unrepresentable_first_response(entries: list[Entry], now: datetime) -> bool:
    """``solved_at`` keeps only the latest solve: a ticket solved before any agent reply and
    reopened since cannot tell the fast path where its first response clock stopped."""
    entries = [e for e in entries if e.at <= now]
    first_reply = next((e.at for e in entries if e.kind == "agent_reply"), None)
    solves = [e.at for e in entries if e.kind == "status" and e.status == "solved"]
    if not solves or (first_reply is not None and first_reply <= solves[0]):
        return False
    return any(e.kind == "status" and e.status == "open" and e.at >= solves[0] for e in entries)


def _unrepresentable_next_update(ticket: Ticket, entries: list[Entry], now: datetime) -> bool:
    """``last_agent_update_at`` keeps only the latest reply: an agent's comment on the solved
    ticket hides the last update before the solve (the replies themselves tell it)."""
    solved = ticket.solved_at
    return solved is not None and any(
        e.kind == "agent_reply" and solved < e.at <= now for e in entries
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    timeline=timelines(),
    later=st.integers(0, 4 * 24 * 60),
    targets=targets_drawn,
)
def test_the_classic_fast_path_agrees_with_the_model_from_the_summary_fields_alone(
    timeline: tuple[datetime, list[Entry]], later: int, targets: dict[str, tuple[int, str]]
) -> None:
    created, entries = timeline
    now = created + timedelta(minutes=later)
    policy = policy_with(targets)
    ticket = ticket_at(created, entries, now, events=False)
    for name in ("first_response", "restoration", "next_update"):
        if name == "first_response" and _unrepresentable_first_response(entries, now):
            continue
        if name == "next_update" and _unrepresentable_next_update(ticket, entries, now):
            continue
        minutes, calendar = targets[name]
        expected = model_decision(
            definition_of(name), minutes, calendar, created, entries, now, None
        )
        assert decided(policy, ticket, now, name) == expected, name  # fmt: skip


def test_a_policy_that_names_no_new_metric_reports_the_classic_three_only() -> None:
    policy = policy_with({"first_response": (60, "24x7")})
    ticket = Ticket(id="T-1", created_at=BASE, plan="p")
    decision = evaluate(ticket, policy, BASE + timedelta(minutes=30))
    assert set(decision.as_json()["state"]) == {"first_response", "restoration", "next_update"}
    assert decision.as_json()["state"]["first_response"] == "running"


def test_new_metrics_are_reported_after_the_classic_three_in_the_json_output() -> None:
    policy = policy_with({"next_reply": (60, "24x7"), "agent_work": (120, "24x7")})
    reply = BASE + timedelta(minutes=10)
    ticket = Ticket(id="T-1", created_at=BASE, plan="p", customer_replies=(reply,))
    output = evaluate(ticket, policy, BASE + timedelta(minutes=30)).as_json()
    assert list(output["state"]) == [
        "first_response",
        "restoration",
        "next_update",
        "next_reply",
        "agent_work",
    ]
    assert output["due"]["next_reply"] == "2026-06-08T07:10:00Z"
    assert output["due"]["agent_work"] == "2026-06-08T08:00:00Z"
    assert output["state"] == {
        "first_response": "none",
        "restoration": "none",
        "next_update": "none",
        "next_reply": "running",
        "agent_work": "running",
    }


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ({"start": ["created"], "stop": ["replied"]}, "'replied' is not an event"),
        ({"start": ["status:waiting"], "stop": ["solved"]}, "'status:waiting' is not an event"),
        ({"start": [], "stop": ["solved"]}, "name at least one event"),
        (
            {"start": ["created"], "stop": ["solved"], "pause": {"statuses": ["paused"]}},
            "'paused' is not a ticket status",
        ),
        (
            {"start": ["created"], "stop": ["solved"], "pause": {"fields": {"subject": ["x"]}}},
            "not a ticket field a pause can read",
        ),
    ],
)
def test_a_bad_metric_definition_is_refused_with_what_to_write(
    definition: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        MetricSpec.model_validate(definition)


def test_a_target_naming_no_metric_is_refused_at_its_key() -> None:
    with pytest.raises(ValidationError) as raised:
        PolicySpec.model_validate(
            {
                "name": "x",
                "priorities": [{"name": "P1", "label": "Urgent"}],
                "default_priority": "P1",
                "metrics": {"vendor_wait": {"start": ["status:on_hold"], "stop": ["solved"]}},
                "plans": {
                    "p": {
                        "commitment": "sla",
                        "calendar": "24x7",
                        "targets": {"P1": {"nxt_reply": "1h", "vendor_wait": "2h"}},
                    }
                },
            }
        )
    assert [(e["type"], e["loc"]) for e in raised.value.errors()] == [
        ("extra_forbidden", ("plans", "p", "targets", "P1", "nxt_reply"))
    ]


def test_a_policy_metric_may_not_take_a_built_in_name() -> None:
    with pytest.raises(ValueError, match="'next_reply' is a built-in metric"):
        Policy.from_mapping(
            {
                "name": "x",
                "priorities": [{"name": "P1", "label": "Urgent"}],
                "default_priority": "P1",
                "metrics": {"next_reply": {"start": ["created"], "stop": ["solved"]}},
                "plans": {"p": {"commitment": "sla", "targets": {}}},
            }
        )


def test_explain_explains_every_metric_the_policy_reports() -> None:
    from bot.explain import explain

    policy = policy_with({"next_reply": (120, "24x7"), "pending_total": (60, "24x7")})
    reply = BASE + timedelta(minutes=10)
    ticket = Ticket(id="T-1", created_at=BASE, plan="p", customer_replies=(reply,))
    text = explain(ticket, policy, BASE + timedelta(minutes=30))
    assert "next reply: due Mon 2026-06-08 08:10 UTC" in text
    assert "starts at customer_reply; stops at agent_reply, solved (cycle: every)" in text
    # Never started (the ticket was never pending): nothing is due.
    assert "pending total: no target for this priority and plan" in text


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"customer_replies": "2026-06-08T07:00:00Z"}, "'customer_replies' must be a list"),
        ({"agent_replies": [7]}, r"'agent_replies'\[0\] must be an ISO 8601 string"),
        ({"agent_replies": ["2026-06-08T07:00:00"]}, r"agent_replies\[0\].*has no offset"),
        ({"customer_replies": ["2026-06-08T05:00:00Z"]}, "at or after created_at"),
        ({"status_changes": [["2026-06-08T07:00:00Z"]]}, r"an \[ISO 8601 instant, status\] pair"),
        ({"status_changes": [["2026-06-08T07:00:00Z", "waiting"]]}, "'waiting'; expected one"),
    ],
)
def test_a_ticket_with_unreadable_events_is_refused_naming_the_field(
    fields: dict[str, Any], message: str
) -> None:
    from bot.errors import TicketError

    with pytest.raises(TicketError, match=message):
        Ticket.from_mapping({"id": "T-1", "created_at": "2026-06-08T06:00:00Z", **fields})


def test_the_summary_fields_are_taken_from_the_events_when_not_given() -> None:
    ticket = Ticket.from_mapping(
        {
            "id": "T-1",
            "created_at": "2026-06-08T06:00:00Z",
            "status": "solved",
            "agent_replies": ["2026-06-08T08:00:00Z", "2026-06-08T07:00:00Z"],
            "status_changes": [
                ["2026-06-08T06:00:00Z", "new"],
                ["2026-06-08T09:00:00Z", "solved"],
                ["2026-06-08T10:00:00Z", "open"],
                ["2026-06-08T11:00:00Z", "solved"],
            ],
        }
    )
    hour = timedelta(hours=1)
    assert ticket.agent_replies == (BASE + hour, BASE + 2 * hour)  # sorted
    assert (ticket.first_response_at, ticket.last_agent_update_at) == (BASE + hour, BASE + 2 * hour)
    assert (ticket.restoration_started_at, ticket.solved_at) == (BASE + 4 * hour, BASE + 5 * hour)


def test_an_unknown_target_key_lists_every_metric_the_policy_knows() -> None:
    """The policy file's error at a misspelt target names the built-in metrics and the
    policy's own, not only the classic three."""
    from slabot.policy_files import PolicyFileError, parse_policy

    text = """\
name: x
priorities:
  - {name: P1, label: Urgent}
default_priority: P1
metrics:
  vendor_wait: {start: ["status:on_hold"], stop: [solved]}
plans:
  p:
    commitment: sla
    calendar: 24x7
    targets:
      P1: {nxt_reply: 1h, vendor_wait: 2h}
"""
    with pytest.raises(PolicyFileError) as caught:
        parse_policy(text, "x.yaml")
    [problem] = caught.value.problems
    assert (problem.line, problem.field) == (12, "plans.p.targets.P1.nxt_reply")
    assert problem.message == (
        "unknown key 'nxt_reply' (did you mean 'next_reply'?); expected one of first_response, "
        "restoration, next_update, next_reply, agent_work, requester_wait, vendor_wait"
    )
