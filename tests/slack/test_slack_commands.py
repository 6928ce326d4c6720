"""``/sla``: signed slash commands through App.dispatch, answered through response_url."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from slack_bolt import BoltRequest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.routing import Router, RoutingSpec
from slabot.fakes.slack import FakeSlack
from slabot.store.models import TicketEvent
from tests.slack.slack_support import AGENT, ASSIGNEE, LEAD, OUTSIDER, Harness, texts

POLISH = "U0PIOTR"


def test_the_card_shows_priority_plan_commitment_and_each_due_time_in_the_readers_zone(
    harness: Harness, fake: FakeSlack
) -> None:
    harness.ingest()
    response = harness.command("ZD-1001", user=LEAD)
    assert response.status == 200 and response.body == ""  # acknowledged at once, empty
    (answer,) = fake.wait_responses()
    assert answer["response_type"] == "ephemeral"
    shown = texts(answer["blocks"])
    assert "ZD-1001 · P2" in shown
    assert "P2 High" in shown and "premier" in shown and "SLO (objective, no credits)" in shown
    # Due 13:00 / 17:00 in Los Angeles, shown in the reader's New York time.
    assert "*First response*: running, due Mon 16 Nov 16:00 EST" in shown
    assert "*Restoration*: running, due Mon 16 Nov 20:00 EST" in shown
    assert "_24h, around the clock_" in shown
    buttons = next(b for b in answer["blocks"] if b["type"] == "actions")["elements"]
    assert [b["action_id"] for b in buttons] == ["sla_reclassify", "sla_open"]
    assert buttons[0]["value"] == "zendesk:1001"
    assert buttons[1]["url"] == "https://acme.zendesk.com/agent/tickets/1001"
    # The token was checked once, on this first request (construction made no call).
    assert [c.method for c in fake.calls][:1] == ["auth.test"]


def test_the_card_speaks_the_readers_language(harness: Harness, fake: FakeSlack) -> None:
    harness.ingest()
    harness.command("https://acme.zendesk.com/agent/tickets/1001", user=AGENT)
    (answer,) = fake.wait_responses()
    shown = texts(answer["blocks"])
    assert "*Première réponse* : en cours, échéance lun. 16 nov. 22:00 CET" in shown
    assert "Reclasser" in shown


def test_a_jira_key_finds_the_issue_stored_by_its_id(harness: Harness, fake: FakeSlack) -> None:
    harness.ingest(source="jira", external_key="10001", shown={"key": "OPS-42"})
    harness.command("ops-42", user=LEAD)
    (answer,) = fake.wait_responses()
    shown = texts(answer["blocks"])
    assert "OPS-42 · P2" in shown
    assert "https://acme.atlassian.net/browse/OPS-42" in str(answer["blocks"])


def test_explain_says_why_the_due_dates_are_what_they_are(
    harness: Harness, fake: FakeSlack
) -> None:
    harness.ingest()
    harness.command("explain ZD-1001", user=LEAD)
    (answer,) = fake.wait_responses()
    shown = texts(answer["blocks"])
    assert "Why ZD-1001's due dates are what they are" in shown
    assert "Target: 4h of calendar customer (Mon-Fri 09:00-17:00 (America/Los_Angeles))" in shown
    assert "Clock started Mon 16 Nov 12:00 EST" in shown
    assert "open time used so far:" in shown  # the engine's own account follows


def test_the_card_and_explain_name_the_policy_by_its_title_and_the_rule_that_chose_it(
    harness: Harness, fake: FakeSlack
) -> None:
    rules = {
        "rules": [
            {"name": "zmanda-brand", "policy": "zmanda", "when": {"brand": "2"}},
            {"name": "zoom-customers", "policy": "zoom", "default": True},
        ]
    }
    harness.tickets.router = Router(RoutingSpec.model_validate(rules), harness.tickets.policies)
    harness.ingest(routing={"brand": "1"})
    harness.command("ZD-1001", user=LEAD)
    (card,) = fake.wait_responses()
    assert "Policy *Zoom support response times*" in texts(card["blocks"])
    harness.command("explain ZD-1001", user=LEAD)
    (_, answer) = fake.wait_responses(2)
    shown = texts(answer["blocks"])
    assert "Policy Zoom support response times, as of" in shown
    assert "Under this policy by the routing rule *zoom-customers*" in shown


@pytest.mark.parametrize(
    ("user", "used", "scheduled"),
    [
        (LEAD, "Used so far: 1h of open time", "Scheduled until due: 3h of open time"),
        (
            AGENT,
            "Utilisé jusqu'ici : 1h de temps ouvré",
            "Prévu jusqu'à l'échéance : 3h de temps ouvré",
        ),
        (
            ASSIGNEE,
            "Usato finora: 1h di tempo lavorativo",
            "Previsto fino alla scadenza: 3h di tempo lavorativo",
        ),
        (POLISH, "Zużyte dotąd: 1h czasu pracy", "Zaplanowane do terminu: 3h czasu pracy"),
    ],
)
def test_explain_separates_the_time_used_so_far_from_the_time_scheduled_until_due(
    harness: Harness, fake: FakeSlack, user: str, used: str, scheduled: str
) -> None:
    fake.add_user(POLISH, "piotr@example.com", locale="pl-PL", tz="Europe/Warsaw")
    harness.ingest()
    harness.clock.now += timedelta(hours=1)  # one business hour of the 4h first response
    harness.command("explain ZD-1001", user=user)
    (answer,) = fake.wait_responses()
    shown = texts(answer["blocks"])
    assert used in shown and scheduled in shown
    assert "open time used so far: 1h of 4h" in shown  # the engine's account agrees
    assert "open time scheduled until due: 3h" in shown


@pytest.mark.parametrize(
    ("user", "prefix"),
    [(LEAD, "To do:"), (AGENT, "À faire :"), (ASSIGNEE, "Da fare:"), (POLISH, "Do zrobienia:")],
)
def test_the_card_shows_the_policys_action_note_instead_of_the_raw_tag(
    harness: Harness, fake: FakeSlack, user: str, prefix: str
) -> None:
    fake.add_user(POLISH, "piotr@example.com", locale="pl-PL", tz="Europe/Warsaw")
    harness.ingest(priority="P1", channel="email")  # a P1 must come by phone
    harness.command("ZD-1001", user=user)
    (answer,) = fake.wait_responses()
    shown = texts(answer["blocks"])
    assert f":point_right: {prefix}" in shown
    assert "Call the customer: a P1 must be reported by phone" in shown
    assert "sla_p1_not_by_phone" not in shown


def test_help(harness: Harness, fake: FakeSlack) -> None:
    harness.command("help", user=LEAD)
    (answer,) = fake.wait_responses()
    assert "/sla explain TICKET" in texts(answer["blocks"])


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("explain", "Name one ticket: `/sla explain ZD-123`."),
        ("explain ZD-1 ZD-2", "Name one ticket"),
        ("reclassify ZD-1001 P1", "Usage: `/sla reclassify TICKET PRIORITY REASON`"),
        ("frobnicate ZD-1", "I don't know the command `frobnicate`."),
        ("#general", "`#general` names no ticket."),
        ("https://acme.zendesk.com/agent/dashboard", "names no ticket"),
        ("help me please", "`/sla help` takes nothing after it."),
    ],
)
def test_bad_arguments_get_a_short_usage_message(
    harness: Harness, fake: FakeSlack, text: str, says: str
) -> None:
    harness.command(text, user=LEAD)
    (answer,) = fake.wait_responses()
    assert says in answer["text"]
    assert "Type `/sla help` for the commands." in answer["text"]


def test_an_unknown_ticket_is_explained(harness: Harness, fake: FakeSlack) -> None:
    harness.command("ZD-999", user=LEAD)
    (answer,) = fake.wait_responses()
    assert "slabot does not know ZD-999 yet" in answer["text"]


def test_reclassify_by_command_is_audited_written_back_and_confirmed(
    harness: Harness, fake: FakeSlack
) -> None:
    harness.ingest()
    harness.command("reclassify ZD-1001 p3 customer found a workaround", user=AGENT)
    (answer,) = fake.wait_responses()
    assert (
        "ZD-1001 : priorité passée de P2 à P3 par agent@example.com (Slack U0AGENT)"
        in answer["text"]
    )
    with Session(harness.engine) as session:
        entry = session.scalars(
            select(TicketEvent).where(TicketEvent.kind == "priority_changed")
        ).one()
    assert (entry.actor, entry.origin, entry.reason) == (
        "agent@example.com (Slack U0AGENT)",
        "slack",
        "customer found a workaround",
    )
    assert entry.payload["from"] == "P2" and entry.payload["to"] == "P3"
    assert entry.event_key == "reclassify:slack:command:1337.42.trigger"
    kinds = {item.kind: item.payload for item in harness.helpdesk_items()}
    assert kinds["set_priority"] == {"priority": "P3"}
    assert (
        "by agent@example.com (Slack U0AGENT) (via slack): customer found a workaround"
        in (kinds["add_note"]["body"])
    )


def test_a_refused_user_is_told_why_and_the_attempt_is_logged(
    harness: Harness, fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    harness.ingest()
    with caplog.at_level(logging.WARNING, logger="slabot.slack.authz"):
        harness.command("reclassify ZD-1001 P1 I want it faster", user=OUTSIDER)
        (answer,) = fake.wait_responses()
    assert "You may not reclassify tickets from Slack" in answer["text"]
    assert "<!subteam^S0LEADS>" in answer["text"]
    assert "refused reclassification of ZD-1001 by user U0OUTSIDER" in caplog.text
    assert harness.helpdesk_items() == []


def test_a_policy_violation_says_what_to_choose(harness: Harness, fake: FakeSlack) -> None:
    harness.ingest(environment="staging", priority="P4")
    harness.command("reclassify ZD-1001 P1 everything is on fire", user=LEAD)
    (answer,) = fake.wait_responses()
    assert (
        "P1 is for production issues only, and this ticket's environment is staging. "
        "Choose P4, or correct the environment in the helpdesk first." in answer["text"]
    )
    harness.command("reclassify ZD-1001 P9 because", user=LEAD, response="r2")
    answers = fake.wait_responses(2)
    assert (
        "P9 is not a priority of policy zoom. Choose one of P1, P2, P3, P4." in answers[1]["text"]
    )


def test_group_members_are_cached(harness: Harness, fake: FakeSlack) -> None:
    harness.ingest()
    harness.command("reclassify ZD-1001 P3 one", user=AGENT, response="a")
    fake.wait_responses(1)
    harness.command("reclassify ZD-1001 P2 two", user=AGENT, response="b")
    fake.wait_responses(2)
    assert len(fake.calls_to("usergroups.users.list")) == 1
    harness.monotonic[0] += 301  # past cache_seconds: read again
    harness.command("reclassify ZD-1001 P3 three", user=AGENT, response="c")
    fake.wait_responses(3)
    assert len(fake.calls_to("usergroups.users.list")) == 2


def test_a_bad_signature_is_refused_before_any_listener_runs(
    harness: Harness, fake: FakeSlack
) -> None:
    body = urlencode({"command": "/sla", "text": "help", "user_id": LEAD})
    request = BoltRequest(
        body=body,
        headers={
            "content-type": ["application/x-www-form-urlencoded"],
            "x-slack-signature": ["v0=" + "0" * 64],
            "x-slack-request-timestamp": [str(int(time.time()))],
        },
    )
    assert harness.app.dispatch(request).status == 401
    assert fake.calls == [] and fake.responses == []
