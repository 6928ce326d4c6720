"""Many rows of one table inserted, changed or deleted in one statement, for ``ingest_batch``.

SQLite's driver runs an ``executemany`` in C, one prepared statement stepped per row, and
that is as fast as it gets there. psycopg runs one statement per row too (pipelined, but
each bound and executed by the server on its own): a page of ``bench/ingest.py``'s update
pass is some 13,000 of them, which took 40% of the server's time and a fifth of the
client's. On PostgreSQL the rows therefore travel as one array per column, taken apart by
``unnest`` in a single statement:

* ``INSERT INTO t (a, b) SELECT v.a, v.b FROM unnest(:a, :b) WITH ORDINALITY AS v(a, b, n)
  ORDER BY v.n``: the rows in the order given, so their ids are assigned in that order, as
  ``executemany`` assigns them;
* ``UPDATE t SET a = v.a FROM unnest(:key, :a) AS v(key, a) WHERE t.id = v.key``;
* ``DELETE FROM t USING unnest(:key) AS v(key) WHERE t.id = v.key``.

Each value goes through the conversion its column's type gives it in an ``executemany``
(instants, JSON documents), and each array is sent in psycopg's binary format and cast to
an array of the column's type. A change that names the same row twice would not be the
sequence of statements it stands for (``UPDATE ... FROM`` changes a row once): such a
change, and anything but PostgreSQL through psycopg, takes ``executemany``. (Multi-row
``INSERT ... VALUES`` was slower: each chunk compiled anew, with a parameter per value.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from psycopg import adapters
from psycopg.types.array import ListBinaryDumper
from sqlalchemy import Column, ColumnElement, Table, and_, bindparam, cast, column, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnClause
from sqlalchemy.types import NullType

Keys = Mapping[str, "Column[Any]"]
"""The parameters that name a row to change or delete, each with the column it matches."""


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """``rows`` (each with the same keys, the table's columns) inserted in their order."""
    if not rows:
        return
    if not _unnested(session):
        session.execute(table.insert(), rows)
        return
    names = list(rows[0])
    given = [*names, *_defaulted(table, names)]
    values = _values(table, names, rows)
    dialect = session.get_bind().dialect
    source = _source(dialect, {name: table.c[name] for name in given}, values, ordered=True)
    query = select(*(source.c[name] for name in given)).order_by(source.c.n)
    session.execute(table.insert().from_select(given, query))


def update_rows(session: Session, table: Table, keys: Keys, rows: Sequence[dict[str, Any]]) -> None:
    """Each of ``rows`` (the same keys: those of ``keys``, which name the row, and the columns
    to set) written to the row it names."""
    if not rows:
        return
    names = [name for name in rows[0] if name not in keys]
    if not _unnested(session) or not _distinct(keys, rows):
        where = and_(*(col == bindparam(name) for name, col in keys.items()))
        session.execute(table.update().where(where), rows)
        return
    types = {**keys, **{name: table.c[name] for name in names}}
    dialect = session.get_bind().dialect
    source = _source(dialect, types, {name: [row[name] for row in rows] for name in types})
    where = and_(*(col == source.c[name] for name, col in keys.items()))
    session.execute(table.update().where(where).values({n: source.c[n] for n in names}))


def delete_rows(session: Session, table: Table, keys: Keys, rows: Sequence[dict[str, Any]]) -> None:
    """The rows ``rows`` name (by ``keys``) deleted."""
    if not rows:
        return
    if not _unnested(session):
        where = and_(*(col == bindparam(name) for name, col in keys.items()))
        session.execute(table.delete().where(where), rows)
        return
    dialect = session.get_bind().dialect
    source = _source(dialect, keys, {name: [row[name] for row in rows] for name in keys})
    session.execute(
        table.delete().where(and_(*(col == source.c[name] for name, col in keys.items())))
    )


class _Array(list[Any]):
    """A column's values, already converted for the driver, dumped by psycopg in its binary
    array format: twenty times faster than the text format's quoting of each value."""


adapters.register_dumper(_Array, ListBinaryDumper)  # this class only: no other value moves


def _unnested(session: Session) -> bool:
    dialect = session.get_bind().dialect
    return dialect.name == "postgresql" and dialect.driver == "psycopg"


def _distinct(keys: Keys, rows: Sequence[dict[str, Any]]) -> bool:
    named = {tuple(row[name] for name in keys) for row in rows}
    return len(named) == len(rows)


def _defaulted(table: Table, names: list[str]) -> list[str]:
    """The columns not given that an ``executemany`` would fill from their Python-side
    default (``_values`` fills them the same way)."""
    return [
        col.key
        for col in table.columns
        if col.key not in names and col.default is not None and not col.primary_key
    ]


def _values(table: Table, names: list[str], rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """One list per column: the given values, and the Python-side defaults of the others."""
    values = {name: [row[name] for row in rows] for name in names}
    for name in _defaulted(table, names):
        default: Any = table.c[name].default
        if default.is_scalar:
            values[name] = [default.arg] * len(rows)
        elif default.is_callable:
            values[name] = [default.arg(None) for _ in rows]
        else:  # pragma: no cover - slabot's tables have scalar or callable defaults only
            raise ValueError(f"{table.name}.{name}: a default {default!r} cannot be unnested")
    return values


def _source(
    dialect: Dialect,
    types: Mapping[str, ColumnElement[Any]],
    values: Mapping[str, list[Any]],
    ordered: bool = False,
) -> Any:
    """``unnest`` of one array per column, as ``v``; with ``ordered``, a last column ``n``
    numbers the rows. Each value is converted by its column's type as an ``executemany``
    converts it (instants, JSON documents), and the array cast to an array of that type."""
    arrays = []
    for name, col in types.items():
        convert = col.type.dialect_impl(dialect).bind_processor(dialect)
        given = values[name]
        converted = _Array(given if convert is None else [convert(value) for value in given])
        raw = bindparam(f"v_{name}", converted, type_=NullType())
        arrays.append(cast(raw, ARRAY(col.type)))
    named: list[ColumnClause[Any]] = [column(name) for name in types]
    if ordered:
        return func.unnest(*arrays).table_valued(*named, with_ordinality="n").render_derived("v")
    return func.unnest(*arrays).table_valued(*named).render_derived("v")
