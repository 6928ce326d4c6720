"""The demo's world: fake Zendesk, Jira and Slack on loopback, and a service configured for them.

``start_systems(now)`` starts the three fakes; ``write_config(path)`` writes the slabot
config the demo runs with (its routing rules: Jira under ``cloudtalk``, Zendesk's Zmanda
brand under ``zmanda``, its other tickets under ``zoom``; Slack nudging ``#support``),
and ``DemoSystems.environ(database_url, config)`` the
environment ``slabot run`` reads: the fakes' addresses and their credentials. The demo, the
service's own tests and ``bench/webhooks.py`` all start from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from slabot.fakes.jira import FakeJira
from slabot.fakes.slack import FakeSlack
from slabot.fakes.zendesk import FakeZendesk

ZENDESK_SECRET = "demo-zendesk-signing-secret"
ZENDESK_TOKEN = "demo-zendesk-api-token"
JIRA_SECRET = "demo-jira-webhook-secret"
JIRA_TOKEN = "demo-jira-api-token"
SLACK_TOKEN = "xoxb-demo-bot-token"
SLACK_SIGNING_SECRET = "demo-slack-signing-secret"

SUPPORT_CHANNEL = "C0SUPPORT"
AGENT = "U0AGENT"
"""A support lead in Slack, allowed to reclassify."""

# Zendesk custom fields (ids as an admin would find them) and Jira custom fields.
ZD_ENVIRONMENT, ZD_FIRST_RESPONSE, ZD_RESTORATION, ZD_NEXT_UPDATE = (
    360001000001,
    360001000010,
    360001000011,
    360001000012,
)
ZD_URGENCY, ZD_IMPACT = 360001000002, 360001000003
"""Zmanda's matrix reads urgency and impact (drop-downs: high, medium, low)."""
JIRA_PLAN, JIRA_ENVIRONMENT = "customfield_10050", "customfield_10051"
ZOOM_BRAND, ZMANDA_BRAND = 360000000001, 360000000002
"""The demo Zendesk account's two brands: Zoom's customers and Zmanda's."""
JIRA_CUSTOM_FIELDS = {JIRA_PLAN: "Support plan", JIRA_ENVIRONMENT: "Environment"}

CONFIG: dict[str, Any] = {
    "routing": {
        "rules": [
            {"name": "cloudtalk-on-jira", "policy": "cloudtalk", "when": {"source": "jira"}},
            {
                "name": "zmanda-brand",
                "policy": "zmanda",
                "when": {"source": "zendesk", "brand": ZMANDA_BRAND},
            },
            {"name": "zoom", "policy": "zoom", "default": True},
        ]
    },
    "zendesk": {
        "policy": "zoom",
        "priorities": {"P1": "urgent", "P2": "high", "P3": "normal", "P4": "low"},
        "fields": {
            "plan": [
                {"from": "organization_field", "key": "support_plan"},
                {"from": "tag", "prefix": "plan_"},
            ],
            "environment": {
                "from": "ticket_field",
                "id": ZD_ENVIRONMENT,
                "values": {
                    "env_production": "production",
                    "env_staging": "staging",
                    "env_development": "development",
                },
            },
            "product_stage": {"from": "tag", "prefix": "stage_"},
            "urgency": {"from": "ticket_field", "id": ZD_URGENCY},
            "impact": {"from": "ticket_field", "id": ZD_IMPACT},
            "customer_timezone": [
                {"from": "organization_field", "key": "time_zone"},
                {"from": "requester_time_zone"},
            ],
            "customer_country": {"from": "organization_field", "key": "country"},
        },
        "due_fields": {
            "first_response": {"id": ZD_FIRST_RESPONSE},
            "restoration": {"id": ZD_RESTORATION},
            "next_update": {"id": ZD_NEXT_UPDATE},
        },
        "poll_interval_seconds": 60,
    },
    "jira": {
        "policy": "cloudtalk",
        "projects": ["SUP"],
        "priorities": {"P1": "Highest", "P2": "High", "P3": "Medium"},
        "fields": {
            "plan": {
                "from": "field",
                "id": JIRA_PLAN,
                "values": {
                    "Basic": "basic",
                    "Professional": "professional",
                    "Advanced": "advanced",
                },
            },
            "environment": {
                "from": "field",
                "id": JIRA_ENVIRONMENT,
                "values": {"Production": "production", "Staging": "staging"},
            },
            "product_stage": {"from": "label", "prefix": "stage_"},
        },
        "due_date": {"target": "first_response"},
        "poll_interval_seconds": 60,
    },
    "slack": {
        "language": "en",
        "reclassify": {"users": [AGENT]},
        "nudges": {"default_channel": SUPPORT_CHANNEL},
        "digests": [
            {
                "channel": SUPPORT_CHANNEL,
                "schedule": "0 9 * * mon-fri",
                "timezone": "Europe/Paris",
                "due_within_business_hours": 8,
                "paused_longer_than_hours": 24,
            }
        ],
    },
}


@dataclass
class DemoSystems:
    """The three fake systems, serving on loopback."""

    zendesk: FakeZendesk
    jira: FakeJira
    slack: FakeSlack

    def environ(
        self, database_url: str, config: Path, extra: dict[str, str] | None = None
    ) -> dict[str, str]:
        """What ``slabot run`` reads to use these fakes."""
        return {
            "DATABASE_URL": database_url,
            "SLABOT_CONFIG": str(config),
            "ZENDESK_URL": self.zendesk.url,
            "ZENDESK_EMAIL": "slabot@example.com",
            "ZENDESK_API_TOKEN": ZENDESK_TOKEN,
            "ZENDESK_WEBHOOK_SECRET": ZENDESK_SECRET,
            "JIRA_URL": self.jira.url,
            "JIRA_EMAIL": "slabot@example.com",
            "JIRA_API_TOKEN": JIRA_TOKEN,
            "JIRA_WEBHOOK_SECRET": JIRA_SECRET,
            "SLACK_BOT_TOKEN": SLACK_TOKEN,
            "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
            "SLACK_API_URL": self.slack.api_url,
            **(extra or {}),
        }

    def secrets(self) -> list[str]:
        return [
            ZENDESK_SECRET,
            ZENDESK_TOKEN,
            JIRA_SECRET,
            JIRA_TOKEN,
            SLACK_TOKEN,
            SLACK_SIGNING_SECRET,
        ]

    def set_now(self, now: datetime) -> None:
        """Move the fakes' clocks (the times they stamp on tickets and changes)."""
        self.zendesk.now = now
        self.jira.now = now

    def stop(self) -> None:
        for fake in (self.zendesk, self.jira, self.slack):
            fake.stop()


def start_systems(now: datetime) -> DemoSystems:
    """Start the fake Zendesk, Jira and Slack on ephemeral loopback ports."""
    zendesk = FakeZendesk(now=now, webhook_secret=ZENDESK_SECRET).start()
    jira = FakeJira(
        now=now, webhook_secret=JIRA_SECRET, custom_fields=dict(JIRA_CUSTOM_FIELDS)
    ).start()
    for field_id in (
        ZD_ENVIRONMENT,
        ZD_URGENCY,
        ZD_IMPACT,
        ZD_FIRST_RESPONSE,
        ZD_RESTORATION,
        ZD_NEXT_UPDATE,
    ):
        zendesk.add_field("ticket", field_id)
    for key in ("support_plan", "time_zone", "country"):
        zendesk.add_field("organization", key)
    slack = FakeSlack(token=SLACK_TOKEN).start()
    slack.add_user(AGENT, "lead@example.com", locale="en-US", tz="Europe/Paris")
    slack.add_channel(SUPPORT_CHANNEL, "support")
    return DemoSystems(zendesk, jira, slack)


def write_config(path: Path, service: dict[str, Any] | None = None) -> Path:
    """Write the demo's config file (with an optional ``service:`` section)."""
    data = dict(CONFIG)
    if service:
        data["service"] = service
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
