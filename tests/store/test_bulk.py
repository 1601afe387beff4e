"""insert_rows writes exactly what SQLAlchemy's own executemany INSERT writes, on SQLite and PostgreSQL,
through both of its paths (the driver's executemany, and COPY on PostgreSQL from COPY_FROM rows)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from reconciler.domain.run import RunKind
from reconciler.store import tables as t
from reconciler.store.bulk import COPY_FROM, _statement, insert_rows
from reconciler.store.history import SqlHistoryStore


def _rows(run_id: str, count: int, tag: str) -> list[dict[str, Any]]:
    moment = datetime(2026, 12, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    return [
        {
            "id": f"{tag}-{i:06d}",
            "run_id": run_id,
            "seq": i,
            "target": "payments/prod",
            "path": f"/db/k{i}~1x 'quoted' \"é\"",
            "op": "change",
            "before": None if i % 3 == 0 else f'{{"v":{i}}}',
            "after": "null",
            "desired_version": "d" * 64,
            "idempotency_key": f"{i:032x}",
            "reason": "drift",
            "secret": i % 2 == 0,
            "rollback_of": None,
            "state": "dry_run",
            "error": None if i % 5 else "a\nmultiline error",
            "created_at": moment,
            "updated_at": moment + timedelta(seconds=i),
        }
        for i in range(count)
    ]


def _read(store: SqlHistoryStore, prefix: str) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        query = sa.select(t.actions).where(t.actions.c.id.like(f"{prefix}-%")).order_by(t.actions.c.seq)
        return [dict(r) for r in conn.execute(query).mappings()]


@pytest.mark.parametrize("count", [3, COPY_FROM + 5])
def test_insert_rows_matches_sqlalchemy(store: SqlHistoryStore, count: int) -> None:
    run_id = store.start_run(*_run_args())
    with store.engine.begin() as conn:
        insert_rows(conn, t.actions, _rows(run_id, count, "bulk"))
        conn.execute(t.actions.insert(), _rows(run_id, count, "orm"))
    ours, theirs = _read(store, "bulk"), _read(store, "orm")
    assert len(ours) == count
    for mine, reference in zip(ours, theirs, strict=True):
        assert {k: v for k, v in mine.items() if k != "id"} == {k: v for k, v in reference.items() if k != "id"}
    assert ours[1]["created_at"] == datetime(2026, 12, 1, 10, 30, 15, 123456, tzinfo=UTC)
    assert ours[1]["created_at"].tzinfo is not None
    assert [r["secret"] for r in ours[:3]] == [True, False, True]


def test_insert_rows_of_nothing_does_nothing(store: SqlHistoryStore) -> None:
    with store.engine.begin() as conn:
        insert_rows(conn, t.actions, [])
    assert _read(store, "bulk") == []


def test_insert_rows_fails_the_transaction_like_any_insert(store: SqlHistoryStore) -> None:
    run_id = store.start_run(*_run_args())
    rows = _rows(run_id, 2, "dup")
    with pytest.raises(sa.exc.DBAPIError), store.engine.begin() as conn:
        insert_rows(conn, t.actions, rows + rows)  # the same primary keys twice
    assert _read(store, "dup") == []


def _run_args() -> tuple[RunKind, str, None]:
    return RunKind.DRY_RUN, "test", None


def test_each_insert_is_compiled_once_per_table_columns_and_dialect(store: SqlHistoryStore) -> None:
    """The compiled INSERT is kept: a second batch of the same columns compiles nothing, and rows with other
    columns (the rest take their defaults) get a statement of their own, not the first one's."""
    run_id = store.start_run(*_run_args())
    _statement.cache_clear()
    with store.engine.begin() as conn:
        insert_rows(conn, t.actions, _rows(run_id, 2, "one"))
        insert_rows(conn, t.actions, _rows(run_id, 2, "two"))
        fewer = [{k: v for k, v in row.items() if k not in ("error", "rollback_of")} for row in _rows(run_id, 2, "few")]
        insert_rows(conn, t.actions, fewer)
    info = _statement.cache_info()
    assert (info.misses, info.hits) == (2, 1)
    assert [r["error"] for r in _read(store, "two")] == ["a\nmultiline error", None] and len(_read(store, "one")) == 2
    assert [(r["seq"], r["error"], r["rollback_of"]) for r in _read(store, "few")] == [(0, None, None), (1, None, None)]
