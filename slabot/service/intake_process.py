"""Webhook jobs processed in a child process, so the process answering webhooks keeps its GIL.

A webhook is acknowledged once its delivery is recorded; the job it queues (fetch the
ticket through the helpdesk's API, map it, ingest it) is CPU work in Python: in a thread of
the same process it takes the interpreter lock from the event loop for milliseconds at a
time, and every acknowledgement waiting behind it gets slower. ``slabot run`` therefore
hands each intake's jobs to a child process of its own (``service.webhook_worker:
process``, the default); the queue, the coalescing of jobs about one ticket, the retries and
the drain on SIGTERM stay in the parent (``connectors.intake.WebhookIntake``), which sends
one job at a time and waits for its outcome.

The child is started with ``spawn`` (a clean interpreter: no copied threads, locks or
database connections), builds its processor with the ``ProcessorFactory`` it is given (this
module knows no runtime: ``slabot run``'s factory, ``slabot.service.runtime.service_intake``,
builds a runtime of its own from the same settings, the environment and config file as they
are when it starts), ignores SIGINT (the parent decides when to stop: it
drains its queue, then closes the pipe) and exits when the pipe closes, the parent's death
included. It runs at a lower scheduling
priority (``nice`` +``WORKER_NICENESS``): on a machine whose cores are all busy, the
acknowledgements come first and the jobs, which are already acknowledged and coalesced per
ticket, take the time left; on an idle core the niceness changes nothing. A child that dies
while a job runs fails that job like any error (the intake retries it), and the next job
starts a new child.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from connectors.intake import IntakeJob

log = logging.getLogger(__name__)

__all__ = [
    "WORKER_NICENESS",
    "IntakeProcess",
    "IntakeProcessError",
    "Processor",
    "ProcessorFactory",
    "RemoteJobError",
]

WORKER_NICENESS = 10
"""Added to the child's niceness (about a tenth of a core's time against a busy parent)."""

Processor = Callable[[IntakeJob], None]
ProcessorFactory = Callable[[], Processor]
"""Called in the child to build what processes the jobs; must pickle (a module-level
function, or a ``functools.partial`` of one)."""


class IntakeProcessError(RuntimeError):
    """The child process exited, or could not be reached, while a job was being processed."""


class RemoteJobError(RuntimeError):
    """A job failed in the child; the message names the error raised there."""


class IntakeProcess:
    """Runs ``factory()``'s processor in a child process; calling it processes one job there.

    Calls take turns (one job at a time, as the intake's one worker thread sends them).
    ``start`` starts the child ahead of the first job; the first call waits until it is
    ready. A child that cannot start (its factory raised: a config file edited into an
    invalid one since the service started...) reports why; the call raises that, and no new
    child is started for ``restart_pause`` seconds, so a broken set-up fails each job fast
    instead of starting an interpreter per attempt. ``close`` stops the child and refuses
    later jobs.
    """

    def __init__(
        self,
        name: str,
        factory: ProcessorFactory,
        *,
        niceness: int = WORKER_NICENESS,
        start_timeout: float = 120.0,
        restart_pause: float = 30.0,
    ) -> None:
        self.name = name
        self._factory = factory
        self.niceness = niceness
        """Added to the child's niceness when it starts."""
        self._start_timeout = start_timeout
        self._restart_pause = restart_pause
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        """Held while a job is sent and answered (and while the child is replaced)."""
        self._child: BaseProcess | None = None
        self._connection: Connection | None = None
        self._ready = False
        self._closed = False
        self._failed_until = 0.0
        self._failure = ""
        self.started = 0
        """Children started (more than one: a child died and was replaced)."""

    def __repr__(self) -> str:
        return f"IntakeProcess({self.name!r})"

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.pid if child is not None and child.is_alive() else None

    def start(self) -> None:
        with self._lock:
            if not self._closed and time.monotonic() >= self._failed_until:
                self._ensure()

    def __call__(self, job: IntakeJob) -> None:
        with self._lock:
            connection = self._ready_connection()
            try:
                connection.send(job)
                reply = connection.recv()
            except (EOFError, OSError):
                status = self._reap()
                raise IntakeProcessError(
                    f"the {self.name} webhook worker process exited (status {status}) while "
                    f"processing {job.subject!r}; a new one takes the next job"
                ) from None
        if reply is not None:
            kind, message = reply
            raise RemoteJobError(f"{kind}: {message}")

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new jobs, let the job in progress finish for up to ``timeout`` seconds,
        then stop the child: it exits when its pipe closes, or is killed when it does not
        within what is left of ``timeout``."""
        deadline = time.monotonic() + max(timeout, 0.0)
        self._closed = True
        if self._lock.acquire(timeout=max(timeout, 0.0)):
            try:
                self._stop_child(deadline)
            finally:
                self._lock.release()
            return
        # A job is still running at the deadline: stop its child (the call waiting for it
        # fails, and the intake forgets the delivery so a redelivery is accepted).
        child = self._child
        if child is not None and child.is_alive():
            log.warning("the %s webhook worker process is still busy; killing it", self.name)
            child.kill()
        with self._lock:
            self._stop_child(time.monotonic() + 5)

    def _ready_connection(self) -> Connection:
        if self._closed:
            raise IntakeProcessError(f"the {self.name} webhook worker is closed (stopping)")
        if time.monotonic() < self._failed_until:
            raise IntakeProcessError(self._failure)
        connection = self._ensure()
        if self._ready:
            return connection
        try:
            if not connection.poll(self._start_timeout):
                raise IntakeProcessError(
                    f"the {self.name} webhook worker process did not start within "
                    f"{self._start_timeout:g} s"
                )
            hello = connection.recv()
        except (EOFError, OSError):
            hello = ("failed", f"it exited (status {self._child_status()})")
        except IntakeProcessError as error:
            hello = ("failed", str(error))
        if hello != ("ready", ""):
            self._reap()
            self._failure = (
                f"the {self.name} webhook worker process could not start: {hello[1]}; "
                f"next try in {self._restart_pause:g} s"
            )
            self._failed_until = time.monotonic() + self._restart_pause
            log.error("%s", self._failure)
            raise IntakeProcessError(self._failure)
        self._ready = True
        return connection

    def _ensure(self) -> Connection:
        if self._connection is not None and self._child is not None and self._child.is_alive():
            return self._connection
        self._reap()
        ours, theirs = self._context.Pipe()
        child = self._context.Process(
            target=_serve,
            args=(theirs, self._factory, self.niceness),
            name=f"slabot-{self.name}-worker",
            daemon=True,
        )
        child.start()
        theirs.close()
        self._child, self._connection, self._ready = child, ours, False
        self.started += 1
        log.info("%s webhook worker process started (pid %s)", self.name, child.pid)
        return ours

    def _child_status(self) -> int | None:
        child = self._child
        if child is None:
            return None
        child.join(1)
        return child.exitcode

    def _stop_child(self, deadline: float) -> None:
        child, connection = self._child, self._connection
        self._child = self._connection = None
        self._ready = False
        if connection is not None:
            connection.close()
        if child is None:
            return
        child.join(max(deadline - time.monotonic(), 0.0))
        if child.is_alive():
            log.warning("the %s webhook worker process did not exit; killing it", self.name)
            child.kill()
            child.join(5)

    def _reap(self) -> int | None:
        child = self._child
        self._stop_child(time.monotonic() + 5)
        return None if child is None else child.exitcode


def _serve(connection: Connection, factory: ProcessorFactory, niceness: int) -> None:
    """The child: build the processor and say so (or why it could not), then process each
    job received until the pipe closes, answering None (done) or the error's type and
    message."""
    # Ctrl-C reaches the whole process group: the parent decides when the child stops.
    # SIGTERM keeps its default (a service manager stopping everything at once).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if niceness:
        with contextlib.suppress(OSError):
            os.nice(niceness)
    try:
        process = factory()
    except Exception as error:
        with contextlib.suppress(EOFError, OSError):
            connection.send(("failed", f"{type(error).__name__}: {error}"))
        return
    try:
        connection.send(("ready", ""))
    except (EOFError, OSError):
        return
    while True:
        try:
            job = connection.recv()
        except (EOFError, OSError):
            return
        try:
            process(job)
        except Exception as error:  # the child must survive any one job
            log.debug("webhook job %s failed", getattr(job, "delivery_key", "?"), exc_info=True)
            reply: tuple[str, str] | None = (type(error).__name__, str(error))
        else:
            reply = None
        try:
            connection.send(reply)
        except (EOFError, OSError):
            return
