"""The Reclassify button and modal: signed interactive payloads through App.dispatch."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from slabot.fakes.slack import FakeSlack
from slabot.store.models import TicketEvent
from tests.slack.slack_support import AGENT, LEAD, OUTSIDER, Harness, texts

RECLASSIFY = "sla_reclassify_modal"


def opened(fake: FakeSlack, count: int = 1) -> list[dict[str, Any]]:
    views = []
    for call in fake.wait_calls("views.open", count):
        view = call.args["view"]
        views.append(json.loads(view) if isinstance(view, str) else view)
    return views


def ack_body(response: Any) -> dict[str, Any]:
    assert response.status == 200
    return dict(json.loads(response.body))


def changes(harness: Harness) -> list[TicketEvent]:
    with Session(harness.engine) as session:
        return list(
            session.scalars(select(TicketEvent).where(TicketEvent.kind == "priority_changed"))
        )


def test_the_button_opens_a_modal_with_the_policys_priorities_and_a_required_reason(
    harness: Harness, fake: FakeSlack
) -> None:
    harness.ingest()
    response = harness.click("sla_reclassify", "zendesk:1001", user=LEAD)
    assert response.status == 200
    (view,) = opened(fake)
    assert view["callback_id"] == RECLASSIFY
    assert json.loads(view["private_metadata"]) == {"ref": "zendesk:1001"}
    priority, reason = (b for b in view["blocks"] if b["type"] == "input")
    options = [o["value"] for o in priority["element"]["options"]]
    assert options == ["P1", "P2", "P3", "P4"]
    assert priority["element"]["initial_option"]["value"] == "P2"
    assert reason["block_id"] == "reason" and not reason.get("optional")
    assert fake.calls_to("views.open")[0].args["trigger_id"] == "1337.42.trigger"


def test_a_refused_user_gets_a_modal_that_says_why(harness: Harness, fake: FakeSlack) -> None:
    harness.ingest()
    harness.click("sla_reclassify", "zendesk:1001", user=OUTSIDER)
    (view,) = opened(fake)
    assert view["title"]["text"] == "Not allowed"
    assert "Ask to be added to <!subteam^S0LEADS>" in texts(view["blocks"])


def test_a_valid_submission_is_stored_audited_and_confirmed_in_the_modal(
    harness: Harness, fake: FakeSlack
) -> None:
    harness.ingest()
    response = harness.submit(
        RECLASSIFY, {"ref": "zendesk:1001"}, {"priority": "P1", "reason": "whole region down"}
    )
    body = ack_body(response)
    assert body["response_action"] == "update"
    assert body["view"]["title"]["text"] == "Terminé"  # the agent reads French
    assert "priorité passée de P2 à P1" in texts(body["view"]["blocks"])
    (entry,) = changes(harness)
    assert (entry.actor, entry.origin, entry.reason) == (
        "agent@example.com (Slack U0AGENT)",
        "slack",
        "whole region down",
    )
    assert entry.event_key == "reclassify:slack:view:V0MODAL"
    assert {i.kind for i in harness.helpdesk_items()} == {"set_priority", "add_note"}

    # Slack delivers the same submission again: applied once.
    again = ack_body(
        harness.submit(
            RECLASSIFY, {"ref": "zendesk:1001"}, {"priority": "P1", "reason": "whole region down"}
        )
    )
    assert again["response_action"] == "update"
    assert len(changes(harness)) == 1


@pytest.mark.parametrize(
    ("fields", "values", "block", "says"),
    [
        (
            {"environment": "staging", "priority": "P4"},
            {"priority": "P2", "reason": "urgent for them"},
            "priority",
            "P2 est réservée aux incidents de production, et l'environnement de ce ticket est "
            "staging. Choisissez P4",
        ),
        (
            {"product_stage": "beta", "priority": "P4"},
            {"priority": "P1", "reason": "urgent for them"},
            "priority",
            "P1 n'est pas disponible pour les produits au stade beta. Choisissez P4",
        ),
        ({}, {"priority": "P3", "reason": "   "}, "reason", "Dites pourquoi la priorité change"),
        (
            {},
            {"priority": None, "reason": "why not"},
            "priority",
            "Choisissez la nouvelle priorité.",
        ),
    ],
)
def test_policy_violations_show_inline_in_the_modal_with_what_to_do(
    harness: Harness,
    fake: FakeSlack,
    fields: dict[str, str],
    values: dict[str, Any],
    block: str,
    says: str,
) -> None:
    harness.ingest(**fields)
    body = ack_body(harness.submit(RECLASSIFY, {"ref": "zendesk:1001"}, values))
    assert body["response_action"] == "errors"
    assert list(body["errors"]) == [block]
    assert says in body["errors"][block]
    assert changes(harness) == []
    assert harness.helpdesk_items() == [] or all(
        i.kind != "add_note" for i in harness.helpdesk_items()
    )


def test_a_submission_by_a_refused_user_is_refused_and_logged(
    harness: Harness, fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    harness.ingest()
    with caplog.at_level(logging.WARNING, logger="slabot.slack.authz"):
        body = ack_body(
            harness.submit(
                RECLASSIFY,
                {"ref": "zendesk:1001"},
                {"priority": "P1", "reason": "x"},
                user=OUTSIDER,
            )
        )
    assert body["response_action"] == "errors"
    assert "You may not reclassify tickets" in body["errors"]["reason"]
    assert "refused reclassification of zendesk:1001 by user U0OUTSIDER" in caplog.text
    assert changes(harness) == []


def test_when_slack_cannot_list_a_group_its_members_are_refused_and_the_admin_is_told(
    harness: Harness, fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    harness.ingest()
    fake.fail_next(1, method="usergroups.users.list", error="missing_scope")
    with caplog.at_level(logging.ERROR, logger="slabot.slack.authz"):
        body = ack_body(
            harness.submit(RECLASSIFY, {"ref": "zendesk:1001"}, {"priority": "P1", "reason": "x"})
        )
    assert body["response_action"] == "errors"
    assert "cannot read the members of user group S0LEADS (missing_scope)" in caplog.text
    assert "usergroups:read scope" in caplog.text


def test_nobody_may_reclassify_until_someone_is_configured(
    make_harness: Any, fake: FakeSlack
) -> None:
    harness = make_harness(reclassify={"user_groups": [], "users": []})
    harness.ingest()
    harness.command("reclassify ZD-1001 P3 fine", user=LEAD)
    (answer,) = fake.wait_responses()
    assert "Nobody may reclassify tickets from Slack yet" in answer["text"]


def test_the_open_button_is_only_acknowledged(harness: Harness, fake: FakeSlack) -> None:
    harness.ingest()
    assert harness.click("sla_open", "", user=AGENT).status == 200
    assert [c.method for c in fake.calls] == ["auth.test"]


def test_the_button_on_a_ticket_slabot_no_longer_knows_says_so(
    harness: Harness, fake: FakeSlack
) -> None:
    harness.click("sla_reclassify", "zendesk:4040", user=LEAD)
    (view,) = opened(fake)
    assert "slabot does not know zendesk:4040 yet" in texts(view["blocks"])


def test_snooze_4h_opens_its_modal_and_a_vanished_nudge_is_explained(
    harness: Harness, fake: FakeSlack
) -> None:
    harness.click("sla_snooze_4h", "999", user=LEAD)
    (gone,) = opened(fake)
    assert "This reminder no longer exists" in texts(gone["blocks"])
    body = ack_body(
        harness.submit(
            "sla_snooze_modal", {"nudge": 999, "hours": 4}, {"reason": "later"}, user=LEAD
        )
    )
    assert body["response_action"] == "errors"
    assert "This reminder no longer exists" in body["errors"]["reason"]


def test_when_slack_cannot_say_who_reads_the_defaults_apply(
    harness: Harness, fake: FakeSlack
) -> None:
    harness.ingest()
    fake.fail_next(1, method="users.info", error="fatal_error")
    harness.command("ZD-1001", user=AGENT)
    (answer,) = fake.wait_responses()
    shown = texts(answer["blocks"])
    assert "*First response*: running, due" in shown  # English, the configured default
    assert "<!date^" in shown  # and each reader's own zone
