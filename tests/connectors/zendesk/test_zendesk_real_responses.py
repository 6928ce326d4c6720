"""Responses real Zendesk sent (tests/fixtures/real/zendesk, see SOURCES.md) through zenpy.

The cassettes were recorded by zendesk_api_client_rb against a Zendesk account. Each answer
is served, byte for byte, to the real client wrapper (zenpy underneath, ``responses``
answering its requests) at the URL it asks for; ``fetch`` reads ticket 1, its audits, the
people and the organization, and ``map_ticket`` turns it into slabot's snapshot. The
expected values are read off the recorded bodies, not off the mapping.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import responses

from connectors.zendesk.client import ZendeskClient
from connectors.zendesk.config import ZendeskConfig
from connectors.zendesk.mapping import map_ticket
from connectors.zendesk.settings import ZendeskSettings

REAL = Path(__file__).resolve().parents[2] / "fixtures" / "real" / "zendesk"
BASE = "https://zendeskapi.zd-staging.com/api/v2"
"""The account the cassettes were recorded on: the URLs in the bodies point there."""


def recorded(cassette: str) -> dict[str, bytes]:
    """The recorded answers of one cassette, by request path (``/api/v2/tickets/1``)."""
    data = json.loads((REAL / cassette).read_text(encoding="utf-8"))
    answers = {}
    for interaction in data["http_interactions"]:
        path = "/" + interaction["request"]["uri"].split("/", 3)[3]
        body = interaction["response"]["body"]
        answers[path] = base64.b64decode(body["base64_string"])
    return answers


TICKETS = recorded("tickets_list_and_show.cassette.json")
AUDITS = recorded("ticket_audits.cassette.json")
USERS = recorded("users_list_and_show.cassette.json")
ORGANIZATIONS = recorded("organizations_list_and_show.cassette.json")
GROUPS = recorded("groups_list_and_show.cassette.json")


def entry(answer: bytes, collection: str, wanted: int) -> dict[str, Any]:
    """One record of a recorded list answer (``users``, ``organizations``)."""
    return next(item for item in json.loads(answer)[collection] if item["id"] == wanted)


@pytest.fixture
def zendesk() -> Iterator[responses.RequestsMock]:
    """Zendesk answering with the recorded bodies."""
    ticket = json.loads(TICKETS["/api/v2/tickets/1"])["ticket"]
    users = USERS["/api/v2/users"]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        # slabot's account: an agent of that account (its real record).
        me = entry(users, "users", 20014187)
        mock.get(f"{BASE}/users/me.json", json={"user": me})
        mock.get(f"{BASE}/tickets/1.json", body=TICKETS["/api/v2/tickets/1"])
        audits = AUDITS["/api/v2/tickets/1/audits"]
        mock.get(f"{BASE}/tickets/1/audits.json", body=audits)
        # The recorded page names a next page that was not recorded: the last page here.
        mock.get(
            re.compile(rf"{re.escape(BASE)}/tickets/1/audits\.json\?page=2.*"),
            json={"audits": [], "next_page": None, "previous_page": None, "count": 0},
        )
        # show_many answers a list of users, as the recorded list answer is.
        mock.get(re.compile(rf"{re.escape(BASE)}/users/show_many\.json.*"), body=users)
        organization = entry(
            ORGANIZATIONS["/api/v2/organizations"], "organizations", int(ticket["organization_id"])
        )
        mock.get(
            f"{BASE}/organizations/{ticket['organization_id']}.json",
            json={"organization": organization},
        )
        mock.get(f"{BASE}/groups.json", body=GROUPS["/api/v2/groups"])
        yield mock


@pytest.fixture
def client() -> ZendeskClient:
    settings = ZendeskSettings.from_environ(
        {
            "ZENDESK_URL": "https://zendeskapi.zd-staging.com",
            "ZENDESK_EMAIL": "slabot@example.com",
            "ZENDESK_API_TOKEN": "real-payload-token",
        },
        webhooks=False,
    )
    return ZendeskClient(settings, job_poll_interval=0.0, sleep=lambda _s: None)


def test_a_recorded_ticket_its_audits_people_and_organization_map_to_a_snapshot(
    zendesk: responses.RequestsMock, client: ZendeskClient, config: ZendeskConfig
) -> None:
    ticket = json.loads(TICKETS["/api/v2/tickets/1"])["ticket"]
    requester = entry(USERS["/api/v2/users"], "users", ticket["requester_id"])

    bundle = client.fetch(1)
    mapped = map_ticket(bundle, config)

    snapshot = mapped.snapshot
    assert snapshot.external_key == "1"
    assert snapshot.status == ticket["status"] == "pending"
    assert snapshot.created_at == datetime(2012, 9, 6, 20, 15, 9, tzinfo=UTC)
    assert snapshot.updated_at == datetime(2015, 9, 3, 0, 37, 57, tzinfo=UTC)
    # Zendesk names zones as Rails does: "Alaska" is America/Juneau.
    assert requester["time_zone"] == "Alaska"
    assert snapshot.customer_timezone == "America/Juneau"
    assert snapshot.shown["priority"] == "P2"  # the ticket shows "high"
    assert sorted(snapshot.shown["tags"]) == sorted(ticket["tags"])
    assert bundle.organization is not None and bundle.organization["name"] == "Smersh"
    # The whole recorded audit page was read: 100 audits.
    assert len(bundle.audits) == len(json.loads(AUDITS["/api/v2/tickets/1/audits"])["audits"])
