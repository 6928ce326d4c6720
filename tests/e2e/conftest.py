"""End-to-end fixtures: the fake systems, and a PostgreSQL database whose URL holds a password."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from slabot.demo.environment import DemoSystems, start_systems
from tests.api_conformance import assert_conforming
from tests.e2e.databases import fresh_postgres

DATABASE_PASSWORD = "e2e-database-password-7c1d"


@pytest.fixture
def systems() -> Iterator[DemoSystems]:
    started = start_systems(datetime(2026, 11, 16, 9, 0, tzinfo=UTC))
    try:
        yield started
    finally:
        started.stop()
    # Every request the service sent Jira and Slack: as the vendors' API descriptions allow.
    assert_conforming(started)


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_postgres(password=DATABASE_PASSWORD) as url:
        yield url
