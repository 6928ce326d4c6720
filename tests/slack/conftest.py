"""Slack fixtures: the fake Slack (no problems allowed), a migrated database, the harness.

The database is a SQLite file copied from one migrated once per session; ``pg_engine``
gives a fresh PostgreSQL database (skipped when no server answers, unless
SLABOT_REQUIRE_POSTGRES is set), as tests/store does.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from bot.compiled import Policy
from slabot.fakes.slack import FakeSlack
from slabot.policy_files import bundled_policy_paths, load_policy
from slabot.slack.config import SlackConfig, parse_slack_config
from slabot.store.db import make_engine
from slabot.store.migrate import upgrade
from tests.slack.slack_support import (
    CONFIG,
    MONDAY_0900_LA,
    Clock,
    Harness,
    add_people,
    config,
)

ADMIN_URL = os.environ.get(
    "SLABOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def policies() -> dict[str, Policy]:
    loaded = (load_policy(path) for path in bundled_policy_paths())
    return {policy.name: policy for policy in loaded}


@pytest.fixture(scope="session")
def migrated_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("slack-db") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return path


@pytest.fixture
def engine(migrated_file: Path, tmp_path: Path) -> Iterator[Engine]:
    path = tmp_path / "slabot.db"
    shutil.copy(migrated_file, path)
    created = make_engine(f"sqlite:///{path}")
    try:
        yield created
    finally:
        created.dispose()


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


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    server = FakeSlack().start()
    add_people(server)
    try:
        yield server
    finally:
        server.stop()
    assert server.problems == [], "the fake Slack saw invalid calls"


@pytest.fixture
def slack_config() -> SlackConfig:
    return parse_slack_config(CONFIG)


@pytest.fixture
def clock() -> Clock:
    return Clock(MONDAY_0900_LA)


@pytest.fixture
def harness(
    fake: FakeSlack,
    engine: Engine,
    policies: dict[str, Policy],
    clock: Clock,
    slack_config: SlackConfig,
) -> Iterator[Harness]:
    built = Harness(fake, engine, policies, clock, slack_config)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def make_harness(
    fake: FakeSlack, engine: Engine, policies: dict[str, Policy], clock: Clock
) -> Iterator[Callable[..., Harness]]:
    """Build a harness with ``slack:`` settings overridden (``nudges={...}``...)."""
    built: list[Harness] = []

    def make(
        engine_: Engine | None = None,
        thresholds: tuple[float, ...] = (0.75, 1.0),
        **overrides: Any,
    ) -> Harness:
        harness = Harness(
            fake, engine_ or engine, policies, clock, config(**overrides), thresholds=thresholds
        )
        built.append(harness)
        return harness

    try:
        yield make
    finally:
        for harness in built:
            harness.close()
