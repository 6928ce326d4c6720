"""The service's settings: the environment over the ``service:`` section of config/slabot.yaml.

``load_settings(environ)`` reads everything ``slabot run`` needs and refuses to start on
any problem, naming the setting (never its value):

- ``service:`` keys (host, port, intervals, dashboard access...), each overridable by
  ``SLABOT_<KEY>`` in the environment (pydantic-settings: environment, then the file,
  then the defaults);
- ``DATABASE_URL`` (default: a SQLite file in the working directory);
- Zendesk, Jira and Slack: a connector is enabled when any of its credentials is set, and
  then must be complete (``Zendesk is half-configured: set ZENDESK_API_TOKEN ...``); its
  section of the config file is read only when it is enabled.

``Settings.secrets()`` lists every credential's value, so the logs can mask them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import URL

from bot.errors import SlabotError
from bot.routing import RoutingSpec
from connectors.jira.config import JiraConfig, JiraConfigError, parse_jira_config
from connectors.jira.settings import JiraSettings
from connectors.zendesk.config import ZendeskConfig, ZendeskConfigError, parse_zendesk_config
from connectors.zendesk.settings import ZendeskSettings
from slabot.configuration import SettingsError, time_zone
from slabot.slack.config import SlackConfig, SlackConfigError, parse_slack_config
from slabot.slack.references import TicketLinks
from slabot.slack.settings import SlackSettings
from slabot.store.db import DatabaseConfigError, database_url

CONFIG_SETTING = "SLABOT_CONFIG"
DEFAULT_CONFIG_PATH = Path("config/slabot.yaml")
ENV_PREFIX = "SLABOT_"
_CREDENTIALS = ("DASHBOARD_TOKEN", "DASHBOARD_USER", "DASHBOARD_PASSWORD")


class ServiceSettingsError(SlabotError):
    """The service cannot start with these settings; each line names a setting and what to do."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class ServiceSettings(BaseSettings):
    """The ``service:`` section; ``SLABOT_PORT=9000`` overrides ``service.port``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, case_sensitive=False
    )

    host: str = "127.0.0.1"
    """Where ``slabot run`` listens (``--host`` overrides it). Any address but a loopback one
    needs dashboard credentials: ``slabot run`` refuses to serve an open dashboard there."""
    port: int = Field(default=8000, ge=0, le=65535)
    """The port (``--port`` overrides it; 0 picks a free one)."""
    timezone: str = "UTC"
    """The scheduler's time zone (digests carry their own)."""
    policies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Policy files (comma-separated in ``SLABOT_POLICIES``); default: the bundled three."""
    scan_interval_seconds: float = Field(default=60.0, ge=0.1, le=3600)
    """How often the breach scan runs, and how often leadership is checked: a replica takes
    over from a dead leader within two of these."""
    flush_interval_seconds: float = Field(default=10.0, ge=0.1, le=3600)
    """How often each target system's outbox is flushed."""
    misfire_grace_seconds: int = Field(default=300, ge=1)
    """A job late by up to this much (a busy process, a paused VM) still runs, once."""
    drain_timeout_seconds: float = Field(default=20.0, ge=0, le=600)
    """On SIGTERM: how long the queued webhooks and the current flush may take to finish."""
    webhook_worker: Literal["process", "thread"] = "process"
    """Where ``slabot run`` processes webhook jobs (fetch, map, ingest): ``process``, a child
    process per connector, so that work never slows the acknowledgements; ``thread``, a
    thread of the serving process (one process in all, as ``slabot demo`` runs)."""
    worker_id: str | None = None
    """This replica's name in outbox leases (default: host name and process id)."""
    dashboard_token: SecretStr | None = None
    """The dashboard's token: typed once into ``/login`` (which sets a session cookie), or
    sent by scripts as ``Authorization: Bearer <token>``. Unset (and no user and password):
    the dashboard is open on loopback only, and ``slabot run`` refuses any other address.
    Blank is an error."""
    dashboard_user: str | None = None
    """With ``dashboard_password``: the dashboard's user name (``/login``, or basic auth)."""
    dashboard_password: SecretStr | None = None
    """With ``dashboard_user``: the dashboard's password (``/login``, or basic auth)."""
    dashboard_refresh_seconds: int = Field(default=30, ge=0, le=3600)
    """How often the dashboard's list fetches its rows again (filters, scroll and focus are
    kept; paused while the browser tab is hidden; each reader can switch it off). 0: never
    (the page then says to reload)."""
    dashboard_timezone: str = "UTC"
    """The time zone the dashboard's pages are written in for a browser that has not said its
    own: every instant on a page is shown in one zone, the reader's (the page's script reads
    the browser's zone, rewrites each time in it and remembers it in the ``slabot_tz`` cookie
    for the pages that follow); this one without JavaScript, or before the first page."""
    noop_endpoint: bool = False
    """Serve ``/noop`` (a do-nothing endpoint, for bench/webhooks.py's comparison)."""
    log_format: Literal["auto", "json", "console"] = "auto"
    """``auto``: JSON lines unless standard error is a terminal."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """The least severe log records written."""
    access_log: bool = False
    """Log every HTTP request (uvicorn's access log)."""
    readiness_grace_seconds: float = Field(default=900.0, ge=0, le=86400)
    """How long a poll or flush may go without its first success before ``/readyz`` says
    this replica is not ready (0: only refused credentials make it so)."""
    leader_lock_key: int = Field(default=0x51AB0100, ge=1, le=2**63 - 1)
    """The PostgreSQL advisory lock the replicas elect their scheduler leader with."""
    max_body_bytes: int = Field(default=1_000_000, ge=1024, le=1_000_000)
    """The largest request body: a longer one is refused 413 as soon as its declared length
    or its streamed bytes say so, before it is read whole (1 MB at most, the webhooks' own
    limit; Slack's requests are a few kilobytes)."""
    max_header_bytes: int = Field(default=32_768, ge=4096, le=1_048_576)
    """The largest request line and headers together: larger is refused 431."""
    header_timeout_seconds: float = Field(default=10.0, ge=0.5, le=300)
    """A request's line and headers must arrive whole within this of the connection opening
    (or of the first byte of a further request on it), or the connection is closed (408 if
    part of one arrived): a slow client cannot hold a connection."""
    body_timeout_seconds: float = Field(default=30.0, ge=0.5, le=600)
    """A request's whole body must arrive within this of its headers, or it is refused 408."""
    keep_alive_timeout_seconds: int = Field(default=5, ge=1, le=300)
    """A connection idle after a response is closed after this: keep it longer than the idle
    timeout of a proxy or load balancer in front (docs/operations.md)."""
    max_connections: int = Field(default=1000, ge=16, le=1_000_000)
    """Open client connections at most; past it, each new connection closes the one that has
    waited longest without a request in progress. Lowered, with a warning, to what the
    process's open-files limit allows."""

    @field_validator("policies", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("timezone", "dashboard_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return time_zone(value, example=" like Europe/Paris")

    @field_validator("dashboard_token", "dashboard_user", "dashboard_password")
    @classmethod
    def _not_blank(cls, value: Any) -> Any:
        # A blank credential used to leave the dashboard open without a word.
        plain = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(plain, str) and not plain.strip():
            raise ValueError(
                "is blank: set a real value (`openssl rand -hex 24` makes a token), or unset "
                "it (with no dashboard credentials at all the dashboard answers on loopback only)"
            )
        if isinstance(value, SecretStr) and plain != plain.strip():
            return SecretStr(plain.strip())  # spaces around a pasted value are not part of it
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _dashboard_pair(self) -> ServiceSettings:
        if (self.dashboard_user is None) != (self.dashboard_password is None):
            missing = "dashboard_password" if self.dashboard_password is None else "dashboard_user"
            raise ValueError(
                f"set both dashboard_user and dashboard_password for basic auth ({missing} "
                f"is missing: service.{missing} or {ENV_PREFIX}{missing.upper()})"
            )
        return self

    _sources: ClassVar[tuple[Mapping[str, str], dict[str, Any]] | None] = None
    """The environment and the file's section a subclass reads (``_service_settings``)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # ``load_settings`` builds the sources itself (an explicit environment, the file's
        # section); constructing the class directly reads only what it is given.
        if cls._sources is None:
            return (init_settings,)
        environ, section = cls._sources
        return (
            init_settings,
            _EnvironSource(settings_cls, environ),
            InitSettingsSource(settings_cls, init_kwargs=section),
        )


_KEPT_WHEN_BLANK = {f"{ENV_PREFIX}{name}".lower() for name in _CREDENTIALS}


class _EnvironSource(EnvSettingsSource):
    """``SLABOT_*`` from an explicit mapping (tests pass a dict; the service ``os.environ``).

    A blank variable counts as unset, except a dashboard credential's: that one is refused
    (``SLABOT_DASHBOARD_TOKEN=`` must not quietly mean an open dashboard)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.env_vars = {
            name.lower(): value
            for name, value in environ.items()
            if name.upper().startswith(ENV_PREFIX)
            and (value.strip() or name.lower() in _KEPT_WHEN_BLANK)
        }


def _service_settings(environ: Mapping[str, str], section: dict[str, Any]) -> ServiceSettings:
    class Sourced(ServiceSettings):
        _sources = (environ, section)

    return Sourced()


@dataclass(frozen=True)
class Settings:
    """Everything ``slabot run`` starts from. A connector is None when it is not enabled."""

    service: ServiceSettings
    database_url: URL
    config_path: Path
    zendesk: ZendeskSettings | None = None
    zendesk_config: ZendeskConfig | None = None
    jira: JiraSettings | None = None
    jira_config: JiraConfig | None = None
    slack: SlackSettings | None = None
    slack_config: SlackConfig | None = None
    links: TicketLinks = field(default_factory=TicketLinks)
    routing: RoutingSpec | None = None
    """The ``routing:`` rules (None: each helpdesk's ``policy`` applies to all its tickets)."""

    @property
    def enabled(self) -> tuple[str, ...]:
        """The enabled connectors, by name."""
        names = (("zendesk", self.zendesk), ("jira", self.jira), ("slack", self.slack))
        return tuple(name for name, value in names if value is not None)

    def secrets(self) -> list[str]:
        """Every credential's value (for masking in logs); never print this."""
        values: list[str] = []
        for secret in (
            self.zendesk and self.zendesk.api_token,
            self.zendesk and self.zendesk.oauth_token,
            self.zendesk and self.zendesk.webhook_secret,
            self.jira and self.jira.api_token,
            self.jira and self.jira.webhook_secret,
            self.slack and self.slack.bot_token,
            self.slack and self.slack.signing_secret,
            self.slack and self.slack.app_token,
        ):
            if secret:
                values.append(secret.reveal())
        for plain in (self.service.dashboard_token, self.service.dashboard_password):
            if plain is not None and plain.get_secret_value():
                values.append(plain.get_secret_value())
        if self.database_url.password:
            values.append(str(self.database_url.password))
        return values


def load_settings(
    environ: Mapping[str, str] | None = None, config_path: str | Path | None = None
) -> Settings:
    """Read and check every setting; ``ServiceSettingsError`` lists all the problems found."""
    env = os.environ if environ is None else environ
    problems: list[str] = []
    explicit = config_path is not None or bool((env.get(CONFIG_SETTING) or "").strip())
    path = Path(config_path or (env.get(CONFIG_SETTING) or "").strip() or DEFAULT_CONFIG_PATH)
    data = _read_config(path, explicit, problems)

    service: ServiceSettings | None = None
    section = data.get("service") or {}
    if not isinstance(section, dict):
        problems.append(f"{path}: service: must be a mapping of settings")
        section = {}
    try:
        service = _service_settings(env, section)
    except ValidationError as error:
        for item in error.errors():
            key = ".".join(str(part) for part in item["loc"])
            message = item["msg"].removeprefix("Value error, ")
            where = f"service.{key} ({ENV_PREFIX}{key.upper()})" if key else "service"
            problems.append(f"{path}: {where}: {message}")

    url: URL | None = None
    try:
        url = database_url(env)
    except DatabaseConfigError as error:
        problems.append(str(error))

    found: dict[str, Any] = {}
    for name, credentials, parse, config_error in _CONNECTORS:
        if credentials.configured(env):
            try:
                found[name] = credentials.from_environ(env)
                found[f"{name}_config"] = parse(data, str(path))
            except (SettingsError, config_error) as error:
                problems.append(str(error))
    if "routing" in data:
        try:
            found["routing"] = RoutingSpec.model_validate(data["routing"])
        except ValidationError as error:
            for item in error.errors():
                key = ".".join(str(part) for part in item["loc"])
                message = item["msg"].removeprefix("Value error, ")
                problems.append(
                    f"{path}: routing.{key}: {message} (slabot check-config {path} locates it)"
                )
    for name in ("zendesk_config", "jira_config"):
        config = found.get(name)
        if config is not None and config.policy is None and "routing" not in data:
            section = name.removesuffix("_config")
            problems.append(
                f"{path}: {section}.policy: required: name the policy {section}'s tickets are "
                "evaluated under, or add a routing: section"
            )
    if problems or service is None or url is None:
        raise ServiceSettingsError(problems)
    return Settings(
        service=service,
        database_url=url,
        config_path=path,
        links=TicketLinks.from_environ(env),
        **found,
    )


def _slack_config(data: dict[str, Any], path: str) -> SlackConfig:
    # Slack works with its defaults: the section is optional.
    return parse_slack_config(data, path) if "slack" in data else SlackConfig()


_CONNECTORS: tuple[
    tuple[str, Any, Callable[[dict[str, Any], str], Any], type[SlabotError]], ...
] = (
    ("zendesk", ZendeskSettings, parse_zendesk_config, ZendeskConfigError),
    ("jira", JiraSettings, parse_jira_config, JiraConfigError),
    ("slack", SlackSettings, _slack_config, SlackConfigError),
)
"""Each connector: its name, credentials (read from the environment only when any is set,
then complete), the parser of its config section and that parser's error."""


def _read_config(path: Path, explicit: bool, problems: list[str]) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            problems.append(f"{path}: no such file ({CONFIG_SETTING} or --config names it)")
        return {}
    except OSError as error:
        problems.append(f"{path}: cannot read: {error.strerror}")
        return {}
    except UnicodeDecodeError:  # was a traceback (tests/proof/test_proof_bad_config.py)
        problems.append(f"{path}: is not UTF-8 text; save the config file as UTF-8")
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        problems.append(f"{path}: not valid YAML: {error}")
        return {}
    except RecursionError:  # likewise
        problems.append(f"{path}: not valid YAML: nested too deeply")
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path}: expected a mapping of sections (zendesk:, jira:, slack:...)")
        return {}
    return data
