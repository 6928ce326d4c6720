"""``/sla``: signed slash commands through App.dispatch, answered through response_url."""

from __future__ import annotations

from tests.fakes.slack import FakeSlack
from tests.slack.slack_support import LEAD, Harness, texts


def test_the_card_shows_priority_plan_commitment_and_each_due_time_in_the_readers_zone(
    harness: Harness, fake: FakeSlack
) -> None:
    harness.ingest()
    response = harness.command("ZD-1001", user=LEAD)
    assert response.status == 200
    (answer,) = fake.wait_responses()
    shown = texts(answer["blocks"])
    print(shown)
    assert answer["response_type"] == "ephemeral"
