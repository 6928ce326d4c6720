"""Message catalogs: every text an agent sees in Slack, in English, French, Italian and Polish.

One module per language (``en``, ``fr``, ``it``, ``pl``) holds ``MESSAGES`` (key -> a
``str.format`` template), weekday and month abbreviations and the layout of an instant.
Listeners and views never hold a sentence themselves: they ask a ``Catalog`` for it by key.
A language is picked from the reader's Slack locale (``fr-FR`` -> ``fr``) or, for a
channel, from its configuration. A key missing from a catalog is a programming error, and
a test keeps every catalog's keys and placeholders equal to English's.
"""

from __future__ import annotations

import importlib
import string
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from types import ModuleType
from typing import Any

LANGUAGES = ("en", "fr", "it", "pl")
_MODULES: dict[str, ModuleType] = {
    name: importlib.import_module(f"{__name__}.{name}") for name in LANGUAGES
}


@dataclass(frozen=True, slots=True)
class Catalog:
    """The texts of one language."""

    language: str
    messages: dict[str, str]
    weekdays: tuple[str, ...]
    """Monday first."""
    months: tuple[str, ...]
    instant_layout: str
    """``{weekday} {day} {month} {time}`` and the like; ``{zone}`` is the zone's name."""

    def __call__(self, key: str, **params: Any) -> str:
        """The text for ``key`` with ``params`` filled in."""
        return self.messages[key].format(**params)

    def instant(self, when: datetime, zone: tzinfo | None = None) -> str:
        """``Mon 23 Nov 14:15 CET`` in this language, in ``zone`` (default UTC)."""
        local = when.astimezone(zone or UTC)
        return self.instant_layout.format(
            weekday=self.weekdays[local.weekday()],
            day=local.day,
            month=self.months[local.month - 1],
            time=f"{local:%H:%M}",
            zone=local.tzname() or "UTC",
        )

    def placeholders(self, key: str) -> frozenset[str]:
        """The names a template expects (for the catalog consistency test)."""
        return frozenset(
            name for _, name, _, _ in string.Formatter().parse(self.messages[key]) if name
        )


def _load(language: str, module: ModuleType) -> Catalog:
    return Catalog(
        language=language,
        messages=dict(module.MESSAGES),
        weekdays=tuple(module.WEEKDAYS),
        months=tuple(module.MONTHS),
        instant_layout=module.INSTANT,
    )


CATALOGS: dict[str, Catalog] = {name: _load(name, module) for name, module in _MODULES.items()}


def catalog(language: str | None) -> Catalog:
    """The catalog of ``language`` (English when it is not one slabot speaks)."""
    return CATALOGS.get(language or "en", CATALOGS["en"])


def language_of(locale: str | None, default: str = "en") -> str:
    """The catalog language for a Slack locale: ``fr-FR`` -> ``fr``; unknown -> ``default``."""
    if locale:
        prefix = locale.replace("_", "-").split("-", 1)[0].lower()
        if prefix in CATALOGS:
            return prefix
    return default if default in CATALOGS else "en"
