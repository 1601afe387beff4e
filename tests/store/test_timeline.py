"""A key's timeline and the export of every event, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from reconciler.domain.audit import EXPORT_FIELDS, EventKind
from reconciler.domain.breaker import Breaker, BreakerState
from reconciler.domain.plan import ActionState
from reconciler.domain.run import RunKind, RunStatus
from reconciler.domain.values import Redacted
from reconciler.present import audit as views
from reconciler.store import tables as t
from reconciler.store.adoptions import SqlAdoptionStore
from reconciler.store.breakers import SqlBreakerStore
from reconciler.store.export import SqlExport
from reconciler.store.history import SqlHistoryStore
from reconciler.store.timeline import SqlTimeline
from tests.store.history_builder import action_at, approval_at, drift, run_at, version

NOW = datetime.now(UTC).replace(microsecond=0)
KEY = "/db/timeout"


def days(n: float) -> datetime:
    return NOW - timedelta(days=n)


def story(store: SqlHistoryStore) -> dict[str, str]:
    """A key that drifts, is escalated, approved, fixed, drifts again under an exception, is rolled back and
    adopted; another key of the same target drifts alongside and must not show."""
    v1 = version(store, "1" * 64, days(11), "c1" * 20)
    esc = drift(KEY, observed=45, desired=30, class_="escalate", by="rule p/0")
    other = drift("/db/pool", observed=5, desired=10)
    runs = {"seen": run_at(store, days(10), "a", [esc, other], desired_version=v1)}
    approval_at(
        store, days(10), "ap-1", runs["seen"], "used", drift_key="k", path=KEY, desired="30", observed="45",
        reason="prod database settings need a human [rule p/0]", actor="alice", comment="INC-1: go ahead",
        decided_at=days(9.5), expires_at=days(8.5), action_id="act-fix",
    )  # fmt: skip
    runs["fix"] = run_at(
        store, days(9), "a", [esc], kind=RunKind.APPLY, trigger="cli", desired_version=v1, status=RunStatus.FIXED
    )
    action_at(store, days(9), runs["fix"], "a", KEY, ActionState.VERIFIED, before=45, after=30,
              desired_version=v1, action_id="act-fix")  # fmt: skip
    runs["clean"] = run_at(store, days(8), "a", [], desired_version=v1)
    accepted = drift(KEY, observed=50, desired=30, class_="acceptable", by="exception p/0")
    runs["again"] = run_at(store, days(7), "a", [accepted], desired_version=v1)
    runs["undo"] = run_at(
        store, days(6), "a", [], kind=RunKind.ROLLBACK, trigger="cli", rollback_of=runs["fix"],
        note="forced by bob: INC-2 the old timeout was right", status=RunStatus.FIXED,
    )  # fmt: skip
    action_at(store, days(6), runs["undo"], "a", KEY, ActionState.VERIFIED, before=30, after=45,
              rollback_of="act-fix", action_id="act-undo", reason="rollback of act-fix")  # fmt: skip
    SqlAdoptionStore(store.engine).record(1, "a", KEY, 45, "/desired/a.yaml", "carol", "45 is right", days(5))
    return runs


def test_a_keys_timeline_tells_its_story_in_order(store: SqlHistoryStore) -> None:
    """Seen drifting (with desired version and git commit), classified, escalated, approved by whom with the
    comment, written, verified, gone, seen again under an exception, rolled back and why, adopted: in order,
    with time and actor on each line; the other key of the target does not show."""
    runs = story(store)
    events = SqlTimeline(store.engine).timeline("a", KEY, days(30))
    got = [(e.event, e.actor) for e in events]
    assert got == [
        (EventKind.SEEN, "reconciler (daemon)"),
        (EventKind.CLASSIFIED, "reconciler (daemon)"),
        (EventKind.ESCALATED, "reconciler (daemon)"),
        (EventKind.APPROVED, "alice"),
        (EventKind.WRITTEN, "cli@build-host, approved by alice"),
        (EventKind.VERIFIED, "cli@build-host, approved by alice"),
        (EventKind.GONE, "reconciler (daemon)"),
        (EventKind.SEEN, "reconciler (daemon)"),
        (EventKind.CLASSIFIED, "reconciler (daemon)"),
        (EventKind.ROLLED_BACK, "cli@build-host"),
        (EventKind.ADOPTED, "carol"),
    ]
    seen, classified, approved, rolled = events[0], events[1], events[3], events[9]
    assert (seen.observed, seen.desired, seen.git_commit, seen.run_id) == (45, 30, "c1" * 20, runs["seen"])
    assert (classified.class_, classified.decided_by) == ("escalate", "rule p/0")
    assert approved.comment == "INC-1: go ahead" and approved.at == days(9.5)
    assert "forced by bob" in (rolled.reason or "") and rolled.rollback_of == "act-fix"
    assert events[8].decided_by == "exception p/0"
    assert all(e.path == KEY and e.target == "a" for e in events)
    recent = SqlTimeline(store.engine).timeline("a", KEY, days(6.5))
    assert [e.event for e in recent] == [EventKind.ROLLED_BACK, EventKind.ADOPTED]
    text = views.render_timeline(events, "table", "a", KEY)
    assert "alice" in text and '"INC-1: go ahead"' in text and "c1c1c1c1c1c1" in text
    assert json.loads(views.render_timeline(events, "json", "a", KEY))[3]["comment"] == "INC-1: go ahead"
    assert SqlTimeline(store.engine).timeline("a", "/nothing", days(30)) == []


def test_the_export_streams_every_event_in_time_order_with_secrets_hashed(store: SqlHistoryStore) -> None:
    """Runs, passes, drift, actions, approvals, adoptions and breaker changes come out merged in time order,
    with the stable field names; a secret only as its keyed hash, in JSON lines and in CSV alike."""
    story(store)
    secret = drift("/db/password", observed=Redacted("hmac-sha256:aaaaaaaaaaaa"), desired=Redacted("hmac-sha256:bb"))
    secret = type(secret)(secret.item._replace(secret=True), secret.class_, secret.reason, secret.decided_by)
    run_at(store, days(4), "a", [secret])
    SqlBreakerStore(store.engine).set(
        Breaker(BreakerState.OPEN, "5 of 6 writes failed", days(3), None, "error budget"), days(3)
    )
    events = list(SqlExport(store.engine).events(days(30)))
    assert [e.at for e in events] == sorted(e.at for e in events)
    kinds = {e.event for e in events}
    assert {EventKind.RUN, EventKind.PASS, EventKind.DRIFT, EventKind.ACTION, EventKind.ESCALATED,
            EventKind.APPROVED, EventKind.ADOPTED, EventKind.BREAKER} <= kinds  # fmt: skip
    assert len([e for e in events if e.event is EventKind.RUN]) == 6
    out = io.StringIO()
    assert views.write_export(iter(events), "jsonl", out.write) == len(events)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert all(tuple(line) == EXPORT_FIELDS for line in lines)
    hashed = next(line for line in lines if line["path"] == "/db/password")
    assert hashed["observed"] == "hmac-sha256:aaaaaaaaaaaa" and hashed["secret"] is True
    out = io.StringIO()
    views.write_export(iter(events), "csv", out.write)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == EXPORT_FIELDS and len(rows) == len(events)
    assert next(r for r in rows if r["path"] == "/db/password")["observed"] == '"hmac-sha256:aaaaaaaaaaaa"'
    assert list(SqlExport(store.engine).events(days(2))) == []
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.breaker_events)).scalar_one() == 1


def test_the_export_streams_in_flat_memory(sqlite_url: str) -> None:
    """Streaming 10,000 drift events to a writer holds a fraction of the memory that holding them all takes:
    rows come from the cursor a page at a time and are written as they come."""
    import tracemalloc  # noqa: PLC0415

    from reconciler.store import engine as engines  # noqa: PLC0415
    from reconciler.store import migrate  # noqa: PLC0415
    from tests.conftest import HMAC_KEY  # noqa: PLC0415

    engine = engines.create_engine(sqlite_url)
    migrate.upgrade(engine)
    store = SqlHistoryStore(engine, HMAC_KEY)
    run_at(store, days(1), "big", [drift(f"/k/{i}", observed={"n": i, "pad": "x" * 40}) for i in range(10_000)])
    export = SqlExport(engine)

    def peak(action: object) -> int:
        tracemalloc.start()
        try:
            action()  # type: ignore[operator]
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    written = [0]

    def count(line: str) -> None:
        written[0] += 1

    streamed = peak(lambda: views.write_export(export.events(days(2)), "jsonl", count))
    held = peak(lambda: list(export.events(days(2))))
    assert written[0] == 10_000 + 2  # the drift, its pass and its run
    assert streamed < held / 3, (streamed, held)
    engine.dispose()
