"""The dashboard over HTTP: open tickets by next breach, filters, the ticket's explained clocks
as a timeline (a holiday skipped, pauses), and its optional access control."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Clock
from dashboard_support import HOLIDAY, NOW, load
from starlette.testclient import TestClient

from slabot.service.app import create_app
from slabot.service.runtime import Runtime, build_runtime
from slabot.service.settings import load_settings
from slabot.store.migrate import upgrade


def make(tmp_path: Path, **environ: str) -> Runtime:
    (tmp_path / "empty.yaml").write_text("", encoding="utf-8")
    settings = load_settings(
        {"DATABASE_URL": f"sqlite:///{tmp_path / 'board.db'}", **environ},
        tmp_path / "empty.yaml",
    )
    runtime = build_runtime(settings, Clock(NOW))
    upgrade(runtime.engine)
    load(runtime)
    return runtime


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    runtime = make(tmp_path)
    try:
        with TestClient(create_app(runtime)) as client:
            yield client
    finally:
        runtime.close()


def refs(html: str) -> list[str]:
    return re.findall(r'data-ref="([^"]+)"', html)


def states(html: str) -> list[str]:
    return re.findall(r'<tr class="state-(\w+)"', html)


def test_open_tickets_are_listed_by_next_breach_with_their_state(http: TestClient) -> None:
    page = http.get("/")
    assert page.status_code == 200
    assert refs(page.text) == [
        "zendesk:102",  # P1: breached an hour after Wednesday 15:00
        "zendesk:101",  # P2: next update breached Thursday 15:00 (24h, around the clock)
        "zendesk:103",  # created now
        "jira:10002",  # next update in a week
        "jira:10001",  # waiting on the customer: no running clock
    ]
    assert states(page.text) == ["breached", "breached", "running", "running", "paused"]
    assert "5 of 5 open tickets" in page.text
    assert "zendesk:104" not in page.text  # solved
    assert page.text.count("data-due=") == 4  # a live countdown per running clock


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("source=jira", ["jira:10002", "jira:10001"]),
        ("priority=P1", ["zendesk:102"]),
        ("plan=standard", ["zendesk:103", "jira:10002"]),
        ("assignee=ana@example.com", ["zendesk:101", "jira:10001"]),
        ("source=zendesk&plan=premier", ["zendesk:102", "zendesk:101"]),
    ],
)
def test_filters_narrow_the_list(http: TestClient, query: str, expected: list[str]) -> None:
    page = http.get(f"/?{query}")
    assert refs(page.text) == expected
    assert f"{len(expected)} of 5 open tickets" in page.text


def test_the_ticket_page_explains_each_clock_as_a_timeline(http: TestClient) -> None:
    page = http.get("/tickets/zendesk/101")
    assert page.status_code == 200
    text = page.text
    assert 'id="clock-first_response"' in text and 'id="clock-restoration"' in text
    assert "4h on customer" in text
    assert f"{HOLIDAY} Thanksgiving" in text  # the closed date skipped
    first_response = text[text.index('id="clock-first_response"') : text.index('id="clock-rest')]
    assert first_response.count('class="span counted"') == 1  # Wednesday 15:00-17:00
    assert first_response.count('class="span ahead"') == 1  # Friday 09:00-11:00
    assert 'class="span closed"' in text
    assert 'class="marker due"' in text and 'class="marker at_risk"' in text


def test_the_ticket_page_shows_pauses(http: TestClient) -> None:
    text = http.get("/tickets/jira/10001").text
    assert 'class="span pause"' in text
    assert "to now" in text  # the pause still running


def test_an_unknown_ticket_is_a_404(http: TestClient) -> None:
    assert http.get("/tickets/zendesk/999").status_code == 404


def test_with_a_token_the_dashboard_refuses_requests_without_it(tmp_path: Path) -> None:
    runtime = make(tmp_path, SLABOT_DASHBOARD_TOKEN="board-token")
    try:
        with TestClient(create_app(runtime)) as client:
            for path in ("/", "/tickets/zendesk/101"):
                refused = client.get(path)
                assert refused.status_code == 401
                assert "Bearer" in refused.headers["www-authenticate"]
                wrong = client.get(path, headers={"Authorization": "Bearer wrong"})
                assert wrong.status_code == 401
            ok = client.get("/", headers={"Authorization": "Bearer board-token"})
            assert ok.status_code == 200
            by_query = client.get("/?token=board-token")
            assert by_query.status_code == 200
            assert "/tickets/zendesk/101?token=board-token" in by_query.text
            assert client.get("/healthz").status_code == 200  # probes stay open
    finally:
        runtime.close()


def test_basic_auth_guards_the_dashboard_when_configured(tmp_path: Path) -> None:
    runtime = make(tmp_path, SLABOT_DASHBOARD_USER="ops", SLABOT_DASHBOARD_PASSWORD="pa55word")
    try:
        with TestClient(create_app(runtime)) as client:
            assert client.get("/").status_code == 401
            good = base64.b64encode(b"ops:pa55word").decode()
            bad = base64.b64encode(b"ops:guess").decode()
            assert client.get("/", headers={"Authorization": f"Basic {good}"}).status_code == 200
            assert client.get("/", headers={"Authorization": f"Basic {bad}"}).status_code == 401
    finally:
        runtime.close()
