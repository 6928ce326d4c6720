"""Due fields agents read: ``format: local`` writes one named zone's local time and offset."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from conftest import CONFIG

from connectors.zendesk.config import parse_zendesk_config
from connectors.zendesk.mapping import due_field_values


def test_a_local_due_field_shows_the_teams_local_time_with_offset_and_zone() -> None:
    data = copy.deepcopy(CONFIG)
    data["zendesk"]["due_fields"]["restoration"] = {
        "id": 27651,
        "format": "local",
        "zone": "Europe/Paris",
    }
    config = parse_zendesk_config(data)
    # Paris leaves summer time on Sunday 25 October 2026 at 03:00: both sides of it.
    before = datetime(2026, 10, 24, 8, 30, tzinfo=UTC)
    after = datetime(2026, 10, 26, 8, 30, tzinfo=UTC)
    values = [
        due_field_values({"first_response": at, "restoration": at}, config)
        for at in (before, after)
    ]
    assert [v["restoration"] for v in values] == [
        "2026-10-24 10:30 +02:00 (Europe/Paris)",
        "2026-10-26 09:30 +01:00 (Europe/Paris)",
    ]
    # The default stays the machine-comparable instant (triggers may compare it).
    assert values[0]["first_response"] == "2026-10-24T08:30:00Z"
