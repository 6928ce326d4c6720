"""End-to-end fixtures: the fake systems, and a PostgreSQL database whose URL holds a password."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from slabot.demo.environment import DemoSystems, start_systems
from tests.api_conformance import jira_problems
from tests.e2e.databases import fresh_postgres

DATABASE_PASSWORD = "e2e-database-password-7c1d"


@pytest.fixture
def systems() -> Iterator[DemoSystems]:
    started = start_systems(datetime(2026, 11, 16, 9, 0, tzinfo=UTC))
    try:
        yield started
    finally:
        started.stop()
    # Every request the service sent Jira must be one Atlassian's published API accepts.
    problems = jira_problems(started.jira.calls)
    assert not problems, "requests Jira Cloud would refuse:\n" + "\n".join(problems)
    # And every Slack call: a Web API method, its required arguments, Block Kit's limits.
    assert started.slack.problems == [], "\n".join(started.slack.problems)


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_postgres(password=DATABASE_PASSWORD) as url:
        yield url
