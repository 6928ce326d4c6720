"""threshold_instant: when a fraction of a target's open time has elapsed, counted as due is."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pytest
from engine_support import LOS_ANGELES, decide, make_ticket

import bot.engine
from bot.compiled import Policy
from bot.engine import evaluate, threshold_instant

TARGETS = ("first_response", "restoration", "next_update")
# Zoom premier P2: first response 4h and restoration 8h on the customer's calendar (Los
# Angeles, weekdays 09:00-17:00, US holidays), next update 24h elapsed. Restoration pauses.
MONDAY_0900 = "2026-11-16T09:00:00-08:00"
PREMIER_P2 = {
    "created_at": MONDAY_0900,
    "plan": "premier",
    "priority": "P2",
    "environment": "production",
    "channel": "phone",
}


def local(instant: datetime | None) -> str | None:
    return None if instant is None else instant.astimezone(LOS_ANGELES).isoformat()


def instants(policy: Policy, now: str, fraction: float, **fields: object) -> dict[str, str | None]:
    ticket = make_ticket(**fields)
    at = datetime.fromisoformat(now)
    decision = evaluate(ticket, policy, at)
    return {
        name: local(threshold_instant(ticket, policy, decision, name, fraction, at))
        for name in TARGETS
    }


def test_the_docstring_example_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    finder = doctest.DocTestFinder()
    (test,) = finder.find(bot.engine.threshold_instant, "threshold_instant", globs=vars(bot.engine))
    runner = doctest.DocTestRunner()
    runner.run(test)
    assert (runner.failures, runner.tries) == (0, 7)


def test_three_quarters_of_business_hours_across_a_night(zoom: Policy) -> None:
    fields = {**PREMIER_P2, "created_at": "2026-11-16T14:00:00-08:00"}
    found = instants(zoom, "2026-11-16T15:00:00-08:00", 0.75, **fields)
    assert found == {
        "first_response": "2026-11-16T17:00:00-08:00",  # 3h of 4h: at closing, not Tuesday
        "restoration": "2026-11-17T12:00:00-08:00",  # 6h of 8h: 3h Monday, 3h Tuesday
        "next_update": "2026-11-17T08:00:00-08:00",  # 18h of 24h elapsed
    }


def test_a_public_holiday_is_skipped(zoom: Policy) -> None:
    # Wednesday before Thanksgiving 15:00: 2h that day, then Friday.
    fields = {**PREMIER_P2, "created_at": "2026-11-25T15:00:00-08:00"}
    found = instants(zoom, "2026-11-25T15:00:00-08:00", 0.75, **fields)
    assert found["restoration"] == "2026-11-27T13:00:00-08:00"


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"status": "pending", "paused": [["2026-11-16T11:00:00-08:00", None]]},
        {"paused": [["2026-11-16T11:00:00-08:00", "2026-11-17T10:00:00-08:00"]]},
        {"first_response_at": "2026-11-16T10:00:00-08:00"},
        {"status": "solved", "solved_at": "2026-11-17T16:00:00-08:00"},
        {"priority": "P3"},  # first response: close of the next business day
        {"priority": "P1"},  # 24x7 targets
        {"restoration_started_at": "2026-11-18T09:30:00-08:00"},
    ],
    ids=["plain", "paused-now", "paused-overnight", "replied", "solved", "nbd", "24x7", "reopened"],
)
def test_the_whole_target_is_the_due_instant(zoom: Policy, fields: dict[str, object]) -> None:
    ticket = make_ticket(**{**PREMIER_P2, **fields})
    now = datetime(2026, 11, 18, 20, 0, tzinfo=UTC)
    decision = evaluate(ticket, zoom, now)
    for name, target in decision.targets.items():
        assert threshold_instant(ticket, zoom, decision, name, 1.0, now) == target.due, name


def test_a_closed_pause_moves_the_instant_by_the_open_time_it_held(zoom: Policy) -> None:
    # Paused Monday 12:00 -> Tuesday 10:00: 1h of Tuesday's open time and Monday's last 5h.
    fields = {**PREMIER_P2, "paused": [["2026-11-16T12:00:00-08:00", "2026-11-17T10:00:00-08:00"]]}
    found = instants(zoom, "2026-11-17T11:00:00-08:00", 0.75, **fields)
    # 3h Monday before the pause, then 3h from Tuesday 10:00.
    assert found["restoration"] == "2026-11-17T13:00:00-08:00"
    assert found["first_response"] == "2026-11-16T12:00:00-08:00"  # first response never pauses


def test_an_open_ended_pause_holds_only_what_it_has_not_reached(zoom: Policy) -> None:
    fields = {**PREMIER_P2, "status": "pending", "paused": [["2026-11-16T12:00:00-08:00", None]]}
    assert instants(zoom, "2026-11-16T13:00:00-08:00", 0.25, **fields)["restoration"] == (
        "2026-11-16T11:00:00-08:00"
    )
    assert instants(zoom, "2026-11-16T13:00:00-08:00", 0.75, **fields)["restoration"] is None


def test_waiting_on_the_customer_without_a_recorded_start_pauses_from_now(zoom: Policy) -> None:
    now = "2026-11-16T10:00:00-08:00"
    paused = instants(zoom, now, 0.5, **{**PREMIER_P2, "status": "pending"})
    assert paused["restoration"] is None
    assert instants(zoom, now, 0.1, **{**PREMIER_P2, "status": "pending"})["restoration"] == (
        "2026-11-16T09:48:00-08:00"
    )


def test_next_business_day_counts_the_open_time_up_to_that_close(zoom: Policy) -> None:
    # Created Friday 20:00: due Monday 17:00; the allowed time is Monday's 8 open hours.
    fields = {**PREMIER_P2, "priority": "P3", "created_at": "2026-11-20T20:00:00-08:00"}
    found = instants(zoom, "2026-11-21T10:00:00-08:00", 0.5, **fields)
    assert found["first_response"] == "2026-11-23T13:00:00-08:00"


def test_fractions_are_exact_and_rounded_up_to_the_second(zoom: Policy) -> None:
    # P1 first response: 1h on 24x7. 0.9 of it is 3240 s exactly (not 3241 from 0.9 * 3600).
    fields = {**PREMIER_P2, "priority": "P1"}
    assert instants(zoom, MONDAY_0900, 0.9, **fields)["first_response"] == (
        "2026-11-16T09:54:00-08:00"
    )
    ticket = make_ticket(**fields)
    now = datetime.fromisoformat(MONDAY_0900)
    decision = evaluate(ticket, zoom, now)
    third = threshold_instant(ticket, zoom, decision, "first_response", Fraction(1, 7), now)
    assert third == now + timedelta(seconds=515)  # 3600 / 7 = 514.28...: rounded up


def test_past_the_target(zoom: Policy) -> None:
    found = instants(zoom, MONDAY_0900, 1.5, **PREMIER_P2)
    assert found["restoration"] == "2026-11-17T13:00:00-08:00"  # 12h: 8h Monday, 4h Tuesday


def test_the_instants_grow_with_the_fraction(zoom: Policy) -> None:
    fractions = [0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.25]
    series = [instants(zoom, MONDAY_0900, f, **PREMIER_P2)["restoration"] for f in fractions]
    assert series == sorted(series)  # type: ignore[type-var]
    assert len(set(series)) == len(series)


def test_no_target_no_instant(zoom: Policy) -> None:
    # Premier P2 sets no target the ticket lacks; a beta-less standard P3 has no first response.
    decision = decide(zoom, MONDAY_0900, **{**PREMIER_P2, "plan": "standard", "priority": "P3"})
    ticket = make_ticket(**{**PREMIER_P2, "plan": "standard", "priority": "P3"})
    now = datetime.fromisoformat(MONDAY_0900)
    assert decision.targets["first_response"].state == "none"
    assert threshold_instant(ticket, zoom, decision, "first_response", 0.75, now) is None


@pytest.mark.parametrize(
    ("target", "fraction", "message"),
    [("resolution", 0.5, "target 'resolution'"), ("restoration", 0, "more than 0")],
)
def test_bad_arguments(zoom: Policy, target: str, fraction: float, message: str) -> None:
    ticket = make_ticket(**PREMIER_P2)
    now = datetime.fromisoformat(MONDAY_0900)
    decision = evaluate(ticket, zoom, now)
    with pytest.raises(ValueError, match=message):
        threshold_instant(ticket, zoom, decision, target, fraction, now)
