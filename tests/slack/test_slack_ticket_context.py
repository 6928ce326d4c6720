"""Ticket context in Slack: the subject, requester and organization, group and assignee name
(``Unassigned`` flagged) on the card, nudges, breach messages, digests and App Home, in the
four languages, escaped and cut to Slack's limits (the fake Slack checks every payload)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from slabot.fakes.slack import FakeSlack
from slabot.slack.blocks import ELLIPSIS
from slabot.slack.texts import MAX_SUBJECT
from tests.slack.slack_support import (
    AGENT,
    ASSIGNEE,
    ASSIGNEE_EMAIL,
    LEAD,
    MONDAY_0900_LA,
    Harness,
    texts,
)

POLISH = "U0PIOTR"
FIRST_RESPONSE_ONLY = {"thresholds": {"restoration": [], "next_update": []}}
SUBJECT = "Phone calls drop after 30 seconds"
CONTEXT: dict[str, Any] = {
    "priority": "P2",
    "tags": [],
    "assignee_email": ASSIGNEE_EMAIL,
    "assignee_name": "Ana Agente",
    "subject": SUBJECT,
    "requester": "Roger Wilco",
    "organization": "Initech GmbH",
    "queue": "Tier 2",
}
UNASSIGNED: dict[str, Any] = {**CONTEXT, "assignee_email": None, "assignee_name": None}

CARDS = {
    LEAD: (
        "“Phone calls drop after 30 seconds”",
        "*Requester*\nRoger Wilco (Initech GmbH)",
        "*Group*\nTier 2",
        "*Assignee*\nAna Agente",
        "*Assignee*\n:warning: *Unassigned*",
    ),
    AGENT: (
        "« Phone calls drop after 30 seconds »",
        "*Demandeur*\nRoger Wilco (Initech GmbH)",
        "*Groupe*\nTier 2",
        "*Assigné à*\nAna Agente",
        "*Assigné à*\n:warning: *Non assigné*",
    ),
    ASSIGNEE: (
        "«Phone calls drop after 30 seconds»",
        "*Richiedente*\nRoger Wilco (Initech GmbH)",
        "*Gruppo*\nTier 2",
        "*Assegnatario*\nAna Agente",
        "*Assegnatario*\n:warning: *Non assegnato*",
    ),
    POLISH: (
        "„Phone calls drop after 30 seconds”",
        "*Zgłaszający*\nRoger Wilco (Initech GmbH)",
        "*Grupa*\nTier 2",
        "*Osoba przypisana*\nAna Agente",
        "*Osoba przypisana*\n:warning: *Nieprzypisany*",
    ),
}


def posted(fake: FakeSlack) -> list[dict[str, Any]]:
    return [c.args for c in fake.calls_to("chat.postMessage") if not c.args.get("thread_ts")]


def step(harness: Harness, hours: float) -> None:
    harness.clock.now = MONDAY_0900_LA + timedelta(hours=hours)
    harness.run_nudges()
    harness.flush()


@pytest.mark.parametrize("user", list(CARDS))
def test_the_card_shows_subject_requester_group_and_assignee_in_the_readers_language(
    harness: Harness, fake: FakeSlack, user: str
) -> None:
    fake.add_user(POLISH, "piotr@example.com", locale="pl-PL", tz="Europe/Warsaw")
    subject, requester, group, assignee, unassigned = CARDS[user]
    harness.ingest(shown=CONTEXT)
    harness.ingest(external_key="1002", shown=UNASSIGNED)
    harness.command("ZD-1001", user=user)
    (card,) = fake.wait_responses()
    shown = texts(card["blocks"])
    assert subject in shown and requester in shown and group in shown and assignee in shown
    # The subject comes right under the header, before the policy and the clocks.
    assert card["blocks"][1]["text"]["text"] == subject
    harness.command("ZD-1002", user=user)
    _, other = fake.wait_responses(2)
    assert unassigned in texts(other["blocks"])


def test_a_ticket_without_context_says_so_rather_than_leaving_blanks(
    harness: Harness, fake: FakeSlack
) -> None:
    harness.ingest(shown={"priority": "P2", "tags": []})  # a connector that stores none
    harness.command("ZD-1001", user=LEAD)
    (card,) = fake.wait_responses()
    shown = texts(card["blocks"])
    assert "*Requester*\nnot known" in shown and "*Group*\nnot known" in shown
    assert "*Assignee*\n:warning: *Unassigned*" in shown
    assert "“" not in shown  # no subject: no empty quotes


def test_subjects_and_names_are_escaped_and_a_long_subject_is_cut_safely(
    harness: Harness, fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    hostile = "<!channel> refund & <https://evil.example|click here> " + "é" * 400
    harness.ingest(
        shown={
            **CONTEXT,
            "subject": hostile,
            "requester": "<@U0LEAD> & co",
            "organization": "A<B>C",
            "queue": "<#C0SUPPORT>",
            "assignee_name": "Ana & <Bob>",
        }
    )
    with caplog.at_level(logging.INFO):
        harness.command("ZD-1001", user=LEAD)
        (card,) = fake.wait_responses()
    shown = texts(card["blocks"])
    assert "<!channel>" not in shown and "<https://evil" not in shown and "<@U0LEAD>" not in shown
    assert "“&lt;!channel&gt; refund &amp; &lt;https://evil.example|click here&gt; éé" in shown
    assert "&lt;@U0LEAD&gt; &amp; co (A&lt;B&gt;C)" in shown
    assert "*Group*\n&lt;#C0SUPPORT&gt;" in shown and "*Assignee*\nAna &amp; &lt;Bob&gt;" in shown
    subject = card["blocks"][1]["text"]["text"]
    assert subject.endswith(f"{ELLIPSIS}”") and "&amp" in subject
    # Cut before escaping: at most MAX_SUBJECT characters of the subject itself.
    unescaped = subject[1:-1].replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert len(unescaped) == MAX_SUBJECT
    assert fake.problems == []  # within Block Kit's limits
    # Customer data stays out of the log at INFO.
    assert not [
        r for r in caplog.records if "refund" in r.getMessage() or "Wilco" in r.getMessage()
    ]


READERS = {
    # reader: (their e-mail, direct message channel, context line, breach words)
    LEAD: (
        "lead@example.com",
        "D0LEAD",
        "“Phone calls drop after 30 seconds” · From Roger Wilco (Initech GmbH) · Group Tier 2"
        " · Assignee Ana Agente",
        "breached, it was due",
    ),
    AGENT: (
        "agent@example.com",
        "D0AGENT",
        "« Phone calls drop after 30 seconds » · De Roger Wilco (Initech GmbH) · Groupe Tier 2"
        " · Assigné à Ana Agente",
        "échéance dépassée",
    ),
    ASSIGNEE: (
        ASSIGNEE_EMAIL,
        "D0ANA",
        "«Phone calls drop after 30 seconds» · Da Roger Wilco (Initech GmbH) · Gruppo Tier 2"
        " · Assegnato a Ana Agente",
        "scadenza superata",
    ),
    POLISH: (
        "piotr@example.com",
        "D0PIOTR",
        "„Phone calls drop after 30 seconds” · Od Roger Wilco (Initech GmbH) · Grupa Tier 2"
        " · Przypisany: Ana Agente",
        "termin przekroczony",
    ),
}


@pytest.mark.parametrize("reader", list(READERS))
def test_the_nudge_and_the_breach_message_carry_the_context_in_the_assignees_language(
    make_harness: Callable[..., Harness],
    fake: FakeSlack,
    caplog: pytest.LogCaptureFixture,
    reader: str,
) -> None:
    email, channel, line, breached = READERS[reader]
    fake.add_user(POLISH, "piotr@example.com", locale="pl-PL", tz="Europe/Warsaw")
    harness = make_harness(nudges=FIRST_RESPONSE_ONLY)
    harness.ingest(shown={**CONTEXT, "assignee_email": email})
    with caplog.at_level(logging.INFO):
        step(harness, 3)  # 75% of the 4h first response: a direct message to the assignee
        (message,) = posted(fake)
        assert message["channel"] == channel
        assert line in texts(message["blocks"])
        step(harness, 4)  # breached: the message is rewritten in place, context kept
    (update,) = [c.args for c in fake.calls_to("chat.update")]
    shown = texts(update["blocks"])
    assert breached in shown and line in shown
    assert SUBJECT not in message["text"]  # the notification text stays short
    assert not [r for r in caplog.records if SUBJECT in r.getMessage()]
    assert not [r for r in caplog.records if "Wilco" in r.getMessage()]


def test_an_unassigned_ticket_is_flagged_in_the_queue_channels_nudge(
    make_harness: Callable[..., Harness], fake: FakeSlack
) -> None:
    harness = make_harness(nudges=FIRST_RESPONSE_ONLY)
    harness.ingest(shown={**UNASSIGNED, "queue": "billing"})
    step(harness, 3)
    (message,) = posted(fake)
    assert message["channel"] == "C0BILLING"  # the queue's channel speaks Polish
    shown = texts(message["blocks"])
    assert "„Phone calls drop after 30 seconds” · Od Roger Wilco (Initech GmbH)" in shown
    assert "Grupa billing · :warning: *Nieprzypisany*" in shown


DIGEST_WORDS = {
    "en": (
        "“Phone calls drop after 30 seconds” · From Roger Wilco (Initech GmbH) · Group Tier 2",
        "*Unassigned*",
    ),
    "fr": (
        "« Phone calls drop after 30 seconds » · De Roger Wilco (Initech GmbH) · Groupe Tier 2",
        "*Non assigné*",
    ),
    "it": (
        "«Phone calls drop after 30 seconds» · Da Roger Wilco (Initech GmbH) · Gruppo Tier 2",
        "*Non assegnato*",
    ),
    "pl": (
        "„Phone calls drop after 30 seconds” · Od Roger Wilco (Initech GmbH) · Grupa Tier 2",
        "*Nieprzypisany*",
    ),
}


@pytest.mark.parametrize("language", list(DIGEST_WORDS))
def test_the_digest_lines_name_subject_requester_group_and_owner(
    make_harness: Callable[..., Harness], fake: FakeSlack, language: str
) -> None:
    about, unassigned = DIGEST_WORDS[language]
    digest = {
        "channel": "C0SUPPORT",
        "schedule": "0 9 * * mon-fri",
        "timezone": "Europe/Paris",
        "language": language,
    }
    harness = make_harness(digests=[digest])
    harness.ingest(shown=CONTEXT)
    harness.ingest(external_key="1002", shown=UNASSIGNED)
    harness.clock.now = MONDAY_0900_LA + timedelta(hours=5)  # both breached
    assert harness.run_digest()
    harness.flush()
    (message,) = posted(fake)
    lines = {
        line.split("|ZD-")[1][:4]: line
        for line in texts(message["blocks"]).splitlines()
        if "|ZD-" in line
    }
    assert about in lines["1001"] and lines["1001"].endswith("· Ana Agente")
    assert about in lines["1002"] and lines["1002"].endswith(f"· :warning: {unassigned}")
    assert fake.problems == []


@pytest.mark.parametrize("reader", list(READERS))
def test_app_home_shows_each_tickets_subject_requester_and_group_in_the_viewers_language(
    harness: Harness, fake: FakeSlack, reader: str
) -> None:
    email, _, line, _ = READERS[reader]
    fake.add_user(POLISH, "piotr@example.com", locale="pl-PL", tz="Europe/Warsaw")
    harness.ingest(shown={**CONTEXT, "assignee_email": email})
    harness.clock.now = MONDAY_0900_LA + timedelta(hours=3, minutes=30)
    harness.open_home(reader)
    fake.wait_calls("views.publish")
    shown = texts(fake.home[reader]["blocks"])
    about = line.rsplit(" · ", 1)[0]  # the viewer's own tickets: no assignee repeated
    assert about in shown and line not in shown
    assert fake.problems == []
