"""``evaluate_many``: each ticket's answer is ``evaluate``'s, decision or error, on the three
shipped policies, with the due dates through the calendar batch path."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
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


def instant(seconds_before_now: int) -> str:
    return (NOW - timedelta(seconds=seconds_before_now)).isoformat()


@st.composite
def ticket_fields(draw: st.DrawFn, policy: Policy, number: int) -> dict[str, Any]:
    """A ticket as ``slabot evaluate`` takes it: random plans, priorities, zones, countries,
    statuses, replies and pauses, some of them unusable or missing."""
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
