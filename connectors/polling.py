"""What every helpdesk's poller shares: the report, counting a ticket that failed, the budget.

A connector's poller subclasses ``HelpdeskPoller`` and reads the helpdesk's own change
feed (Zendesk's incremental export, Jira's JQL search) page by page, storing its cursor
with ``slabot.store.queries.save_cursor`` after each page, and hands each page to its
sync's ``apply_many``. The base gives it the rules every poll and backfill keeps:

- ``tally``: one ticket's outcome into the ``PollReport`` (applied, with the writes it
  owes; or failed);
- ``count_failure``: a ticket that could not be applied is logged, counted in ``failed``
  with its reason in ``errors``, and the page goes on; the helpdesk or the database
  unavailable is not the ticket's fault: it is raised, and the poll stops (``stopped``)
  and resumes from the cursor next time.

``RequestBudget`` spaces requests to an endpoint that allows N per window (Zendesk's
export: 10 a minute).
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from slabot.store.retry import DatabaseUnavailableError


@dataclass(slots=True)
class PollReport:
    """What one poll or backfill did (each helpdesk adds its count of tickets read)."""

    pages: int = 0
    applied: int = 0
    skipped: int = 0
    """Tickets deleted in the helpdesk: nothing to ingest."""
    failed: int = 0
    """Tickets that could not be applied (malformed, refused by the helpdesk...); each is
    logged and has its line in ``errors``."""
    enqueued: int = 0
    cursor: str | None = None
    complete: bool = False
    """Reached the end of the stream (False: stopped early; the next poll resumes)."""
    error: str | None = None
    errors: list[str] = field(default_factory=list)
    resumed: bool = False
    """A backfill that went on from where an interrupted one since the same instant
    stopped (its counts are this run's)."""


class Applied(Protocol):
    """A ticket applied (the sync's ``SyncResult``)."""

    @property
    def enqueued(self) -> tuple[str, ...]: ...


class HelpdeskPoller(ABC):
    """The rules a connector's poller counts its tickets by; the service calls ``poll``."""

    helpdesk: ClassVar[str]
    """How people name the helpdesk in log lines: ``Zendesk``, ``Jira``."""
    ticket_word: ClassVar[str] = "ticket"
    unavailable: ClassVar[type[Exception]]
    """The helpdesk's "unavailable for now" error: it stops the poll."""
    expected: ClassVar[tuple[type[Exception], ...]]
    """The errors that say what is wrong with the ticket (logged without a trace)."""

    @abstractmethod
    def poll(self, *, max_pages: int | None = None) -> PollReport:
        """Read the change feed from the stored cursor, a page at a time."""

    @property
    def log(self) -> logging.Logger:
        """The connector's own logger (``connectors.zendesk.poller``...)."""
        return logging.getLogger(type(self).__module__)

    def tally(self, report: PollReport, name: str, outcome: Applied | Exception) -> None:
        """Count one ticket's outcome (``apply_many``'s, or the error that kept it out)."""
        if isinstance(outcome, Exception):
            self.count_failure(report, name, outcome)
            return
        report.applied += 1
        report.enqueued += len(outcome.enqueued)

    def count_failure(self, report: PollReport, name: str, error: Exception) -> None:
        """Count a ticket that was not applied; raise what is not the ticket's fault."""
        if isinstance(error, (self.unavailable, DatabaseUnavailableError)):
            raise error  # not this ticket's fault: the poll stops and resumes from the cursor
        if isinstance(error, self.expected):
            self.failed(report, name, str(error))
            return
        # One bad ticket never stops the poll; the trace is logged.
        self.log.error(
            "%s %s %s: unexpected error", self.helpdesk, self.ticket_word, name, exc_info=error
        )
        self.failed(report, name, f"unexpected {type(error).__name__}: {error}")

    def failed(self, report: PollReport, name: str, reason: str) -> None:
        report.failed += 1
        report.errors.append(f"{self.ticket_word} {name}: {reason}")
        self.log.error("%s %s %s not applied: %s", self.helpdesk, self.ticket_word, name, reason)

    def stopped(self, report: PollReport, error: Exception) -> None:
        """The helpdesk became unavailable: the poll ends here, the cursor where it is."""
        report.error = str(error)
        self.log.warning(
            "%s poll stopped: %s; the next poll resumes from the cursor", self.helpdesk, error
        )


class RequestBudget:
    """At most ``limit`` requests per ``window`` seconds: ``acquire()`` waits for a slot.

    ``clock`` (monotonic seconds) and ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a request budget needs a positive limit and window")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()
        self.waited = 0.0

    def acquire(self) -> None:
        with self._lock:
            while True:
                now = self._clock()
                while self._sent and now - self._sent[0] >= self.window:
                    self._sent.popleft()
                if len(self._sent) < self.limit:
                    self._sent.append(now)
                    return
                pause = self.window - (now - self._sent[0])
                self.waited += pause
                self._sleep(pause)
