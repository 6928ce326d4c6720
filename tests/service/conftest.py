"""Service fixtures: the demo's fake systems and config, settings for them, a fresh PostgreSQL.

``pg_url`` gives the URL of a fresh, empty PostgreSQL database (dropped afterwards;
skipped when no server answers, unless SLABOT_REQUIRE_POSTGRES is set), as tests/store does.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from slabot.demo.environment import DemoSystems, start_systems, write_config
from tests.api_conformance import assert_conforming

ADMIN_URL = os.environ.get(
    "SLABOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
START = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def systems() -> Iterator[DemoSystems]:
    started = start_systems(START)
    try:
        yield started
    finally:
        started.stop()
    # Every request the service sent Jira and Slack: as the vendors' API descriptions allow.
    assert_conforming(started)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_config(tmp_path / "slabot.yaml")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'slabot.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (dropped afterwards)."""
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
    try:
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as again:
            again.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
