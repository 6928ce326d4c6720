"""What the ``slabot`` commands share: the usage error, declaring a command, and the migrated
database they read (below ``cli.py`` and ``reports_cli.py``, which both build on it).

SQLAlchemy and the store are imported inside the functions that need them: the engine-only
commands (evaluate, explain, check-config) should not pay for loading them.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bot.errors import SlabotError

Handler = Callable[[argparse.Namespace], int]


class UsageError(SlabotError):
    """The command line is wrong; the message says how to call it."""


def add_command(
    commands: Any, name: str, handler: Handler | None = None, **texts: str
) -> argparse.ArgumentParser:
    """Add the sub-command ``name`` (``texts``: argparse's help, description...) to
    ``commands`` (argparse's sub-parsers), run by ``handler`` (None: it has actions of its own)."""
    command: argparse.ArgumentParser = commands.add_parser(name, **texts)
    if handler is not None:
        command.set_defaults(handler=handler)
    return command


def require_schema(engine: Any, *, name_revision: bool = False) -> None:
    """Refuse (``UsageError``) a database that does not exist or is not at the newest revision,
    saying to run ``slabot db upgrade``. ``name_revision``: also say which revision this slabot
    needs (``slabot recompute``'s wording)."""
    from slabot.store.db import redact
    from slabot.store.migrate import current_revision, head_revision

    where = redact(engine.url)
    path = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    if path and path != ":memory:" and not path.startswith("file:") and not Path(path).exists():
        # Connecting would create an empty file: say what to do instead.
        first = " first" if name_revision else ""
        raise UsageError(f"database {where} does not exist: run `slabot db upgrade`{first}")
    at, head = current_revision(engine), head_revision()
    if at != head:
        state = "has no slabot tables" if at is None else f"is at revision {at}"
        needs = f"this slabot needs revision {head}: " if name_revision else ""
        raise UsageError(f"database {where} {state}; {needs}run `slabot db upgrade` first")


@contextlib.contextmanager
def database_errors(engine: Any) -> Iterator[None]:
    """Inside: a SQLAlchemy error leaves as a ``DatabaseError`` naming the database (its
    password masked) and what went wrong, instead of a traceback."""
    from sqlalchemy.exc import SQLAlchemyError

    from slabot.store.db import DatabaseError, redact
    from slabot.store.migrate import describe

    try:
        yield
    except SQLAlchemyError as error:
        raise DatabaseError(f"database {redact(engine.url)}: {describe(error, engine)}") from None
