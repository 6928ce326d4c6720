"""Applying the Alembic migrations shipped in ``slabot/store/migrations``.

``upgrade`` is what ``slabot db upgrade`` runs (and what ``slabot run`` will run on start):
safe to repeat, and on PostgreSQL several replicas starting at once take turns through an
advisory lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from slabot.store.db import DatabaseError, redact

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_UPGRADE_LOCK = 0x51AB07
"""The PostgreSQL advisory lock key that serializes concurrent upgrades."""


def alembic_config(engine: Engine | None = None) -> Config:
    """An Alembic configuration for the shipped migrations (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        config.attributes["url"] = engine.url
    return config


def head_revision() -> str:
    """The newest revision this version of slabot ships."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships a revision
        raise DatabaseError("slabot ships no database migrations")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    with _reaching(engine), engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Bring the database to ``revision``; returns the revision it is at afterwards."""
    with _reaching(engine):
        with engine.begin() as connection:
            _lock(connection)
            config = alembic_config(engine)
            config.attributes["connection"] = connection
            try:
                command.upgrade(config, revision)
            except CommandError as error:
                raise DatabaseError(
                    f"cannot migrate the database at {redact(engine.url)}: {error} "
                    f"(this slabot knows revisions up to {head_revision()})"
                ) from None
        with engine.connect() as connection:
            now_at = MigrationContext.configure(connection).get_current_revision()
    return now_at or "base"


def included_on(dialect: str) -> Callable[..., bool]:
    """Autogenerate's ``include_object`` on ``dialect``: an index the models create on another
    dialect only (``Index(...).ddl_if(dialect=...)``, the search's trigram index) is not
    expected there."""

    def include(item: object, _name: object, kind: str, reflected: bool, _other: object) -> bool:
        only = getattr(item, "_ddl_if", None)
        if kind != "index" or reflected or only is None or only.dialect is None:
            return True
        return dialect in ((only.dialect,) if isinstance(only.dialect, str) else only.dialect)

    return include


def _lock(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Held until the transaction ends: a second replica waits, then finds nothing to do.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK})


@contextmanager
def _reaching(engine: Engine) -> Iterator[None]:
    """Turn a database failure into a ``DatabaseError`` naming the database, not the password."""
    try:
        yield
    except SQLAlchemyError as error:
        raise DatabaseError(f"database {redact(engine.url)}: {describe(error, engine)}") from None


def describe(error: SQLAlchemyError, engine: Engine) -> str:
    """The driver's own first line (``connection refused``, ``unable to open database
    file``...), without the SQL text and with any password blanked out."""
    original = error.orig if isinstance(error, DBAPIError) else None
    message = str(original if original is not None else error).strip()
    message = message.splitlines()[0] if message else type(error).__name__
    password = engine.url.password
    if password:
        message = message.replace(str(password), "***")
    return message
