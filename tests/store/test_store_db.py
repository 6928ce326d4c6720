"""DATABASE_URL: the default, normalization, and errors that name the setting, not the password."""

from __future__ import annotations

from pathlib import Path

import pytest

from slabot.store.db import (
    DEFAULT_DATABASE_URL,
    DatabaseConfigError,
    database_url,
    make_engine,
    parse_database_url,
    redact,
)


def test_default_is_a_sqlite_file_in_the_working_directory() -> None:
    assert database_url({}).render_as_string() == DEFAULT_DATABASE_URL == "sqlite:///slabot.db"
    assert database_url({"DATABASE_URL": "  "}).render_as_string() == DEFAULT_DATABASE_URL


@pytest.mark.parametrize("text", ["postgres://u:pw@db/slabot", "postgresql://u:pw@db/slabot"])
def test_postgresql_urls_use_psycopg_3(text: str) -> None:
    url = parse_database_url(text)
    assert url.drivername == "postgresql+psycopg"
    assert redact(url) == "postgresql+psycopg://u:***@db/slabot"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("::not a url s3cret", "DATABASE_URL is not a database URL"),
        ("mysql://u:s3cret@db/slabot", "DATABASE_URL names database 'mysql'"),
        ("postgresql+asyncpg://u:s3cret@db/slabot", "DATABASE_URL names driver"),
        ("postgresql://u:s3cret@db", "names no database"),
    ],
)
def test_bad_urls_name_the_setting_and_hide_the_password(text: str, expected: str) -> None:
    with pytest.raises(DatabaseConfigError) as caught:
        database_url({"DATABASE_URL": text})
    assert expected in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_sqlite_connections_use_wal_and_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/wal.db")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()
