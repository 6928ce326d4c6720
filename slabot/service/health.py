"""What each connector last did, and whether this replica can do its job: the body of /readyz.

Jobs and endpoints call ``succeeded`` / ``failed`` (thread-safe) per connector and activity
(``poll``, ``flush``, and ``credentials``, which ``slabot doctor``'s probes record at start);
``/readyz`` shows the snapshot and ``problems()``. Errors are kept as their message, which
the connectors write without secrets.

Each activity reads as a ``state``: ``ok`` (its last run worked), ``not run yet``, ``never
succeeded`` (it ran and failed every time since the process started) or ``failing since
T`` (it worked once; every run since T failed), with the last error and the consecutive
failures. A replica is not ready (``problems()`` not empty) when a connector's credentials
were refused (401/403) and nothing has worked with them since, or when an activity that has
run has never succeeded within ``grace`` of the process's start: a load balancer should send
its traffic elsewhere, because webhooks it acknowledged could not be fetched, nor writes sent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.engine import iso_z

Clock = Callable[[], datetime]

MAX_ERROR_LENGTH = 500
REFUSED_STATUSES = frozenset({401, 403})
"""HTTP statuses that mean the credentials (or the account's permissions) were refused."""


ADVISORY_ACTIVITIES = frozenset({"ingest"})
"""Shown in ``/readyz`` but never a reason to be unready: ``ingest`` is a ticket a poll read
and could not apply, a problem of that ticket's data, not of the replica."""


def refused(error: BaseException) -> bool:
    """Whether ``error`` says the system refused slabot's credentials or account (401, 403):
    retrying cannot help, a person must fix the token or the role."""
    return getattr(error, "status", None) in REFUSED_STATUSES


@dataclass(slots=True)
class Activity:
    """One connector activity (``poll``, ``flush``, ``credentials``): when it last worked and
    last failed, and whether the last failure was a refusal of the credentials."""

    last_success_at: datetime | None = None
    last_error_at: datetime | None = None
    last_error: str | None = None
    runs: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    failing_since: datetime | None = None
    """The first failure after the last success (None while it works)."""
    refused: bool = False
    """The last run failed because the credentials were refused (401/403)."""

    @property
    def state(self) -> str:
        if self.runs == 0:
            return "not run yet"
        if self.consecutive_failures == 0:
            return "ok"
        if self.last_success_at is None:
            return "never succeeded"
        return f"failing since {iso_z(self.failing_since)}"

    def as_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "last_success_at": iso_z(self.last_success_at),
            "last_error_at": iso_z(self.last_error_at),
            "last_error": self.last_error,
            "consecutive_failures": self.consecutive_failures,
            "credentials_refused": self.refused,
            "runs": self.runs,
            "failures": self.failures,
        }


class Health:
    """Per connector and activity, the latest outcomes (one per process)."""

    def __init__(
        self,
        clock: Clock,
        connectors: tuple[str, ...] = (),
        *,
        grace: timedelta = timedelta(minutes=15),
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._activities: dict[str, dict[str, Activity]] = {name: {} for name in connectors}
        self.started_at = clock()
        self.grace = grace
        """How long an activity may go without a first success before the replica is
        reported not ready (zero: never for that reason)."""

    def succeeded(self, connector: str, activity: str) -> None:
        with self._lock:
            record = self._record(connector, activity)
            record.runs += 1
            record.last_success_at = self._clock()
            record.consecutive_failures = 0
            record.failing_since = None
            record.refused = False

    def failed(
        self, connector: str, activity: str, error: str, *, credentials_refused: bool = False
    ) -> None:
        """Record a failed run; ``credentials_refused`` when the system answered 401/403."""
        with self._lock:
            record = self._record(connector, activity)
            now = self._clock()
            record.runs += 1
            record.failures += 1
            record.consecutive_failures += 1
            if record.failing_since is None:
                record.failing_since = now
            record.last_error_at = now
            record.last_error = error[:MAX_ERROR_LENGTH]
            record.refused = credentials_refused

    def last_success(self, connector: str, activity: str) -> datetime | None:
        with self._lock:
            record = self._activities.get(connector, {}).get(activity)
            return None if record is None else record.last_success_at

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{"zendesk": {"poll": {"state": "ok", "last_success_at": ..., ...}}}``."""
        with self._lock:
            return {
                connector: {name: record.as_json() for name, record in activities.items()}
                for connector, activities in self._activities.items()
            }

    def problems(self) -> list[str]:
        """Why this replica cannot do its job (empty: it can), one sentence each."""
        now = self._clock()
        found: list[str] = []
        with self._lock:
            for connector, activities in self._activities.items():
                for name, record in sorted(activities.items()):
                    if name in ADVISORY_ACTIVITIES:
                        continue
                    # Only the same activity working again clears a refusal: a flush with
                    # nothing to send proves nothing about the export's permission.
                    if record.refused:
                        found.append(
                            f"{connector} {name}: credentials refused: {record.last_error} "
                            "(run `slabot doctor`)"
                        )
                    elif (
                        self.grace > timedelta(0)
                        and record.runs
                        and record.last_success_at is None
                        and now - self.started_at >= self.grace
                    ):
                        found.append(
                            f"{connector} {name}: never succeeded since the start at "
                            f"{iso_z(self.started_at)}: {record.last_error}"
                        )
        return found

    def _record(self, connector: str, activity: str) -> Activity:
        return self._activities.setdefault(connector, {}).setdefault(activity, Activity())
