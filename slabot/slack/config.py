"""The ``slack:`` section of ``config/slabot.yaml``: who may reclassify, nudges, digests, languages.

Read with ``slabot.configuration.parse_section``: unknown keys are refused, errors name the
file and ``slack.<key>``. docs/slack.md describes every key.
"""

from __future__ import annotations

import re
from datetime import tzinfo
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from pydantic import Field, field_validator, model_validator

from bot.errors import SlabotError
from bot.policy import TARGETS
from slabot import configuration
from slabot.configuration import StrictModel

LANGUAGES = ("en", "fr", "it", "pl")
Language = Literal["en", "fr", "it", "pl"]
DEFAULT_THRESHOLDS = (0.75, 1.0)

_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")
_DAY_NAMES = re.compile(r"^(\*|(mon|tue|wed|thu|fri|sat|sun)(-(mon|tue|wed|thu|fri|sat|sun))?)$")


class SlackConfigError(SlabotError):
    """The ``slack:`` section is missing or invalid; the message names the key."""


def _channel(value: str) -> str:
    if not _CHANNEL_ID.match(value):
        raise ValueError(
            f"{value!r} is not a channel id; use the id (like C0123ABCD: the channel's "
            "details, at the bottom), not its name"
        )
    return value


class Reclassifiers(StrictModel):
    """Who may reclassify: members of any of the user groups, or the users listed."""

    user_groups: list[str] = Field(default_factory=list)
    """Slack user group ids (``S0123ABCD``), read with ``usergroups.users.list``."""
    users: list[str] = Field(default_factory=list)
    """Slack user ids (``U0123ABCD``)."""
    cache_seconds: int = Field(default=300, ge=0, le=86_400)
    """How long a user group's members are remembered before they are read again."""

    @field_validator("user_groups")
    @classmethod
    def _group_ids(cls, value: list[str]) -> list[str]:
        for group in value:
            if not _GROUP_ID.match(group):
                raise ValueError(
                    f"{group!r} is not a user group id; use the id (like S0123ABCD), "
                    "not the @handle"
                )
        return value

    @field_validator("users")
    @classmethod
    def _user_ids(cls, value: list[str]) -> list[str]:
        for user in value:
            if not _USER_ID.match(user):
                raise ValueError(
                    f"{user!r} is not a user id; use the member id (like U0123ABCD: the "
                    "profile's ... menu, Copy member ID)"
                )
        return value


def _default_thresholds() -> dict[str, list[float]]:
    return {target: list(DEFAULT_THRESHOLDS) for target in TARGETS}


class Nudges(StrictModel):
    """Reminders before a target breaches, and notices when it does."""

    enabled: bool = True
    """Whether nudges and breach notices are sent at all."""
    thresholds: dict[str, list[float]] = Field(default_factory=_default_thresholds)
    """Per target, the fractions of its time at which to nudge (1.0 is the breach); a
    target left out keeps the defaults, an empty list is never nudged."""
    dm_assignee: bool = True
    """Send the nudge by direct message to the ticket's assignee, when Slack knows the
    assignee's e-mail address; otherwise (or when false) to the queue's channel."""
    queue_channels: dict[str, str] = Field(default_factory=dict)
    """Helpdesk queue (group, project) -> the team channel that gets its nudges."""
    default_channel: str | None = None
    """Where nudges go when neither the assignee nor the queue has a place in Slack."""
    renotify_minutes: int | None = Field(default=30, ge=5, le=1440)
    """A breach nobody has acknowledged ("I'm on it", "Assign to me") is announced again in
    its thread every this many minutes while it stays breached (only while its calendar is
    open); null: announced once."""
    unassigned_mention: str | None = "here"
    """Who a breach reply mentions when the ticket has no assignee in Slack and its priority
    is one of ``unassigned_mention_priorities``: ``here`` (``@here``, the channel's active
    members) or a user group id (``S0123ABCD``); null: nobody."""
    unassigned_mention_priorities: list[str] = Field(default_factory=lambda: ["P1"])
    """The priorities whose unassigned breaches mention ``unassigned_mention``."""

    @field_validator("thresholds")
    @classmethod
    def _fractions(cls, value: dict[str, list[float]]) -> dict[str, list[float]]:
        for target, fractions in value.items():
            if target not in TARGETS:
                raise ValueError(f"unknown target {target!r}; expected {', '.join(TARGETS)}")
            for fraction in fractions:
                percent = Fraction(str(fraction)) * 100
                if not 0 < percent <= 100 or percent.denominator != 1:
                    raise ValueError(
                        f"{target}: {fraction} must be a fraction of the target above 0 and at "
                        "most 1.0 (the breach), in whole percent, like 0.75"
                    )
        return {**_default_thresholds(), **{k: sorted(set(v)) for k, v in value.items()}}

    @field_validator("queue_channels")
    @classmethod
    def _queue_channels(cls, value: dict[str, str]) -> dict[str, str]:
        for channel in value.values():
            _channel(channel)
        return value

    @field_validator("default_channel")
    @classmethod
    def _default_channel(cls, value: str | None) -> str | None:
        return None if value is None else _channel(value)

    @field_validator("unassigned_mention")
    @classmethod
    def _mention(cls, value: str | None) -> str | None:
        if value is None or value == "here" or _GROUP_ID.match(value):
            return value
        raise ValueError(
            f"{value!r}: write here (for @here) or a user group id like S0123ABCD (the group's "
            "details in Slack, not its @handle)"
        )

    def mention_for_unassigned(self, priority: str) -> str | None:
        """The mention token a breach of an unassigned ticket of ``priority`` carries."""
        if self.unassigned_mention is None or priority not in self.unassigned_mention_priorities:
            return None
        if self.unassigned_mention == "here":
            return "<!here>"
        return f"<!subteam^{self.unassigned_mention}>"

    def permilles(self, target: str) -> tuple[int, ...]:
        """The target's thresholds in permille (750, 1000), ascending."""
        return tuple(
            sorted({int(Fraction(str(f)) * 1000) for f in self.thresholds.get(target, [])})
        )


class ChannelSettings(StrictModel):
    """Per channel: the language its messages are written in."""

    language: Language
    """``en``, ``fr``, ``it`` or ``pl``."""


class _Scheduled(StrictModel):
    """A message posted to a channel on a schedule (a digest, a compliance summary)."""

    channel: str
    """The channel's id, not its name."""
    schedule: str
    """Five cron fields, minute hour day month day-of-week, with day names."""
    timezone: str = "UTC"
    """The IANA zone of the schedule."""

    @field_validator("channel")
    @classmethod
    def _check_channel(cls, value: str) -> str:
        return _channel(value)

    @field_validator("timezone")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        return configuration.time_zone(value, example=" like Europe/Paris")

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: str) -> str:
        fields = value.split()
        if len(fields) != 5:
            raise ValueError(
                f"{value!r}: give five cron fields, minute hour day month day-of-week, like "
                "'0 9 * * mon-fri'"
            )
        for part in fields[4].lower().split(","):
            if not _DAY_NAMES.match(part):
                raise ValueError(
                    f"{value!r}: write the day of week with names (mon-fri, sat,sun, *): "
                    "APScheduler counts 0 as Monday where cron counts it as Sunday, so "
                    "numbers would fire on the wrong day"
                )
        try:
            cron_trigger(value, ZoneInfo("UTC"))
        except ValueError as error:
            raise ValueError(f"{value!r}: {error}") from None
        return value

    def trigger(self) -> CronTrigger:
        """The APScheduler trigger of this schedule, in its time zone."""
        return cron_trigger(self.schedule, ZoneInfo(self.timezone))


class Digest(_Scheduled):
    """One channel's scheduled digest."""

    channel: str
    """The channel's id (``C0SUPPORT``), not its name."""
    schedule: str
    """Five cron fields, minute hour day month day-of-week, with day names:
    ``"0 9 * * mon-fri"`` is 09:00 on weekdays in ``timezone``."""
    timezone: str = "UTC"
    """The IANA zone the schedule and the digest's times are in."""
    due_within_business_hours: float = Field(default=4, gt=0, le=720)
    """List the clocks due within this many business hours (on each target's calendar)."""
    paused_longer_than_hours: float = Field(default=72, gt=0)
    """List the tickets waiting on the customer for longer than this (elapsed hours)."""
    when_empty: Literal["say", "skip"] = "say"
    """``say``: a one-line digest says there is nothing to report; ``skip``: none is sent."""
    language: Language | None = None
    """Default: the channel's language (``channels:``), else ``slack.language``."""
    max_tickets: int = Field(default=30, ge=1, le=40)
    """At most this many tickets are listed; the digest says how many more there are."""


class ComplianceSummary(_Scheduled):
    """A scheduled SLA compliance summary to a channel: the last whole week or month."""

    channel: str
    """The channel's id (``C0LEADS``), not its name."""
    schedule: str
    """Five cron fields with day names, like digests: ``"0 9 1 * *"`` (09:00 on the 1st)
    for a monthly summary, ``"0 9 * * mon"`` for a weekly one."""
    timezone: str = "UTC"
    """The zone of the schedule and of the period's days."""
    period: Literal["week", "month"] = "month"
    """The last whole ISO week (Monday to Sunday) or calendar month before the run."""
    language: Language | None = None
    """Default: the channel's language (``channels:``), else ``slack.language``."""


def cron_trigger(schedule: str, zone: tzinfo) -> CronTrigger:
    """``"0 9 * * mon-fri"`` as a CronTrigger in ``zone`` (day names only, see ``Digest``)."""
    minute, hour, day, month, day_of_week = schedule.split()
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=day_of_week.lower(),
        timezone=zone,
    )


class Home(StrictModel):
    """The App Home tab: the viewer's own tickets at risk."""

    horizon_hours: float = Field(default=24, gt=0, le=720)
    """A clock is at risk once breached or when it reaches 75% of its target within this."""
    max_tickets: int = Field(default=30, ge=1, le=40)
    """At most this many tickets are shown."""


class SlackConfig(StrictModel):
    """The ``slack:`` section."""

    language: Language = "en"
    """The language used when the reader's Slack locale is none of en, fr, it, pl and the
    channel has no language of its own."""
    reclassify: Reclassifiers = Field(default_factory=Reclassifiers)
    """Who may reclassify from Slack."""
    nudges: Nudges = Field(default_factory=Nudges)
    """Nudges and breach notices."""
    channels: dict[str, ChannelSettings] = Field(default_factory=dict)
    """Channel id -> its settings."""
    digests: list[Digest] = Field(default_factory=list)
    """Scheduled digests, one per channel and schedule."""
    compliance: list[ComplianceSummary] = Field(default_factory=list)
    """Scheduled SLA compliance summaries (attainment per priority of the last week or
    month): docs/reporting.md."""
    home: Home = Field(default_factory=Home)
    """The App Home tab."""
    user_cache_seconds: int = Field(default=3600, ge=0, le=86_400)
    """How long a user's locale, time zone, e-mail and direct-message channel are kept."""

    @field_validator("channels")
    @classmethod
    def _channel_ids(cls, value: dict[str, ChannelSettings]) -> dict[str, ChannelSettings]:
        for channel in value:
            _channel(channel)
        return value

    @field_validator("digests")
    @classmethod
    def _one_per_channel(cls, value: list[Digest]) -> list[Digest]:
        seen: set[tuple[str, str]] = set()
        for digest in value:
            key = (digest.channel, digest.schedule)
            if key in seen:
                raise ValueError(
                    f"channel {digest.channel} has the digest {digest.schedule!r} twice"
                )
            seen.add(key)
        return value

    @model_validator(mode="after")
    def _digest_languages(self) -> SlackConfig:
        # A digest without a language of its own speaks its channel's (or the default).
        resolved = [
            d if d.language else d.model_copy(update={"language": self.channel_language(d.channel)})
            for d in self.digests
        ]
        object.__setattr__(self, "digests", resolved)
        summaries = [
            c if c.language else c.model_copy(update={"language": self.channel_language(c.channel)})
            for c in self.compliance
        ]
        object.__setattr__(self, "compliance", summaries)
        return self

    def channel_language(self, channel: str | None) -> Language:
        settings = self.channels.get(channel or "")
        return settings.language if settings is not None else self.language


def parse_slack_config(data: Any, where: str = "config") -> SlackConfig:
    """Validate the ``slack:`` section given as data; errors name ``slack.<key>``."""
    return configuration.parse_section(
        SlackConfig,
        "slack",
        data,
        where,
        SlackConfigError,
        blank_is_empty=True,
        plain_messages=True,
    )


def load_slack_config(path: str | Path = configuration.DEFAULT_CONFIG_PATH) -> SlackConfig:
    """Read and validate the ``slack:`` section of a config file."""
    return configuration.load_section(
        SlackConfig, "slack", path, SlackConfigError, blank_is_empty=True, plain_messages=True
    )
