"""``evaluate_many``: each ticket's answer is ``evaluate``'s, decision or error, on the three
shipped policies and on one with every built-in metric and one of its own (tickets with
agent and customer replies and status changes), with the due dates through the calendar
batch path."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.compiled import Policy
from bot.engine import Decision, evaluate, evaluate_many
from bot.errors import CalendarError, SlabotError, TicketError
from bot.ticket import Ticket

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
ZONES = ("Europe/Paris", "America/Los_Angeles", "Asia/Kolkata", "Mars/Olympus", None)
COUNTRIES = ("US", "FR", "SK", "GB", "XX", None)
STATUSES = ("new", "open", "pending", "on_hold", "solved", "closed")
ZOOM = Path(__file__).resolve().parents[2] / "config" / "policies" / "zoom.yaml"


@pytest.fixture(scope="module")
def every_metric() -> Policy:
    """Zoom with targets for next_reply, agent_work, requester_wait and a metric of its own
    on every plan and priority: clocks on the customer's calendar and on 24x7, cycles that
    start and stop on replies and statuses."""
    data = yaml.safe_load(ZOOM.read_text(encoding="utf-8"))
    data["name"] = "zoom-every-metric"
    data["metrics"] = {
        "vendor_hold": {
            "description": "Time on hold waiting on a vendor, added up.",
            "start": ["status:on_hold"],
            "stop": ["status:open", "status:pending", "solved"],
            "cycle": "cumulative",
        }
    }
    for plan in data["plans"].values():
        for targets in plan.get("targets", {}).values():
            targets["next_reply"] = "2h"
            targets["agent_work"] = {"after": "6h", "calendar": "24x7"}
            targets["requester_wait"] = "16h"
            targets["vendor_hold"] = {"after": "24h", "calendar": "24x7"}
    return Policy.from_mapping(data)


def instant(seconds_before_now: int) -> str:
    return (NOW - timedelta(seconds=seconds_before_now)).isoformat()


@st.composite
def ticket_fields(
    draw: st.DrawFn, policy: Policy, number: int, events: bool = False
) -> dict[str, Any]:
    """A ticket as ``slabot evaluate`` takes it: random plans, priorities, zones, countries,
    statuses, replies and pauses, some of them unusable or missing (``events``: also the
    agent and customer replies and status changes metrics read)."""
    created = draw(st.integers(0, 60 * 86_400))
    fields: dict[str, Any] = {"id": f"T-{number}", "created_at": instant(created)}
    fields["plan"] = draw(st.sampled_from([*policy.spec.plans, "no_such_plan", None]))
    fields["priority"] = draw(st.sampled_from([*policy.levels, None]))
    fields["environment"] = draw(st.sampled_from(["production", "staging", None]))
    fields["product_stage"] = draw(st.sampled_from(["ga", "beta", None]))
    fields["urgency"] = draw(st.sampled_from(["high", "low", None]))
    fields["impact"] = draw(st.sampled_from(["high", "medium", None]))
    fields["customer_timezone"] = draw(st.sampled_from(ZONES))
    fields["customer_country"] = draw(st.sampled_from(COUNTRIES))
    status = draw(st.sampled_from(STATUSES))
    fields["status"] = status
    if status in ("solved", "closed") and draw(st.integers(0, 9)):  # 1 in 10: no solved_at
        fields["solved_at"] = instant(draw(st.integers(0, created)))
    if draw(st.booleans()):
        reply = draw(st.integers(0, created))
        fields["first_response_at"] = instant(reply)
        if draw(st.booleans()):
            fields["last_agent_update_at"] = instant(draw(st.integers(0, reply)))
    pauses = []
    for _ in range(draw(st.integers(0, 2))):
        begin = draw(st.integers(0, created))
        end = draw(st.one_of(st.none(), st.integers(0, begin)))
        pauses.append([instant(begin), None if end is None else instant(end)])
    if pauses:
        fields["paused"] = pauses
    if events:
        for name in ("agent_replies", "customer_replies"):
            seconds = draw(st.lists(st.integers(0, created), max_size=4))
            if seconds:
                fields[name] = [instant(s) for s in sorted(seconds, reverse=True)]
        changes = draw(
            st.lists(
                st.tuples(st.integers(0, created), st.sampled_from(["open", "pending", "on_hold"])),
                max_size=4,
            )
        )
        if changes:
            fields["status_changes"] = [
                [instant(at), to] for at, to in sorted(changes, key=lambda c: -c[0])
            ]
    return {k: v for k, v in fields.items() if v is not None}


def answer(ticket: Ticket, policy: Policy) -> Decision | tuple[type, str]:
    try:
        return evaluate(ticket, policy, NOW)
    except SlabotError as error:
        return type(error), str(error)


def comparable(result: Decision | SlabotError) -> Decision | tuple[type, str]:
    return (type(result), str(result)) if isinstance(result, SlabotError) else result


@pytest.mark.parametrize("name", ["cloudtalk", "zoom", "zmanda"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_each_answer_is_the_one_evaluate_gives(
    policies: dict[str, Policy], name: str, data: st.DataObject
) -> None:
    policy = policies[name]
    count = data.draw(st.integers(1, 25), label="tickets")
    tickets = [
        Ticket.from_mapping(data.draw(ticket_fields(policy, number))) for number in range(count)
    ]
    batch = evaluate_many(tickets, policy, NOW)
    assert [comparable(r) for r in batch] == [answer(t, policy) for t in tickets]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_each_answer_is_the_one_evaluate_gives_with_every_metric(
    every_metric: Policy, data: st.DataObject
) -> None:
    count = data.draw(st.integers(1, 40), label="tickets")
    tickets = [
        Ticket.from_mapping(data.draw(ticket_fields(every_metric, number, events=True)))
        for number in range(count)
    ]
    batch = evaluate_many(tickets, every_metric, NOW)
    assert [comparable(r) for r in batch] == [answer(t, every_metric) for t in tickets]


def test_the_metrics_are_decided_and_their_due_dates_batched(
    every_metric: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Enough tickets that the metrics' plain durations go through the numpy pass, and each
    metric is decided (not left at none) where its cycle runs."""
    from bot.business_time import AlwaysOpenCalendar, BusinessCalendar

    passes: list[int] = []
    for kind in (AlwaysOpenCalendar, BusinessCalendar):

        def counted(self: Any, starts: Any, seconds: Any, real: Any = kind.due_many_ts) -> Any:
            passes.append(len(starts))
            return real(self, starts, seconds)

        monkeypatch.setattr(kind, "due_many_ts", counted)
    tickets = [
        Ticket.from_mapping(
            {
                "id": f"M-{n}",
                "created_at": instant(86_400 + 600 * n),
                "plan": "premier",
                "priority": "P2",
                "environment": "production",
                "customer_timezone": "Europe/Paris",
                "first_response_at": instant(80_000 + 600 * n),
                "agent_replies": [instant(80_000 + 600 * n)],
                "customer_replies": [instant(3_600 + 60 * n)],
                "status_changes": [[instant(7_200), "on_hold"]] if n % 2 else [],
                "status": "on_hold" if n % 2 else "open",
            }
        )
        for n in range(60)
    ]
    batch = evaluate_many(tickets, every_metric, NOW)
    assert sum(passes) >= 60 * 3  # the metrics' clocks among those the numpy pass answered
    assert batch == [evaluate(t, every_metric, NOW) for t in tickets]
    for decision in batch:
        assert isinstance(decision, Decision)
        for name in ("next_reply", "agent_work", "requester_wait"):
            assert decision.targets[name].state != "none", (decision.ticket_id, name)
    held = [d for d in batch if isinstance(d, Decision) and d.ticket_id.endswith(("1", "3"))]
    assert all(d.targets["vendor_hold"].state != "none" for d in held)


def test_a_ticket_that_fails_fails_alone(cloudtalk: Policy) -> None:
    good = Ticket.from_mapping({"id": "1", "created_at": instant(3600), "plan": "professional"})
    unsolved = Ticket.from_mapping(
        {"id": "2", "created_at": instant(3600), "plan": "professional", "status": "solved"}
    )
    # Built directly: parsing would refuse the year before the engine sees it.
    ancient = replace(good, id="3", created_at=datetime(999, 6, 1, 10, tzinfo=UTC))
    first, second, third, fourth = evaluate_many([good, unsolved, ancient, good], cloudtalk, NOW)
    assert first == fourth == evaluate(good, cloudtalk, NOW)
    assert isinstance(second, TicketError) and "needs 'solved_at'" in str(second)
    # A calendar refuses the year: the batch falls back to per call, and only it fails.
    with pytest.raises(CalendarError) as refused:
        evaluate(ancient, cloudtalk, NOW)
    assert isinstance(third, CalendarError) and str(third) == str(refused.value)


def test_a_naive_now_is_refused(cloudtalk: Policy) -> None:
    with pytest.raises(TicketError, match="no time zone"):
        evaluate_many([], cloudtalk, datetime(2026, 11, 23))
