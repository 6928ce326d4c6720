"""Ticket references as agents type them, and the links slabot shows."""

from __future__ import annotations

import doctest

import pytest

import slabot.slack.commands
import slabot.slack.references
from slabot.slack.references import (
    BadReferenceError,
    TicketLinks,
    TicketRef,
    parse_ticket_ref,
)


@pytest.mark.parametrize(
    ("text", "source", "key"),
    [
        ("ZD-123", "zendesk", "123"),
        ("zd123", "zendesk", "123"),
        ("ZD#0042", "zendesk", "42"),
        ("https://acme.zendesk.com/agent/tickets/123", "zendesk", "123"),
        ("<https://acme.zendesk.com/agent/tickets/123|#123>", "zendesk", "123"),
        ("<https://support.acme.example/agent/tickets/77>", "zendesk", "77"),
        ("https://acme.zendesk.com/hc/en-us/requests/55", "zendesk", "55"),
        ("https://acme.zendesk.com/api/v2/tickets/9.json", "zendesk", "9"),
        ("OPS-42", "jira", "OPS-42"),
        ("ops-042", "jira", "OPS-42"),
        ("SUP_2-7", "jira", "SUP_2-7"),
        ("https://acme.atlassian.net/browse/OPS-42", "jira", "OPS-42"),
        ("<https://acme.atlassian.net/browse/ops-42|OPS-42: printer on fire>", "jira", "OPS-42"),
        (
            "https://acme.atlassian.net/jira/software/projects/OPS/boards/1?selectedIssue=OPS-9",
            "jira",
            "OPS-9",
        ),
        ("jira:10001", "jira", "10001"),
    ],
)
def test_references_agents_type(text: str, source: str, key: str) -> None:
    assert parse_ticket_ref(text) == TicketRef(source, key)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "123",
        "ZD-",
        "OPS",
        "-42",
        "#general",
        "https://acme.zendesk.com/agent/dashboard",
        "https://acme.atlassian.net/browse/",
        "mailto:ana@example.com",
    ],
)
def test_anything_else_is_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(BadReferenceError):
        parse_ticket_ref(text)


def test_labels_and_links() -> None:
    assert TicketRef("zendesk", "123").label == "ZD-123"
    assert TicketRef("jira", "OPS-42").label == "OPS-42"
    links = TicketLinks.from_environ(
        {"ZENDESK_SUBDOMAIN": "acme", "JIRA_URL": "https://acme.atlassian.net/"}
    )
    assert links.url("zendesk", "123") == "https://acme.zendesk.com/agent/tickets/123"
    assert links.url("jira", "10001", "OPS-42") == "https://acme.atlassian.net/browse/OPS-42"
    assert links.url("jira", "10001") == "https://acme.atlassian.net/secure/ViewIssue.jspa?id=10001"
    assert (
        TicketLinks.from_environ({"ZENDESK_URL": "http://127.0.0.1:9/"}).zendesk_url
        == "http://127.0.0.1:9"
    )
    assert TicketLinks.from_environ({}).url("zendesk", "1") is None


@pytest.mark.parametrize("module", [slabot.slack.references, slabot.slack.commands])
def test_the_documented_examples_hold(module: object) -> None:
    failures, tried = doctest.testmod(module, verbose=False)  # type: ignore[arg-type]
    assert tried and not failures
