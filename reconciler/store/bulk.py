"""Many rows into one table at once: the per-row cost of a large pass's journal is what this module keeps low.

A pass with 100,000 drifted keys writes 100,000 drift rows and 100,000 actions. Through SQLAlchemy's
`conn.execute(table.insert(), rows)` about half of that time was spent building each row's parameters (one
`construct_params` and one bind-processor sweep per row). Here the statement is compiled once, each column's
bind processor is looked up once, and the driver's executemany gets plain tuples or dicts; PostgreSQL gets
large batches by COPY.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

COPY_FROM = 200  # rows from which PostgreSQL gets them by COPY rather than an executemany INSERT


def insert_rows(conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert `rows` (dicts with the same keys, column names of `table`) in the connection's transaction."""
    if not rows:
        return
    if conn.dialect.name == "postgresql" and len(rows) >= COPY_FROM:
        _copy_rows(conn, table, rows)
        return
    sql, names, positional, processors = _statement(table, tuple(rows[0]), conn.dialect)
    # Column by column: each processor runs once per distinct value (a pass's rows share their timestamps
    # and flags), and zip builds the rows in C.
    values = [_processed([row[n] for row in rows], p) for n, p in zip(names, processors, strict=True)]
    tuples = list(zip(*values, strict=True))
    params: list[Any] = tuples if positional else [dict(zip(names, row, strict=True)) for row in tuples]
    conn.exec_driver_sql(sql, params)


@functools.lru_cache(maxsize=64)
def _statement(
    table: sa.Table, columns: tuple[str, ...], dialect: sa.Dialect
) -> tuple[str, list[str], bool, list[Callable[[Any], Any] | None]]:
    """The INSERT of `columns` into `table` for `dialect`, compiled once: (its SQL, the columns in its
    parameters' order, whether they are positional, each one's bind processor). Compiling it took ~0.3 ms,
    four times for every batch of passes the daemon writes (the tables and their columns never change)."""
    compiled = table.insert().compile(dialect=dialect, column_keys=list(columns))
    names = list(compiled.positiontup or ()) if compiled.positional else list(columns)
    return str(compiled), names, bool(compiled.positional), [_processor(table.c[n].type, dialect) for n in names]


def _processor(type_: sa.types.TypeEngine[Any], dialect: sa.Dialect) -> Callable[[Any], Any] | None:
    """What SQLAlchemy would do to a value of this column before handing it to the driver, or None."""
    return type_.dialect_impl(dialect).bind_processor(dialect)


def _processed(values: list[Any], processor: Callable[[Any], Any] | None) -> list[Any]:
    if processor is None:
        return values
    done: dict[Any, Any] = {}
    out: list[Any] = []
    for value in values:
        if value is None:
            out.append(None)
        elif value in done:
            out.append(done[value])
        else:
            out.append(done.setdefault(value, processor(value)))
    return out


def _copy_rows(conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Rows into `table` with PostgreSQL's COPY, in the connection's transaction: several times the rate of
    an executemany INSERT (bench/history_writes.py)."""
    columns = list(rows[0])
    quoted = ", ".join(f'"{c}"' for c in columns)
    dbapi: Any = conn.connection.dbapi_connection
    try:
        with dbapi.cursor() as cursor, cursor.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])
    except Exception as exc:  # the driver's error, as SQLAlchemy's, so the store reports it the usual way
        raise sa.exc.DBAPIError(f"COPY {table.name}", None, exc) from exc
