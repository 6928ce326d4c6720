"""Zendesk connector fixtures: the fake Zendesk, a client on it, a migrated database.

The database is a SQLite file by default; ``pg_url`` gives a fresh PostgreSQL database
(skipped when no server answers, unless SLABOT_REQUIRE_POSTGRES is set), as tests/store does.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from bot.compiled import Policy
from connectors.polling import RequestBudget
from connectors.zendesk.client import ZendeskClient
from connectors.zendesk.config import ZendeskConfig, parse_zendesk_config
from connectors.zendesk.settings import ZendeskSettings
from slabot.fakes.zendesk import FakeZendesk
from slabot.policy_files import bundled_policy_paths, load_policy
from slabot.store.db import make_engine
from slabot.store.migrate import upgrade

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = "fake-webhook-secret"
START = datetime(2026, 11, 16, 17, 0, tzinfo=UTC)  # Monday 09:00 in Los Angeles


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


CONFIG = {
    "zendesk": {
        "policy": "zoom",
        "fields": {
            "plan": [
                {"from": "organization_field", "key": "support_plan"},
                {"from": "tag", "prefix": "plan_"},
            ],
            "environment": {
                "from": "ticket_field",
                "id": 27642,
                "values": {"env_production": "production", "env_staging": "staging"},
            },
            "product_stage": {"from": "tag", "prefix": "stage_"},
            "customer_timezone": [
                {"from": "organization_field", "key": "time_zone"},
                {"from": "requester_time_zone"},
            ],
            "customer_country": {"from": "organization_field", "key": "country"},
        },
        "due_fields": {
            "first_response": {"id": 27650},
            "restoration": {"id": 27651},
            "next_update": {"id": 27652, "format": "date", "zone": "America/Los_Angeles"},
        },
    }
}


@pytest.fixture
def config() -> ZendeskConfig:
    return parse_zendesk_config(CONFIG)


@pytest.fixture(scope="session")
def policies() -> dict[str, Policy]:
    loaded = (load_policy(path) for path in bundled_policy_paths())
    return {policy.name: policy for policy in loaded}


@pytest.fixture
def fake() -> Iterator[FakeZendesk]:
    server = FakeZendesk(now=START, webhook_secret=SECRET).start()
    try:
        yield server
    finally:
        server.stop()


def settings_for(fake: FakeZendesk) -> ZendeskSettings:
    return ZendeskSettings.from_environ(
        {
            "ZENDESK_URL": fake.url,
            "ZENDESK_EMAIL": "slabot@example.com",
            "ZENDESK_API_TOKEN": "test-token",
            "ZENDESK_WEBHOOK_SECRET": SECRET,
        }
    )


@pytest.fixture
def client(fake: FakeZendesk) -> ZendeskClient:
    # The export budget's clock and sleep are fakes: a test never waits a minute.
    elapsed = [0.0]

    def sleep(seconds: float) -> None:
        elapsed[0] += seconds

    budget = RequestBudget(10, 60.0, clock=lambda: elapsed[0], sleep=sleep)
    return ZendeskClient(
        settings_for(fake),
        timeout=2.0,
        export_budget=budget,
        job_poll_interval=0.0,
        sleep=lambda _s: None,
    )


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    created = make_engine(f"sqlite:///{tmp_path / 'slabot.db'}")
    upgrade(created)
    try:
        yield created
    finally:
        created.dispose()


ADMIN_URL = os.environ.get(
    "SLABOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    """A fresh, migrated PostgreSQL database (dropped afterwards)."""
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.Error as error:
        problem = f"no PostgreSQL server answers: {str(error).strip().splitlines()[0]}"
        if os.environ.get("SLABOT_REQUIRE_POSTGRES"):
            pytest.fail(f"{problem} (SLABOT_REQUIRE_POSTGRES is set)", pytrace=False)
        pytest.skip(problem)
    name = f"slabot_test_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    created = make_engine(url)
    try:
        upgrade(created)
        yield created
    finally:
        created.dispose()
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as again:
            again.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
