"""Wiring the real parts together: settings in, one ``Runtime`` of connected services out.

``build_runtime(settings, clock)`` creates the database engine, loads the policies, and for
each enabled connector its client, sync, webhook intake, poller and writer (the helpdesks
of ``HELPDESKS``: each factory names its classes in a ``HelpdeskKind``, which ``_helpdesk``
wires the same way) or its Bolt app and outbox sender (Slack). Nothing here makes a
network call: the clients connect on first use. The HTTP app (``slabot.service.app``), the scheduler
(``slabot.service.scheduler``) and ``slabot run`` (``slabot.service.server``) all start
from a ``Runtime``. ``service_intake`` is the child process of a webhook intake
(``slabot.service.intake_process.IntakeProcess``), with a factory that builds the child's own
``Runtime`` here: this is the one place that wires the parts, in the parent and the child.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any, Protocol

from slack_bolt import App
from slack_sdk import WebClient
from sqlalchemy import Engine, text
from starlette.routing import Route

from bot.compiled import Policy
from bot.policy import TARGETS
from bot.routing import Router
from connectors.intake import WebhookIntake
from connectors.polling import HelpdeskPoller
from connectors.sync import HelpdeskSync
from connectors.webhook import SignedWebhook
from connectors.writeback import OutboxWriter
from slabot.policy_files import bundled_policy_paths, load_policy
from slabot.service.health import Health
from slabot.service.intake_process import WORKER_NICENESS, IntakeProcess, Processor
from slabot.service.leader import Leadership
from slabot.service.logs import SecretMasker, configure_logging
from slabot.service.metrics import Metrics, StateCollector
from slabot.service.settings import Settings, load_settings
from slabot.slack.config import SlackConfig
from slabot.slack.store_access import SlackStore
from slabot.slack.transport import SocketMode
from slabot.store import queries
from slabot.store.breaches import BREACH, DEFAULT_THRESHOLDS, to_permille
from slabot.store.db import is_in_memory, make_engine, redact
from slabot.store.outbox import Outbox
from slabot.store.retry import RetryPolicy
from slabot.store.services import TicketService

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


class Webhook(Protocol):
    """What the service needs of a connector's webhook endpoint."""

    intake: WebhookIntake
    counts: dict[str, int]

    def routes(self) -> list[Route]: ...


class PollResult(Protocol):
    error: str | None
    errors: list[str]


class WriteResult(Protocol):
    sent: int
    retrying: int
    dead: int


@dataclass
class Helpdesk:
    """One enabled helpdesk connector (Zendesk or Jira), as the service drives it."""

    name: str
    webhook: Webhook
    poll: Callable[[], PollResult]
    """One poll from the stored cursor (the backstop for missed webhooks)."""
    flush: Callable[[str], WriteResult]
    """Send the owed writes, as the given worker."""
    poll_interval: float
    tickets: TicketService


@dataclass
class SlackParts:
    """The enabled Slack app and what its jobs use."""

    app: App
    client: WebClient
    config: SlackConfig
    store: SlackStore
    send: Callable[[Any], None]
    """The outbox sender for ``slack`` items (nudges, breach notices, digests)."""
    socket_mode: SocketMode | None = None
    """The Socket Mode connection when ``SLACK_APP_TOKEN`` is set (started with the
    service), else None: Slack's requests come to ``POST /slack/events``."""


@dataclass
class Runtime:
    """The connected services of one process."""

    settings: Settings
    engine: Engine
    policies: dict[str, Policy]
    clock: Clock
    outbox: Outbox
    tickets: TicketService
    store: SlackStore
    """Ticket views (evaluated at a given instant) for the dashboard, nudges and digests."""
    helpdesks: dict[str, Helpdesk]
    slack: SlackParts | None
    health: Health
    metrics: Metrics
    leadership: Leadership
    worker_id: str
    slack_counts: dict[str, int] = field(default_factory=dict)
    """Requests to /slack/events by result."""
    _started: bool = False

    @property
    def targets(self) -> list[str]:
        """The systems slabot writes to: the enabled helpdesks, and Slack."""
        return [*self.helpdesks, *(["slack"] if self.slack is not None else [])]

    def start(self) -> None:
        """Start the webhook workers (the HTTP app's lifespan calls this)."""
        if self._started:
            return
        for helpdesk in self.helpdesks.values():
            helpdesk.webhook.intake.start()
        if self.slack is not None and self.slack.socket_mode is not None:
            self.slack.socket_mode.start()
        self._started = True

    def drain(self, timeout: float) -> None:
        """Finish the queued webhook deliveries and stop their workers (SIGTERM)."""
        for name, helpdesk in self.helpdesks.items():
            intake = helpdesk.webhook.intake
            if not intake.drain(timeout):
                log.warning(
                    "%s: %d webhook deliveries were still queued at shutdown; the poller "
                    "will pick those changes up",
                    name,
                    intake.depth,
                )
            intake.stop(timeout)
        if self.slack is not None and self.slack.socket_mode is not None:
            self.slack.socket_mode.close()
        self._started = False

    def close(self) -> None:
        """Give up the leadership and the database connections."""
        self.leadership.release()
        self.engine.dispose()

    def unknown_plans(self, *, attempts: int = 1) -> dict[tuple[str, str], int]:
        """``(policy, plan) -> count`` of the stored open tickets whose plan their policy
        does not know (``/metrics``, ``/readyz``). ``attempts`` 1: a scrape or a probe must
        answer quickly, database outage or not."""
        return queries.unknown_plans(
            self.engine, self.policies, retry=RetryPolicy(attempts=attempts)
        )

    def database_ok(self) -> str | None:
        """None when the database answers, else what is wrong (no secret)."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as error:
            return f"database {redact(self.engine.url)} does not answer ({type(error).__name__})"
        return None


def load_policies(paths: list[str]) -> dict[str, Policy]:
    """The named policy files (default: the bundled three), by policy name."""
    files = paths or [str(path) for path in bundled_policy_paths()]
    policies: dict[str, Policy] = {}
    for path in files:
        policy = load_policy(path)
        policies[policy.name] = policy
    return policies


def thresholds_of(config: SlackConfig | None) -> tuple[Fraction, ...]:
    """The fractions of each target the store must mark: every nudge threshold, and the
    breach (every ticket service of a process must mark the same ones)."""
    permilles = {BREACH}
    if config is None:
        permilles.update(to_permille(f) for f in DEFAULT_THRESHOLDS)
    else:
        for target in TARGETS:
            permilles.update(config.nudges.permilles(target))
    return tuple(Fraction(p, 1000) for p in sorted(permilles))


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def build_runtime(
    settings: Settings,
    clock: Clock = system_clock,
    *,
    engine: Engine | None = None,
    client_options: Mapping[str, Mapping[str, Any]] | None = None,
    webhook_processes: Mapping[str, str] | None = None,
) -> Runtime:
    """Build every enabled part. ``client_options`` passes keyword arguments to a
    connector's client (``{"zendesk": {"timeout": 2.0}}``: tests, the demo).
    ``webhook_processes``: run each connector's webhook jobs in a child process that reads
    its settings from this environment (``slabot run``; not with an in-memory SQLite
    database, which a child could not see); None: on a thread of this one."""
    options = client_options or {}
    engine = engine or make_engine(settings.database_url)
    policies = load_policies(settings.service.policies)
    thresholds = thresholds_of(settings.slack_config)
    for name in HELPDESKS:
        config = getattr(settings, f"{name}_config")
        if config is not None and config.policy is not None and config.policy not in policies:
            raise _policy_missing(name, config.policy, policies, settings)
    outbox = Outbox(engine, clock)
    health = Health(
        clock,
        settings.enabled,
        grace=timedelta(seconds=settings.service.readiness_grace_seconds),
    )
    metrics = Metrics()
    leadership = Leadership(engine, settings.service.leader_lock_key)

    router = Router(settings.routing, policies) if settings.routing is not None else None

    def service(origin: str) -> TicketService:
        return TicketService(
            engine, policies, clock, origin=origin, thresholds=thresholds, router=router
        )

    helpdesks = {
        name: _helpdesk(factory(), settings, service(name), outbox, options)
        for name, factory in HELPDESKS.items()
        if getattr(settings, name) is not None and getattr(settings, f"{name}_config") is not None
    }
    tickets = service("helpdesk")
    store = SlackStore(engine, policies, settings.links)
    slack = None
    if settings.slack is not None and settings.slack_config is not None:
        slack = _slack(settings, service("slack"), clock, options)
        store = slack.store
    if webhook_processes is not None and not is_in_memory(engine):
        # On SQLite a descheduled child holding the one write lock would hold up every
        # acknowledgement: no lower priority there.
        niceness = 0 if engine.dialect.name == "sqlite" else WORKER_NICENESS
        for name, helpdesk in helpdesks.items():
            helpdesk.webhook.intake.run_jobs_in(
                service_intake(name, webhook_processes, niceness=niceness)
            )
    runtime = Runtime(
        settings=settings,
        engine=engine,
        policies=policies,
        clock=clock,
        outbox=outbox,
        tickets=tickets,
        store=store,
        helpdesks=helpdesks,
        slack=slack,
        health=health,
        metrics=metrics,
        leadership=leadership,
        worker_id=settings.service.worker_id or default_worker_id(),
    )
    metrics.add(
        StateCollector(
            clock=clock,
            # Scrapes must answer quickly, database outage or not: no retries there.
            outbox=Outbox(engine, clock, retry=RetryPolicy(attempts=1)),
            targets=lambda: runtime.targets,
            webhook_counts=lambda: {
                **{name: dict(h.webhook.counts) for name, h in runtime.helpdesks.items()},
                **({"slack": dict(runtime.slack_counts)} if runtime.slack else {}),
            },
            queue_depths=lambda: {
                name: h.webhook.intake.depth for name, h in runtime.helpdesks.items()
            },
            last_polls=lambda: {
                name: health.last_success(name, "poll") for name in runtime.helpdesks
            },
            is_leader=lambda: leadership.is_leader,
            unknown_plans=lambda: runtime.unknown_plans(attempts=1),
        )
    )
    return runtime


def service_intake(
    source: str, environ: Mapping[str, str] | None, *, niceness: int = WORKER_NICENESS
) -> IntakeProcess:
    """The child process for ``slabot run``'s ``source`` intake: it reads the same settings
    (``environ``, else its inherited environment) and processes jobs as the parent would."""
    environment = dict(environ) if environ is not None else None
    return IntakeProcess(
        source, functools.partial(_service_processor, source, environment), niceness=niceness
    )


def _service_processor(source: str, environ: dict[str, str] | None) -> Processor:
    """In the child: its own logging and runtime, and the ``source`` intake's job processing."""
    settings = load_settings(environ)
    masker = SecretMasker(settings.secrets())
    configure_logging(masker, level=settings.service.log_level, form=settings.service.log_format)
    runtime = build_runtime(settings)
    return runtime.helpdesks[source].webhook.intake.process_job


def _policy_missing(
    connector: str, name: str, policies: Mapping[str, Policy], settings: Settings
) -> Exception:
    from slabot.service.settings import ServiceSettingsError

    return ServiceSettingsError(
        [
            f"{settings.config_path}: {connector}.policy is {name!r}, but the policies loaded "
            f"are {', '.join(sorted(policies))}; add its file to service.policies "
            "(SLABOT_POLICIES)"
        ]
    )


@dataclass(frozen=True, slots=True)
class HelpdeskKind:
    """One helpdesk's own classes over the connectors' shared seams, as its factory names
    them; ``_helpdesk`` wires them the same way for every helpdesk. Each takes the
    helpdesk's credentials (``Settings.<name>``) and config (``Settings.<name>_config``)."""

    name: str
    client: Callable[..., Any]
    """``(credentials, config, **client_options[name])``: the only part on the network."""
    sync: Callable[[Any, Any, TicketService], HelpdeskSync[Any, Any]]
    """``(client, config, tickets)``."""
    intake: Callable[..., WebhookIntake]
    """``(sync, **client_options[f"{name}_intake"])``: the connector's ``make_intake``."""
    webhook: Callable[[str, WebhookIntake, Any, TicketService], SignedWebhook]
    """``(secret, intake, config, tickets)``."""
    poller: Callable[[Any, Any], HelpdeskPoller]
    """``(client, sync)``."""
    writer: Callable[[Any, Any, Outbox], OutboxWriter]
    """``(client, config, outbox)``."""


def _helpdesk(
    kind: HelpdeskKind,
    settings: Settings,
    tickets: TicketService,
    outbox: Outbox,
    options: Mapping[str, Mapping[str, Any]],
) -> Helpdesk:
    """One enabled helpdesk: its client, sync, webhook intake, poller and writer."""
    credentials = getattr(settings, kind.name)
    config = getattr(settings, f"{kind.name}_config")
    assert credentials is not None and config is not None
    assert credentials.webhook_secret is not None  # required when webhooks are served
    client = kind.client(credentials, config, **options.get(kind.name, {}))
    sync = kind.sync(client, config, tickets)
    intake = kind.intake(sync, **options.get(f"{kind.name}_intake", {}))
    webhook = kind.webhook(credentials.webhook_secret.reveal(), intake, config, tickets)
    poller = kind.poller(client, sync)
    writer = kind.writer(client, config, outbox)
    return Helpdesk(
        name=kind.name,
        webhook=webhook,
        poll=poller.poll,
        flush=writer.flush,
        poll_interval=float(config.poll_interval_seconds),
        tickets=tickets,
    )


def _zendesk() -> HelpdeskKind:
    from connectors.zendesk.client import ZendeskClient
    from connectors.zendesk.poller import ZendeskPoller
    from connectors.zendesk.sync import ZendeskSync
    from connectors.zendesk.webhook import ZendeskWebhook, make_intake
    from connectors.zendesk.writeback import ZendeskWriter

    return HelpdeskKind(
        name="zendesk",
        client=lambda credentials, config, **options: ZendeskClient(credentials, **options),
        sync=ZendeskSync,
        intake=make_intake,
        webhook=lambda secret, intake, config, tickets: ZendeskWebhook(secret, intake),
        poller=ZendeskPoller,
        writer=ZendeskWriter,
    )


def _jira() -> HelpdeskKind:
    from connectors.jira.client import JiraClient
    from connectors.jira.poller import JiraPoller
    from connectors.jira.sync import JiraSync
    from connectors.jira.webhook import JiraWebhook, make_intake
    from connectors.jira.writeback import JiraWriter

    def webhook(
        secret: str, intake: WebhookIntake, config: Any, tickets: TicketService
    ) -> JiraWebhook:
        max_age = float(config.webhook_max_age_seconds)
        return JiraWebhook(secret, intake, clock=tickets.now, max_age=max_age)

    return HelpdeskKind(
        name="jira",
        client=JiraClient,
        sync=JiraSync,
        intake=make_intake,
        webhook=webhook,
        poller=JiraPoller,
        writer=JiraWriter,
    )


HELPDESKS: dict[str, Callable[[], HelpdeskKind]] = {"zendesk": _zendesk, "jira": _jira}
"""Each helpdesk connector's factory, by the name of its settings (``Settings.<name>``,
``Settings.<name>_config``); a factory imports its connector only when it is enabled."""


def _slack(
    settings: Settings,
    tickets: TicketService,
    clock: Clock,
    options: Mapping[str, Mapping[str, Any]],
) -> SlackParts:
    from slabot.slack.app import SlackServices, build_app, make_client
    from slabot.slack.sender import SlackSender

    assert settings.slack is not None and settings.slack_config is not None
    client = make_client(settings.slack, **options.get("slack", {}))
    services = SlackServices.build(client, tickets, settings.slack_config, clock, settings.links)
    app = build_app(settings.slack, client, services)
    sender = SlackSender(client, services.store, services.directory, settings.slack_config, clock)
    socket_mode = None
    if settings.slack.socket_mode:
        socket_mode = SocketMode(app, settings.slack)
    return SlackParts(
        app=app,
        client=client,
        config=settings.slack_config,
        store=services.store,
        send=sender,
        socket_mode=socket_mode,
    )
