"""Every table of POLICIES.md, checked cell by cell against the three shipped policy files.

Starts are chosen so each due instant can be worked out by hand: a Tuesday 10:00 local
start in a week without public holidays (2026-06-08..2026-06-17, checked against the
``holidays`` package below), a Friday 16:30 start per business calendar, and holiday
cases whose dates come from the ``holidays`` package.
"""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest
from engine_support import (
    BRATISLAVA,
    LOS_ANGELES,
    TARGET_NAMES,
    at,
    decide,
    dues,
    first_response_due,
    holiday,
    is_holiday,
    local_iso,
)

TUESDAY_BRATISLAVA = "2026-06-09T10:00:00+02:00"
FRIDAY_BRATISLAVA = "2026-06-12T16:30:00+02:00"
TUESDAY_LOS_ANGELES = "2026-06-09T10:00:00-07:00"
FRIDAY_LOS_ANGELES = "2026-06-12T16:30:00-07:00"
ZOOM_PLANS = ("standard", "premier", "premier_assurance", "premier_plus", "premier_elite")
PRODUCTION_BY_PHONE = {"environment": "production", "channel": "phone"}


def one_day(day: date, days: int = 1) -> date:
    return day + timedelta(days=days)


@pytest.mark.parametrize("country", ["SK", "US"])
def test_the_chosen_weeks_have_no_public_holidays(country: str) -> None:
    for offset in range(10):
        day = date(2026, 6, 8) + timedelta(days=offset)
        assert not is_holiday(country, day), f"{country} {day} is a holiday: pick another week"


# §1 cloudtalk: plan x priority first-response targets.

CLOUDTALK_FROM_TUESDAY_10 = [
    # plan, priority, first response due (Europe/Bratislava)
    ("basic", "P1", None),
    ("basic", "P2", None),
    ("basic", "P3", None),
    ("professional", "P1", "2026-06-09T13:00:00+02:00"),  # 3 business h
    ("professional", "P2", "2026-06-09T16:00:00+02:00"),  # 6 business h
    ("professional", "P3", "2026-06-10T11:00:00+02:00"),  # 7 h Tue + 2 h Wed
    ("advanced", "P1", "2026-06-09T11:00:00+02:00"),  # 1 h 24x7
    ("advanced", "P2", "2026-06-09T13:00:00+02:00"),  # 3 business h
    ("advanced", "P3", "2026-06-09T16:00:00+02:00"),  # 6 business h
]

CLOUDTALK_FROM_FRIDAY_1630 = [
    ("basic", "P1", None),
    ("basic", "P2", None),
    ("basic", "P3", None),
    ("professional", "P1", "2026-06-15T11:30:00+02:00"),  # 0.5 h Fri + 2.5 h Mon
    ("professional", "P2", "2026-06-15T14:30:00+02:00"),  # 0.5 h Fri + 5.5 h Mon
    ("professional", "P3", "2026-06-16T09:30:00+02:00"),  # 0.5 h Fri + 8 h Mon + 0.5 h Tue
    ("advanced", "P1", "2026-06-12T17:30:00+02:00"),  # 1 h 24x7, whatever the weekday
    ("advanced", "P2", "2026-06-15T11:30:00+02:00"),
    ("advanced", "P3", "2026-06-15T14:30:00+02:00"),
]


def _cells(rows):
    return [pytest.param(*row, id=f"{row[0]}-{row[1]}") for row in rows]


@pytest.mark.parametrize(("plan", "priority", "expected_due"), _cells(CLOUDTALK_FROM_TUESDAY_10))
def test_cloudtalk_first_response_from_a_tuesday_morning(
    cloudtalk, plan, priority, expected_due
) -> None:
    decision = decide(
        cloudtalk,
        now=TUESDAY_BRATISLAVA,
        created_at=TUESDAY_BRATISLAVA,
        plan=plan,
        priority=priority,
        environment="production",
    )
    assert decision.priority == priority
    assert dues(decision, BRATISLAVA) == (expected_due, None, None)


@pytest.mark.parametrize(("plan", "priority", "expected_due"), _cells(CLOUDTALK_FROM_FRIDAY_1630))
def test_cloudtalk_first_response_from_a_friday_afternoon_resumes_on_monday(
    cloudtalk, plan, priority, expected_due
) -> None:
    decision = decide(
        cloudtalk,
        now=FRIDAY_BRATISLAVA,
        created_at=FRIDAY_BRATISLAVA,
        plan=plan,
        priority=priority,
        environment="production",
    )
    assert dues(decision, BRATISLAVA) == (expected_due, None, None)


@pytest.mark.parametrize(
    ("created_at", "expected_due"),
    [
        pytest.param("2026-06-13T11:00:00+02:00", "2026-06-15T12:00:00+02:00", id="saturday"),
        pytest.param("2026-06-09T07:00:00+02:00", "2026-06-09T12:00:00+02:00", id="before-opening"),
        pytest.param("2026-06-09T19:00:00+02:00", "2026-06-10T12:00:00+02:00", id="after-closing"),
        pytest.param(
            "2026-06-09T14:00:00+02:00", "2026-06-09T17:00:00+02:00", id="ends-at-closing"
        ),
        pytest.param("2026-06-09T07:00:00Z", "2026-06-09T12:00:00+02:00", id="utc-input"),
    ],
)
def test_cloudtalk_business_hours_count_only_while_bratislava_is_open(
    cloudtalk, created_at, expected_due
) -> None:
    decision = decide(
        cloudtalk,
        now=created_at,
        created_at=created_at,
        plan="professional",
        priority="P1",
        environment="production",
    )
    assert local_iso(decision.targets["first_response"].due, BRATISLAVA) == expected_due


def test_cloudtalk_business_hours_skip_a_slovak_holiday(cloudtalk) -> None:
    epiphany = holiday("SK", 2026, "Epiphany")
    day_before, day_after = one_day(epiphany, -1), one_day(epiphany)
    assert day_before.weekday() < 5 and not is_holiday("SK", day_before)
    assert day_after.weekday() < 5 and not is_holiday("SK", day_after)
    created_at = at(day_before, "16:00", BRATISLAVA)

    decision = decide(
        cloudtalk,
        now=created_at,
        created_at=created_at,
        plan="professional",
        priority="P1",
        environment="production",
    )

    # 1 h on the day before, none on the holiday, 2 h the day after.
    assert first_response_due(decision, BRATISLAVA) == at(day_after, "11:00", BRATISLAVA)


def test_cloudtalk_business_hours_skip_the_easter_weekend(cloudtalk) -> None:
    good_friday = holiday("SK", 2026, "Good Friday")
    easter_monday = holiday("SK", 2026, "Easter Monday")
    created_at = at(one_day(good_friday, -1), "16:30", BRATISLAVA)

    decision = decide(
        cloudtalk,
        now=created_at,
        created_at=created_at,
        plan="professional",
        priority="P1",
        environment="production",
    )

    expected = at(one_day(easter_monday), "11:30", BRATISLAVA)
    assert first_response_due(decision, BRATISLAVA) == expected


def test_cloudtalk_24x7_hour_is_sixty_real_minutes_across_the_spring_dst_change(cloudtalk) -> None:
    # 2026-03-29 02:00 CET becomes 03:00 CEST in Bratislava.
    decision = decide(
        cloudtalk,
        now="2026-03-29T01:30:00+01:00",
        created_at="2026-03-29T01:30:00+01:00",
        plan="advanced",
        priority="P1",
        environment="production",
    )
    assert local_iso(decision.targets["first_response"].due, BRATISLAVA) == (
        "2026-03-29T03:30:00+02:00"
    )


@pytest.mark.parametrize("plan", ["basic", "professional", "advanced"])
def test_every_cloudtalk_plan_is_a_guarantee(cloudtalk, plan) -> None:
    decision = decide(cloudtalk, now=TUESDAY_BRATISLAVA, created_at=TUESDAY_BRATISLAVA, plan=plan)
    assert decision.commitment == "sla"


# §2 zoom: plan x priority first response / restoration / update cadence.

ZOOM_STANDARD_FROM_TUESDAY_10 = {
    # priority: (first response, restoration, next update) due, America/Los_Angeles
    "P1": ("2026-06-09T14:00:00-07:00", None, "2026-06-10T10:00:00-07:00"),
    "P2": ("2026-06-10T10:00:00-07:00", None, "2026-06-12T22:00:00-07:00"),
    "P3": (None, None, "2026-06-16T10:00:00-07:00"),
    "P4": (None, None, "2026-06-16T10:00:00-07:00"),
}
ZOOM_PREMIER_FROM_TUESDAY_10 = {
    "P1": ("2026-06-09T11:00:00-07:00", "2026-06-09T14:00:00-07:00", "2026-06-09T11:00:00-07:00"),
    "P2": ("2026-06-09T14:00:00-07:00", "2026-06-10T10:00:00-07:00", "2026-06-10T10:00:00-07:00"),
    "P3": ("2026-06-10T17:00:00-07:00", None, "2026-06-12T22:00:00-07:00"),
    "P4": ("2026-06-10T17:00:00-07:00", None, "2026-06-16T10:00:00-07:00"),
}
ZOOM_STANDARD_FROM_FRIDAY_1630 = {
    "P1": ("2026-06-12T20:30:00-07:00", None, "2026-06-13T16:30:00-07:00"),
    "P2": ("2026-06-15T16:30:00-07:00", None, "2026-06-16T04:30:00-07:00"),
    "P3": (None, None, "2026-06-19T16:30:00-07:00"),
    "P4": (None, None, "2026-06-19T16:30:00-07:00"),
}
ZOOM_PREMIER_FROM_FRIDAY_1630 = {
    "P1": ("2026-06-12T17:30:00-07:00", "2026-06-12T20:30:00-07:00", "2026-06-12T17:30:00-07:00"),
    "P2": ("2026-06-15T12:30:00-07:00", "2026-06-15T16:30:00-07:00", "2026-06-13T16:30:00-07:00"),
    "P3": ("2026-06-15T17:00:00-07:00", None, "2026-06-16T04:30:00-07:00"),
    "P4": ("2026-06-15T17:00:00-07:00", None, "2026-06-19T16:30:00-07:00"),
}


def _zoom_cells(standard, premier):
    return [
        pytest.param(
            plan,
            priority,
            (standard if plan == "standard" else premier)[priority],
            id=f"{plan}-{priority}",
        )
        for plan in ZOOM_PLANS
        for priority in ("P1", "P2", "P3", "P4")
    ]


@pytest.mark.parametrize(
    ("plan", "priority", "expected_dues"),
    _zoom_cells(ZOOM_STANDARD_FROM_TUESDAY_10, ZOOM_PREMIER_FROM_TUESDAY_10),
)
def test_zoom_targets_from_a_tuesday_morning(zoom, plan, priority, expected_dues) -> None:
    decision = decide(
        zoom,
        now=TUESDAY_LOS_ANGELES,
        created_at=TUESDAY_LOS_ANGELES,
        plan=plan,
        priority=priority,
        **PRODUCTION_BY_PHONE,
    )
    assert decision.priority == priority
    assert decision.tags == ()
    assert dues(decision, LOS_ANGELES) == expected_dues


@pytest.mark.parametrize(
    ("plan", "priority", "expected_dues"),
    _zoom_cells(ZOOM_STANDARD_FROM_FRIDAY_1630, ZOOM_PREMIER_FROM_FRIDAY_1630),
)
def test_zoom_targets_from_a_friday_afternoon(zoom, plan, priority, expected_dues) -> None:
    decision = decide(
        zoom,
        now=FRIDAY_LOS_ANGELES,
        created_at=FRIDAY_LOS_ANGELES,
        plan=plan,
        priority=priority,
        **PRODUCTION_BY_PHONE,
    )
    assert dues(decision, LOS_ANGELES) == expected_dues


@pytest.mark.parametrize(
    ("plan", "commitment"),
    [
        ("standard", "slo"),
        ("premier", "slo"),
        ("premier_assurance", "sla"),
        ("premier_plus", "sla"),
        ("premier_elite", "sla"),
    ],
)
def test_zoom_plan_commitment(zoom, plan, commitment) -> None:
    decision = decide(zoom, now=TUESDAY_LOS_ANGELES, created_at=TUESDAY_LOS_ANGELES, plan=plan)
    assert decision.commitment == commitment


@pytest.mark.parametrize(
    ("created_at", "expected_due"),
    [
        pytest.param(
            "2026-06-09T10:00:00-07:00", "2026-06-10T17:00:00-07:00", id="tuesday-morning"
        ),
        pytest.param("2026-06-09T08:00:00-07:00", "2026-06-10T17:00:00-07:00", id="before-opening"),
        pytest.param("2026-06-09T23:30:00-07:00", "2026-06-10T17:00:00-07:00", id="tuesday-night"),
        pytest.param(
            "2026-06-12T16:30:00-07:00", "2026-06-15T17:00:00-07:00", id="friday-afternoon"
        ),
        pytest.param("2026-06-13T11:00:00-07:00", "2026-06-15T17:00:00-07:00", id="saturday"),
        pytest.param("2026-06-14T23:59:00-07:00", "2026-06-15T17:00:00-07:00", id="sunday-night"),
        pytest.param(
            "2026-06-15T06:00:00-07:00", "2026-06-16T17:00:00-07:00", id="monday-before-opening"
        ),
        # 23:30Z is still Tuesday in Los Angeles: the customer's local date decides.
        pytest.param("2026-06-09T23:30:00Z", "2026-06-10T17:00:00-07:00", id="utc-wednesday"),
    ],
)
def test_zoom_next_business_day_is_the_close_of_the_first_business_day_after_the_start_date(
    zoom, created_at, expected_due
) -> None:
    decision = decide(
        zoom,
        now=created_at,
        created_at=created_at,
        plan="premier",
        priority="P3",
        environment="production",
    )
    target = decision.targets["first_response"]
    assert local_iso(target.due, LOS_ANGELES) == expected_due
    assert target.target_seconds is None


def test_zoom_business_hours_skip_a_us_holiday_by_default(zoom) -> None:
    thanksgiving = holiday("US", 2026, "Thanksgiving")
    day_after = one_day(thanksgiving)
    assert day_after.weekday() < 5 and not is_holiday("US", day_after)
    created_at = at(one_day(thanksgiving, -1), "10:00", LOS_ANGELES)

    next_business_day = decide(
        zoom, now=created_at, created_at=created_at, plan="premier", priority="P3"
    )
    eight_business_hours = decide(
        zoom, now=created_at, created_at=created_at, plan="standard", priority="P2"
    )

    assert first_response_due(next_business_day, LOS_ANGELES) == at(day_after, "17:00", LOS_ANGELES)
    # 7 h on the day before, none on the holiday, 1 h the day after.
    assert first_response_due(eight_business_hours, LOS_ANGELES) == at(
        day_after, "10:00", LOS_ANGELES
    )


def test_zoom_uses_the_customers_time_zone_and_country_holidays(zoom) -> None:
    thanksgiving = holiday("US", 2026, "Thanksgiving")
    assert not is_holiday("SK", thanksgiving)
    created_at = at(one_day(thanksgiving, -1), "10:00", BRATISLAVA)

    decision = decide(
        zoom,
        now=created_at,
        created_at=created_at,
        plan="premier",
        priority="P3",
        customer_timezone="Europe/Bratislava",
        customer_country="SK",
    )

    # US Thanksgiving is a working day in Slovakia, closing at 17:00 Bratislava time.
    assert first_response_due(decision, BRATISLAVA) == at(thanksgiving, "17:00", BRATISLAVA)


def test_zoom_customer_country_holidays_close_the_calendar(zoom) -> None:
    epiphany = holiday("SK", 2026, "Epiphany")
    assert not is_holiday("US", epiphany)
    created_at = at(one_day(epiphany, -1), "10:00", BRATISLAVA)

    decision = decide(
        zoom,
        now=created_at,
        created_at=created_at,
        plan="premier",
        priority="P4",
        customer_timezone="Europe/Bratislava",
        customer_country="SK",
    )

    assert first_response_due(decision, BRATISLAVA) == at(one_day(epiphany), "17:00", BRATISLAVA)


@pytest.mark.parametrize(
    ("field", "value"),
    [("customer_timezone", "Mars/Olympus_Mons"), ("customer_country", "XX")],
)
def test_zoom_takes_a_customer_zone_or_country_it_cannot_resolve_as_not_given(
    zoom, field, value
) -> None:
    # Never refused (the ticket would be lost): the calendar's default applies, noted, tagged.
    fields = {"created_at": TUESDAY_LOS_ANGELES, "plan": "premier", "priority": "P2"}
    decision = decide(zoom, now=TUESDAY_LOS_ANGELES, **fields, **{field: value})
    without = decide(zoom, now=TUESDAY_LOS_ANGELES, **fields)
    assert decision.unknown_values == ((field, value),)
    assert {n: t.due for n, t in decision.targets.items()} == {
        n: t.due for n, t in without.targets.items()
    }
    assert decision.tags == tuple(sorted({*without.tags, "sla_unknown_value"}))
    assert (
        f"{field.replace('_', ' ')} {value!r} cannot be used by policy 'zoom'"
        in (decision.notes[-1])
    )


def test_zoom_business_hours_follow_the_wall_clock_across_a_dst_change(zoom) -> None:
    # Los Angeles moves to PDT on Sunday 2026-03-08; Monday still opens at 09:00 local.
    decision = decide(
        zoom,
        now="2026-03-06T16:00:00-08:00",
        created_at="2026-03-06T16:00:00-08:00",
        plan="standard",
        priority="P2",
    )
    assert local_iso(decision.targets["first_response"].due, LOS_ANGELES) == (
        "2026-03-09T16:00:00-07:00"
    )


def test_zoom_24x7_hours_are_real_hours_across_a_dst_change(zoom) -> None:
    decision = decide(
        zoom,
        now="2026-03-08T00:30:00-08:00",
        created_at="2026-03-08T00:30:00-08:00",
        plan="standard",
        priority="P1",
    )
    assert local_iso(decision.targets["first_response"].due, LOS_ANGELES) == (
        "2026-03-08T05:30:00-07:00"
    )


# §3 zmanda: urgency x impact matrix, then standard / premium first response.

ZMANDA_MATRIX = [
    # urgency, impact, priority
    ("high", "high", "P1"),
    ("high", "medium", "P2"),
    ("high", "low", "P3"),
    ("medium", "high", "P2"),
    ("medium", "medium", "P3"),
    ("medium", "low", "P4"),
    ("low", "high", "P3"),
    ("low", "medium", "P4"),
    ("low", "low", "P4"),
]


@pytest.mark.parametrize(
    ("urgency", "impact", "priority"),
    [pytest.param(*row, id=f"urgency-{row[0]}-impact-{row[1]}") for row in ZMANDA_MATRIX],
)
def test_zmanda_priority_from_urgency_and_impact(zmanda, urgency, impact, priority) -> None:
    decision = decide(
        zmanda,
        now=TUESDAY_LOS_ANGELES,
        created_at=TUESDAY_LOS_ANGELES,
        plan="standard",
        urgency=urgency,
        impact=impact,
    )
    assert decision.priority == priority
    assert decision.tags == ()


ZMANDA_FROM_TUESDAY_10 = [
    # plan, priority, first response due (America/Los_Angeles)
    ("standard", "P1", "2026-06-09T11:00:00-07:00"),  # 1 business h
    ("standard", "P2", "2026-06-09T13:00:00-07:00"),  # 3 business h
    ("standard", "P3", "2026-06-10T09:00:00-07:00"),  # 7 h Tue + 1 h Wed from 08:00
    ("standard", "P4", "2026-06-11T16:00:00-07:00"),  # 7 h Tue + 9 h Wed + 8 h Thu
    ("premium", "P1", "2026-06-09T10:15:00-07:00"),
    ("premium", "P2", "2026-06-09T11:00:00-07:00"),
    ("premium", "P3", "2026-06-09T14:00:00-07:00"),
    ("premium", "P4", "2026-06-09T18:00:00-07:00"),
    ("trial", "P1", "2026-06-09T10:15:00-07:00"),
    ("trial", "P2", "2026-06-09T11:00:00-07:00"),
    ("trial", "P3", "2026-06-09T14:00:00-07:00"),
    ("trial", "P4", "2026-06-09T18:00:00-07:00"),
]

ZMANDA_FROM_FRIDAY_1630 = [
    ("standard", "P1", "2026-06-15T08:30:00-07:00"),  # 0.5 h Fri + 0.5 h Mon
    ("standard", "P2", "2026-06-15T10:30:00-07:00"),
    ("standard", "P3", "2026-06-15T15:30:00-07:00"),
    ("standard", "P4", "2026-06-17T13:30:00-07:00"),  # 0.5 + 9 + 9 + 5.5 h
    ("premium", "P1", "2026-06-12T16:45:00-07:00"),
    ("premium", "P2", "2026-06-12T17:30:00-07:00"),
    ("premium", "P3", "2026-06-12T20:30:00-07:00"),
    ("premium", "P4", "2026-06-13T00:30:00-07:00"),
    ("trial", "P1", "2026-06-12T16:45:00-07:00"),
    ("trial", "P2", "2026-06-12T17:30:00-07:00"),
    ("trial", "P3", "2026-06-12T20:30:00-07:00"),
    ("trial", "P4", "2026-06-13T00:30:00-07:00"),
]


@pytest.mark.parametrize(("plan", "priority", "expected_due"), _cells(ZMANDA_FROM_TUESDAY_10))
def test_zmanda_first_response_from_a_tuesday_morning(zmanda, plan, priority, expected_due) -> None:
    decision = decide(
        zmanda,
        now=TUESDAY_LOS_ANGELES,
        created_at=TUESDAY_LOS_ANGELES,
        plan=plan,
        priority=priority,
    )
    assert dues(decision, LOS_ANGELES) == (expected_due, None, None)
    assert decision.commitment == "sla"


@pytest.mark.parametrize(("plan", "priority", "expected_due"), _cells(ZMANDA_FROM_FRIDAY_1630))
def test_zmanda_first_response_from_a_friday_afternoon(
    zmanda, plan, priority, expected_due
) -> None:
    decision = decide(
        zmanda, now=FRIDAY_LOS_ANGELES, created_at=FRIDAY_LOS_ANGELES, plan=plan, priority=priority
    )
    assert dues(decision, LOS_ANGELES) == (expected_due, None, None)


def test_zmanda_trial_is_the_premium_plan(zmanda) -> None:
    decision = decide(zmanda, now=TUESDAY_LOS_ANGELES, created_at=TUESDAY_LOS_ANGELES, plan="trial")
    assert decision.plan == "premium"


def test_zmanda_standard_work_ending_at_closing_is_due_at_closing(zmanda) -> None:
    decision = decide(
        zmanda,
        now="2026-06-09T16:00:00-07:00",
        created_at="2026-06-09T16:00:00-07:00",
        plan="standard",
        priority="P1",
    )
    assert local_iso(decision.targets["first_response"].due, LOS_ANGELES) == (
        "2026-06-09T17:00:00-07:00"
    )


def test_zmanda_standard_calendar_ignores_public_holidays(zmanda) -> None:
    thanksgiving = holiday("US", 2026, "Thanksgiving")
    created_at = at(one_day(thanksgiving, -1), "16:30", LOS_ANGELES)

    decision = decide(zmanda, now=created_at, created_at=created_at, plan="standard", priority="P1")

    assert first_response_due(decision, LOS_ANGELES) == at(thanksgiving, "08:30", LOS_ANGELES)


def test_zmanda_standard_calendar_uses_the_customers_time_zone(zmanda) -> None:
    decision = decide(
        zmanda,
        now="2026-06-09T16:30:00+02:00",
        created_at="2026-06-09T16:30:00+02:00",
        plan="standard",
        priority="P1",
        customer_timezone="Europe/Warsaw",
    )
    assert first_response_due(decision, ZoneInfo("Europe/Warsaw")) == "2026-06-10T08:30:00+02:00"


# Priority levels and defaults, as named in POLICIES.md.

PRIORITY_LABELS = {
    "cloudtalk": {"P1": "Business Critical", "P2": "Degraded Service", "P3": "General Issue"},
    "zoom": {"P1": "Urgent", "P2": "High", "P3": "Medium", "P4": "Low"},
    "zmanda": {
        "P1": "Critical impact",
        "P2": "High impact",
        "P3": "Medium impact",
        "P4": "Low impact",
    },
}


@pytest.mark.parametrize("name", sorted(PRIORITY_LABELS))
def test_policy_has_the_priority_levels_of_policies_md(policies, name) -> None:
    spec = policies[name].spec
    assert {level.name: level.label for level in spec.priorities} == PRIORITY_LABELS[name]
    assert spec.default_priority == "P3"


@pytest.mark.parametrize(
    ("name", "plans"),
    [
        ("cloudtalk", {"basic", "professional", "advanced"}),
        ("zoom", set(ZOOM_PLANS)),
        ("zmanda", {"standard", "premium"}),
    ],
)
def test_policy_has_exactly_the_plans_of_policies_md(policies, name, plans) -> None:
    assert set(policies[name].spec.plans) == plans


def test_no_target_outside_the_tables_exists(policies) -> None:
    # Only zoom has restoration and update targets; the other two only first response.
    for name in ("cloudtalk", "zmanda"):
        for plan in policies[name].spec.plans.values():
            for targets in plan.targets.values():
                assert [t for t in TARGET_NAMES if targets.get(t)] in ([], ["first_response"])
