"""The dashboard's Reports page over HTTP: attainment per priority, the daily trend chart,
breaches by target and the credits owed, for the period in the address."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from dashboard_support import CREATED, NOW, snapshot
from sqlalchemy.orm import Session
from starlette.testclient import TestClient
from test_dashboard import LOOPBACK, make

from bot.compiled import Policy
from slabot.policy_files import BUNDLED_POLICIES
from slabot.service.app import create_app
from slabot.service.runtime import Runtime
from slabot.store.reports import compliance_report, period

CREDITS = {
    "currency": "EUR",
    "monthly_fee": "1000",
    "fees": {"Initech GmbH": "2000"},
    "per_breach": [{"target": "restoration", "priority": "P1", "percent": "5"}],
}


def with_credits(runtime: Runtime) -> None:
    """Zoom's premier_plus with a credit rule, and one of its P1 tickets breached."""
    spec: dict[str, Any] = yaml.safe_load((BUNDLED_POLICIES / "zoom.yaml").read_text())
    spec["plans"]["premier_plus"]["credits"] = CREDITS
    runtime.policies["zoom"] = Policy.from_mapping(spec)
    runtime.tickets.ingest(
        snapshot(
            "zendesk",
            "900",
            priority="P1",
            plan="premier_plus",
            channel="phone",
            first_response_at=CREATED + timedelta(minutes=20),
            shown={"organization": "Initech GmbH"},
        )
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, Runtime]]:
    runtime = make(tmp_path)
    with_credits(runtime)
    try:
        with TestClient(create_app(runtime), client=LOOPBACK) as client:
            yield client, runtime
    finally:
        runtime.close()


def test_the_reports_page_shows_the_month_s_figures_charts_and_credits(
    served: tuple[TestClient, Runtime],
) -> None:
    client, runtime = served
    page = client.get("/reports?period=2026-11&tz=America/Los_Angeles")
    assert page.status_code == 200
    html = page.text
    with Session(runtime.engine) as session:
        window = period("2026-11", "America/Los_Angeles")
        expected = compliance_report(session, window, ["priority"], NOW).rows
    assert expected and re.findall(r'<tr data-priority="(\w+)">', html) == [
        row.group["priority"] for row in expected
    ]
    for row in expected:
        cells = re.search(rf'<tr data-priority="{row.group["priority"]}">(.*?)</tr>', html)
        assert cells is not None
        numbers = re.findall(r'<td class="num">(\d+)</td>', cells.group(1))
        assert numbers[:5] == [
            str(v) for v in (row.tickets, row.clocks, row.met, row.breached, row.running)
        ]
    # One line per priority in the trend chart, drawn as SVG in the page (no script).
    lines = set(re.findall(r'<polyline class="s\d" data-priority="(\w+)"', html))
    assert lines == {row.group["priority"] for row in expected if row.attainment is not None}
    assert 'id="trend-table"' in html and "2026-11-25" in html
    # Breaches by target: the bars say how many.
    assert re.search(r'<li data-target="first_response">First response: <b>\d+</b>', html)
    # Credits: 5% of Initech's 2000 EUR for its breached P1 restoration (4h, 24x7, unsolved).
    row = re.search(r'<tr data-organization="Initech GmbH">(.*?)</tr>', html, re.DOTALL)
    assert row is not None and "100.00 EUR" in row.group(1) and "zendesk:900" in row.group(1)


def tickets_per_priority(page: Any) -> dict[str, int]:
    found = re.findall(
        r'<tr data-priority="(\w+)"><th scope="row">\w+</th><td class="num">(\d+)</td>', page.text
    )
    return {priority: int(tickets) for priority, tickets in found}


def test_the_reports_page_counts_reclassified_tickets_as_asked_and_refuses_a_bad_period(
    served: tuple[TestClient, Runtime],
) -> None:
    client, runtime = served
    runtime.tickets.reclassify("zendesk", "101", "P1", "ana", "whole region down", "slack")
    final = tickets_per_priority(client.get("/reports?period=2026-11&tz=America/Los_Angeles"))
    first = tickets_per_priority(
        client.get("/reports?period=2026-11&tz=America/Los_Angeles&priority=at_creation")
    )
    # zendesk:101 counts once: under P1 now, under P2 as it was created.
    assert final["P1"] == first["P1"] + 1 and final["P2"] == first["P2"] - 1
    bad = client.get("/reports?period=November")
    assert bad.status_code == 400 and "write a month (2026-11)" in bad.text
    assert client.get("/reports?period=2026-11&tz=Mars/Olympus").status_code == 400


def test_the_reports_page_defaults_to_the_current_month(
    served: tuple[TestClient, Runtime],
) -> None:
    client, _ = served
    html = client.get("/reports").text
    assert "Clocks started in <b>2026-11</b> (UTC)" in html
    assert 'href="/reports"' in client.get("/").text  # linked from every page's header
