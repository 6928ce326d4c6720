"""Service credit rules: what a policy file may say, and what one organization's month owes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from bot.compiled import Policy
from bot.credits import CreditClock, CreditRules, credit_statement

ZOOM = Path(__file__).resolve().parents[2] / "config" / "policies" / "zoom.yaml"
AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
RULES: dict[str, Any] = {
    "currency": "EUR",
    "monthly_fee": "1000",
    "fees": {"Acme": "2500"},
    "cap_percent": "12",
    "per_breach": [{"target": "restoration", "priority": "P1", "percent": "5"}],
    "attainment": [
        {"target": "first_response", "below": "99", "percent": "2"},
        {"target": "first_response", "below": "90", "percent": "6"},
    ],
}


def clock(target: str, priority: str, *, breached: bool, stopped: bool = True) -> CreditClock:
    due = AT + timedelta(hours=1)
    stop = (due + timedelta(minutes=5) if breached else due) if stopped else None
    return CreditClock("zendesk:1", target, priority, AT, due, stop, breached, 0)


def zoom_with(plan: str, credits: dict[str, Any]) -> Policy:
    spec = yaml.safe_load(ZOOM.read_text())
    spec["plans"][plan]["credits"] = credits
    return Policy.from_mapping(spec)


def test_per_breach_and_the_worst_tier_add_up_and_are_capped() -> None:
    rules = CreditRules.model_validate(RULES)
    clocks = [
        clock("restoration", "P1", breached=True),
        clock("restoration", "P2", breached=True),  # not P1: earns nothing per breach
        *[clock("first_response", "P2", breached=False) for _ in range(8)],
        *[clock("first_response", "P3", breached=True) for _ in range(2)],  # 80% attained
        clock("first_response", "P1", breached=False, stopped=False),  # running: not judged
    ]
    statement = credit_statement(rules, "premier_plus", "Acme", clocks)
    assert [(line.rule, line.percent) for line in statement.lines] == [
        ("5% per breached P1 restoration", Decimal(5)),
        ("6% for first response attainment below 90%", Decimal(6)),
    ]
    assert statement.lines[1].attainment == Decimal("80.00")
    assert len(statement.lines[1].evidence) == 2
    assert (statement.percent_before_cap, statement.percent) == (Decimal(11), Decimal(11))
    assert (statement.monthly_fee, statement.amount) == (Decimal(2500), Decimal("275.00"))
    capped = credit_statement(
        rules, "premier_plus", "Other", [clock("restoration", "P1", breached=True)] * 3
    )
    assert (capped.percent_before_cap, capped.percent, capped.amount) == (
        Decimal(15),
        Decimal(12),
        Decimal("120.00"),
    )


def test_a_month_with_every_rule_met_owes_nothing() -> None:
    rules = CreditRules.model_validate(RULES)
    statement = credit_statement(
        rules, "premier_plus", None, [clock("first_response", "P1", breached=False)]
    )
    assert statement.lines == () and statement.amount == Decimal("0.00")


def test_credit_rules_load_with_a_policy_on_an_sla_plan() -> None:
    policy = zoom_with("premier_plus", RULES)
    credits = policy.spec.plans["premier_plus"].credits
    assert credits is not None and credits.fee("Acme") == Decimal(2500)


@pytest.mark.parametrize(
    ("plan", "credits", "message"),
    [
        ("premier", RULES, "only a plan with commitment 'sla' owes service credits"),
        (
            "premier_plus",
            {**RULES, "per_breach": [{"target": "restoration", "priority": "P9", "percent": 5}]},
            "'P9' is not a priority of this policy",
        ),
        (
            "premier_plus",
            {"currency": "EUR", "monthly_fee": 1000},
            "give at least one rule under per_breach or attainment",
        ),
        ("premier_plus", {**RULES, "currency": "euro"}, "String should match pattern"),
        ("premier_plus", {**RULES, "cap_percent": 150}, "less than or equal to 100"),
    ],
)
def test_bad_credit_rules_are_refused_with_what_to_fix(
    plan: str, credits: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        zoom_with(plan, credits)
