"""Webhook deliveries recorded in batches: one transaction for every key waiting.

``DeliveryWriter.record(keys, now, digests)`` is the group-commit form of
``EventService.record_delivery``: the webhook endpoints hand the ``(source, delivery_key)``
of each delivery they received, with the digest of what its sender signed, to a recorder
(``connectors.intake.DeliveryRecorder``), which writes all the keys waiting in one
``INSERT ... ON CONFLICT DO NOTHING RETURNING`` and one commit, and learns from
``RETURNING`` which keys were new. The unique ``(source, delivery_key)`` constraint and the
unique ``(source, content_digest)`` index decide (``ON CONFLICT`` without a target covers
both): a delivery whose id or whose signed content was recorded before is a duplicate, and
of two replicas handed the same delivery at once, exactly one sees it as new.
``record_deliveries`` does the same once, on a connection of its own; ``forget_delivery``
removes a recorded delivery whose job failed, so the helpdesk's redelivery gets in. A
malformed key or digest raises ``DeliveryKeyError`` (nothing is written).

The statement is plain SQL on the DB-API connection the writer keeps (no pool check-out,
no ORM session per batch), so recording a key costs a few microseconds besides the commit:

- PostgreSQL: ``INSERT ... SELECT ... FROM unnest(%s::varchar[], %s::varchar[])``, the same
  text whatever the number of keys; psycopg opens the transaction with it;
- SQLite (3.35 or newer, for ``RETURNING``): ``BEGIN IMMEDIATE`` (the write lock, waited
  for in short steps), then a multi-row ``VALUES`` list, at most ``SQLITE_CHUNK`` rows per
  statement; this connection leaves WAL checkpoints to the others.

Transient failures before the commit are retried as ``with_retry`` does. A connection lost
*while committing* is not retried, since a retry could not tell a new delivery from a
duplicate: ``DatabaseUnavailableError`` says the outcome is unknown, and the caller answers
every delivery of the batch "retry later".
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, delete
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.pool import PoolProxiedConnection

from bot.errors import SlabotError
from slabot.store.db import SQLITE_BUSY_TIMEOUT_MS, redact
from slabot.store.migrate import describe
from slabot.store.models import WebhookDelivery
from slabot.store.retry import (
    DEFAULT_RETRY,
    DatabaseUnavailableError,
    RetryPolicy,
    is_transient,
    with_retry,
)

log = logging.getLogger(__name__)

__all__ = [
    "SQLITE_CHUNK",
    "DeliveryKey",
    "DeliveryKeyError",
    "DeliveryWriter",
    "content_digest",
    "delivery_key",
    "forget_delivery",
    "record_deliveries",
]

DeliveryKey = tuple[str, str]
"""``(source, delivery_key)``."""

SQLITE_CHUNK = 300
"""Rows per SQLite statement (4 parameters each: well under SQLite's 32,766)."""

SQLITE_LOCK_POLL = 0.0005
"""Seconds between two tries for SQLite's write lock."""
SQLITE_AUTOCHECKPOINT_PAGES = 1000
"""SQLite's default ``wal_autocheckpoint``, put back on the connection when it is released."""

_SOURCE_LENGTH = 32
_KEY_LENGTH = 255
_DIGEST_LENGTH = 64
_COLUMNS = "INSERT INTO webhook_deliveries (source, delivery_key, content_digest, received_at)"
# No conflict target: a row clashing with either unique key (the id, the digest) is skipped.
_CONFLICT = " ON CONFLICT DO NOTHING RETURNING source, delivery_key"
_POSTGRESQL = (
    f"{_COLUMNS} SELECT s, k, d, %s FROM unnest(%s::varchar[], %s::varchar[], %s::varchar[])"
    f" AS t(s, k, d){_CONFLICT}"
)


class DeliveryKeyError(SlabotError):
    """A delivery's key or content digest is malformed; nothing was written."""


def delivery_key(source: str, key: str) -> DeliveryKey:
    """The key as stored (stripped), or ``DeliveryKeyError`` saying what is wrong with it."""
    source, key = (source or "").strip(), (key or "").strip()
    if not source or not key:
        raise DeliveryKeyError("a webhook delivery needs its source and delivery key")
    if len(source) > _SOURCE_LENGTH or len(key) > _KEY_LENGTH:
        raise DeliveryKeyError(
            f"delivery {source[:40]}:{key[:40]}...: the source is at most "
            f"{_SOURCE_LENGTH} characters and the key at most {_KEY_LENGTH}"
        )
    return source, key


def content_digest(digest: str) -> str:
    """The digest as stored (lower-case hex SHA-256), or ``DeliveryKeyError`` saying what is
    wrong."""
    text = (digest or "").strip().lower()
    if len(text) != _DIGEST_LENGTH or any(c not in "0123456789abcdef" for c in text):
        raise DeliveryKeyError(
            f"a delivery's content digest is the {_DIGEST_LENGTH} hex digits of a SHA-256, "
            f"not {digest[:80]!r}"
        )
    return text


def record_deliveries(
    engine: Engine,
    keys: Sequence[DeliveryKey],
    now: datetime,
    *,
    digests: Mapping[DeliveryKey, str] | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> set[DeliveryKey]:
    """Record the deliveries ``keys`` (received at ``now``; ``digests``: what each one's
    sender signed) in one transaction; returns the keys that were not recorded before
    (``DeliveryWriter.record`` on a connection of its own, closed afterwards)."""
    writer = DeliveryWriter(engine, retry=retry)
    try:
        return writer.record(keys, now, digests)
    finally:
        writer.close()


def forget_delivery(
    engine: Engine, source: str, key: str, *, retry: RetryPolicy = DEFAULT_RETRY
) -> bool:
    """Remove a recorded delivery (its processing failed, so the helpdesk's redelivery is
    let in); True when there was one."""
    source, key = delivery_key(source, key)

    def work(session: Session) -> bool:
        statement = delete(WebhookDelivery).where(
            WebhookDelivery.source == source, WebhookDelivery.delivery_key == key
        )
        return bool(cast(CursorResult[Any], session.execute(statement)).rowcount)

    return with_retry(engine, work, policy=retry, what=f"forgetting delivery {source}:{key}")


class DeliveryWriter:
    """Records batches of deliveries on a connection it keeps (the recorder's thread calls
    it for every batch): no pool check-out, no ORM session, three statements on SQLite
    (``BEGIN IMMEDIATE``, the insert, ``COMMIT``) and one round trip less on PostgreSQL.

    A failure before the commit rolls back and is retried like ``with_retry`` does
    (transient failures only, on a fresh connection, after ``retry``'s pauses); a failure
    of the commit itself raises ``DatabaseUnavailableError`` at once, saying the outcome is
    unknown. The connection is dropped after any failure and opened again when needed.
    Calls from several threads take turns (a lock): give each recorder its own writer.
    """

    def __init__(self, engine: Engine, *, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        self.engine = engine
        self.retry = retry
        self._connection: PoolProxiedConnection | None = None
        self._lock = threading.Lock()
        dialect = engine.dialect
        self._postgresql = dialect.name == "postgresql"
        processor = _RECEIVED_AT.type.dialect_impl(dialect).bind_processor(dialect)
        self._instant: Callable[[datetime], Any] = processor or (lambda value: value)

    def record(
        self,
        keys: Sequence[DeliveryKey],
        now: datetime,
        digests: Mapping[DeliveryKey, str] | None = None,
    ) -> set[DeliveryKey]:
        """Record ``keys`` (received at ``now``) in one transaction; returns the new ones.
        ``digests`` gives the digest of what a key's sender signed (``content_digest``): a
        key whose digest was recorded before, under any key of its source, is not new. A
        key given twice, or two keys of one source with one digest, count as new at most
        once.

        Raises ``DeliveryKeyError`` for a malformed key or digest (nothing is written) and
        ``DatabaseUnavailableError`` when the database cannot be reached (nothing was
        recorded, or, if the connection dropped while committing, the outcome is unknown).
        """
        wanted: dict[DeliveryKey, str | None] = {}
        for source, key in keys:
            given = digests.get((source, key)) if digests else None
            wanted.setdefault(
                delivery_key(source, key), None if given is None else content_digest(given)
            )
        if not wanted:
            return set()
        with self._lock:
            return self._record(list(wanted.items()), now)

    def _record(
        self, wanted: list[tuple[DeliveryKey, str | None]], now: datetime
    ) -> set[DeliveryKey]:
        received_at = self._instant(now)
        (first_source, first_key), _ = wanted[0]
        what = f"recording delivery {first_source}:{first_key}" + (
            f" and {len(wanted) - 1} more" if len(wanted) > 1 else ""
        )
        started = time.monotonic()
        policy = self.retry
        for attempt in range(1, policy.attempts + 1):
            try:
                connection = self._connect()
                found = self._insert(connection, wanted, received_at)
            except Exception as error:
                self._drop()
                failure = _as_dbapi_error(error)
                if failure is None or not is_transient(failure):
                    raise
                last = failure
            else:
                try:
                    connection.commit()
                except Exception as error:
                    self._drop()
                    failure = _as_dbapi_error(error)
                    if failure is None:
                        raise
                    raise DatabaseUnavailableError(
                        f"database {redact(self.engine.url)} dropped the connection while "
                        f"committing {what}: {describe(failure, self.engine)}; the change may "
                        "or may not have been applied",
                        attempts=attempt,
                    ) from None
                return found
            if attempt == policy.attempts:
                break
            pause = policy.delay(attempt)
            log.warning(
                "database %s is unavailable for %s (%s); attempt %d of %d failed, retrying "
                "in %.2f s",
                redact(self.engine.url),
                what,
                describe(last, self.engine),
                attempt,
                policy.attempts,
                pause,
            )
            policy.sleep(pause)
        raise DatabaseUnavailableError(
            f"database {redact(self.engine.url)} is unavailable for {what}: "
            f"{describe(last, self.engine)} ({policy.attempts} attempt"
            f"{'s' if policy.attempts != 1 else ''} over {time.monotonic() - started:.1f} s); "
            "nothing was changed, try again when the database is back",
            attempts=policy.attempts,
        ) from None

    def close(self) -> None:
        """Give the connection back (a later ``record`` opens one again)."""
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.rollback()
                if not self._postgresql:
                    _sqlite_own_settings(connection, own=False)
            with contextlib.suppress(Exception):
                connection.close()

    def _connect(self) -> PoolProxiedConnection:
        if self._connection is None:
            connection = self.engine.raw_connection()
            if not self._postgresql:
                _sqlite_own_settings(connection, own=True)
            self._connection = connection
        return self._connection

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.invalidate()

    def _insert(
        self,
        connection: PoolProxiedConnection,
        wanted: list[tuple[DeliveryKey, str | None]],
        received_at: Any,
    ) -> set[DeliveryKey]:
        found: set[DeliveryKey] = set()
        cursor = connection.cursor()
        try:
            if self._postgresql:
                # psycopg opens the transaction with the statement.
                cursor.execute(
                    _POSTGRESQL,
                    (
                        received_at,
                        [s for (s, _), _ in wanted],
                        [k for (_, k), _ in wanted],
                        [d for _, d in wanted],
                    ),
                )
                found.update((str(s), str(k)) for s, k in cursor.fetchall())
                return found
            # slabot's SQLite connections leave transactions to it (db.py): take the write
            # lock now, as every store write does.
            _begin_immediate(cursor)
            for start in range(0, len(wanted), SQLITE_CHUNK):
                chunk = wanted[start : start + SQLITE_CHUNK]
                parameters: list[Any] = []
                for (source, key), digest in chunk:
                    parameters += (source, key, digest, received_at)
                cursor.execute(_sqlite_statement(len(chunk)), parameters)
                found.update((str(s), str(k)) for s, k in cursor.fetchall())
            return found
        finally:
            cursor.close()


def _sqlite_own_settings(connection: PoolProxiedConnection, *, own: bool) -> None:
    """The writer's SQLite connection waits for the write lock itself (``_begin_immediate``)
    and leaves WAL checkpoints to the other connections, so that no acknowledgement waits
    for one; ``own=False`` puts the pool's settings back before the connection returns."""
    cursor = connection.cursor()
    try:
        if own:
            cursor.execute("PRAGMA busy_timeout=0")
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        else:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_AUTOCHECKPOINT_PAGES}")
    finally:
        cursor.close()


def _begin_immediate(cursor: Any) -> None:
    """``BEGIN IMMEDIATE``, waiting for another writer's lock in steps of
    ``SQLITE_LOCK_POLL`` seconds (SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25
    ms... in turn: a lock held for 9 ms cost 18), up to the store's busy timeout."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as error:
            text = str(error).lower()
            locked = "locked" in text or "busy" in text
            if not locked or time.monotonic() >= deadline:
                raise
        time.sleep(SQLITE_LOCK_POLL)


@cache
def _sqlite_statement(rows: int) -> str:
    return f"{_COLUMNS} VALUES {', '.join(['(?, ?, ?, ?)'] * rows)}{_CONFLICT}"


_RECEIVED_AT = WebhookDelivery.__table__.c.received_at


def _as_dbapi_error(error: Exception) -> DBAPIError | None:
    """The driver's error as SQLAlchemy wraps it (for ``is_transient``); None for others."""
    if isinstance(error, DBAPIError):
        return error
    module = type(error).__module__
    if module == "sqlite3" or module.startswith("psycopg"):
        return DBAPIError(None, None, error)
    return None
