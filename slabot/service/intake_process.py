"""Webhook jobs processed in a child process, so the process answering webhooks keeps its GIL.

A webhook is acknowledged once its delivery is recorded; the job it queues (fetch the
ticket through the helpdesk's API, map it, ingest it) is CPU work in Python: in a thread of
the same process it takes the interpreter lock from the event loop for milliseconds at a
time, and every acknowledgement waiting behind it gets slower. ``slabot run`` therefore
hands each intake's jobs to a child process of its own (``service.webhook_worker:
process``, the default); the queue, the coalescing of jobs about one ticket, the retries and
the drain on SIGTERM stay in the parent (``connectors.common.WebhookIntake``), which sends
one job at a time and waits for its outcome.

The child is started with ``spawn`` (a clean interpreter: no copied threads, locks or
database connections), builds its own runtime from the same settings, ignores SIGINT and
SIGTERM (the parent decides when to stop: it drains its queue, then closes the pipe) and
exits when the pipe closes, the parent's death included. It runs at a lower scheduling
priority (``nice`` +``WORKER_NICENESS``): on a machine whose cores are all busy, the
acknowledgements come first and the jobs, which are already acknowledged and coalesced per
ticket, take the time left; on an idle core the niceness changes nothing. A child that dies
while a job runs fails that job like any error (the intake retries it), and the next job
starts a new child.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from connectors.common import IntakeJob

log = logging.getLogger(__name__)

__all__ = [
    "IntakeProcess",
    "IntakeProcessError",
    "RemoteJobError",
    "service_intake",
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
    ``start`` starts the child ahead of the first job; ``close`` stops it.
    """

    def __init__(
        self, name: str, factory: ProcessorFactory, *, niceness: int = WORKER_NICENESS
    ) -> None:
        self.name = name
        self._factory = factory
        self._niceness = niceness
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._child: BaseProcess | None = None
        self._connection: Connection | None = None
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
            self._ensure()

    def __call__(self, job: IntakeJob) -> None:
        with self._lock:
            connection = self._ensure()
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
        """Let the child finish and exit (it exits when its pipe closes); stop it after
        ``timeout`` seconds."""
        with self._lock:
            child, connection = self._child, self._connection
            self._child = self._connection = None
        if connection is not None:
            connection.close()
        if child is not None:
            child.join(timeout)
            if child.is_alive():
                log.warning("the %s webhook worker process did not exit; terminating it", self.name)
                child.terminate()
                child.join(5)

    def _ensure(self) -> Connection:
        if self._connection is not None and self._child is not None and self._child.is_alive():
            return self._connection
        self._reap()
        ours, theirs = self._context.Pipe()
        child = self._context.Process(
            target=_serve,
            args=(theirs, self._factory, self._niceness),
            name=f"slabot-{self.name}-worker",
            daemon=True,
        )
        child.start()
        theirs.close()
        self._child, self._connection = child, ours
        self.started += 1
        log.info("%s webhook worker process started (pid %s)", self.name, child.pid)
        return ours

    def _reap(self) -> int | None:
        child, connection = self._child, self._connection
        self._child = self._connection = None
        if connection is not None:
            connection.close()
        if child is None:
            return None
        child.join(5)
        if child.is_alive():
            child.terminate()
            child.join(5)
        return child.exitcode


def _serve(connection: Connection, factory: ProcessorFactory, niceness: int) -> None:
    """The child: build the processor, then process each job received until the pipe
    closes, answering None (done) or the error's type and message."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if niceness:
        with contextlib.suppress(OSError):
            os.nice(niceness)
    process = factory()
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


def service_intake(source: str, environ: Mapping[str, str] | None) -> IntakeProcess:
    """The child process for ``slabot run``'s ``source`` intake: it reads the same settings
    (``environ``, else its inherited environment) and processes jobs as the parent would."""
    environment = dict(environ) if environ is not None else None
    return IntakeProcess(source, functools.partial(_service_processor, source, environment))


def _service_processor(source: str, environ: dict[str, str] | None) -> Processor:
    from slabot.service.logs import SecretMasker, configure_logging
    from slabot.service.runtime import build_runtime
    from slabot.service.settings import load_settings

    settings = load_settings(environ)
    masker = SecretMasker(settings.secrets())
    configure_logging(masker, level=settings.service.log_level, form=settings.service.log_format)
    runtime = build_runtime(settings)
    return runtime.helpdesks[source].webhook.intake.process_job
