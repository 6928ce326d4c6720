"""``slabot run``: settings, logs, migrations, then the app and the scheduler under uvicorn.

Start-up stops with a message (exit status 1, no traceback) on any settings problem,
naming the setting. Logs go to standard error (JSON lines unless it is a terminal) with
every known secret masked. The database is migrated first (``upgrade``: replicas starting
together take turns through an advisory lock). uvicorn handles SIGTERM and SIGINT: it
stops accepting connections and finishes the requests in flight; the app's lifespan then
drains the webhook queues and lets the running job (a flush) finish before the process
exits.

It also refuses to start when the dashboard has no credentials and the address is not a
loopback one (``slabot.service.access.check_bind``).

HTTP is uvicorn's h11 protocol with slabot's guards (``slabot.service.limits``): a cap on
header bytes, a deadline for a request's headers, a keep-alive timeout and a cap on open
connections that fits in the open-files limit, which is raised to its hard limit first.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import uvicorn

from slabot.service import doctor
from slabot.service.access import check_bind
from slabot.service.app import create_app
from slabot.service.limits import (
    LISTEN_BACKLOG,
    ConnectionLimits,
    connection_cap,
    guarded_protocol,
    raise_open_files_limit,
)
from slabot.service.logs import SecretMasker, configure_logging
from slabot.service.runtime import Clock, Runtime, build_runtime, system_clock
from slabot.service.scheduler import make_scheduler, register_jobs
from slabot.service.settings import ServiceSettings, Settings, load_settings
from slabot.store.db import redact
from slabot.store.migrate import upgrade

log = logging.getLogger(__name__)


@dataclass
class Service:
    """A runtime, its app and its scheduler (not started)."""

    runtime: Runtime
    app: Any
    scheduler: Any
    jobs: list[str]


def prepare(
    settings: Settings,
    clock: Clock = system_clock,
    *,
    client_options: Mapping[str, Mapping[str, Any]] | None = None,
    migrate: bool = True,
    webhook_processes: Mapping[str, str] | None = None,
) -> Service:
    """Migrate the database and wire the app and the scheduler (nothing runs yet);
    ``webhook_processes`` as ``build_runtime`` takes it."""
    runtime = build_runtime(
        settings, clock, client_options=client_options, webhook_processes=webhook_processes
    )
    if migrate:
        revision = upgrade(runtime.engine)
        log.info("database %s at revision %s", redact(runtime.engine.url), revision)
    service = settings.service
    scheduler = make_scheduler(service.timezone, service.misfire_grace_seconds)
    jobs = register_jobs(scheduler, runtime)
    return Service(runtime, create_app(runtime, scheduler), scheduler, jobs)


def serve(service: Service, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then shut down cleanly."""
    settings = service.runtime.settings.service
    config = uvicorn.Config(
        service.app,
        host=host,
        port=port,
        log_config=None,
        access_log=settings.access_log,
        timeout_graceful_shutdown=max(int(settings.drain_timeout_seconds), 1),
        lifespan="on",
        **http_options(settings),
    )
    server = uvicorn.Server(config)
    log.info(
        "slabot serving on http://%s:%d (connectors: %s; jobs: %s)",
        host,
        port,
        ", ".join(service.runtime.settings.enabled) or "none",
        ", ".join(service.jobs),
    )
    # uvicorn stops on SIGTERM/SIGINT, shuts down gracefully, then re-raises the signal
    # under the handlers that were there before it: these record it and let ``run`` return,
    # so the process closes its connections and exits 0 after a clean shutdown.
    received: list[int] = []
    freeze_heap()
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    previous = {
        sig: signal.signal(sig, lambda number, _frame: received.append(number))
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        service.runtime.close()
    if received:
        log.info("stopped by %s", signal.Signals(received[0]).name)


def http_options(settings: ServiceSettings) -> dict[str, Any]:
    """``uvicorn.Config`` arguments that enforce the service's HTTP limits (docs/operations.md):
    the guarded h11 protocol, its header cap, the keep-alive timeout, the listen backlog, and
    no WebSocket protocol.
    Raises this process's soft open-files limit to the hard one (once is enough)."""
    limits = ConnectionLimits(
        max_connections=connection_cap(settings.max_connections, raise_open_files_limit()),
        max_header_bytes=settings.max_header_bytes,
        header_timeout_seconds=settings.header_timeout_seconds,
    )
    return {
        "http": guarded_protocol(limits),
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_keep_alive": settings.keep_alive_timeout_seconds,
        "backlog": LISTEN_BACKLOG,
        "ws": "none",  # slabot serves no WebSocket: an upgrade is a plain request, under the limits
    }


SWITCH_INTERVAL_SECONDS = 0.0005
"""How long a thread of ``slabot run`` may hold the interpreter lock while another waits for
it (Python's default: 5 ms). The event loop answering webhooks needs the lock several times
per request, while the scheduler's jobs (outbox flushes, polls, the breach scan) and the
delivery recorder run Python on threads of the same process: with 5 ms turns, a flush
running beside a steady 200 webhooks per second put their p99 at 88-110 ms in
``bench/webhooks.py``; with 0.5 ms turns, 21-38 ms."""


def freeze_heap() -> None:
    """Move everything alive after start-up (modules, policies, compiled calendars, the
    ORM's mappers: about 150,000 objects) out of the garbage collector's sight.

    A full collection otherwise walks all of them, holding the GIL: 60-100 ms in which no
    request is answered, enough to put a webhook's p99 past 50 ms several times a minute.
    Frozen objects are never freed, which suits objects that live as long as the process.
    """
    gc.collect()
    gc.freeze()


def run(host: str | None, port: int | None, environ: Mapping[str, str] | None = None) -> int:
    """``slabot run``: the whole service in this process."""
    settings = load_settings(environ)
    host = host or settings.service.host
    check_bind(settings.service, host)  # before anything starts: no open dashboard off loopback
    masker = SecretMasker(settings.secrets())
    configure_logging(masker, level=settings.service.log_level, form=settings.service.log_format)
    # The children read the same settings: the environment as this process read it.
    children = dict(os.environ if environ is None else environ)
    service = prepare(
        settings,
        webhook_processes=children if settings.service.webhook_worker == "process" else None,
    )
    # The doctor's checks, in the background: logged, recorded in /readyz; never fatal.
    doctor.start_up(settings, service.runtime.health)
    serve(
        service,
        host or settings.service.host,
        settings.service.port if port is None else port,
    )
    return 0
