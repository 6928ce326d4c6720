"""The Slack test harness: the real Bolt app and slack_sdk client against the fake Slack.

Requests are signed the way Slack signs them (``SignatureVerifier``) and go through
``App.dispatch``. Listeners run after the acknowledgement in a thread pool: tests wait for
their effects on the fake (``FakeSlack.wait_*``), never sleep.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from slack_bolt import App, BoltRequest, BoltResponse
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bot.compiled import Policy
from slabot.fakes.slack import FakeSlack
from slabot.slack.app import SlackServices, build_app, make_client
from slabot.slack.config import SlackConfig, parse_slack_config
from slabot.slack.digests import run_digest
from slabot.slack.nudges import NudgeReport, run_nudges
from slabot.slack.references import TicketLinks
from slabot.slack.sender import SlackSender
from slabot.slack.settings import SlackSettings
from slabot.store.models import Nudge, OutboxItem
from slabot.store.outbox import FlushReport, Outbox
from slabot.store.services import Snapshot, TicketService

SIGNING_SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-fake-token"
# Zoom's premier plan, P2: first response 4h and restoration 8h on the customer's calendar
# (weekdays 09:00-17:00 in the customer's zone, the customer's country's holidays), next
# update 24h around the clock. Monday 2026-11-16 09:00 in Los Angeles is 17:00 UTC.
MONDAY_0900_LA = datetime(2026, 11, 16, 17, 0, tzinfo=UTC)

AGENT = "U0AGENT"
"""A member of the reclassifiers' user group, French-speaking, in Paris."""
LEAD = "U0LEAD"
"""Listed by id among the reclassifiers; English, in New York."""
OUTSIDER = "U0OUTSIDER"
"""In no group: refused."""
ASSIGNEE_EMAIL = "ana@example.com"
ASSIGNEE = "U0ANA"
"""The assignee of the tickets (by e-mail); Italian, in Rome."""

CONFIG: dict[str, Any] = {
    "slack": {
        "language": "en",
        "reclassify": {"user_groups": ["S0LEADS"], "users": [LEAD]},
        "nudges": {
            "queue_channels": {"billing": "C0BILLING"},
            "default_channel": "C0SUPPORT",
        },
        "channels": {"C0BILLING": {"language": "pl"}},
        "digests": [
            {
                "channel": "C0SUPPORT",
                "schedule": "0 9 * * mon-fri",
                "timezone": "Europe/Paris",
                "due_within_business_hours": 4,
                "paused_longer_than_hours": 48,
            }
        ],
    }
}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def add_people(fake: FakeSlack) -> None:
    fake.add_user(AGENT, "agent@example.com", locale="fr-FR", tz="Europe/Paris")
    fake.add_user(LEAD, "lead@example.com", locale="en-US", tz="America/New_York")
    fake.add_user(OUTSIDER, "outsider@example.com", locale="en-GB", tz="Europe/London")
    fake.add_user(ASSIGNEE, ASSIGNEE_EMAIL, locale="it-IT", tz="Europe/Rome")
    fake.usergroups["S0LEADS"] = [AGENT]


def snapshot(**fields: Any) -> Snapshot:
    values: dict[str, Any] = {
        "source": "zendesk",
        "external_key": "1001",
        "policy": "zoom",
        "created_at": MONDAY_0900_LA,
        "updated_at": MONDAY_0900_LA,
        "priority": "P2",
        "plan": "premier",
        "environment": "production",
        "channel": "phone",
        "shown": {"priority": "P2", "tags": [], "assignee_email": ASSIGNEE_EMAIL},
    }
    values.update(fields)
    return Snapshot(**values)


@dataclass
class Harness:
    """Everything a Slack test drives: store, services, app, sender, fake Slack, clock."""

    fake: FakeSlack
    engine: Engine
    policies: dict[str, Policy]
    clock: Clock
    config: SlackConfig
    tickets: TicketService = field(init=False)
    client: WebClient = field(init=False)
    services: SlackServices = field(init=False)
    app: App = field(init=False)
    sender: SlackSender = field(init=False)
    outbox: Outbox = field(init=False)
    executor: ThreadPoolExecutor = field(init=False)
    thresholds: tuple[float, ...] = (0.75, 1.0)
    monotonic: list[float] = field(default_factory=lambda: [0.0])

    def __post_init__(self) -> None:
        self.settings = SlackSettings.from_environ(
            {
                "SLACK_BOT_TOKEN": BOT_TOKEN,
                "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "SLACK_API_URL": self.fake.api_url,
            }
        )
        self.tickets = TicketService(
            self.engine, self.policies, self.clock, origin="zendesk", thresholds=self.thresholds
        )
        self.client = make_client(self.settings, timeout=5)
        links = TicketLinks("https://acme.zendesk.com", "https://acme.atlassian.net")
        self.services = SlackServices.build(
            self.client,
            self.tickets,
            self.config,
            self.clock,
            links,
            monotonic=lambda: self.monotonic[0],
        )
        self.executor = ThreadPoolExecutor(max_workers=4)
        self.app = build_app(
            self.settings, self.client, self.services, listener_executor=self.executor
        )
        self.sender = SlackSender(
            self.client, self.services.store, self.services.directory, self.config, self.clock
        )
        self.outbox = Outbox(self.engine, self.clock, max_attempts=None, rand=lambda: 0.0)

    def close(self) -> None:
        self.executor.shutdown(wait=True)

    # --- the store ---

    def ingest(self, **fields: Any) -> int:
        return self.tickets.ingest(snapshot(**fields)).ticket_id

    def nudges(self) -> list[Nudge]:
        with Session(self.engine) as session:
            return list(session.scalars(select(Nudge).order_by(Nudge.id)))

    def slack_items(self) -> list[OutboxItem]:
        with Session(self.engine) as session:
            return list(
                session.scalars(
                    select(OutboxItem)
                    .where(OutboxItem.target_system == "slack")
                    .order_by(OutboxItem.id)
                )
            )

    def helpdesk_items(self) -> list[OutboxItem]:
        with Session(self.engine) as session:
            return list(
                session.scalars(
                    select(OutboxItem)
                    .where(OutboxItem.target_system != "slack")
                    .order_by(OutboxItem.id)
                )
            )

    # --- jobs ---

    def run_nudges(self) -> NudgeReport:
        return run_nudges(self.services.store, self.clock, self.config.nudges)

    def flush(self) -> FlushReport:
        return self.outbox.flush("slack", self.sender, "test-worker")

    def run_digest(self, index: int = 0) -> bool:
        return run_digest(self.services.store, self.clock, self.config.digests[index])

    # --- signed requests from Slack ---

    def dispatch(self, body: str, content_type: str) -> BoltResponse:
        timestamp = str(int(time.time()))
        signature = SignatureVerifier(SIGNING_SECRET).generate_signature(
            timestamp=timestamp, body=body
        )
        request = BoltRequest(
            body=body,
            headers={
                "content-type": [content_type],
                "x-slack-signature": [signature],
                "x-slack-request-timestamp": [timestamp],
            },
        )
        return self.app.dispatch(request)

    def command(self, text: str, user: str = AGENT, response: str = "r1") -> BoltResponse:
        body = urlencode(
            {
                "token": "legacy-verification-token",
                "team_id": self.fake.team_id,
                "team_domain": "acme",
                "channel_id": "C0SUPPORT",
                "channel_name": "support",
                "user_id": user,
                "user_name": user.lower(),
                "command": "/sla",
                "text": text,
                "api_app_id": "A0SLABOT",
                "is_enterprise_install": "false",
                "response_url": self.fake.response_url(response),
                "trigger_id": "1337.42.trigger",
            }
        )
        return self.dispatch(body, "application/x-www-form-urlencoded")

    def click(self, action_id: str, value: str, user: str = AGENT) -> BoltResponse:
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "team_id": self.fake.team_id},
            "api_app_id": "A0SLABOT",
            "token": "legacy-verification-token",
            "container": {
                "type": "message",
                "message_ts": "1800000000.000001",
                "channel_id": "D0ANA",
            },
            "trigger_id": "1337.42.trigger",
            "team": {"id": self.fake.team_id, "domain": "acme"},
            "channel": {"id": "D0ANA", "name": "directmessage"},
            "response_url": self.fake.response_url("click"),
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "b1",
                    "value": value,
                    "text": {"type": "plain_text", "text": "x"},
                    "action_ts": "1800000000.1",
                }
            ],
        }
        return self.dispatch(
            urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded"
        )

    def submit(
        self, callback_id: str, metadata: dict[str, Any], values: dict[str, Any], user: str = AGENT
    ) -> BoltResponse:
        state: dict[str, Any] = {}
        for block_id, value in values.items():
            if block_id == "priority":
                state[block_id] = {
                    "value": {
                        "type": "static_select",
                        "selected_option": None
                        if value is None
                        else {"text": {"type": "plain_text", "text": value}, "value": value},
                    }
                }
            else:
                state[block_id] = {"value": {"type": "plain_text_input", "value": value}}
        payload = {
            "type": "view_submission",
            "team": {"id": self.fake.team_id, "domain": "acme"},
            "user": {"id": user, "username": user.lower(), "team_id": self.fake.team_id},
            "api_app_id": "A0SLABOT",
            "token": "legacy-verification-token",
            "trigger_id": "1337.43.trigger",
            "view": {
                "id": "V0MODAL",
                "team_id": self.fake.team_id,
                "type": "modal",
                "callback_id": callback_id,
                "private_metadata": json.dumps(metadata),
                "state": {"values": state},
                "hash": "h1",
            },
            "response_urls": [],
        }
        return self.dispatch(
            urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded"
        )

    def open_home(self, user: str) -> BoltResponse:
        body = json.dumps(
            {
                "token": "legacy-verification-token",
                "team_id": self.fake.team_id,
                "api_app_id": "A0SLABOT",
                "event": {
                    "type": "app_home_opened",
                    "user": user,
                    "channel": "D" + user[1:],
                    "tab": "home",
                    "event_ts": "1800000000.5",
                },
                "type": "event_callback",
                "event_id": f"Ev{int(time.time() * 1000)}",
                "event_time": int(time.time()),
            }
        )
        return self.dispatch(body, "application/json")


def texts(blocks: Any) -> str:
    """Every text in a Block Kit payload, joined (for assertions on what a reader sees)."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "text" and isinstance(item, str):
                    found.append(item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(json.loads(blocks) if isinstance(blocks, str) else blocks)
    return "\n".join(found)


def config(**overrides: Any) -> SlackConfig:
    """The test ``slack:`` section with some keys changed (dicts merged one level deep)."""
    data = json.loads(json.dumps(CONFIG))
    for key, value in overrides.items():
        current = data["slack"].get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            data["slack"][key] = {**current, **value}
        else:
            data["slack"][key] = value
    return parse_slack_config(data)
