"""Store fixtures: every test that takes ``database_url`` runs on SQLite and on PostgreSQL.

SQLite: a fresh file in the test's temporary directory. PostgreSQL: a fresh database
``slabot_test_<random>`` created on the server at ``SLABOT_TEST_POSTGRES_URL`` (default
postgresql://postgres@127.0.0.1:5432/postgres) and dropped afterwards. When no server
answers the PostgreSQL runs are skipped with the reason, unless ``SLABOT_REQUIRE_POSTGRES``
is set (CI sets it): then they fail.
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

from slabot.store.db import make_engine
from slabot.store.migrate import upgrade

ADMIN_URL = os.environ.get(
    "SLABOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
_server_problem: list[str] = []
"""Why the PostgreSQL server cannot be used, found once per session (empty: not yet asked)."""


def _admin_connect() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)


def _postgres_unavailable() -> str | None:
    if not _server_problem:
        try:
            with _admin_connect() as connection:
                connection.execute("SELECT 1")
        except psycopg.Error as error:
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            _server_problem.append(
                f"no PostgreSQL server answers at {_shown(ADMIN_URL)}: {first_line}"
            )
        else:
            _server_problem.append("")
    return _server_problem[0] or None


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@pytest.fixture(scope="session")
def _postgres_server() -> str:
    problem = _postgres_unavailable()
    if problem:
        if os.environ.get("SLABOT_REQUIRE_POSTGRES"):
            pytest.fail(f"{problem} (SLABOT_REQUIRE_POSTGRES is set)", pytrace=False)
        pytest.skip(f"{problem}; set SLABOT_REQUIRE_POSTGRES=1 to make this a failure")
    return ADMIN_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'slabot.db'}"
        return
    admin = request.getfixturevalue("_postgres_server")
    name = f"slabot_test_{secrets.token_hex(6)}"
    with _admin_connect() as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with _admin_connect() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on a fresh, empty database."""
    created = make_engine(database_url)
    try:
        yield created
    finally:
        created.dispose()


@pytest.fixture
def migrated(engine: Engine) -> Engine:
    """An engine on a fresh database migrated to the newest revision."""
    upgrade(engine)
    return engine
