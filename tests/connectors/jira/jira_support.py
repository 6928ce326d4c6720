"""What the Jira tests share: the config, fixture loading, a clock, settings for the fake."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connectors.jira.settings import JiraSettings
from slabot.fakes.jira import FakeJira

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = "fake-jira-secret"
START = datetime(2026, 11, 16, 17, 0, tzinfo=UTC)  # Monday 09:00 in Los Angeles
PLAN, ENVIRONMENT, TIME_ZONE, COUNTRY, DUE_INSTANT = (
    "customfield_10050",
    "customfield_10051",
    "customfield_10052",
    "customfield_10053",
    "customfield_10060",
)
ORGANIZATIONS = "customfield_10002"
"""Jira Service Management's "Organizations" field (a list of ``{id, name, _links}``)."""
CUSTOM_FIELDS = {
    PLAN: "Support plan",
    ENVIRONMENT: "Environment",
    TIME_ZONE: "Customer time zone",
    COUNTRY: "Customer country",
    DUE_INSTANT: "SLA next update due",
    ORGANIZATIONS: "Organizations",
}

CONFIG: dict[str, Any] = {
    "jira": {
        "policy": "zoom",
        "projects": ["SUP"],
        "fields": {
            "plan": [
                {
                    "from": "field",
                    "id": PLAN,
                    "values": {"Premier": "premier", "Standard": "standard"},
                },
                {"from": "label", "prefix": "plan_"},
            ],
            "environment": {
                "from": "field",
                "id": ENVIRONMENT,
                "values": {"Production": "production", "Staging": "staging"},
            },
            "product_stage": {"from": "label", "prefix": "stage_"},
            "customer_timezone": [
                {"from": "field", "id": TIME_ZONE},
                {"from": "reporter_time_zone"},
            ],
            "customer_country": {"from": "field", "id": COUNTRY},
        },
        "due_date": {"target": "first_response"},
        "due_instant_field": {"id": DUE_INSTANT, "target": "next_update"},
        "organizations_field": ORGANIZATIONS,
    }
}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def settings_for(fake: FakeJira) -> JiraSettings:
    return JiraSettings.from_environ(
        {
            "JIRA_URL": fake.url,
            "JIRA_EMAIL": "slabot@example.com",
            "JIRA_API_TOKEN": "test-token",
            "JIRA_WEBHOOK_SECRET": SECRET,
        }
    )
