"""A ticket a real Zendesk account served (tests/fixtures/real/zendesk, see SOURCES.md), through
the running service: the fake Zendesk is made to hold the recorded ticket, its audits, its
people, organization and group, and a signed webhook names the ticket. The service reads it
through zenpy and ingests it; every expected value is read off the recorded bodies.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from slabot.demo.environment import DemoSystems
from slabot.store.models import StoredTicket
from tests.e2e.harness import RunningService, start_service, wait_until

pytestmark = pytest.mark.slow

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "zendesk"
AFTER_THE_RECORDING = datetime(2015, 12, 30, 12, 0, tzinfo=UTC)
"""The service's clock: the day the answers were recorded."""


def recorded(cassette: str) -> dict[str, Any]:
    """The recorded answers of one cassette (decoded JSON), by request path."""
    data = json.loads((REAL / cassette).read_text(encoding="utf-8"))
    return {
        "/" + item["request"]["uri"].split("/", 3)[3]: json.loads(
            base64.b64decode(item["response"]["body"]["base64_string"])
        )
        for item in data["http_interactions"]
    }


@pytest.fixture
def running(systems: DemoSystems, tmp_path: Path, pg_url: str) -> Iterator[RunningService]:
    service = start_service(systems, tmp_path, pg_url, AFTER_THE_RECORDING)
    try:
        yield service
    finally:
        service.stop()


def test_a_recorded_zendesk_ticket_is_read_and_ingested_through_the_service(
    running: RunningService,
) -> None:
    ticket = recorded("tickets_list_and_show.cassette.json")["/api/v2/tickets/1"]["ticket"]
    audits = recorded("ticket_audits.cassette.json")["/api/v2/tickets/1/audits"]["audits"]
    users = recorded("users_list_and_show.cassette.json")["/api/v2/users"]["users"]
    organizations = recorded("organizations_list_and_show.cassette.json")["/api/v2/organizations"][
        "organizations"
    ]
    groups = recorded("groups_list_and_show.cassette.json")["/api/v2/groups"]["groups"]
    zendesk = running.systems.zendesk
    zendesk.tickets[1] = ticket
    zendesk.audits[1] = audits
    zendesk.users.update({user["id"]: user for user in users})
    zendesk.organizations.update({org["id"]: org for org in organizations})
    zendesk.groups.update({group["id"]: group for group in groups})

    reply = running.post("/webhooks/zendesk", *zendesk.webhook({"ticket_id": "1"}))
    assert reply.status == 202, reply.text

    def row() -> StoredTicket | None:
        with Session(running.service.runtime.engine) as session:
            return session.scalars(
                select(StoredTicket).where(
                    StoredTicket.source == "zendesk", StoredTicket.external_key == "1"
                )
            ).one_or_none()

    wait_until(row, "ticket 1 stored")
    running.settle()
    stored = row()
    assert stored is not None
    assert stored.status == ticket["status"] == "pending"
    assert stored.created_at.replace(tzinfo=UTC) == datetime(2012, 9, 6, 20, 15, 9, tzinfo=UTC)
    requester = next(user for user in users if user["id"] == ticket["requester_id"])
    assert requester["time_zone"] == "Alaska"
    assert stored.customer_timezone == "America/Juneau"
    # The first public reply by an agent who is not the requester: audit 24054202, whose
    # comment's author (20014187) is an agent, while the audit's author is the requester.
    assert stored.first_response_at is not None
    assert stored.first_response_at.replace(tzinfo=UTC) == datetime(
        2013, 6, 10, 20, 9, 20, tzinfo=UTC
    )
    # The account's organizations carry no support plan and the policy has no default: no
    # targets, so there is nothing to write back, and nothing was written.
    assert "support_plan" not in json.dumps(organizations)
    assert stored.plan is None
    assert [c for c in zendesk.calls if c.method == "PUT"] == []
