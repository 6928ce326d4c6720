"""The webhook intake: record each delivery, queue its job, process it off the request path.

- ``WebhookIntake`` is the "acknowledge fast, process off the request path" pattern: the
  handler records the delivery (repeats are dropped: the same id, or the same signed
  content under another id), puts the job on a bounded queue and answers; one worker
  thread processes the queue. Jobs about one ticket are coalesced: at most one waits while
  another runs, and two fetches of one ticket start at least ``min_interval`` seconds
  apart. A job that still fails after its retries is logged and its delivery forgotten:
  the poller, which reads the helpdesk's own change feed, is the backstop.
- ``DeliveryRecorder`` is the intake's group commit: requests hand it their delivery keys
  (and content digests) and wait; one thread writes every key waiting in one transaction
  (the store's ``DeliveryWriter``), at once, the keys that arrive meanwhile making the next
  batch, and hands each request its own answer. A delivery is acknowledged only once its
  key is committed; when the batch's transaction fails, every request in it is told so
  (the endpoints answer 503, and the helpdesk retries).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import itertools
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from slabot.store.db import DatabaseError
from slabot.store.deliveries import DeliveryWriter, delivery_key, forget_delivery
from slabot.store.retry import DEFAULT_RETRY

if TYPE_CHECKING:
    from slabot.store.services import TicketService

log = logging.getLogger(__name__)

Submitted = Literal["accepted", "duplicate", "coalesced", "busy"]
DeliveryKey = tuple[str, str]
"""``(source, delivery_key)``."""
RecordMany = Callable[[Sequence[DeliveryKey], Mapping[DeliveryKey, str]], Collection[DeliveryKey]]
"""Records every key given, with the content digests given for some of them, in one
transaction; returns those that were new (the store's ``DeliveryWriter.record`` with the
service's clock): a key whose digest was recorded before is not."""
T = TypeVar("T")


class DeliveriesNotRecordedError(DatabaseError):
    """The batch a delivery was in could not be recorded, for a reason other than the
    database's own (which is raised as it is): nothing is acknowledged, retry later."""


class _Waiting:
    """A delivery key handed to the recorder, and where its answer goes."""

    __slots__ = ("digest", "future", "key", "loop", "since", "then")

    def __init__(
        self,
        key: DeliveryKey,
        then: Callable[[bool], Any],
        future: asyncio.Future[Any] | concurrent.futures.Future[Any],
        loop: asyncio.AbstractEventLoop | None,
        digest: str | None = None,
    ) -> None:
        self.key = key
        self.digest = digest
        self.then = then
        self.future = future
        self.loop = loop
        self.since = time.monotonic()


class DeliveryRecorder:
    """Group commit of webhook deliveries: many requests, one transaction.

    Each request hands ``record`` its delivery key and waits. One thread (started on first
    use) takes every key waiting, at most ``max_batch``, writes them with ``record_many`` in
    one transaction and commits; then, still on that thread, runs each request's ``then``
    with whether its key was new (a key twice in one batch is new once), and hands the
    request what ``then`` returned. The answers of a batch reach an event loop in one
    ``call_soon_threadsafe``. The thread writes as soon as a key waits; the keys that arrive
    while a batch is being written make the next one, so batches grow with the load and
    with the commit's own time (every few milliseconds under load). ``linger`` (default 0)
    makes the oldest key wait that long for company first: fewer, larger transactions, but
    each request waits longer, and a client that waits for its answer before sending again
    (Zendesk's and Jira's senders, the benchmark's connections) sends less.

    When ``record_many`` fails, no ``then`` runs and every request of the batch gets the
    error (a ``DatabaseError``; anything else is wrapped in ``DeliveriesNotRecordedError``):
    nothing is acknowledged that is not recorded. A request whose caller went away
    (cancelled) still has its ``then`` run: a recorded delivery is never left unqueued.
    ``release`` is called on the thread when it stops (the writer gives its connection
    back).
    """

    def __init__(
        self,
        record_many: RecordMany,
        *,
        max_batch: int = 200,
        linger: float = 0.0,
        name: str = "deliveries",
        release: Callable[[], object] | None = None,
    ) -> None:
        if max_batch < 1 or linger < 0:
            raise ValueError("a delivery recorder needs max_batch >= 1 and linger >= 0")
        self._record_many = record_many
        self._release = release
        self.max_batch = max_batch
        self.linger = linger
        self.name = name
        self._waiting: list[_Waiting] = []
        self._writing = 0
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.batches = 0
        """Transactions written (failed ones included)."""
        self.recorded = 0
        """Keys handed to ``record_many``."""
        self.largest_batch = 0

    async def record(
        self, source: str, key: str, then: Callable[[bool], T], *, digest: str | None = None
    ) -> T:
        """Record the delivery (``digest``: of what its sender signed); returns
        ``then(new)``, run on the recorder's thread once the key is committed. Raises the
        batch's ``DatabaseError`` when it could not be."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._put(_Waiting((source, key), then, future, loop, digest))
        return await future

    def record_blocking(
        self, source: str, key: str, then: Callable[[bool], T], *, digest: str | None = None
    ) -> T:
        """``record`` for a caller that is not on an event loop (a thread, a test)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._put(_Waiting((source, key), then, future, None, digest))
        return future.result()

    @property
    def pending(self) -> int:
        """Keys waiting or being written."""
        with self._condition:
            return len(self._waiting) + self._writing

    def start(self) -> None:
        with self._condition:
            self._start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is waiting, then stop the thread (a later ``record`` starts it again)."""
        with self._condition:
            thread = self._thread
            if thread is None:
                return
            self._stopping = True
            self._condition.notify_all()
        thread.join(timeout)
        with self._condition:
            if self._thread is thread and not thread.is_alive():
                self._thread = None
            self._stopping = False

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def _put(self, waiting: _Waiting) -> None:
        with self._condition:
            self._start()
            self._waiting.append(waiting)
            count = len(self._waiting)
            # The thread waits for a first key, or lingers until a batch is full.
            if count == 1 or count >= self.max_batch:
                self._condition.notify()

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._waiting and not self._stopping:
                    self._condition.wait()
                if not self._waiting:
                    break
                if self.linger:
                    deadline = self._waiting[0].since + self.linger
                    while len(self._waiting) < self.max_batch and not self._stopping:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._condition.wait(remaining)
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                self._writing = len(batch)
            try:
                self._write(batch)
            finally:
                with self._condition:
                    self._writing = 0
        if self._release is not None:
            try:
                self._release()
            except Exception:
                log.exception("%s: releasing the connection failed", self.name)

    def _write(self, batch: list[_Waiting]) -> None:
        keys = [waiting.key for waiting in batch]
        digests: dict[DeliveryKey, str] = {}
        for waiting in batch:
            if waiting.digest is not None:
                digests.setdefault(waiting.key, waiting.digest)
        self.batches += 1
        self.recorded += len(keys)
        self.largest_batch = max(self.largest_batch, len(keys))
        try:
            new = set(self._record_many(keys, digests))
        except Exception as error:
            failure: BaseException = error
            if not isinstance(error, DatabaseError):
                log.exception("%s: recording %d deliveries failed", self.name, len(keys))
                failure = DeliveriesNotRecordedError(
                    f"{len(keys)} webhook deliveries were not recorded "
                    f"({type(error).__name__}); nothing was acknowledged"
                )
            _settle([(waiting, None, failure) for waiting in batch])
            return
        answers: list[tuple[_Waiting, Any, BaseException | None]] = []
        for waiting in batch:
            fresh = waiting.key in new
            new.discard(waiting.key)  # another copy in this batch is a duplicate
            try:
                answers.append((waiting, waiting.then(fresh), None))
            except Exception as error:
                answers.append((waiting, None, error))
        _settle(answers)


def _settle(answers: list[tuple[_Waiting, Any, BaseException | None]]) -> None:
    """Hand each request its answer: threads at once, each event loop in one callback."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any, BaseException | None]]] = {}
    for waiting, result, error in answers:
        if waiting.loop is None:
            future = waiting.future
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
        else:
            by_loop.setdefault(waiting.loop, []).append((waiting.future, result, error))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(_settle_on_loop, items)


def _settle_on_loop(items: list[tuple[Any, Any, BaseException | None]]) -> None:
    for future, result, error in items:
        if future.done():  # the request was cancelled meanwhile
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


@dataclass(frozen=True, slots=True)
class IntakeJob:
    """One delivery to process: ``subject`` is what it is about (a ticket id); jobs about a
    subject already waiting in the queue are coalesced into that one. ``digest``: the
    SHA-256 (hex) of what the sender signed, recorded with the key (``content_digest``)."""

    source: str
    delivery_key: str
    subject: Hashable
    payload: object
    digest: str | None = None


MIN_FETCH_INTERVAL = 1.0
"""Seconds between the starts of two jobs about one ticket (each a fetch through the API)."""


class JobRunner(Protocol):
    """Does an intake's jobs elsewhere (``slabot.service.intake_process.IntakeProcess``):
    calling it processes one job, raising what the job raised."""

    def __call__(self, job: IntakeJob) -> None: ...

    def start(self) -> None: ...

    def close(self, timeout: float) -> None: ...


class WebhookIntake:
    """A bounded queue of webhook jobs and the one worker thread that processes them (or
    hands each to a ``JobRunner`` in another process: ``run_jobs_in``).

    ``record_many(keys) -> new keys`` records deliveries in one transaction (the store's
    ``DeliveryWriter``, whose connection ``release`` gives back); requests are grouped by a
    ``DeliveryRecorder`` (at most ``batch_size`` keys a transaction). Without it, ``record(source,
    key) -> bool`` (the store's ``record_delivery``; False: seen before) records each
    delivery in its own transaction. ``forget(source, key)`` undoes a record when the job
    could not be processed, so a redelivery is not dropped; ``process(job)`` does the work
    (fetch, map, ingest). ``retries`` and ``retry_delay`` bound how long a failing job is
    retried in-process.

    Coalescing bounds the work many notices about one subject (a ticket) cause, replayed or
    genuine: a notice about a subject whose job is waiting joins that job (``coalesced``:
    the job reads the newest state when it runs, so nothing it says is lost); one arriving
    while the subject's job runs queues one more job, which runs after it, so a change made
    during a fetch is read by the next. And a subject's job starts at least
    ``min_interval`` seconds after the previous one started (``clock``: monotonic seconds):
    until then it waits aside (the worker runs other subjects' jobs meanwhile), still
    taking in the notices that arrive. N notices about one ticket over T seconds so cause
    at most T / ``min_interval`` + 2 jobs, whatever N.
    """

    def __init__(
        self,
        source: str,
        process: Callable[[IntakeJob], None],
        record: Callable[[str, str], bool] | None,
        forget: Callable[[str, str], object],
        *,
        record_many: RecordMany | None = None,
        release: Callable[[], object] | None = None,
        batch_size: int = 200,
        linger: float = 0.0,
        maxsize: int = 1000,
        retries: int = 3,
        retry_delay: float = 1.0,
        min_interval: float = MIN_FETCH_INTERVAL,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min_interval < 0:
            raise ValueError("an intake needs min_interval >= 0")
        self.source = source
        self._process = process
        self._forget = forget
        if record_many is None:
            if record is None:
                raise ValueError("an intake needs record or record_many")
            single = record

            def one_by_one(
                keys: Sequence[DeliveryKey], _digests: Mapping[DeliveryKey, str]
            ) -> set[DeliveryKey]:
                # One transaction per key, by key only (tests; the store's writer is used
                # in service).
                return {key for key in keys if single(*key)}

            record_many, batch_size = one_by_one, 1
        self.recorder = DeliveryRecorder(
            record_many,
            max_batch=batch_size,
            linger=linger,
            name=f"{source}-deliveries",
            release=release,
        )
        self._queue: queue.Queue[IntakeJob | None] = queue.Queue(maxsize=maxsize)
        self._maxsize = maxsize
        self._waiting: set[Hashable] = set()
        """Subjects with a job queued or held back (not yet running)."""
        self._held: list[tuple[float, int, IntakeJob]] = []
        """Jobs taken from the queue before their subject's interval was over: a heap of
        (when they may start, order taken, job); the worker's alone."""
        self._held_count = 0
        self._order = itertools.count()
        self._last_started: dict[Hashable, float] = {}
        """When each subject's last job started (``clock``); the worker's alone."""
        self._lock = threading.Lock()
        self._retries = retries
        self._retry_delay = retry_delay
        self.min_interval = min_interval
        self._sleep = sleep
        self._clock = clock
        self._thread: threading.Thread | None = None
        self._runner: JobRunner | None = None
        self.processed = 0
        self.failed = 0

    def submit(self, job: IntakeJob) -> Submitted:
        """Record the delivery and queue it; never blocks on the work itself.

        ``duplicate``: delivered before. ``coalesced``: a job about the same subject is
        already waiting (it will read the newest state). ``busy``: the queue is full; the
        delivery is forgotten again so the helpdesk's retry is accepted later. Raises the
        store's ``DatabaseError`` when the delivery could not be recorded.
        """
        source, key = delivery_key(job.source, job.delivery_key)
        return self.recorder.record_blocking(
            source, key, lambda new: self._enqueue(job, new), digest=job.digest
        )

    async def submit_async(self, job: IntakeJob) -> Submitted:
        """``submit`` for a request handler: waits for the batch its key is written in."""
        source, key = delivery_key(job.source, job.delivery_key)
        return await self.recorder.record(
            source, key, lambda new: self._enqueue(job, new), digest=job.digest
        )

    def _enqueue(self, job: IntakeJob, new: bool) -> Submitted:
        """After the key is committed (on the recorder's thread): queue the job."""
        if not new:
            return "duplicate"
        with self._lock:
            if job.subject in self._waiting:
                return "coalesced"
            try:
                if self._queue.qsize() + self._held_count >= self._maxsize > 0:
                    raise queue.Full  # the jobs held back count against the bound too
                self._queue.put_nowait(job)
            except queue.Full:
                pass
            else:
                self._waiting.add(job.subject)
                return "accepted"
        self._forget(job.source, job.delivery_key)
        return "busy"

    def process_job(self, job: IntakeJob) -> None:
        """Do one job's work once, here (no queue, no retries): what a ``JobRunner`` in
        another process calls."""
        self._process(job)

    @property
    def runner(self) -> JobRunner | None:
        """Where the jobs run when not on the worker thread (None: on it)."""
        return self._runner

    def run_jobs_in(self, runner: JobRunner) -> None:
        """Hand each job to ``runner`` (a child process running ``process_job``) instead of
        doing its work on the worker thread; queueing, coalescing and retries stay here.
        The intake starts and closes the runner with itself."""
        self._runner = runner

    def start(self) -> None:
        self.recorder.start()
        if self._runner is not None:
            self._runner.start()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name=f"{self.source}-webhook-worker", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Record the deliveries waiting, finish the queued jobs, then stop the worker
        (SIGTERM drains through here)."""
        deadline = time.monotonic() + timeout
        self.recorder.stop(timeout)
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(max(deadline - time.monotonic(), 0.0))
            self._thread = None
        if self._runner is not None:
            self._runner.close(max(deadline - time.monotonic(), 0.0))

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every delivery handed in was recorded and every queued job processed;
        False on time-out (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.recorder.pending == 0 and self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.005)
        return False

    @property
    def depth(self) -> int:
        """Jobs waiting for the worker: queued, or held back by their subject's interval."""
        with self._lock:
            return self._queue.qsize() + self._held_count

    def _run(self) -> None:
        """Take jobs in order; hold back one whose subject's last job started less than
        ``min_interval`` ago (its notices keep joining it) and start it when its time comes.
        On stop, the jobs held back run at once."""
        while True:
            if self._held and self._held[0][0] <= self._clock():
                _, _, job = heapq.heappop(self._held)
                self._start(job)
                continue
            timeout = max(self._held[0][0] - self._clock(), 0.0) if self._held else None
            try:
                taken = self._queue.get(timeout=timeout)
            except queue.Empty:
                continue
            if taken is None:
                while self._held:
                    self._start(heapq.heappop(self._held)[2])
                self._queue.task_done()
                return
            due = self._last_started.get(taken.subject, -math.inf) + self.min_interval
            if due > self._clock():
                with self._lock:
                    heapq.heappush(self._held, (due, next(self._order), taken))
                    self._held_count = len(self._held)
                continue
            self._start(taken)

    def _start(self, job: IntakeJob) -> None:
        """Run a job taken from the queue (its ``task_done`` follows, whatever happens)."""
        try:
            with self._lock:
                self._waiting.discard(job.subject)
                self._held_count = len(self._held)
            self._last_started[job.subject] = self._clock()
            if len(self._last_started) > 4 * max(self._maxsize, 1):
                self._forget_old_starts()
            self._run_job(job)
        finally:
            self._queue.task_done()

    def _forget_old_starts(self) -> None:
        """Drop the start times whose interval is over (they no longer hold anything back)."""
        horizon = self._clock() - self.min_interval
        for subject, started in list(self._last_started.items()):
            if started <= horizon:
                del self._last_started[subject]

    def _run_job(self, job: IntakeJob) -> None:
        for attempt in range(1, self._retries + 1):
            try:
                (self._runner or self._process)(job)
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


def store_intake(
    source: str, process: Callable[[IntakeJob], None], tickets: TicketService, **options: Any
) -> WebhookIntake:
    """An intake recording its deliveries in the store in batches (a ``DeliveryWriter`` on
    the ``tickets``' engine, at its clock's time), forgetting them through the store's
    ``forget_delivery``."""
    writer = DeliveryWriter(tickets.engine, retry=DEFAULT_RETRY)

    def record_many(
        keys: Sequence[DeliveryKey], digests: Mapping[DeliveryKey, str]
    ) -> set[DeliveryKey]:
        return writer.record(keys, tickets.now(), digests)

    def forget(source: str, key: str) -> bool:
        return forget_delivery(tickets.engine, source, key, retry=DEFAULT_RETRY)

    return WebhookIntake(
        source,
        process,
        None,
        forget,
        record_many=record_many,
        release=writer.close,
        **options,
    )
