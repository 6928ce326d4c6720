"""Riding out a database that is briefly unreachable: ``with_retry``.

Every store operation that goes through ``with_retry`` runs as one whole transaction. When
it fails because the database could not be reached (connection refused or lost, the server
restarting or shutting the session down, a SQLite file locked past the busy timeout) or
because the database chose it as a deadlock or serialization victim, the transaction is
rolled back and run again from the start after a short, growing pause. Anything else, and in
particular an ``IntegrityError`` (a unique or check constraint said no), is raised at once:
running the same statements again cannot succeed.

When the last attempt fails too, ``DatabaseUnavailableError`` says which database (host,
port and name; never the password), what the driver reported, and that nothing was
changed. A failure *while committing* is different: the server may have applied the
transaction before the connection dropped. Operations that are safe to repeat (the outbox's
and the event service's are: claims are leases, completion is guarded by the attempt
number, events are deduplicated by their key) retry those too; others pass
``retry_commit=False`` and get a ``DatabaseUnavailableError`` saying the outcome is unknown.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from slabot.store.db import DatabaseError, for_writing, redact
from slabot.store.migrate import describe

T = TypeVar("T")

log = logging.getLogger(__name__)

_TRANSIENT_SQLSTATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "53300",  # too_many_connections
        "57P01",  # admin_shutdown (pg_terminate_backend, a fast shutdown)
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (starting up, in recovery)
    }
)
"""PostgreSQL error codes worth retrying, besides class 08 (connection exceptions)."""

_TRANSIENT_SQLITE = ("database is locked", "database is busy", "unable to open", "disk i/o")


class DatabaseUnavailableError(DatabaseError):
    """The database could not be reached, or dropped the connection, for every attempt.

    The message names the database without its password and says whether anything may have
    been changed; the caller (the outbox flusher, a webhook handler) retries the operation
    later. ``attempts`` is how many times the operation was tried.
    """

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently ``with_retry`` tries: ``attempts`` in all, pausing
    ``first_delay`` seconds after the first failure, doubling up to ``max_delay``, each pause
    shortened by up to ``jitter`` (a fraction) so that workers do not retry in step."""

    attempts: int = 4
    first_delay: float = 0.2
    max_delay: float = 2.0
    jitter: float = 0.25
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    random: Callable[[], float] = field(default=random.random, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("a retry policy needs at least one attempt")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction between 0 and 1")

    def delay(self, failures: int) -> float:
        """The pause after the ``failures``-th failed attempt (1-based), in seconds."""
        raw = min(self.max_delay, self.first_delay * 2.0 ** min(failures - 1, 30))
        shortening: float = self.jitter * self.random()
        return raw * (1 - shortening)


DEFAULT_RETRY = RetryPolicy()


def is_transient(error: BaseException) -> bool:
    """Whether running the failed transaction again may succeed: the connection failed or was
    lost, the server is shutting down or starting up, the transaction lost a deadlock or
    serialization conflict, or a SQLite file is locked or cannot be opened right now.

    Constraint violations, SQL mistakes and missing tables are not transient.
    """
    if isinstance(error, IntegrityError) or not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    original = error.orig
    sqlstate = getattr(original, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith("08") or sqlstate in _TRANSIENT_SQLSTATES
    module = type(original).__module__
    if module.startswith("psycopg"):
        # No SQLSTATE: the client itself failed (could not connect, connection closed).
        import psycopg

        return isinstance(original, psycopg.OperationalError | psycopg.InterfaceError)
    if module == "sqlite3":
        import sqlite3

        text = str(original).lower()
        return isinstance(original, sqlite3.OperationalError) and any(
            marker in text for marker in _TRANSIENT_SQLITE
        )
    return False


class _CommitFailed(Exception):
    """Internal: the body ran but the commit failed (the outcome is unknown)."""

    def __init__(self, error: DBAPIError) -> None:
        super().__init__(str(error))
        self.error = error


def with_retry(
    engine: Engine,
    work: Callable[[Session], T],
    *,
    policy: RetryPolicy = DEFAULT_RETRY,
    what: str = "the operation",
    retry_commit: bool = True,
    read_only: bool = False,
) -> T:
    """Run ``work(session)`` in one write transaction, retrying transient database failures.

    ``work`` gets a fresh session each attempt (``expire_on_commit=False``, so the objects it
    returns stay readable) and must do everything it means to do through it; the transaction
    commits when it returns. On SQLite the transaction takes the write lock as it begins
    (``for_writing``); on PostgreSQL ``work`` locks what it reads (``FOR UPDATE``).
    ``read_only=True`` is for ``work`` that only reads: its transaction takes no write lock,
    and a failure at commit is retried (nothing can have been applied).

    Raises ``DatabaseUnavailableError`` when every attempt failed transiently; any other
    error (``IntegrityError`` included) is raised at once, unchanged.
    """
    writer = engine if read_only else for_writing(engine)
    started = time.monotonic()
    for attempt in range(1, policy.attempts + 1):
        try:
            return _attempt(writer, work)
        except _CommitFailed as failed:
            error = failed.error
            if not is_transient(error):
                raise error from None
            if not retry_commit and not read_only:
                raise DatabaseUnavailableError(
                    f"database {redact(engine.url)} dropped the connection while committing "
                    f"{what}: {describe(error, engine)}; the change may or may not have been "
                    "applied",
                    attempts=attempt,
                ) from None
        except DBAPIError as caught:
            error = caught
            if not is_transient(error):
                raise
        if attempt == policy.attempts:
            break
        pause = policy.delay(attempt)
        log.warning(
            "database %s is unavailable for %s (%s); attempt %d of %d failed, retrying in %.2f s",
            redact(engine.url),
            what,
            describe(error, engine),
            attempt,
            policy.attempts,
            pause,
        )
        policy.sleep(pause)
    elapsed = time.monotonic() - started
    raise DatabaseUnavailableError(
        f"database {redact(engine.url)} is unavailable for {what}: "
        f"{describe(error, engine)} ({policy.attempts} attempt"
        f"{'s' if policy.attempts != 1 else ''} over {elapsed:.1f} s); nothing was changed, "
        "try again when the database is back",
        attempts=policy.attempts,
    ) from None


def _attempt(writer: Engine, work: Callable[[Session], T]) -> T:
    with Session(writer, expire_on_commit=False) as session:
        session.begin()
        result = work(session)
        session.flush()  # a failure up to here rolls back: nothing was applied
        try:
            session.commit()
        except DBAPIError as error:
            raise _CommitFailed(error) from error
        return result
