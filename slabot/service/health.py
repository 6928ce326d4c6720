"""What each connector last did: its last success and last error per activity, for /readyz.

Jobs and endpoints call ``succeeded`` / ``failed`` (thread-safe); ``/readyz`` shows the
snapshot. Errors are kept as their message, which the connectors write without secrets.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.engine import iso_z

Clock = Callable[[], datetime]

MAX_ERROR_LENGTH = 500


@dataclass(slots=True)
class Activity:
    """One connector activity (``poll``, ``flush``): when it last worked and last failed."""

    last_success_at: datetime | None = None
    last_error_at: datetime | None = None
    last_error: str | None = None
    runs: int = 0
    failures: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "last_success_at": iso_z(self.last_success_at),
            "last_error_at": iso_z(self.last_error_at),
            "last_error": self.last_error,
            "runs": self.runs,
            "failures": self.failures,
        }


class Health:
    """Per connector and activity, the latest outcomes (one per process)."""

    def __init__(self, clock: Clock, connectors: tuple[str, ...] = ()) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._activities: dict[str, dict[str, Activity]] = {name: {} for name in connectors}

    def succeeded(self, connector: str, activity: str) -> None:
        with self._lock:
            record = self._record(connector, activity)
            record.runs += 1
            record.last_success_at = self._clock()

    def failed(self, connector: str, activity: str, error: str) -> None:
        with self._lock:
            record = self._record(connector, activity)
            record.runs += 1
            record.failures += 1
            record.last_error_at = self._clock()
            record.last_error = error[:MAX_ERROR_LENGTH]

    def last_success(self, connector: str, activity: str) -> datetime | None:
        with self._lock:
            record = self._activities.get(connector, {}).get(activity)
            return None if record is None else record.last_success_at

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{"zendesk": {"poll": {"last_success_at": ..., "last_error": ...}}}``."""
        with self._lock:
            return {
                connector: {name: record.as_json() for name, record in activities.items()}
                for connector, activities in self._activities.items()
            }

    def _record(self, connector: str, activity: str) -> Activity:
        return self._activities.setdefault(connector, {}).setdefault(activity, Activity())
