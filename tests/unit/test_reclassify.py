"""Agent reclassification: validated, recorded, and every target recomputed from its start."""

from __future__ import annotations

from datetime import datetime

import pytest
from engine_support import BRATISLAVA, LOS_ANGELES, dues, local_iso, make_ticket, states

from bot.engine import (
    ProductionOnlyError,
    ProductStageCapError,
    ReasonRequiredError,
    UnknownPriorityError,
    reclassify,
)
from bot.errors import ReclassificationError, SlabotError


def reclassify_at(
    policy,
    now: str,
    to: str,
    reason: str = "customer impact confirmed",
    actor: str = "alice",
    **fields,
):
    """Reclassify to priority ``to`` at ``now`` a ticket given by its JSON-like fields."""
    ticket = make_ticket(**fields)
    return reclassify(
        ticket, policy, datetime.fromisoformat(now), priority=to, actor=actor, reason=reason
    )


CLOUDTALK_P3 = {
    "created_at": "2026-06-09T10:00:00+02:00",
    "plan": "professional",
    "priority": "P3",
    "environment": "production",
}


def test_raising_the_priority_recomputes_the_due_date_from_creation(cloudtalk) -> None:
    decision = reclassify_at(cloudtalk, "2026-06-09T15:00:00+02:00", "P1", **CLOUDTALK_P3)

    first_response = decision.targets["first_response"]
    assert decision.priority == "P1"
    # 3 business hours from 10:00 creation, not from the 15:00 reclassification.
    assert local_iso(first_response.due, BRATISLAVA) == "2026-06-09T13:00:00+02:00"
    assert first_response.state == "breached"


def test_lowering_the_priority_recomputes_the_due_date_from_creation(cloudtalk) -> None:
    decision = reclassify_at(
        cloudtalk, "2026-06-09T12:00:00+02:00", "P3", **{**CLOUDTALK_P3, "priority": "P1"}
    )
    assert decision.priority == "P3"
    assert local_iso(decision.targets["first_response"].due, BRATISLAVA) == (
        "2026-06-10T11:00:00+02:00"
    )
    assert decision.targets["first_response"].state == "running"


def test_every_clock_is_recomputed_from_its_own_start(zoom) -> None:
    decision = reclassify_at(
        zoom,
        "2026-06-10T12:00:00-07:00",
        "P2",
        created_at="2026-06-09T10:00:00-07:00",
        plan="premier",
        priority="P3",
        environment="production",
        first_response_at="2026-06-09T10:30:00-07:00",
    )
    assert dues(decision, LOS_ANGELES) == (
        "2026-06-09T14:00:00-07:00",  # 4 business h from creation
        "2026-06-10T10:00:00-07:00",  # 8 business h from creation
        "2026-06-10T10:30:00-07:00",  # 24 h from the first public reply
    )
    assert states(decision) == {
        "first_response": "met",
        "restoration": "breached",
        "next_update": "breached",
    }


def test_the_reason_and_the_agent_are_recorded_in_the_notes(cloudtalk) -> None:
    decision = reclassify_at(
        cloudtalk,
        "2026-06-09T12:00:00+02:00",
        "P2",
        reason="  checkout is degraded for every user  ",
        actor="alice@example.com",
        **CLOUDTALK_P3,
    )
    assert "reclassified to P2 by alice@example.com: checkout is degraded for every user" in (
        decision.notes
    )
    assert decision.requested_priority == "P3"


def test_the_agents_choice_outranks_the_customer_and_the_matrix(zmanda) -> None:
    decision = reclassify_at(
        zmanda,
        "2026-06-09T12:00:00-07:00",
        "P2",
        created_at="2026-06-09T10:00:00-07:00",
        plan="standard",
        priority="P4",
        urgency="high",
        impact="high",
    )
    assert decision.priority == "P2"
    assert "sla_priority_differs_from_matrix" not in decision.tags


def test_a_p1_reclassification_not_by_phone_still_asks_for_a_call(zoom) -> None:
    decision = reclassify_at(
        zoom,
        "2026-06-09T12:00:00-07:00",
        "P1",
        created_at="2026-06-09T10:00:00-07:00",
        plan="premier",
        priority="P2",
        environment="production",
        channel="email",
    )
    assert decision.tags == ("sla_p1_not_by_phone",)


def test_cloudtalk_p1_without_an_environment_is_allowed_and_stays_flagged(cloudtalk) -> None:
    fields = {**CLOUDTALK_P3}
    del fields["environment"]
    decision = reclassify_at(cloudtalk, "2026-06-09T12:00:00+02:00", "P1", **fields)
    assert decision.priority == "P1"
    assert decision.tags == ("sla_environment_unconfirmed",)


# Refusals, with messages an agent can act on.


@pytest.mark.parametrize("priority", ["P1", "P2"])
def test_cloudtalk_refuses_a_production_priority_on_a_staging_ticket(cloudtalk, priority) -> None:
    with pytest.raises(ProductionOnlyError) as refused:
        reclassify_at(
            cloudtalk,
            "2026-06-09T12:00:00+02:00",
            priority,
            **{**CLOUDTALK_P3, "environment": "staging"},
        )
    message = str(refused.value)
    assert priority in message
    assert "production" in message and "'staging'" in message
    assert "choose P3" in message
    assert "correct the environment" in message


def test_cloudtalk_allows_p3_on_a_staging_ticket(cloudtalk) -> None:
    decision = reclassify_at(
        cloudtalk,
        "2026-06-09T12:00:00+02:00",
        "P3",
        **{**CLOUDTALK_P3, "priority": "P1", "environment": "staging"},
    )
    assert decision.priority == "P3"


@pytest.mark.parametrize("priority", ["P1", "P2", "P3"])
@pytest.mark.parametrize("stage", ["beta", "preview"])
def test_zoom_refuses_more_than_p4_on_a_beta_ticket(zoom, priority, stage) -> None:
    with pytest.raises(ProductStageCapError) as refused:
        reclassify_at(
            zoom,
            "2026-06-09T12:00:00-07:00",
            priority,
            created_at="2026-06-09T10:00:00-07:00",
            plan="premier",
            environment="production",
            product_stage=stage,
        )
    message = str(refused.value)
    assert priority in message
    assert f"'{stage}'" in message
    assert "choose P4" in message
    assert "correct the product stage" in message


def test_zoom_refuses_p1_on_a_staging_ticket(zoom) -> None:
    with pytest.raises(ProductionOnlyError) as refused:
        reclassify_at(
            zoom,
            "2026-06-09T12:00:00-07:00",
            "P1",
            created_at="2026-06-09T10:00:00-07:00",
            plan="premier",
            environment="staging",
        )
    message = str(refused.value)
    assert "P1" in message and "choose P4" in message and "correct the environment" in message


def test_zoom_allows_p4_on_a_beta_ticket(zoom) -> None:
    decision = reclassify_at(
        zoom,
        "2026-06-09T12:00:00-07:00",
        "P4",
        created_at="2026-06-09T10:00:00-07:00",
        plan="premier",
        environment="production",
        product_stage="beta",
    )
    assert decision.priority == "P4"


@pytest.mark.parametrize(
    ("name", "priority"),
    [("cloudtalk", "P4"), ("zoom", "urgent"), ("zmanda", "p1"), ("zoom", "")],
)
def test_an_unknown_priority_is_refused_with_the_choices(policies, name, priority) -> None:
    with pytest.raises(UnknownPriorityError) as refused:
        reclassify_at(
            policies[name], "2026-06-09T12:00:00Z", priority, created_at="2026-06-09T10:00:00Z"
        )
    message = str(refused.value)
    assert repr(priority) in message
    assert "choose one of P1, P2, P3" in message


@pytest.mark.parametrize("reason", ["", "   ", "\n\t"])
def test_a_reclassification_needs_a_reason(cloudtalk, reason) -> None:
    with pytest.raises(ReasonRequiredError, match="say why"):
        reclassify_at(cloudtalk, "2026-06-09T12:00:00+02:00", "P2", reason=reason, **CLOUDTALK_P3)


def test_reclassification_errors_share_one_hierarchy() -> None:
    for error in (ProductionOnlyError, UnknownPriorityError, ReasonRequiredError):
        assert issubclass(error, ReclassificationError)
        assert issubclass(error, SlabotError)
