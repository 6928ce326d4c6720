"""The client wrapper with ``responses``: what it sends through python-jira and how it reads
Jira's errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses
from jira_support import CONFIG, fixture

from connectors.jira.client import (
    IssueEdit,
    JiraClient,
    JiraNotFoundError,
    JiraRejectedError,
    JiraUnavailableError,
)
from connectors.jira.config import parse_jira_config
from connectors.jira.settings import JiraSettings

SITE = "https://acme.atlassian.net"
API = f"{SITE}/rest/api/3"
ENV = {
    "JIRA_URL": SITE,
    "JIRA_EMAIL": "slabot@acme.example",
    "JIRA_API_TOKEN": "ATATT-token-123",
}
SERVER_INFO = {
    "baseUrl": SITE,
    "version": "1001.0.0-SNAPSHOT",
    "versionNumbers": [1001, 0, 0],
    "deploymentType": "Cloud",
    "buildNumber": 100282,
}
ME = {"accountId": "5f0c0a5e1b2c3d0070a1b0b0", "displayName": "slabot", "timeZone": "UTC"}


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        mock.get(f"{API}/serverInfo", json=SERVER_INFO)
        yield mock


@pytest.fixture
def client() -> JiraClient:
    settings = JiraSettings.from_environ(ENV, webhooks=False)
    return JiraClient(settings, parse_jira_config(CONFIG))


def body(call: Any) -> dict[str, Any]:
    return dict(json.loads(call.request.body))


def test_an_edit_sets_fields_and_changes_labels_with_update_operations(
    mocked: responses.RequestsMock, client: JiraClient
) -> None:
    mocked.put(f"{API}/issue/10042", status=204)
    mocked.get(f"{API}/issue/10042", json={"id": "10042", "key": "SUP-42", "fields": {}})
    client.edit(
        IssueEdit(
            "10042",
            priority="Low",
            fields={"duedate": "2026-11-24", "customfield_10060": "2026-11-24T08:30:00.000+0000"},
            add_labels=("sla_reclassified_non_production",),
            remove_labels=("sla_p1_not_by_phone",),
        )
    )
    put = next(c for c in mocked.calls if c.request.method == "PUT")
    assert body(put) == {
        "fields": {
            "duedate": "2026-11-24",
            "customfield_10060": "2026-11-24T08:30:00.000+0000",
            "priority": {"name": "Low"},
        },
        "update": {
            "labels": [
                {"add": "sla_reclassified_non_production"},
                {"remove": "sla_p1_not_by_phone"},
            ]
        },
    }
    assert "labels" not in body(put)["fields"]  # never replace people's labels
    assert put.request.headers["Authorization"].startswith("Basic ")
    assert [c.request.method for c in mocked.calls] == ["GET", "PUT", "GET"]  # re-read


def test_a_comment_is_an_internal_atlassian_document(
    mocked: responses.RequestsMock, client: JiraClient
) -> None:
    mocked.post(f"{API}/issue/10042/comment", status=201, json={"id": "1", "body": {}})
    client.add_comment("10042", "Priority changed from P3 to P1.\n\nOutage confirmed.")
    sent = body(mocked.calls[-1])
    assert sent["properties"] == [{"key": "sd.public.comment", "value": {"internal": True}}]
    assert sent["body"]["type"] == "doc" and len(sent["body"]["content"]) == 2


def test_search_uses_the_current_cloud_endpoint_with_page_tokens(
    mocked: responses.RequestsMock, client: JiraClient
) -> None:
    mocked.get(f"{API}/field", json=[{"id": "updated", "clauseNames": ["updated"]}])
    mocked.get(
        f"{API}/search/jql",
        json={"issues": [{"id": "1"}, {"id": "2"}], "nextPageToken": "TOKEN-2"},
    )
    mocked.get(f"{API}/search/jql", json={"issues": [{"id": "3"}]})
    pages = list(client.pages("project in (SUP)", max_results=2))
    assert [[i["id"] for i in p.issues] for p in pages] == [["1", "2"], ["3"]]
    searches = [c for c in mocked.calls if "/search" in c.request.url]
    assert all("/search/jql" in c.request.url for c in searches)
    assert "nextPageToken=TOKEN-2" in searches[1].request.url
    assert (
        "expand=changelog" in searches[0].request.url and "maxResults=2" in searches[0].request.url
    )


def test_a_site_that_is_not_cloud_is_refused() -> None:
    with responses.RequestsMock() as mock:
        mock.get(f"{API}/serverInfo", json={**SERVER_INFO, "deploymentType": "Server"})
        client = JiraClient(
            JiraSettings.from_environ(ENV, webhooks=False), parse_jira_config(CONFIG)
        )
        with pytest.raises(JiraRejectedError, match="not Jira Cloud"):
            client.search("project = SUP")


def test_nothing_is_read_at_construction() -> None:
    with responses.RequestsMock() as mock:
        JiraClient(JiraSettings.from_environ(ENV, webhooks=False), parse_jira_config(CONFIG))
        assert len(mock.calls) == 0  # Jira may be down when slabot starts


def test_a_429_is_not_slept_on_but_raised_with_its_retry_after(
    mocked: responses.RequestsMock, client: JiraClient
) -> None:
    mocked.put(f"{API}/issue/7", status=429, headers={"Retry-After": "30"}, json={})
    with pytest.raises(JiraUnavailableError) as caught:
        client.edit(IssueEdit("7", priority="Low"))
    assert caught.value.retry_after == 30 and caught.value.backs_off
    assert sum(c.request.method == "PUT" for c in mocked.calls) == 1  # max_retries=0


@pytest.mark.parametrize(("status", "backs_off"), [(503, True), (500, False), (502, False)])
def test_5xx_is_retryable(
    mocked: responses.RequestsMock, client: JiraClient, status: int, backs_off: bool
) -> None:
    mocked.put(f"{API}/issue/7", status=status, body="<html>gateway</html>")
    with pytest.raises(JiraUnavailableError, match=str(status)) as caught:
        client.edit(IssueEdit("7", priority="Low"))
    assert caught.value.backs_off is backs_off


@pytest.mark.parametrize(
    "failure",
    [requests.ConnectTimeout("slow"), requests.ReadTimeout("slow"), requests.ConnectionError()],
)
def test_timeouts_and_connection_errors_are_retryable(
    mocked: responses.RequestsMock, client: JiraClient, failure: Exception
) -> None:
    mocked.put(f"{API}/issue/7", body=failure)
    with pytest.raises(JiraUnavailableError):
        client.edit(IssueEdit("7", priority="Low"))


def test_a_refused_edit_carries_jiras_messages_and_no_secret(
    mocked: responses.RequestsMock, client: JiraClient
) -> None:
    mocked.put(
        f"{API}/issue/7",
        status=400,
        json={
            "errorMessages": [],
            "errors": {"customfield_10060": "Field 'customfield_10060' cannot be set."},
        },
    )
    with pytest.raises(JiraRejectedError) as caught:
        client.edit(IssueEdit("7", fields={"customfield_10060": "x"}))
    message = str(caught.value)
    assert caught.value.status == 400
    assert "customfield_10060: Field 'customfield_10060' cannot be set." in message
    assert "ATATT" not in message and "Authorization" not in message


def test_a_missing_issue_is_not_found(mocked: responses.RequestsMock, client: JiraClient) -> None:
    mocked.get(f"{API}/myself", json=ME)
    mocked.get(
        f"{API}/issue/404",
        status=404,
        json={"errorMessages": ["Issue does not exist or you do not have permission to see it."]},
    )
    with pytest.raises(JiraNotFoundError, match="does not exist"):
        client.fetch("404")


def test_fetch_reads_the_whole_changelog_and_every_comment(
    mocked: responses.RequestsMock, client: JiraClient
) -> None:
    issue = fixture("issue_show__premier_production_paused.json")
    histories = issue["changelog"]["histories"]
    comments = issue["fields"]["comment"]["comments"]
    issue["changelog"] = {"startAt": 0, "maxResults": 2, "total": 4, "histories": histories[:2]}
    issue["fields"]["comment"] = {"comments": comments[:1], "total": 5, "maxResults": 1}
    mocked.get(f"{API}/myself", json=ME)
    mocked.get(f"{API}/issue/10042", json=issue)
    mocked.get(
        f"{API}/issue/10042/changelog",
        json={"values": histories[:2], "isLast": False, "startAt": 0, "total": 4},
    )
    mocked.get(
        f"{API}/issue/10042/changelog",
        json={"values": histories[2:], "isLast": True, "startAt": 2, "total": 4},
    )
    mocked.get(f"{API}/issue/10042/comment", json={"comments": comments, "total": 5})
    mocked.get(f"{API}/status", json=[{"name": "Done", "statusCategory": {"key": "done"}}])
    bundle = client.fetch("10042")
    assert [h["id"] for h in bundle.histories] == ["10210", "10211", "10212", "10213"]
    assert len(bundle.comments) == 5
    assert bundle.bot_account_id == ME["accountId"] and bundle.agent_ids is None
    assert bundle.status_categories == {"done": "done"}
    assert "expand=changelog" in next(
        c.request.url for c in mocked.calls if c.request.url.startswith(f"{API}/issue/10042?")
    )


def test_agents_by_group_and_role_are_looked_up_once(mocked: responses.RequestsMock) -> None:
    config = parse_jira_config(
        {"jira": {**CONFIG["jira"], "agents": {"groups": ["support"], "roles": ["Agents"]}}}
    )
    client = JiraClient(JiraSettings.from_environ(ENV, webhooks=False), config)
    mocked.get(f"{API}/project/SUP/role", json={"Agents": f"{API}/project/SUP/role/10100"})
    mocked.get(
        f"{API}/project/SUP/role/10100",
        json={
            "name": "Agents",
            "actors": [
                {"type": "atlassian-user-role-actor", "actorUser": {"accountId": "ana"}},
                {"type": "atlassian-group-role-actor", "actorGroup": {"name": "tier2"}},
            ],
        },
    )
    for account, groups in (("bob", ["support"]), ("eve", ["tier2"]), ("carl", [])):
        mocked.get(f"{API}/user/groups?accountId={account}", json=[{"name": g} for g in groups])
    found = client.agents({"ana", "bob", "eve", "carl"}, "SUP")
    assert found == frozenset({"ana", "bob", "eve"})
    calls = len(mocked.calls)
    assert client.agents({"ana", "bob", "carl"}, "SUP") == frozenset({"ana", "bob"})
    assert len(mocked.calls) == calls  # cached
