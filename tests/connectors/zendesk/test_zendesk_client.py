"""The client wrapper with ``responses``: what it sends and how it reads Zendesk's errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests
import responses
from conftest import fixture

from connectors.zendesk.client import (
    TicketUpdate,
    ZendeskClient,
    ZendeskNotFoundError,
    ZendeskRejectedError,
    ZendeskUnavailableError,
)
from connectors.zendesk.settings import ZendeskSettings

BASE = "https://acme.zendesk.com/api/v2"
ENV = {
    "ZENDESK_SUBDOMAIN": "acme",
    "ZENDESK_EMAIL": "bot@acme.example",
    "ZENDESK_API_TOKEN": "token-123",
}


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def client() -> ZendeskClient:
    settings = ZendeskSettings.from_environ(ENV, webhooks=False)
    return ZendeskClient(settings, job_poll_interval=0.0, sleep=lambda _s: None)


def sent(mock: responses.RequestsMock, index: int = -1) -> dict[str, object]:
    body = mock.calls[index].request.body
    assert body is not None
    return dict(json.loads(body))


def test_tags_are_added_and_removed_never_replaced(
    mocked: responses.RequestsMock, client: ZendeskClient
) -> None:
    mocked.put(f"{BASE}/tickets/7.json", json={"ticket": {"id": 7}, "audit": {"id": 1}})
    client.update(
        TicketUpdate(
            7,
            priority="low",
            add_tags=("sla_x",),
            remove_tags=("sla_y",),
            custom_fields={27650: "2026-11-24T08:30:00Z"},
            note="Priority changed from P1 to P4",
        )
    )
    ticket = sent(mocked)["ticket"]
    assert ticket == {
        "id": 7,
        "priority": "low",
        "additional_tags": ["sla_x"],
        "remove_tags": ["sla_y"],
        "custom_fields": [{"id": 27650, "value": "2026-11-24T08:30:00Z"}],
        "comment": {"body": "Priority changed from P1 to P4", "public": False},
    }
    assert "tags" not in ticket
    auth = mocked.calls[-1].request.headers["Authorization"]
    assert auth.startswith("Basic ")  # email/token:API token, as Zendesk expects


def test_update_many_follows_the_job_and_reports_per_ticket_failures(
    mocked: responses.RequestsMock, client: ZendeskClient
) -> None:
    job = {"id": "J1", "status": "queued", "url": f"{BASE}/job_statuses/J1.json"}
    mocked.put(f"{BASE}/tickets/update_many.json", json={"job_status": job})
    mocked.get(f"{BASE}/job_statuses/J1.json", json={"job_status": {**job, "status": "working"}})
    done = {
        **job,
        "status": "completed",
        "results": [
            {"id": 7, "index": 0, "status": "Updated", "success": True},
            {"id": 8, "index": 1, "error": "TicketUpdateFailed", "details": "Priority: is invalid"},
        ],
    }
    mocked.get(f"{BASE}/job_statuses/J1.json", json={"job_status": done})
    outcome = client.update_many([TicketUpdate(7, priority="low"), TicketUpdate(8, priority="x")])
    assert outcome.failures == {8: "Zendesk refused the update: Priority: is invalid"}
    assert [t["id"] for t in sent(mocked, 0)["tickets"]] == [7, 8]  # type: ignore[index]
    assert len(mocked.calls) == 3


def test_a_job_status_zendesk_fails_to_answer_is_asked_again_not_the_update_sent_again(
    mocked: responses.RequestsMock, client: ZendeskClient
) -> None:
    # The job was accepted: its writes are made. Raising sent them all again (a second
    # internal note): found by tests/proof/test_proof_faults.py.
    job = {"id": "J2", "status": "queued", "url": f"{BASE}/job_statuses/J2.json"}
    mocked.put(f"{BASE}/tickets/update_many.json", json={"job_status": job})
    mocked.get(f"{BASE}/job_statuses/J2.json", status=500)
    mocked.get(f"{BASE}/job_statuses/J2.json", status=429, headers={"Retry-After": "2"})
    results = [{"id": n, "index": i, "success": True} for i, n in enumerate((7, 8))]
    done = {**job, "status": "completed", "results": results}
    mocked.get(f"{BASE}/job_statuses/J2.json", json={"job_status": done})
    outcome = client.update_many([TicketUpdate(7, note="n"), TicketUpdate(8, note="m")])
    assert outcome.failures == {}
    assert [call.request.method for call in mocked.calls] == ["PUT", "GET", "GET", "GET"]


def test_a_429_is_not_slept_on_but_raised_with_its_retry_after(
    mocked: responses.RequestsMock, client: ZendeskClient
) -> None:
    mocked.put(f"{BASE}/tickets/7.json", status=429, headers={"Retry-After": "93"})
    with pytest.raises(ZendeskUnavailableError) as caught:
        client.update(TicketUpdate(7, priority="low"))
    assert caught.value.retry_after == 93
    assert len(mocked.calls) == 1


@pytest.mark.parametrize(
    ("status", "body"),
    [(503, {"error": "ServiceUnavailable"}), (500, None), (502, "<html>bad gateway</html>")],
)
def test_5xx_is_retryable(
    mocked: responses.RequestsMock, client: ZendeskClient, status: int, body: object
) -> None:
    if isinstance(body, str):
        mocked.put(f"{BASE}/tickets/7.json", status=status, body=body)
    else:
        mocked.put(f"{BASE}/tickets/7.json", status=status, json=body)
    with pytest.raises(ZendeskUnavailableError, match=str(status)):
        client.update(TicketUpdate(7, priority="low"))


@pytest.mark.parametrize(
    "failure",
    [requests.ConnectTimeout("slow"), requests.ReadTimeout("slow"), requests.ConnectionError()],
)
def test_timeouts_and_connection_errors_are_retryable(
    mocked: responses.RequestsMock, client: ZendeskClient, failure: Exception
) -> None:
    mocked.put(f"{BASE}/tickets/7.json", body=failure)
    with pytest.raises(ZendeskUnavailableError):
        client.update(TicketUpdate(7, priority="low"))


def test_a_validation_error_carries_zendesks_description_and_no_secret(
    mocked: responses.RequestsMock, client: ZendeskClient
) -> None:
    mocked.put(
        f"{BASE}/tickets/7.json",
        status=422,
        json={
            "error": "RecordInvalid",
            "description": "Record validation errors",
            "details": {"priority": [{"description": "Priority: bogus is not valid"}]},
        },
    )
    with pytest.raises(ZendeskRejectedError) as caught:
        client.update(TicketUpdate(7, priority="bogus"))
    message = str(caught.value)
    assert caught.value.status == 422
    assert "Record validation errors" in message and "Priority: bogus is not valid" in message
    assert "token-123" not in message


def test_a_missing_ticket_is_not_found(
    mocked: responses.RequestsMock, client: ZendeskClient
) -> None:
    mocked.get(f"{BASE}/users/me.json", json={"user": {"id": 900, "role": "agent"}})
    mocked.get(
        f"{BASE}/tickets/404.json",
        status=404,
        json={"error": "RecordNotFound", "description": "Not found"},
    )
    with pytest.raises(ZendeskNotFoundError, match="Not found"):
        client.fetch(404)


def test_fetch_reads_the_ticket_audits_requester_organization_and_author_roles(
    mocked: responses.RequestsMock, client: ZendeskClient
) -> None:
    ticket = fixture("ticket_show__premier_production.json")
    audits = fixture("ticket_audits__reply_hold_reopen.json")
    mocked.get(f"{BASE}/users/me.json", json={"user": {"id": 900, "role": "agent"}})
    mocked.get(f"{BASE}/tickets/35436.json", json=ticket)
    mocked.get(
        f"{BASE}/tickets/35436/audits.json",
        json={**audits, "meta": {"has_more": False}, "links": {"next": None}},
    )
    mocked.get(
        f"{BASE}/organizations/509974.json",
        json=fixture("organization_show__premier_germany.json"),
    )
    mocked.get(
        f"{BASE}/users/show_many.json",
        json=fixture("users_show_many__requester_and_assignee.json"),
    )
    mocked.get(f"{BASE}/groups.json", json=fixture("groups__list.json"))
    bundle = client.fetch(35436)
    assert bundle.ticket["id"] == 35436 and len(bundle.audits) == 5
    assert bundle.agent_ids == frozenset({235323})  # the requester is an end user
    assert bundle.bot_user_id == 900
    assert bundle.organization is not None
    assert bundle.organization["organization_fields"]["support_plan"] == "premier"
    # The requester and the assignee in one show_many (the audits' author, the assignee,
    # is known from it: no second read); the groups once.
    (show_many,) = [c for c in mocked.calls if "show_many" in c.request.url]
    assert "20978392" in show_many.request.url and "235323" in show_many.request.url
    assert bundle.requester is not None and bundle.requester["email"] == "roger@example.com"
    assert bundle.assignee is not None and bundle.assignee["email"] == "Ana.Agent@acme.example"
    assert bundle.group is not None and bundle.group["name"] == "Tier 2"
    assert bundle.agent_url == f"{BASE.removesuffix('/api/v2')}/agent/tickets/35436"
    calls = len(mocked.calls)
    client.fetch(35436)  # users and groups come from the cache now
    again = [c.request.url for c in mocked.calls[calls:]]
    assert not any("show_many" in url or "groups" in url for url in again)


def test_fetch_asks_the_role_of_whoever_changed_the_priority(
    mocked: responses.RequestsMock, client: ZendeskClient
) -> None:
    ticket = fixture("ticket_show__premier_production.json")
    ticket["ticket"]["assignee_id"] = None  # Ana counts for her priority change only
    audits = fixture("ticket_audits__agent_reclassifies.json")
    mocked.get(f"{BASE}/users/me.json", json={"user": {"id": 900, "role": "agent"}})
    mocked.get(f"{BASE}/tickets/35436.json", json=ticket)
    mocked.get(
        f"{BASE}/tickets/35436/audits.json",
        json={**audits, "meta": {"has_more": False}, "links": {"next": None}},
    )
    mocked.get(
        f"{BASE}/organizations/509974.json",
        json=fixture("organization_show__premier_germany.json"),
    )
    mocked.get(
        f"{BASE}/users/show_many.json",
        json=fixture("users_show_many__requester_and_assignee.json"),
    )
    mocked.get(f"{BASE}/groups.json", json=fixture("groups__list.json"))
    bundle = client.fetch(35436)
    # Ana changed the priority without replying; the trigger's author (-1) is Zendesk.
    assert bundle.agent_ids == frozenset({235323})


def test_the_export_starts_from_a_time_and_resumes_from_a_cursor(
    mocked: responses.RequestsMock, client: ZendeskClient
) -> None:
    url = f"{BASE}/incremental/tickets/cursor.json"
    page = {
        "tickets": [{"id": 1, "status": "open"}],
        "after_cursor": "C1",
        "after_url": f"{url}?cursor=C1",
        "before_cursor": None,
        "before_url": None,
        "end_of_stream": True,
    }
    mocked.get(url, json=page)
    pages = list(client.export(start_time=datetime(2026, 1, 1, tzinfo=UTC)))
    assert [(p.after_cursor, p.end_of_stream, len(p.tickets)) for p in pages] == [("C1", True, 1)]
    assert "start_time=" in mocked.calls[0].request.url
    list(client.export(cursor="C1"))
    assert "cursor=C1" in mocked.calls[-1].request.url
    with pytest.raises(ValueError):
        next(client.export())
