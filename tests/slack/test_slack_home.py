"""App Home: opening the tab publishes the viewer's own tickets at risk."""

from __future__ import annotations

from datetime import timedelta

from slabot.fakes.slack import FakeSlack
from tests.slack.slack_support import ASSIGNEE, LEAD, MONDAY_0900_LA, Harness, texts


def test_the_home_tab_lists_the_viewers_tickets_at_risk_in_their_language(
    harness: Harness, fake: FakeSlack
) -> None:
    harness.ingest()  # Ana's: first response due 13:00 LA, 75% at 12:00
    harness.ingest(external_key="1002", shown={"assignee_email": "someone.else@example.com"})
    harness.clock.now = MONDAY_0900_LA + timedelta(hours=3, minutes=30)
    response = harness.open_home(ASSIGNEE)
    assert response.status == 200
    (call,) = fake.wait_calls("views.publish")
    assert call.args["user_id"] == ASSIGNEE
    view = fake.home[ASSIGNEE]
    shown = texts(view["blocks"])
    assert "I tuoi ticket a rischio" in shown
    assert "ZD-1001" in shown and "ZD-1002" not in shown
    assert "Prima risposta: in corso, scadenza lun 16 nov 22:00 CET" in shown
    reclassify = [b["accessory"] for b in view["blocks"] if "accessory" in b]
    assert reclassify[0]["action_id"] == "sla_reclassify"


def test_a_viewer_with_nothing_at_risk_is_told_so(harness: Harness, fake: FakeSlack) -> None:
    harness.open_home(LEAD)
    fake.wait_calls("views.publish")
    assert "None of your tickets is breached or at risk in the next 24 h." in texts(
        fake.home[LEAD]["blocks"]
    )


def test_a_viewer_without_an_email_address_is_told_why_nothing_shows(
    harness: Harness, fake: FakeSlack
) -> None:
    fake.add_user("U0NOMAIL", None, locale="pl-PL")
    harness.open_home("U0NOMAIL")
    fake.wait_calls("views.publish")
    assert "Twój profil w Slacku nie ma adresu e-mail" in texts(fake.home["U0NOMAIL"]["blocks"])
