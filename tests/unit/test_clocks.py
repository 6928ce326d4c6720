"""Clock rules of POLICIES.md: when each clock starts, stops, pauses, and its state at ``now``.

Most tests use a zoom premier ticket opened Tuesday 2026-06-09 10:00 in Los Angeles:
P1 is due 1 h / 4 h / every 1 h (24x7); P2 is due 4 business h (14:00), restoration
8 business h (Wednesday 10:00) and an update every 24 h (Wednesday 10:00).
"""

from __future__ import annotations

import pytest
from engine_support import BRATISLAVA, LOS_ANGELES, decide, dues, local_iso, states

from bot.errors import TicketError

CREATED = "2026-06-09T10:00:00-07:00"
PREMIER_P2 = {
    "created_at": CREATED,
    "plan": "premier",
    "priority": "P2",
    "environment": "production",
}
PREMIER_P1 = {**PREMIER_P2, "priority": "P1", "channel": "phone"}


def due(decision, target: str) -> str | None:
    return local_iso(decision.targets[target].due, LOS_ANGELES)


# First response: stops at the first public agent reply.

CLOUDTALK_P1_PROFESSIONAL = {
    "created_at": "2026-06-09T10:00:00+02:00",  # due 13:00 Bratislava
    "plan": "professional",
    "priority": "P1",
    "environment": "production",
}


@pytest.mark.parametrize(
    ("now", "first_response_at", "state"),
    [
        pytest.param("2026-06-09T12:59:59+02:00", None, "running", id="no-reply-before-due"),
        pytest.param("2026-06-09T13:00:00+02:00", None, "breached", id="no-reply-at-due"),
        pytest.param("2026-06-10T09:00:00+02:00", None, "breached", id="no-reply-after-due"),
        pytest.param(
            "2026-06-09T11:30:00+02:00", "2026-06-09T11:00:00+02:00", "met", id="reply-before-due"
        ),
        pytest.param(
            "2026-06-09T15:00:00+02:00", "2026-06-09T13:00:00+02:00", "met", id="reply-at-due"
        ),
        pytest.param(
            "2026-06-09T15:00:00+02:00",
            "2026-06-09T13:00:01+02:00",
            "breached",
            id="reply-a-second-late",
        ),
    ],
)
def test_first_response_state_at_now(cloudtalk, now, first_response_at, state) -> None:
    decision = decide(
        cloudtalk, now=now, first_response_at=first_response_at, **CLOUDTALK_P1_PROFESSIONAL
    )
    target = decision.targets["first_response"]
    assert local_iso(target.due, BRATISLAVA) == "2026-06-09T13:00:00+02:00"
    assert target.state == state


def test_first_response_stops_at_the_first_public_agent_reply(zoom) -> None:
    decision = decide(
        zoom,
        now="2026-06-10T12:00:00-07:00",
        first_response_at="2026-06-09T10:30:00-07:00",
        last_agent_update_at="2026-06-10T09:00:00-07:00",
        **PREMIER_P1,
    )
    first_response = decision.targets["first_response"]
    assert first_response.state == "met"
    assert local_iso(first_response.stopped_at, LOS_ANGELES) == "2026-06-09T10:30:00-07:00"


def test_first_response_is_not_paused_while_the_ticket_waits_on_the_customer(zoom) -> None:
    decision = decide(
        zoom,
        now="2026-06-09T12:00:00-07:00",
        status="pending",
        paused=[["2026-06-09T11:00:00-07:00", None]],
        **PREMIER_P2,
    )
    assert due(decision, "first_response") == "2026-06-09T14:00:00-07:00"
    assert decision.targets["first_response"].state == "running"


def test_a_pending_ticket_still_breaches_first_response(zoom) -> None:
    decision = decide(zoom, now="2026-06-09T14:00:00-07:00", status="pending", **PREMIER_P2)
    assert decision.targets["first_response"].state == "breached"


# Restoration: stops when the ticket is solved.


@pytest.mark.parametrize("status", ["solved", "closed"])
@pytest.mark.parametrize(
    ("solved_at", "state"),
    [
        pytest.param("2026-06-10T09:59:59-07:00", "met", id="before-due"),
        pytest.param("2026-06-10T10:00:00-07:00", "met", id="at-due"),
        pytest.param("2026-06-10T10:00:01-07:00", "breached", id="after-due"),
    ],
)
def test_restoration_stops_when_the_ticket_is_solved(zoom, status, solved_at, state) -> None:
    decision = decide(
        zoom,
        now="2026-06-11T09:00:00-07:00",
        status=status,
        solved_at=solved_at,
        first_response_at="2026-06-09T11:00:00-07:00",
        **PREMIER_P2,
    )
    restoration = decision.targets["restoration"]
    assert due(decision, "restoration") == "2026-06-10T10:00:00-07:00"
    assert restoration.state == state
    assert local_iso(restoration.stopped_at, LOS_ANGELES) == solved_at


def test_restoration_keeps_running_after_the_first_reply(zoom) -> None:
    decision = decide(
        zoom,
        now="2026-06-09T16:00:00-07:00",
        first_response_at="2026-06-09T10:30:00-07:00",
        **PREMIER_P2,
    )
    assert states(decision) == {
        "first_response": "met",
        "restoration": "running",
        "next_update": "running",
    }


@pytest.mark.parametrize("status", ["solved", "closed"])
def test_a_solved_ticket_without_solved_at_is_refused(zoom, status) -> None:
    with pytest.raises(TicketError, match="solved_at"):
        decide(zoom, now="2026-06-10T12:00:00-07:00", status=status, **PREMIER_P2)


def test_a_reopened_ticket_starts_a_new_restoration_cycle(zoom) -> None:
    decision = decide(
        zoom,
        now="2026-06-10T11:00:00-07:00",
        created_at="2026-06-08T10:00:00-07:00",
        plan="premier",
        priority="P1",
        environment="production",
        channel="phone",
        status="open",
        first_response_at="2026-06-08T10:10:00-07:00",
        solved_at="2026-06-08T12:00:00-07:00",  # the earlier cycle's solve no longer stops it
        restoration_started_at="2026-06-10T10:00:00-07:00",
    )
    restoration = decision.targets["restoration"]
    assert local_iso(restoration.started_at, LOS_ANGELES) == "2026-06-10T10:00:00-07:00"
    assert due(decision, "restoration") == "2026-06-10T14:00:00-07:00"
    assert restoration.state == "running"
    assert decision.targets["first_response"].state == "met"


# Update cadence: restarts at every public agent update.


@pytest.mark.parametrize(
    ("first_response_at", "last_agent_update_at", "expected_due"),
    [
        pytest.param(None, None, "2026-06-09T11:00:00-07:00", id="from-creation"),
        pytest.param(
            "2026-06-09T10:20:00-07:00", None, "2026-06-09T11:20:00-07:00", id="from-first-reply"
        ),
        pytest.param(
            "2026-06-09T10:20:00-07:00",
            "2026-06-09T12:30:00-07:00",
            "2026-06-09T13:30:00-07:00",
            id="from-last-update",
        ),
    ],
)
def test_update_clock_restarts_at_each_public_agent_update(
    zoom, first_response_at, last_agent_update_at, expected_due
) -> None:
    decision = decide(
        zoom,
        now="2026-06-09T12:45:00-07:00",
        first_response_at=first_response_at,
        last_agent_update_at=last_agent_update_at,
        **PREMIER_P1,
    )
    assert due(decision, "next_update") == expected_due


def test_update_clock_breaches_when_no_update_comes_in_time(zoom) -> None:
    decision = decide(
        zoom,
        now="2026-06-09T13:30:00-07:00",
        first_response_at="2026-06-09T10:20:00-07:00",
        last_agent_update_at="2026-06-09T12:30:00-07:00",
        **PREMIER_P1,
    )
    assert decision.targets["next_update"].state == "breached"


def test_update_clock_stops_when_the_ticket_is_solved(zoom) -> None:
    decision = decide(
        zoom,
        now="2026-06-12T00:00:00-07:00",
        status="solved",
        solved_at="2026-06-09T10:50:00-07:00",
        first_response_at="2026-06-09T10:20:00-07:00",
        **PREMIER_P1,
    )
    assert states(decision) == {"first_response": "met", "restoration": "met", "next_update": "met"}


# Waiting on the customer pauses restoration and update, not first response.


@pytest.mark.parametrize("status", ["pending", "on_hold"])
def test_waiting_on_the_customer_pauses_restoration_and_update(zoom, status) -> None:
    decision = decide(zoom, now="2026-06-09T12:00:00-07:00", status=status, **PREMIER_P2)
    assert states(decision) == {
        "first_response": "running",
        "restoration": "paused",
        "next_update": "paused",
    }
    assert dues(decision, LOS_ANGELES) == ("2026-06-09T14:00:00-07:00", None, None)


def test_an_explicit_pause_pushes_restoration_and_update_back(zoom) -> None:
    decision = decide(
        zoom,
        now="2026-06-09T13:30:00-07:00",
        paused=[["2026-06-09T11:00:00-07:00", "2026-06-09T13:00:00-07:00"]],
        **PREMIER_P2,
    )
    # Restoration: 1 h before the pause, 4 h Tuesday afternoon, 3 h Wednesday.
    # Update: 24 h of real time plus the 2 h paused.
    assert dues(decision, LOS_ANGELES) == (
        "2026-06-09T14:00:00-07:00",
        "2026-06-10T12:00:00-07:00",
        "2026-06-10T12:00:00-07:00",
    )
    assert set(states(decision).values()) == {"running"}


def test_a_clock_is_paused_during_a_recorded_pause(zoom) -> None:
    decision = decide(
        zoom,
        now="2026-06-09T12:00:00-07:00",
        paused=[["2026-06-09T11:00:00-07:00", "2026-06-09T13:00:00-07:00"]],
        **PREMIER_P2,
    )
    assert states(decision) == {
        "first_response": "running",
        "restoration": "paused",
        "next_update": "paused",
    }


def test_a_pause_outside_business_hours_moves_only_the_24x7_clock(zoom) -> None:
    decision = decide(
        zoom,
        now="2026-06-10T09:00:00-07:00",
        paused=[["2026-06-09T18:00:00-07:00", "2026-06-10T08:00:00-07:00"]],
        **PREMIER_P2,
    )
    assert due(decision, "restoration") == "2026-06-10T10:00:00-07:00"
    assert due(decision, "next_update") == "2026-06-11T00:00:00-07:00"


def test_an_open_ended_pause_holds_the_clock_whatever_the_status(zoom) -> None:
    decision = decide(
        zoom,
        now="2026-06-12T10:00:00-07:00",
        paused=[["2026-06-09T11:00:00-07:00", None]],
        **PREMIER_P2,
    )
    assert states(decision)["restoration"] == "paused"
    assert decision.targets["restoration"].due is None


def test_a_pending_ticket_is_paused_from_the_recorded_start_of_its_pause(zoom) -> None:
    # Without the recorded start it would count as running until now and be breached.
    decision = decide(
        zoom,
        now="2026-06-12T10:00:00-07:00",
        status="pending",
        paused=[["2026-06-09T11:00:00-07:00", None]],
        **PREMIER_P2,
    )
    assert states(decision)["restoration"] == "paused"


def test_a_pending_ticket_without_a_recorded_pause_is_judged_up_to_now(zoom) -> None:
    decision = decide(zoom, now="2026-06-12T10:00:00-07:00", status="pending", **PREMIER_P2)
    assert states(decision)["restoration"] == "breached"


def test_a_pause_still_open_at_the_solve_ends_there(zoom) -> None:
    decision = decide(
        zoom,
        now="2026-06-12T10:00:00-07:00",
        status="solved",
        solved_at="2026-06-09T13:00:00-07:00",
        first_response_at="2026-06-09T10:30:00-07:00",
        paused=[["2026-06-09T11:00:00-07:00", None]],
        **PREMIER_P2,
    )
    assert due(decision, "restoration") == "2026-06-10T12:00:00-07:00"
    assert states(decision)["restoration"] == "met"


# Targets the policy does not set.


def test_a_target_marked_none_has_no_due_date_and_state_none(zoom) -> None:
    decision = decide(zoom, now=CREATED, created_at=CREATED, plan="standard", priority="P3")
    assert decision.targets["first_response"].state == "none"
    assert decision.targets["restoration"].state == "none"
    assert decision.targets["first_response"].due is None


def test_a_ticket_without_a_plan_has_no_targets(zoom) -> None:
    decision = decide(zoom, now=CREATED, created_at=CREATED, priority="P1")
    assert set(states(decision).values()) == {"none"}
    assert decision.commitment is None


def test_an_unknown_plan_gets_no_targets_a_tag_and_a_note_without_a_default_plan(zoom) -> None:
    decision = decide(zoom, now=CREATED, created_at=CREATED, plan="platinum", priority="P3")
    assert set(states(decision).values()) == {"none"}
    assert (decision.plan, decision.commitment, decision.unknown_plan) == (None, None, "platinum")
    assert decision.tags == ("sla_unknown_plan",)
    assert decision.unknown_plan_note == decision.notes[-1]
    assert decision.notes[-1].startswith(
        "plan 'platinum' is not in policy 'zoom' (known plans: premier, premier_assurance, "
    )


def test_an_unknown_plan_is_evaluated_under_the_default_plan(zoom) -> None:
    from bot.compiled import Policy

    with_default = Policy.from_mapping({**zoom.spec.model_dump(), "default_plan": "premier"})
    unknown = decide(with_default, now=CREATED, **{**PREMIER_P2, "plan": "platinum"})
    known = decide(with_default, now=CREATED, **PREMIER_P2)
    assert (unknown.plan, unknown.commitment) == ("premier", known.commitment)
    assert dues(unknown, LOS_ANGELES) == dues(known, LOS_ANGELES)
    assert unknown.tags == tuple(sorted({*known.tags, "sla_unknown_plan"}))
    assert "evaluated under the default plan 'premier'" in unknown.notes[-1]


def test_the_unknown_plan_tag_is_a_policy_setting(zoom) -> None:
    from bot.compiled import Policy

    untagged = Policy.from_mapping({**zoom.spec.model_dump(), "unknown_plan_tag": None})
    decision = decide(untagged, now=CREATED, created_at=CREATED, plan="platinum")
    assert decision.tags == () and decision.unknown_plan == "platinum"


def test_an_alias_or_no_plan_is_not_an_unknown_plan(zmanda) -> None:
    aliased = next(iter(zmanda.spec.plan_aliases))
    for plan in (aliased, None):
        decision = decide(zmanda, now=CREATED, created_at=CREATED, plan=plan)
        assert decision.unknown_plan is None and "sla_unknown_plan" not in decision.tags


def test_next_change_is_the_earliest_running_due_date(zoom) -> None:
    decision = decide(zoom, now="2026-06-09T10:30:00-07:00", **PREMIER_P2)
    assert local_iso(decision.next_change_at, LOS_ANGELES) == "2026-06-09T14:00:00-07:00"
