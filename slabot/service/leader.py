"""Which replica runs the scheduled jobs: a PostgreSQL advisory lock held on its own connection.

Any number of ``slabot run`` processes serve webhooks on one PostgreSQL database; exactly
one, the leader, runs the pollers, the flushers, the breach scan and the digests (an
APScheduler job store cannot be shared between processes, and one scheduler keeps the
helpdesks' request budgets whole).

``Leadership.check()`` runs every scan interval in every replica. The leader holds a
session-level ``pg_advisory_lock`` on a dedicated connection (outside the pool, so no pool
recycling can drop it) and proves the session is alive with ``SELECT 1``; the others try
``pg_try_advisory_lock`` and get ``false``. When the leader dies its session ends and
PostgreSQL releases the lock: the next check of another replica takes it, within one scan
interval (two with the check's own timing). A leader whose connection broke (a database
restart) stops leading at once and competes again. The session asks the server for TCP
keep-alives, so even a leader whose host vanished without closing its connection is
dropped within about half a minute.

On SQLite (one process writes) the single process is always the leader.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

import psycopg
from sqlalchemy import Engine

log = logging.getLogger(__name__)

DEFAULT_LOCK_KEY = 0x51AB0100
_KEEPALIVE_OPTIONS = (
    "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"
)
_CONNECT_TIMEOUT = 10


class Leadership:
    """This process's standing in the election (thread-safe; one per process)."""

    def __init__(
        self,
        engine: Engine,
        key: int = DEFAULT_LOCK_KEY,
        *,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.key = key
        self._single = engine.dialect.name != "postgresql"
        self._conninfo = (
            ""
            if self._single
            else engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        )
        self._where = engine.url.render_as_string(hide_password=True)
        self._on_change = on_change
        self._lock = threading.Lock()
        self._connection: psycopg.Connection[tuple[object, ...]] | None = None
        self.is_leader = self._single
        """Whether this process runs the scheduled jobs (as of the last check)."""
        self.changes = 0
        """How many times the standing changed (a test's or a metric's view)."""

    @property
    def single_process(self) -> bool:
        return self._single

    def check(self) -> bool:
        """Keep or try to take the lead; returns whether this process leads now."""
        if self._single:
            return True
        with self._lock:
            leading = self._still_leading() if self.is_leader else self._try_take()
            self._set(leading)
            return leading

    def release(self) -> None:
        """Give the lead up (a clean shutdown): another replica takes it at its next check."""
        if self._single:
            return
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None:
                try:
                    if self.is_leader:
                        connection.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
                except psycopg.Error:
                    pass
                finally:
                    connection.close()
            self._set(False)

    def _still_leading(self) -> bool:
        connection = self._connection
        if connection is None:
            return False
        try:
            connection.execute("SELECT 1")
        except psycopg.Error as error:
            log.warning(
                "scheduler leadership lost: the lock's connection to %s broke (%s)",
                self._where,
                type(error).__name__,
            )
            self._drop()
            return False
        return True

    def _try_take(self) -> bool:
        try:
            if self._connection is None or self._connection.closed:
                self._connection = psycopg.connect(
                    self._conninfo,
                    autocommit=True,
                    connect_timeout=_CONNECT_TIMEOUT,
                    options=_KEEPALIVE_OPTIONS,
                    application_name="slabot-leader",
                )
            row = self._connection.execute(
                "SELECT pg_try_advisory_lock(%s)", (self.key,)
            ).fetchone()
        except psycopg.Error as error:
            log.warning(
                "scheduler leadership: cannot reach %s (%s); will try again",
                self._where,
                type(error).__name__,
            )
            self._drop()
            return False
        return bool(row and row[0])

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(psycopg.Error):
                connection.close()

    def _set(self, leading: bool) -> None:
        if leading == self.is_leader:
            return
        self.is_leader = leading
        self.changes += 1
        log.info(
            "this process %s the scheduled jobs (advisory lock %d on %s)",
            "now runs" if leading else "no longer runs",
            self.key,
            self._where,
        )
        if self._on_change is not None:
            self._on_change(leading)
