"""The database connection: ``DATABASE_URL`` selects it, a SQLite file is the default.

SQLite (the default, ``sqlite:///slabot.db`` in the working directory) runs in WAL mode with
foreign keys enforced; it suits one process writing at a time. PostgreSQL (through psycopg 3)
is the production choice and the one for several replicas. Messages never show a password.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from bot.errors import SlabotError
from slabot.store.types import loads_json

log = logging.getLogger(__name__)

DATABASE_URL_SETTING = "DATABASE_URL"
DEFAULT_DATABASE_URL = "sqlite:///slabot.db"
_EXAMPLES = "like sqlite:///slabot.db or postgresql://user:password@host:5432/slabot"
_SQLITE_BUSY_TIMEOUT_MS = 5000
SQLITE_BUSY_TIMEOUT_MS = _SQLITE_BUSY_TIMEOUT_MS
"""How long a SQLite connection waits for another writer's lock, in milliseconds."""
DEFAULT_CONNECT_TIMEOUT = 10
"""Seconds a PostgreSQL connection attempt may take (unless the URL's ``connect_timeout`` or
``PGCONNECT_TIMEOUT`` says otherwise): a host that silently drops packets fails in bounded
time instead of hanging the operation."""
_DRIVERS = frozenset({"sqlite", "sqlite+pysqlite", "postgresql+psycopg"})


class DatabaseError(SlabotError):
    """The database cannot be reached or is not usable; the message says what to do."""


class DatabaseConfigError(DatabaseError):
    """``DATABASE_URL`` is malformed or names a database slabot cannot use."""


def database_url(environ: Mapping[str, str] | None = None) -> URL:
    """The URL from ``DATABASE_URL`` (default: a SQLite file in the working directory)."""
    env = os.environ if environ is None else environ
    text = env.get(DATABASE_URL_SETTING, "").strip() or DEFAULT_DATABASE_URL
    return parse_database_url(text)


def parse_database_url(text: str) -> URL:
    """Parse and normalize a database URL; errors name the setting, never the password.

    ``postgresql://`` and ``postgres://`` select the psycopg 3 driver, the one slabot ships.
    """
    try:
        url = make_url(text)
    except (ArgumentError, ValueError):
        # The text may hold a password: do not repeat it.
        raise DatabaseConfigError(
            f"{DATABASE_URL_SETTING} is not a database URL; expected one {_EXAMPLES}"
        ) from None
    if url.drivername in ("postgres", "postgresql", "postgresql+psycopg2"):
        url = url.set(drivername="postgresql+psycopg")
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise DatabaseConfigError(
            f"{DATABASE_URL_SETTING} names database {backend!r}; slabot supports sqlite and "
            f"postgresql ({_EXAMPLES})"
        )
    if url.drivername not in _DRIVERS:
        raise DatabaseConfigError(
            f"{DATABASE_URL_SETTING} names driver {url.drivername!r}; slabot ships "
            f"{' and '.join(sorted(_DRIVERS))} ({_EXAMPLES})"
        )
    if backend == "postgresql" and not url.database:
        raise DatabaseConfigError(
            f"{DATABASE_URL_SETTING} ({redact(url)}) names no database; add one after the "
            f"host, {_EXAMPLES}"
        )
    return url


def redact(url: URL) -> str:
    """The URL as a person may see it: the password replaced by ``***``."""
    return url.render_as_string(hide_password=True)


def make_engine(url: URL | str | None = None, **options: Any) -> Engine:
    """An engine for ``url`` (default: from ``DATABASE_URL``), configured for slabot.

    SQLite connections get WAL journaling (except in memory), enforced foreign keys and a
    busy timeout; PostgreSQL connections are checked before use so a restarted server does
    not fail the first operation after it, give up connecting after
    ``DEFAULT_CONNECT_TIMEOUT`` seconds unless the URL (``?connect_timeout=N``), the
    ``connect_args`` option or ``PGCONNECT_TIMEOUT`` sets another limit, and run their
    sessions in UTC (``-c TimeZone=UTC`` added to the connection ``options`` unless they
    set a time zone), so instants are read back without conversion.
    """
    if url is None:
        parsed = database_url()
    elif isinstance(url, str):
        parsed = parse_database_url(url)
    else:
        parsed = url
    backend = parsed.get_backend_name()
    options.setdefault("json_deserializer", loads_json)
    if backend == "postgresql":
        options.setdefault("pool_pre_ping", True)
        connect_args = dict(options.get("connect_args") or {})
        if (
            "connect_timeout" not in parsed.query
            and "connect_timeout" not in connect_args
            and not os.environ.get("PGCONNECT_TIMEOUT", "").strip()
        ):
            connect_args["connect_timeout"] = DEFAULT_CONNECT_TIMEOUT
        # Sessions in UTC: instants come back as UTC datetimes, with nothing to convert.
        # (Stored values are absolute either way; only their display depends on it.)
        given = str(connect_args.get("options", parsed.query.get("options", "")))
        if "timezone" not in given.lower():
            connect_args["options"] = f"{given} -c TimeZone=UTC".strip()
        options["connect_args"] = connect_args
    try:
        engine = create_engine(parsed, **options)
    except (NoSuchModuleError, ImportError):
        raise DatabaseConfigError(
            f"{DATABASE_URL_SETTING} ({redact(parsed)}) names a driver that is not installed; "
            f"use {_EXAMPLES}"
        ) from None
    except (ArgumentError, TypeError, ValueError) as error:
        raise DatabaseConfigError(
            f"{DATABASE_URL_SETTING} ({redact(parsed)}) is not usable: {error}"
        ) from None
    if backend == "sqlite":
        _configure_sqlite(engine, in_memory=_sqlite_in_memory(parsed))
    if backend == "postgresql":
        event.listen(engine, "handle_error", _failed_ping_is_a_disconnect)
    return engine


def _failed_ping_is_a_disconnect(context: ExceptionContext) -> None:
    # A pooled session whose socket the server (or a failover) closed can fail its pre-ping
    # with psycopg's ProgrammingError "can't change 'autocommit' now" (the ping's own
    # cleanup), which SQLAlchemy does not read as a disconnect and raises to the caller.
    # A ping that fails for any reason means the session is unusable: discard it and connect
    # afresh, which is what the pre-ping is for.
    if context.is_pre_ping and not context.is_disconnect:
        # Said, not swallowed: a session returned to the pool inside a transaction fails its
        # ping too, and that is a leak worth knowing about.
        log.warning(
            "database: a pooled session failed its check (%s); replaced by a new one",
            type(context.original_exception).__name__,
        )
        context.is_disconnect = True


def is_in_memory(engine: Engine) -> bool:
    """Whether the engine's database lives in this process's memory (SQLite ``:memory:``):
    another process opening the same URL gets an empty database of its own."""
    return engine.dialect.name == "sqlite" and _sqlite_in_memory(engine.url)


def _sqlite_in_memory(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or database.startswith("file::memory:")


SQLITE_BEGIN_OPTION = "sqlite_begin"
"""Execution option: ``"IMMEDIATE"`` makes a SQLite transaction take the write lock when it
begins, so a read-then-write transaction cannot act on a state another writer changed."""


def _configure_sqlite(engine: Engine, *, in_memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # slabot emits BEGIN itself (below): the driver's own handling begins a transaction
        # only at the first write, after the reads it depends on.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                # FULL: a committed transaction also survives a power loss (NORMAL in WAL
                # mode may lose the last commits then); slabot must never lose a write it owes.
                cursor.execute("PRAGMA synchronous=FULL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")
        if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            raise ValueError(f"{SQLITE_BEGIN_OPTION} must be DEFERRED, IMMEDIATE or EXCLUSIVE")
        connection.exec_driver_sql(f"BEGIN {mode}")


def for_writing(engine: Engine) -> Engine:
    """The engine to run read-then-write transactions on: on SQLite each takes the write lock
    as it begins (one writer at a time, others wait up to the busy timeout); PostgreSQL
    transactions lock the rows they read with ``SELECT ... FOR UPDATE`` instead."""
    if engine.dialect.name == "sqlite":
        return engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
    return engine
