"""Loud breaches: one message per ticket, a thread reply that mentions who must act,
re-announcements until someone takes it, and "I'm on it" / "Assign to me" (written back to
Zendesk and Jira through their real clients against the fakes), in all four languages."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from connectors.jira.client import JiraClient
from connectors.jira.config import parse_jira_config
from connectors.jira.settings import JiraSettings
from connectors.jira.writeback import JiraWriter
from connectors.zendesk.client import ZendeskClient
from connectors.zendesk.config import parse_zendesk_config
from connectors.zendesk.settings import ZendeskSettings
from connectors.zendesk.writeback import ZendeskWriter
from slabot.fakes.jira import FakeJira
from slabot.fakes.slack import FakeSlack
from slabot.fakes.zendesk import FakeZendesk
from slabot.slack import ids
from slabot.store.models import OutboxItem, TicketEvent
from tests.slack.slack_support import (
    ASSIGNEE,
    ASSIGNEE_EMAIL,
    LEAD,
    MONDAY_0900_LA,
    Harness,
    texts,
)

FIRST_RESPONSE_ONLY = {"thresholds": {"restoration": [], "next_update": []}}
DUE = MONDAY_0900_LA + timedelta(hours=4)  # Zoom premier P2: first response due 13:00 LA


def step(harness: Harness, minutes_after_due: int) -> None:
    harness.clock.now = DUE + timedelta(minutes=minutes_after_due)
    harness.run_nudges()
    harness.flush()


def top_level(fake: FakeSlack) -> list[Any]:
    return [c for c in fake.calls_to("chat.postMessage") if not c.args.get("thread_ts")]


def replies(fake: FakeSlack) -> list[Any]:
    return [c for c in fake.calls_to("chat.postMessage") if c.args.get("thread_ts")]


def buttons(message: dict[str, Any]) -> dict[str, str]:
    """Action id -> label of the message's buttons."""
    found = {}
    for block in message["blocks"]:
        if block["type"] == "actions":
            for element in block["elements"]:
                found[element["action_id"]] = element["text"]["text"]
    return found


def events(harness: Harness, kind: str) -> list[TicketEvent]:
    with Session(harness.engine) as session:
        return list(session.scalars(select(TicketEvent).where(TicketEvent.kind == kind)))


# --- one message per ticket ----------------------------------------------------------------


def test_one_message_per_ticket_other_clocks_reply_in_its_thread(
    make_harness: Callable[..., Harness], fake: FakeSlack
) -> None:
    harness = make_harness(nudges={"renotify_minutes": None})
    harness.ingest()
    step(harness, -60)  # 12:00 LA: 75% of the first response: the ticket's message
    (root,) = top_level(fake)
    root_ts = root.response["ts"]
    step(harness, 0)  # 13:00: the first response breaches: rewritten, and a thread reply
    step(harness, 120)  # 15:00: 75% of the restoration: a reply, not a second message
    assert len(top_level(fake)) == 1
    breach, restoration = replies(fake)
    assert {breach.args["thread_ts"], restoration.args["thread_ts"]} == {root_ts}
    assert "Prima risposta" in breach.args["text"] and "<@U0ANA>" in breach.args["text"]
    assert "Ripristino" in texts(restoration.args["blocks"]) and "75%" in restoration.args["text"]
    assert "scadenza superata" in texts(fake.calls_to("chat.update")[-1].args["blocks"])


# --- the breach reply, its buttons and "I'm on it", per language ----------------------------

LANGUAGES = [
    ("en-US", "is breached, it was due", "I'm on it", "Assign to me", "is on it"),
    ("fr-FR", "est dépassé, l'échéance était", "Je m'en occupe", "M'assigner", "s'en occupe"),
    ("it-IT", "è scaduto, la scadenza era", "Me ne occupo io", "Assegna a me", "se ne occupa"),
    ("pl-PL", "termin przekroczony, minął", "Zajmuję się tym", "Przypisz do mnie", "zajmuje się"),
]


@pytest.mark.parametrize(("locale", "breached", "ack", "assign", "acked"), LANGUAGES)
def test_a_breach_replies_mentioning_the_assignee_and_im_on_it_is_recorded_and_said(
    make_harness: Callable[..., Harness],
    fake: FakeSlack,
    locale: str,
    breached: str,
    ack: str,
    assign: str,
    acked: str,
) -> None:
    fake.add_user(ASSIGNEE, ASSIGNEE_EMAIL, locale=locale, tz="Europe/Rome")
    harness = make_harness(nudges=FIRST_RESPONSE_ONLY)
    harness.ingest()
    step(harness, 0)
    (message,) = top_level(fake)
    assert message.args["channel"] == "D0ANA"
    labels = buttons(message.args)
    assert (labels[ids.ACK], labels[ids.ASSIGN]) == (ack, assign)
    (reply,) = replies(fake)
    assert reply.args["thread_ts"] == message.response["ts"]
    assert reply.args["text"].startswith(":rotating_light: <@U0ANA> <https://acme.zendesk.com")
    assert breached in reply.args["text"]

    (breach,) = [n for n in harness.nudges() if n.threshold == 100]
    response = harness.click(ids.ACK, str(breach.id), user=ASSIGNEE)
    assert response.status == 200
    fake.wait_for(lambda: len(replies(fake)) == 2)
    said = replies(fake)[-1].args
    assert said["thread_ts"] == message.response["ts"]
    assert said["text"].startswith(f":raising_hand: <@{ASSIGNEE}> {acked}")
    (entry,) = events(harness, "acknowledged")
    assert entry.actor == f"{ASSIGNEE_EMAIL} (Slack {ASSIGNEE})"
    assert entry.payload["target"] == "first_response" and entry.payload["slack_user"] == ASSIGNEE
    harness.flush()  # the message shows who took it
    shown = texts(fake.calls_to("chat.update")[-1].args["blocks"])
    assert f"<@{ASSIGNEE}> {acked}" in shown

    # A second click records and says nothing more.
    harness.click(ids.ACK, str(breach.id), user=ASSIGNEE)
    harness.executor.submit(lambda: None).result()
    harness.close()
    assert len(events(harness, "acknowledged")) == 1 and len(replies(fake)) == 2


# --- re-announcements -----------------------------------------------------------------------


def test_a_breach_nobody_takes_is_announced_again_every_n_minutes_until_someone_does(
    make_harness: Callable[..., Harness], fake: FakeSlack
) -> None:
    harness = make_harness(nudges={**FIRST_RESPONSE_ONLY, "renotify_minutes": 30})
    harness.ingest()
    step(harness, 0)
    for minutes in (29, 30, 45, 60):
        step(harness, minutes)
    announced = [c.args["text"] for c in replies(fake)]
    assert len(announced) == 3  # at 13:00, 13:30 and 14:00
    assert all("<@U0ANA>" in text for text in announced)
    assert "è ancora scaduto" in announced[1] and "è ancora scaduto" in announced[2]

    (breach,) = [n for n in harness.nudges() if n.threshold == 100]
    harness.click(ids.ACK, str(breach.id), user=ASSIGNEE)
    fake.wait_for(lambda: len(replies(fake)) == 4)  # "se ne occupa"
    for minutes in (90, 120, 180):
        step(harness, minutes)
    assert len(replies(fake)) == 4  # taken: never announced again


@pytest.mark.parametrize(
    ("priority", "mention", "expected"),
    [
        ("P1", "here", "<!here>"),
        ("P1", "S0ONCALL", "<!subteam^S0ONCALL>"),
        ("P2", "here", None),  # only the configured priorities call everyone
    ],
)
def test_an_unassigned_breach_mentions_the_configured_group_or_here(
    make_harness: Callable[..., Harness],
    fake: FakeSlack,
    priority: str,
    mention: str,
    expected: str | None,
) -> None:
    harness = make_harness(nudges={**FIRST_RESPONSE_ONLY, "unassigned_mention": mention})
    harness.ingest(priority=priority, shown={"priority": priority, "tags": []})
    # Premier P1: first response 1h around the clock; P2: 4 business hours.
    harness.clock.now = MONDAY_0900_LA + timedelta(hours=1 if priority == "P1" else 4)
    harness.run_nudges()
    harness.flush()
    (message,) = top_level(fake)
    assert message.args["channel"] == "C0SUPPORT"  # no assignee: the default channel
    (reply,) = replies(fake)
    if expected is None:
        assert "<!here>" not in reply.args["text"] and "<!subteam" not in reply.args["text"]
        assert reply.args["text"].startswith(":rotating_light: <https://acme.zendesk.com")
    else:
        assert reply.args["text"].startswith(f":rotating_light: {expected} <https://")


def test_the_mention_setting_refuses_a_group_handle() -> None:
    from slabot.slack.config import SlackConfigError
    from tests.slack.slack_support import config

    with pytest.raises(SlackConfigError, match=r"slack\.nudges\.unassigned_mention"):
        config(nudges={"unassigned_mention": "@oncall"})


# --- Assign to me, written back -------------------------------------------------------------


@pytest.fixture
def zendesk() -> Iterator[FakeZendesk]:
    server = FakeZendesk(now=MONDAY_0900_LA).start()
    try:
        yield server
    finally:
        server.stop()


def zendesk_writer(harness: Harness, zendesk: FakeZendesk) -> ZendeskWriter:
    settings = ZendeskSettings.from_environ(
        {
            "ZENDESK_URL": zendesk.url,
            "ZENDESK_EMAIL": "slabot@example.com",
            "ZENDESK_API_TOKEN": "test-token",
            "ZENDESK_WEBHOOK_SECRET": "unused",
        }
    )
    client = ZendeskClient(settings, timeout=2.0, job_poll_interval=0.0, sleep=lambda _s: None)
    config = parse_zendesk_config({"zendesk": {"policy": "zoom"}})
    return ZendeskWriter(client, config, harness.outbox)


def test_assign_to_me_assigns_the_zendesk_ticket_to_the_agent_with_the_clickers_address(
    make_harness: Callable[..., Harness], fake: FakeSlack, zendesk: FakeZendesk
) -> None:
    zendesk.add_user(500, "end-user", email="customer@example.com")
    zendesk.add_user(700, "agent", email="Lead@Example.com")
    zendesk.add_ticket(1001, requester_id=500, assignee_id=None)
    harness = make_harness(nudges=FIRST_RESPONSE_ONLY)
    harness.ingest()
    step(harness, 0)
    (breach,) = [n for n in harness.nudges() if n.threshold == 100]

    harness.click(ids.ASSIGN, str(breach.id), user=LEAD)  # lead@example.com in Slack
    fake.wait_for(lambda: len(replies(fake)) == 2)
    said = replies(fake)[-1].args["text"]  # in the message's language (Ana's Italian)
    assert said.startswith(f":bust_in_silhouette: <@{LEAD}> prende ZD-1001")
    assert "lead@example.com" in said
    (entry,) = events(harness, "assigned")
    assert entry.payload["email"] == "lead@example.com"
    assert entry.actor == f"lead@example.com (Slack {LEAD})"
    (owed,) = [i for i in harness.helpdesk_items() if i.kind == "set_assignee"]
    assert (owed.target_system, owed.payload) == ("zendesk", {"email": "lead@example.com"})

    report = zendesk_writer(harness, zendesk).flush("test-worker")
    assert (report.sent, report.dead) == (1, 0)
    assert zendesk.tickets[1001]["assignee_id"] == 700
    changes = [e for a in zendesk.audits[1001] for e in a["events"] if e["type"] == "Change"]
    assert {"field_name": "assignee_id", "value": 700}.items() <= changes[-1].items()
    # Assigning is taking it: the breach is not announced again.
    for minutes in (30, 60):
        step(harness, minutes)
    assert len(replies(fake)) == 2


def test_assign_to_me_without_a_zendesk_agent_of_that_address_dead_letters_only_that_write(
    make_harness: Callable[..., Harness], fake: FakeSlack, zendesk: FakeZendesk
) -> None:
    zendesk.add_user(500, "end-user", email="customer@example.com")
    zendesk.add_ticket(1001, requester_id=500)
    harness = make_harness(nudges=FIRST_RESPONSE_ONLY)
    harness.ingest()
    step(harness, 0)
    (breach,) = [n for n in harness.nudges() if n.threshold == 100]
    harness.click(ids.ASSIGN, str(breach.id), user=LEAD)
    fake.wait_for(lambda: len(events(harness, "assigned")) == 1)
    harness.tickets.reclassify("zendesk", "1001", "P1", "lead", "customer is down", "slack")
    report = zendesk_writer(harness, zendesk).flush("test-worker")
    assert report.dead == 1 and report.sent >= 1
    assert zendesk.tickets[1001]["priority"] == "urgent"  # the priority still went
    (dead,) = harness.outbox.dead_letters("zendesk")
    assert dead.kind == "set_assignee"
    assert "no Zendesk agent has the e-mail address 'lead@example.com'" in (dead.last_error or "")


def test_assign_to_me_without_an_address_in_slack_says_so_to_the_clicker_only(
    make_harness: Callable[..., Harness], fake: FakeSlack
) -> None:
    fake.add_user("U0NOMAIL", None, locale="fr-FR")
    harness = make_harness(nudges=FIRST_RESPONSE_ONLY)
    harness.ingest()
    step(harness, 0)
    (breach,) = [n for n in harness.nudges() if n.threshold == 100]
    harness.click(ids.ASSIGN, str(breach.id), user="U0NOMAIL")
    (ephemeral,) = fake.wait_calls("chat.postEphemeral")
    assert ephemeral.args["user"] == "U0NOMAIL"
    assert ephemeral.args["text"].startswith("slabot ne peut pas vous assigner")
    assert events(harness, "assigned") == [] and len(replies(fake)) == 1
    with Session(harness.engine) as session:
        kinds = session.scalars(select(OutboxItem.kind).where(OutboxItem.target_system != "slack"))
        assert "set_assignee" not in set(kinds)


def test_assign_to_me_assigns_the_jira_issue_to_the_account_found_by_address(
    make_harness: Callable[..., Harness], fake: FakeSlack
) -> None:
    jira = FakeJira(now=MONDAY_0900_LA).start()
    try:
        jira.add_user("carl", "Carl Customer", account_type="customer")
        jira.add_user("acc-lead", "Lee Lead", email="lead@example.com")
        jira.add_issue(1, reporter="carl")
        harness = make_harness(nudges=FIRST_RESPONSE_ONLY)
        harness.ingest(
            source="jira",
            external_key="10001",
            shown={"key": "SUP-1", "assignee_email": ASSIGNEE_EMAIL, "tags": []},
        )
        step(harness, 0)
        (breach,) = [n for n in harness.nudges() if n.threshold == 100]
        harness.click(ids.ASSIGN, str(breach.id), user=LEAD)
        fake.wait_for(lambda: len(events(harness, "assigned")) == 1)
        settings = JiraSettings.from_environ(
            {
                "JIRA_URL": jira.url,
                "JIRA_EMAIL": "slabot@example.com",
                "JIRA_API_TOKEN": "test-token",
                "JIRA_WEBHOOK_SECRET": "unused",
            }
        )
        config = parse_jira_config({"jira": {"policy": "zoom", "projects": ["SUP"]}})
        writer = JiraWriter(JiraClient(settings, config, timeout=2.0), config, harness.outbox)
        report = writer.flush("test-worker")
        assert report.dead == 0 and report.sent >= 1  # the priority and labels go too
        assert jira.issues["10001"]["fields"]["assignee"]["accountId"] == "acc-lead"
        searched = [c for c in jira.calls if "/user/search" in c.path]
        assert [c.query.get("query") for c in searched] == [["lead@example.com"]]
    finally:
        jira.stop()


def test_taking_a_breach_on_postgresql(
    make_harness: Callable[..., Harness], fake: FakeSlack, pg_engine: Engine
) -> None:
    harness = make_harness(pg_engine, nudges={**FIRST_RESPONSE_ONLY, "renotify_minutes": 30})
    harness.ingest()
    step(harness, 0)
    step(harness, 30)  # announced again
    assert len(replies(fake)) == 2
    (breach,) = [n for n in harness.nudges() if n.threshold == 100]
    harness.click(ids.ASSIGN, str(breach.id), user=LEAD)
    fake.wait_for(lambda: len(replies(fake)) == 3)
    assert len(events(harness, "assigned")) == 1
    assert [i.kind for i in harness.helpdesk_items() if i.kind == "set_assignee"] == [
        "set_assignee"
    ]
    step(harness, 60)
    assert len(replies(fake)) == 3
