"""Structured logs for the service: JSON lines when not on a terminal, and never a secret.

Every record, slabot's own (``logging.getLogger``), the libraries' (uvicorn, APScheduler,
Bolt) and structlog's, goes through one ``structlog.stdlib.ProcessorFormatter`` on standard
error. ``SecretMasker`` runs last on each event: any known secret value (the connectors'
tokens and signing secrets, the dashboard's token and password, the database password)
in any field, the message and a traceback included, is replaced by ``********``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import IO, Any

import structlog
from structlog.typing import EventDict, Processor

MASK = "********"
_MIN_SECRET_LENGTH = 4
"""Shorter values are not masked: they would blank out ordinary words."""


class SecretMasker:
    """A structlog processor that replaces known secret values wherever they appear."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: tuple[str, ...] = ()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        known = set(self._secrets) | {s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH}
        # Longest first, so a secret containing another is masked whole.
        self._secrets = tuple(sorted(known, key=len, reverse=True))

    def mask(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def __call__(self, _logger: Any, _name: str, event: EventDict) -> EventDict:
        if not self._secrets:
            return event
        for key, value in event.items():
            event[key] = self._masked(value)
        return event

    def _masked(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, dict):
            return {k: self._masked(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._masked(v) for v in value]
        if isinstance(value, int | float | bool) or value is None:
            return value
        return self.mask(str(value))


def _drop_color_message(_logger: Any, _name: str, event: EventDict) -> EventDict:
    # uvicorn adds a copy of its message with terminal colours.
    event.pop("color_message", None)
    return event


def configure_logging(
    masker: SecretMasker,
    *,
    level: str = "INFO",
    form: str = "auto",
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Route every log record through structlog to ``stream`` (default: standard error).

    ``form``: ``json``, ``console``, or ``auto`` (JSON unless the stream is a terminal).
    Returns the handler installed on the root logger (replacing any handler there).
    """
    out = stream if stream is not None else sys.stderr
    as_json = form == "json" or (form == "auto" and not _is_terminal(out))
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_color_message,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            masker,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
    # APScheduler logs every run at INFO: one line a second is noise, not news.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    return handler


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def get_logger(name: str) -> Any:
    """A structlog logger (``log.info("event", key=value)``)."""
    return structlog.stdlib.get_logger(name)


__all__ = ["MASK", "SecretMasker", "configure_logging", "get_logger"]
