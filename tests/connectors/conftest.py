"""Fixtures every connector's tests share: the bundled policies and a migrated database.

The database is a SQLite file by default; ``pg_engine`` gives a fresh PostgreSQL database
(skipped when no server answers, unless SLABOT_REQUIRE_POSTGRES is set), as tests/store does.
A connector's own conftest may define fixtures of the same names; its own then apply.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from bot.compiled import Policy
from slabot.policy_files import bundled_policy_paths, load_policy
from slabot.store.db import make_engine
from slabot.store.migrate import upgrade

ADMIN_URL = os.environ.get(
    "SLABOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def policies() -> dict[str, Policy]:
    loaded = (load_policy(path) for path in bundled_policy_paths())
    return {policy.name: policy for policy in loaded}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    created = make_engine(f"sqlite:///{tmp_path / 'slabot.db'}")
    upgrade(created)
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
