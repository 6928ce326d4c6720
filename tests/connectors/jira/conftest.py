"""Jira connector fixtures: the fake Jira and a client on it (the database and policies come
from tests/connectors/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from jira_support import CONFIG, CUSTOM_FIELDS, SECRET, START, settings_for

from connectors.jira.client import JiraClient
from connectors.jira.config import JiraConfig, parse_jira_config
from slabot.fakes.jira import FakeJira
from tests.api_conformance import jira_problems


@pytest.fixture
def config() -> JiraConfig:
    return parse_jira_config(CONFIG)


@pytest.fixture
def fake() -> Iterator[FakeJira]:
    server = FakeJira(now=START, webhook_secret=SECRET, custom_fields=dict(CUSTOM_FIELDS))
    server.start()
    try:
        yield server
    finally:
        server.stop()
    # Every request slabot sent must be one Atlassian's published API description accepts.
    problems = jira_problems(server.calls)
    assert not problems, "requests Jira Cloud would refuse:\n" + "\n".join(problems)


@pytest.fixture
def client(fake: FakeJira, config: JiraConfig) -> JiraClient:
    return JiraClient(settings_for(fake), config, timeout=2.0)
