"""Classification rules of POLICIES.md: defaults, production only, betas, phone, matrix."""

from __future__ import annotations

import pytest
from engine_support import decide, make_ticket

from bot.engine import classify
from bot.errors import TicketError

NOW = "2026-06-09T10:00:00+02:00"


def classify_fields(policy, **fields):
    return classify(make_ticket(created_at=NOW, **fields), policy)


@pytest.mark.parametrize("name", ["cloudtalk", "zoom", "zmanda"])
def test_a_ticket_without_a_priority_is_p3(policies, name) -> None:
    result = classify_fields(policies[name], environment="production")
    assert result.priority == "P3"
    assert result.requested_priority is None
    assert result.tags == ()


@pytest.mark.parametrize("name", ["cloudtalk", "zoom", "zmanda"])
def test_a_priority_the_policy_does_not_know_is_refused(policies, name) -> None:
    with pytest.raises(TicketError, match="'priority'"):
        classify_fields(policies[name], priority="urgent")


def test_cloudtalk_has_no_p4(cloudtalk) -> None:
    with pytest.raises(TicketError, match="P4"):
        classify_fields(cloudtalk, priority="P4")


# cloudtalk: P1 and P2 are for production only.


@pytest.mark.parametrize("priority", ["P1", "P2"])
@pytest.mark.parametrize("environment", ["staging", "test", "development"])
def test_cloudtalk_p1_or_p2_outside_production_becomes_p3(cloudtalk, priority, environment) -> None:
    result = classify_fields(cloudtalk, priority=priority, environment=environment)
    assert result.priority == "P3"
    assert result.requested_priority == priority
    assert result.tags == ("sla_reclassified_non_production",)
    assert any(environment in note and "P3" in note for note in result.notes)


@pytest.mark.parametrize("priority", ["P1", "P2"])
def test_cloudtalk_p1_or_p2_in_production_keeps_its_priority(cloudtalk, priority) -> None:
    result = classify_fields(cloudtalk, priority=priority, environment="production")
    assert (result.priority, result.tags) == (priority, ())


@pytest.mark.parametrize("priority", ["P1", "P2"])
def test_cloudtalk_p1_or_p2_without_environment_is_kept_and_flagged(cloudtalk, priority) -> None:
    result = classify_fields(cloudtalk, priority=priority)
    assert result.priority == priority
    assert result.tags == ("sla_environment_unconfirmed",)


def test_cloudtalk_p3_without_environment_gets_no_tag(cloudtalk) -> None:
    assert classify_fields(cloudtalk, priority="P3").tags == ()


def test_cloudtalk_p3_outside_production_gets_no_tag(cloudtalk) -> None:
    result = classify_fields(cloudtalk, priority="P3", environment="staging")
    assert (result.priority, result.tags) == ("P3", ())


def test_cloudtalk_ticket_without_priority_or_environment_gets_no_tag(cloudtalk) -> None:
    assert classify_fields(cloudtalk).tags == ()


@pytest.mark.parametrize("stage", ["beta", "preview"])
@pytest.mark.parametrize("priority", ["P1", "P2", "P3"])
def test_cloudtalk_beta_or_preview_keeps_its_priority_but_has_no_due_dates(
    cloudtalk, stage, priority
) -> None:
    decision = decide(
        cloudtalk,
        now=NOW,
        created_at=NOW,
        plan="advanced",
        priority=priority,
        environment="production",
        product_stage=stage,
    )
    assert decision.priority == priority
    assert decision.tags == ("sla_no_target_beta",)
    assert {t.state for t in decision.targets.values()} == {"none"}
    assert {t.due for t in decision.targets.values()} == {None}


def test_cloudtalk_generally_available_product_keeps_its_targets(cloudtalk) -> None:
    decision = decide(
        cloudtalk,
        now=NOW,
        created_at=NOW,
        plan="advanced",
        priority="P1",
        environment="production",
        product_stage="ga",
    )
    assert decision.targets["first_response"].state == "running"
    assert decision.tags == ()


def test_cloudtalk_staging_beta_p1_carries_both_tags(cloudtalk) -> None:
    result = classify_fields(cloudtalk, priority="P1", environment="staging", product_stage="beta")
    assert result.priority == "P3"
    assert result.tags == ("sla_no_target_beta", "sla_reclassified_non_production")


# zoom: non-production and betas are P4; P1 by phone.


@pytest.mark.parametrize("priority", ["P1", "P2", "P3"])
@pytest.mark.parametrize("environment", ["staging", "development"])
def test_zoom_non_production_ticket_becomes_p4(zoom, priority, environment) -> None:
    result = classify_fields(zoom, priority=priority, environment=environment, channel="phone")
    assert result.priority == "P4"
    assert result.tags == ("sla_reclassified_non_production",)


@pytest.mark.parametrize("priority", ["P1", "P2", "P3"])
@pytest.mark.parametrize("stage", ["beta", "preview"])
def test_zoom_beta_or_preview_ticket_becomes_p4(zoom, priority, stage) -> None:
    result = classify_fields(
        zoom, priority=priority, environment="production", product_stage=stage, channel="phone"
    )
    assert result.priority == "P4"
    assert result.tags == ("sla_reclassified_beta",)


def test_zoom_p4_outside_production_needs_no_tag(zoom) -> None:
    result = classify_fields(zoom, priority="P4", environment="staging", product_stage="beta")
    assert (result.priority, result.tags) == ("P4", ())


def test_zoom_non_production_beta_ticket_carries_both_tags(zoom) -> None:
    result = classify_fields(zoom, priority="P2", environment="test", product_stage="preview")
    assert result.priority == "P4"
    assert result.tags == ("sla_reclassified_beta", "sla_reclassified_non_production")


def test_zoom_ticket_without_priority_outside_production_becomes_p4(zoom) -> None:
    result = classify_fields(zoom, environment="staging")
    assert (result.priority, result.tags) == ("P4", ("sla_reclassified_non_production",))


def test_zoom_reclassified_beta_ticket_gets_p4_targets(zoom) -> None:
    decision = decide(
        zoom,
        now="2026-06-09T10:00:00-07:00",
        created_at="2026-06-09T10:00:00-07:00",
        plan="premier",
        priority="P1",
        environment="production",
        product_stage="beta",
        channel="phone",
    )
    assert decision.priority == "P4"
    assert decision.targets["restoration"].state == "none"
    assert decision.targets["next_update"].target_seconds == 168 * 3600


@pytest.mark.parametrize("channel", ["email", "web", "chat", None])
def test_zoom_p1_not_by_phone_keeps_p1_and_asks_an_agent_to_call(zoom, channel) -> None:
    result = classify_fields(zoom, priority="P1", environment="production", channel=channel)
    assert result.priority == "P1"
    assert result.tags == ("sla_p1_not_by_phone",)
    assert any("call the customer" in note for note in result.notes)


def test_zoom_p1_by_phone_gets_no_tag(zoom) -> None:
    result = classify_fields(zoom, priority="P1", environment="production", channel="phone")
    assert (result.priority, result.tags) == ("P1", ())


@pytest.mark.parametrize("priority", ["P2", "P3", "P4"])
def test_zoom_only_p1_must_come_by_phone(zoom, priority) -> None:
    result = classify_fields(zoom, priority=priority, environment="production", channel="email")
    assert result.tags == ()


def test_zoom_p1_reclassified_to_p4_is_not_flagged_for_the_phone(zoom) -> None:
    result = classify_fields(zoom, priority="P1", environment="staging", channel="email")
    assert result.tags == ("sla_reclassified_non_production",)


# zmanda: the customer's choice overrides the urgency x impact matrix.


def test_zmanda_customer_priority_overrides_a_disagreeing_matrix(zmanda) -> None:
    result = classify_fields(zmanda, priority="P4", urgency="high", impact="high")
    assert result.priority == "P4"
    assert result.tags == ("sla_priority_differs_from_matrix",)
    assert any("P1" in note and "P4" in note for note in result.notes)


def test_zmanda_customer_priority_that_agrees_with_the_matrix_gets_no_tag(zmanda) -> None:
    result = classify_fields(zmanda, priority="P2", urgency="medium", impact="high")
    assert (result.priority, result.tags) == ("P2", ())


def test_zmanda_without_priority_or_matrix_inputs_is_p3(zmanda) -> None:
    assert classify_fields(zmanda).priority == "P3"


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"urgency": "high"}, id="urgency-only"),
        pytest.param({"impact": "high"}, id="impact-only"),
        pytest.param({"urgency": "low"}, id="low-urgency-only"),
    ],
)
def test_zmanda_one_matrix_input_alone_does_not_use_the_matrix(zmanda, fields) -> None:
    result = classify_fields(zmanda, **fields)
    assert (result.priority, result.tags) == ("P3", ())


def test_zmanda_one_matrix_input_with_a_priority_keeps_the_priority_untagged(zmanda) -> None:
    result = classify_fields(zmanda, priority="P1", urgency="low")
    assert (result.priority, result.tags) == ("P1", ())


def test_zmanda_unknown_urgency_is_a_ticket_error_naming_the_field(zmanda) -> None:
    with pytest.raises(TicketError, match=r"'urgency'.*'critical'"):
        classify_fields(zmanda, urgency="critical", impact="high")


def test_zmanda_unknown_impact_is_a_ticket_error_naming_the_field(zmanda) -> None:
    with pytest.raises(TicketError, match=r"'impact'.*'huge'"):
        classify_fields(zmanda, urgency="high", impact="huge")


def test_zmanda_ignores_environment_product_stage_and_channel(zmanda) -> None:
    result = classify_fields(
        zmanda, priority="P1", environment="staging", product_stage="beta", channel="email"
    )
    assert (result.priority, result.tags) == ("P1", ())
