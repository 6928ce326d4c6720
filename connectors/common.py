"""What every helpdesk connector shares: settings, webhook signatures, intake, a request budget.

- Settings come from an environment mapping (tests pass a dict; the service passes
  ``os.environ``); ``Secret`` keeps a credential out of every repr, log line and message.
- Signatures are HMAC-SHA256, compared in constant time.
- ``WebhookIntake`` is the "acknowledge fast, process off the request path" pattern: the
  handler records the delivery (the store's ``record_delivery`` drops repeats), puts the
  job on a bounded queue and answers; one worker thread processes the queue. A job that
  still fails after its retries is logged and its delivery forgotten: the poller, which
  reads the helpdesk's own change feed, is the backstop.
- ``RequestBudget`` spaces requests to an endpoint that allows N per window.
- ``load_cursor`` / ``save_cursor`` keep where a poller stopped (``slabot.store.queries``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import Engine

from bot.errors import SlabotError
from slabot.store import queries

log = logging.getLogger(__name__)


class ConnectorSettingsError(SlabotError):
    """A connector's settings are missing or malformed; the message names the setting."""


class Secret:
    """A credential: shown as ``'********'`` everywhere; ``reveal()`` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    def __str__(self) -> str:
        return "********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(
            self._value.encode(), other._value.encode()
        )

    def __hash__(self) -> int:
        return hash(type(self))

    def __bool__(self) -> bool:
        return bool(self._value)


def setting(environ: Mapping[str, str], name: str) -> str | None:
    """The setting's value, stripped; None when unset or blank."""
    value = environ.get(name)
    if value is None:
        return None
    return value.strip() or None


def secret_setting(environ: Mapping[str, str], name: str) -> Secret | None:
    value = setting(environ, name)
    return None if value is None else Secret(value)


def missing_settings_error(connector: str, missing: list[str], why: str) -> ConnectorSettingsError:
    """``Zendesk is half-configured: set ZENDESK_API_TOKEN (...)`` -- never a value."""
    names = " and ".join(missing)
    return ConnectorSettingsError(f"{connector} is half-configured: set {names} ({why})")


# --- signatures -------------------------------------------------------------------------------


def hmac_sha256(secret: str | bytes, message: bytes) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, message, hashlib.sha256).digest()


def signature_base64(secret: str | bytes, message: bytes) -> str:
    """Base64 of HMAC-SHA256 (Zendesk's webhook signature)."""
    return base64.b64encode(hmac_sha256(secret, message)).decode("ascii")


def signature_hex(secret: str | bytes, message: bytes) -> str:
    """Lower-case hex of HMAC-SHA256 (Jira's ``X-Hub-Signature: sha256=...``)."""
    return hmac_sha256(secret, message).hex()


def signatures_match(expected: str, given: str | None) -> bool:
    """Constant-time comparison; a missing signature never matches."""
    if not given:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.strip().encode("utf-8"))


# --- intake -------------------------------------------------------------------------------------


Submitted = Literal["accepted", "duplicate", "coalesced", "busy"]


@dataclass(frozen=True, slots=True)
class IntakeJob:
    """One delivery to process: ``subject`` is what it is about (a ticket id); jobs about a
    subject already waiting in the queue are coalesced into that one."""

    source: str
    delivery_key: str
    subject: Hashable
    payload: object


class WebhookIntake:
    """A bounded queue of webhook jobs and the one worker thread that processes them.

    ``record(source, key) -> bool`` is the store's ``record_delivery`` (False: seen
    before); ``forget(source, key)`` undoes it when the job could not be processed, so a
    redelivery is not dropped; ``process(job)`` does the work (fetch, map, ingest).
    ``retries`` and ``retry_delay`` bound how long a failing job is retried in-process.
    """

    def __init__(
        self,
        source: str,
        process: Callable[[IntakeJob], None],
        record: Callable[[str, str], bool],
        forget: Callable[[str, str], object],
        *,
        maxsize: int = 1000,
        retries: int = 3,
        retry_delay: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.source = source
        self._process = process
        self._record = record
        self._forget = forget
        self._queue: queue.Queue[IntakeJob | None] = queue.Queue(maxsize=maxsize)
        self._waiting: set[Hashable] = set()
        self._lock = threading.Lock()
        self._retries = retries
        self._retry_delay = retry_delay
        self._sleep = sleep
        self._thread: threading.Thread | None = None
        self.processed = 0
        self.failed = 0

    def submit(self, job: IntakeJob) -> Submitted:
        """Record the delivery and queue it; never blocks on the work itself.

        ``duplicate``: delivered before. ``coalesced``: a job about the same subject is
        already waiting (it will read the newest state). ``busy``: the queue is full; the
        delivery is forgotten again so the helpdesk's retry is accepted later.
        """
        if not self._record(job.source, job.delivery_key):
            return "duplicate"
        with self._lock:
            if job.subject in self._waiting:
                return "coalesced"
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                self._forget(job.source, job.delivery_key)
                return "busy"
            self._waiting.add(job.subject)
        return "accepted"

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name=f"{self.source}-webhook-worker", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the queued jobs, then stop the worker (SIGTERM drains through here)."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queued job was processed; False on time-out (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.005)
        return False

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                with self._lock:
                    self._waiting.discard(job.subject)
                self._run_job(job)
            finally:
                self._queue.task_done()

    def _run_job(self, job: IntakeJob) -> None:
        for attempt in range(1, self._retries + 1):
            try:
                self._process(job)
            except Exception as error:  # the worker must survive any one job
                if attempt < self._retries:
                    self._sleep(self._retry_delay * 2 ** (attempt - 1))
                    continue
                self.failed += 1
                log.error(
                    "%s webhook %s about %s failed after %d attempts (%s: %s); the poller "
                    "will pick the change up",
                    self.source,
                    job.delivery_key,
                    job.subject,
                    attempt,
                    type(error).__name__,
                    error,
                )
                try:
                    self._forget(job.source, job.delivery_key)
                except Exception:
                    log.exception("could not forget delivery %s", job.delivery_key)
                return
            else:
                self.processed += 1
                return


# --- request budget -------------------------------------------------------------------------------


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


# --- poll cursors ---------------------------------------------------------------------------------


def load_cursor(engine: Engine, source: str, stream: str) -> str | None:
    """The stored cursor of a source's stream (None: never polled)."""
    return queries.load_cursor(engine, source, stream)


def save_cursor(engine: Engine, source: str, stream: str, cursor: str, now: datetime) -> None:
    """Store where polling a source's stream stopped."""
    queries.save_cursor(engine, source, stream, cursor, now)
