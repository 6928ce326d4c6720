"""DATABASE_URL: the default, normalization, and errors that name the setting, not the password."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError

from slabot.store.db import (
    DEFAULT_CONNECT_TIMEOUT,
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


# --- PostgreSQL connect timeout -------------------------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and then never says anything, like a host behind
    a firewall that drops the traffic after the handshake."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


def _connect_params(engine: Engine) -> dict[str, Any]:
    """The keyword arguments the driver is called with (the connection itself is refused)."""
    seen: dict[str, Any] = {}

    @event.listens_for(engine, "do_connect")
    def capture(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
        seen.update(params)

    with pytest.raises(OperationalError), engine.connect():
        pass
    return seen


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_postgresql_connections_get_a_default_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    engine = make_engine(f"postgresql://u:pw@127.0.0.1:{_closed_port()}/slabot")
    try:
        assert _connect_params(engine)["connect_timeout"] == DEFAULT_CONNECT_TIMEOUT == 10
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("url_suffix", "options", "environ", "expected"),
    [
        ("?connect_timeout=3", {}, None, "3"),
        ("", {"connect_args": {"connect_timeout": 4}}, None, 4),
        ("", {}, "5", None),  # libpq's variable: left to the driver, which reads it
    ],
)
def test_a_connect_timeout_set_elsewhere_is_honoured(
    monkeypatch: pytest.MonkeyPatch,
    url_suffix: str,
    options: dict[str, Any],
    environ: str | None,
    expected: object,
) -> None:
    if environ is None:
        monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("PGCONNECT_TIMEOUT", environ)
    url = f"postgresql://u:pw@127.0.0.1:{_closed_port()}/slabot{url_suffix}"
    engine = make_engine(url, **options)
    try:
        assert _connect_params(engine).get("connect_timeout") == expected
    finally:
        engine.dispose()


def test_a_silent_postgresql_host_fails_within_the_urls_connect_timeout(
    silent_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    # libpq and psycopg take 2 s as the shortest timeout.
    engine = make_engine(f"postgresql://u:pw@127.0.0.1:{silent_server}/slabot?connect_timeout=2")
    started = time.monotonic()
    try:
        with pytest.raises(OperationalError, match="timeout"), engine.connect():
            pass
    finally:
        engine.dispose()
    assert 1.5 <= time.monotonic() - started < 6


# --- PostgreSQL sessions lost while pooled --------------------------------------------------


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_pooled_session_whose_socket_is_gone_is_replaced(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The socket vanishing under a pooled session (a terminated backend, a failover) made
    # psycopg's pre-ping fail with "can't change 'autocommit' now", which reached the caller
    # instead of a fresh session: seen once in CI as a flush that died mid-run.
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            socket_fd = connection.connection.dbapi_connection.pgconn.socket  # type: ignore[union-attr]
        os.close(socket_fd)
        with caplog.at_level(logging.WARNING, "slabot.store.db"), engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT 2").scalar() == 2
        assert "a pooled session failed its check (ProgrammingError)" in caplog.text
    finally:
        engine.dispose()
