"""What every part's settings share: env settings, ``Secret``, one parse/load of a config section.

- Settings come from an environment mapping (tests pass a dict; the service passes
  ``os.environ``): ``setting`` / ``secret_setting`` read one, ``missing_settings_error``
  names what a half-configured part lacks, and ``Secret`` keeps a credential out of every
  repr, log line and message.
- A section of ``config/slabot.yaml`` (``zendesk:``, ``jira:``, ``slack:``) is a
  ``StrictModel``: unknown keys are refused, so a typo cannot silently do nothing.
  ``parse_section`` validates it and ``load_section`` reads it from its file; every error
  names the file and the key (``config/slabot.yaml: jira.projects.0: ...``), never a value
  of a secret (secrets come from the environment, not from the file). The other sections
  of the file belong to other parts of slabot and are not read with it.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from bot.errors import SlabotError

DEFAULT_CONFIG_PATH = Path("config/slabot.yaml")


class SettingsError(SlabotError):
    """A part's settings are missing or malformed; the message names the setting."""


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


def environment(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    """The mapping settings are read from: the one given (tests pass a dict), else
    ``os.environ``."""
    return os.environ if environ is None else environ


def any_setting(environ: Mapping[str, str] | None, names: Iterable[str]) -> bool:
    """Whether any of the settings is given (the part is then enabled, and its settings
    must be complete)."""
    env = environment(environ)
    return any(setting(env, name) for name in names)


def unset(*read: tuple[str, object | None]) -> list[str]:
    """The names, in order, of the ``(name, value)`` settings read as None."""
    return [name for name, value in read if value is None]


def setting(environ: Mapping[str, str], name: str) -> str | None:
    """The setting's value, stripped; None when unset or blank."""
    value = environ.get(name)
    if value is None:
        return None
    return value.strip() or None


def secret_setting(environ: Mapping[str, str], name: str) -> Secret | None:
    value = setting(environ, name)
    return None if value is None else Secret(value)


def not_configured_error(part: str, required: list[str]) -> SettingsError:
    """``Jira is not configured: set JIRA_URL, JIRA_EMAIL and JIRA_API_TOKEN (see
    docs/jira.md)``: what a part needs, for when it was asked for but nothing is set."""
    names = ", ".join(required[:-1]) + " and " + required[-1] if len(required) > 1 else required[0]
    return SettingsError(f"{part} is not configured: set {names} (see docs/{part.lower()}.md)")


def missing_settings_error(part: str, missing: list[str], why: str) -> SettingsError:
    """``Zendesk is half-configured: set ZENDESK_API_TOKEN (...)`` -- never a value."""
    names = " and ".join(missing)
    return SettingsError(f"{part} is half-configured: set {names} ({why})")


# --- config sections ----------------------------------------------------------------------------


class StrictModel(BaseModel):
    """A frozen part of a config section that refuses unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Section = TypeVar("Section", bound=BaseModel)


def time_zone(value: str, *, example: str = "") -> str:
    """``value`` when it is a time zone Python knows; a ``ValueError`` naming it otherwise.

    For validators: ``example=" like Europe/Paris"`` ends the message with an example.
    """
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}; use an IANA name{example}") from None
    return value


def parse_section(
    model: type[Section],
    name: str,
    data: Any,
    where: str,
    error: type[SlabotError],
    *,
    blank_is_empty: bool = False,
    plain_messages: bool = False,
) -> Section:
    """Validate the section ``name`` of a config file given as data (``where`` names the
    file); every problem is one line of the ``error`` raised, naming ``<name>.<key>``.

    ``blank_is_empty``: a section with nothing under it (``slack:``) takes the defaults.
    ``plain_messages``: pydantic's ``Value error, `` prefix is left out of the messages.
    """
    if not isinstance(data, dict) or name not in data:
        raise error(f"{where}: no '{name}:' section (see docs/{name}.md)")
    given = data[name]
    if blank_is_empty:
        given = given or {}
    try:
        return model.model_validate(given)
    except ValidationError as invalid:
        problems = []
        for item in invalid.errors():
            path = ".".join(str(part) for part in (name, *item["loc"]))
            message = item["msg"].removeprefix("Value error, ") if plain_messages else item["msg"]
            problems.append(f"{where}: {path}: {message}")
        raise error("\n".join(problems)) from None


def load_section(
    model: type[Section],
    name: str,
    path: str | Path,
    error: type[SlabotError],
    *,
    blank_is_empty: bool = False,
    plain_messages: bool = False,
) -> Section:
    """Read a config file and validate its section ``name`` (``parse_section``)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as failure:
        raise error(f"{file}: cannot read: {failure.strerror}") from None
    except UnicodeDecodeError:  # was a traceback; the words of the service's settings
        raise error(f"{file}: is not UTF-8 text; save the config file as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as failure:
        raise error(f"{file}: not valid YAML: {failure}") from None
    except RecursionError:  # likewise
        raise error(f"{file}: not valid YAML: nested too deeply") from None
    return parse_section(
        model,
        name,
        data,
        str(file),
        error,
        blank_is_empty=blank_is_empty,
        plain_messages=plain_messages,
    )
