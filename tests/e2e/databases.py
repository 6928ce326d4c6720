"""Fresh PostgreSQL databases for the end-to-end and proof suites (as tests/store makes them).

``fresh_postgres(password=...)`` creates ``slabot_e2e_<random>`` on the server at
``SLABOT_TEST_POSTGRES_URL`` (default postgresql://postgres@127.0.0.1:5432/postgres), yields
its URL (with ``password`` in it: the test server trusts local connections, so any password
is accepted, and the logs can be checked for it), and drops it afterwards. Without a server
the test is skipped, or fails when SLABOT_REQUIRE_POSTGRES is set (CI).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from sqlalchemy.engine import make_url

ADMIN_URL = os.environ.get(
    "SLABOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.Error as error:
        problem = f"no PostgreSQL server answers: {str(error).strip().splitlines()[0]}"
        if os.environ.get("SLABOT_REQUIRE_POSTGRES"):
            pytest.fail(f"{problem} (SLABOT_REQUIRE_POSTGRES is set)", pytrace=False)
        pytest.skip(problem)


@contextmanager
def fresh_postgres(password: str | None = None) -> Iterator[str]:
    name = f"slabot_e2e_{secrets.token_hex(6)}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(ADMIN_URL).set(database=name)
    if password is not None:
        url = url.set(password=password)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
