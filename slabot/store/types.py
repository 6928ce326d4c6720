"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """An instant: written from an aware datetime, read back as an aware datetime in UTC.

    PostgreSQL stores ``timestamp with time zone``. SQLite has no such type, so the instant is
    written as its UTC wall-clock text (fixed width, so text order is time order and indexes
    work) and given back its UTC zone on the way out. A naive datetime is refused: it names no
    instant.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"an instant must be a datetime, not {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} names no instant; add a zone")
        utc = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return utc.replace(tzinfo=None)
        return utc

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """One function per value instead of three (``process_bind_param``, then the driver
        type's processor) for an instant already in UTC, the form slabot's own instants take:
        a batch of ingested snapshots binds a hundred thousand of them (``bench/ingest.py``).

        SQLite gets the driver type's text (``YYYY-MM-DD HH:MM:SS.ffffff``, the UTC wall
        clock) straight from ``isoformat``; PostgreSQL the datetime as it is. Anything else
        (another zone, a naive datetime, not a datetime) takes the general path, which
        converts it or refuses it.
        """
        general = super().bind_processor(dialect)
        if general is None:  # pragma: no cover - UTCDateTime always processes binds
            return None
        if dialect.name == "sqlite":

            def to_sqlite(value: Any) -> Any:
                if value.__class__ is datetime and value.tzinfo is UTC:
                    # "+00:00" cut off: the wall clock with microseconds, fixed width.
                    return value.isoformat(" ", "microseconds")[:26]
                return general(value)

            return to_sqlite

        def to_driver(value: Any) -> Any:
            if value.__class__ is datetime and value.tzinfo is UTC:
                return value
            return general(value)

        return to_driver

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"the database returned {value!r} for an instant")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def result_processor(
        self, dialect: Dialect, coltype: Any
    ) -> Callable[[Any], datetime | None] | None:
        """One function per value instead of three (the driver type's processor, then
        ``process_result_value``), each as cheap as it gets: the breach queries read two
        instants per row, and ``bench/scan.py`` measures the difference.

        SQLite hands back the stored UTC text: ``datetime.fromisoformat`` reads it with
        ``+00:00`` appended (eight times faster than ``replace(tzinfo=UTC)`` afterwards).
        PostgreSQL hands back aware datetimes, already in ``UTC`` on slabot's connections
        (``make_engine`` sets the session's time zone). Any other value takes the general
        path, which converts it or says what is wrong with it.
        """
        general = super().result_processor(dialect, coltype)
        if general is None:  # pragma: no cover - UTCDateTime always processes results
            return None
        if dialect.name == "sqlite":
            parse = datetime.fromisoformat

            def from_sqlite(value: Any) -> datetime | None:
                if value.__class__ is str:
                    try:
                        return parse(value + "+00:00")
                    except ValueError:
                        pass  # not the stored form (an offset already?): the general path
                return general(value)

            return from_sqlite

        def from_driver(value: Any) -> datetime | None:
            if value.__class__ is datetime and value.tzinfo is UTC:
                return value
            return general(value)

        return from_driver


_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def loads_json(text: Any) -> Any:
    """``json.loads``, without its encoding detection, two whitespace matches and two frames
    for a document that has no whitespace around it (as the store writes each:
    ``json.dumps``): the scanner's answer when it read the whole text, else ``json.loads``'
    own (which says what is wrong). ``make_engine`` reads the JSON columns with it (SQLite
    hands over text, psycopg UTF-8 bytes): a recompute reads five documents a ticket."""
    if text.__class__ is memoryview:
        text = bytes(text)
    cls = text.__class__
    if cls is bytes:
        try:
            decoded = text.decode()
        except UnicodeDecodeError:
            return json.loads(text)
    elif cls is str:
        decoded = text
    else:
        return json.loads(text)
    try:
        value, end = _scan(decoded, 0)
    except StopIteration:
        return json.loads(text)
    if end != len(decoded):
        return json.loads(text)
    return value


JSONDocument = JSON().with_variant(JSONB(), "postgresql")
"""JSON on SQLite, JSONB on PostgreSQL."""

Id = BigInteger().with_variant(Integer(), "sqlite")
"""A 64-bit key; on SQLite an INTEGER PRIMARY KEY, the only kind that autoincrements there."""
