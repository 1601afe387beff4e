"""History as an audit trail: runs, a key's timeline, the export of every event, retention, and the report of
what runs where."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from reconciler.cli import DatabaseOpt, DesiredOpt, app, check_format, db_app, fail, load
from reconciler.desired import loader
from reconciler.domain import durations
from reconciler.errors import ConfigurationError, ReconcilerError
from reconciler.present import audit as audit_views
from reconciler.present import history as history_views
from reconciler.present import inventory as inventory_views
from reconciler.runtime import compose, inventory, retention
from reconciler.store.export import SqlExport
from reconciler.store.ids import SqlIds
from reconciler.store.inventory import SqlInventoryReader
from reconciler.store.retention import SqlRetention
from reconciler.store.timeline import SqlTimeline

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ago(text: str | None, option: str) -> datetime:
    """The time `text` (a duration such as 7d, 12h, 30m) before now; the beginning of time for None."""
    if text is None:
        return EPOCH
    seconds = durations.parse(text)
    if seconds is None or seconds <= 0:
        raise typer.BadParameter(f"{text!r} is not a duration such as 30d, 12h or 90m", param_hint=option)
    try:
        return datetime.now(UTC) - timedelta(seconds=seconds)
    except OverflowError:
        return EPOCH


SinceOpt = Annotated[
    str | None, typer.Option("--since", help="Only the last DURATION (30d, 12h, 90m); default: all history.")
]


@app.command()
def history(
    run_id: Annotated[
        str | None,
        typer.Argument(help="Show one run (its id or 6+ first characters) with its passes and actions; or `export`."),
    ] = None,
    target: Annotated[str | None, typer.Option("--target", "-t", help="A key's timeline: the target.")] = None,
    path: Annotated[str | None, typer.Option("--path", "-p", help="A key's timeline: its JSON Pointer.")] = None,
    since: SinceOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many runs to list.")] = 20,
    database_url: DatabaseOpt = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="table, json or markdown; jsonl or csv for export.")
    ] = "table",
) -> None:
    """List recent runs, or show one run's passes and actions.

    `history --target T --path /p [--since 7d]`: one key's story in order, with time and actor on each line
    (first seen drifting, classified, escalated, approved or rejected, written, verified or rolled back, gone,
    adopted). `history export [--since 30d] --format jsonl|csv`: every event, streamed, for audit tools.
    """
    if run_id == "export":
        _export(since, database_url, "jsonl" if fmt == "table" else fmt)
        return
    if (target is None) != (path is None):
        raise typer.BadParameter("a timeline needs both --target and --path", param_hint="--target/--path")
    if target is not None and path is not None:
        _timeline(target, path, since, database_url, fmt)
        return
    check_format(fmt)
    try:
        store = compose.build_store(load(database_url=database_url))
        if run_id is None:
            typer.echo(history_views.render_runs(store.runs(limit), fmt))
            return
        found = SqlIds(store.engine).resolve(run_id, ("run",)).id
        run = store.run(found)
        if run is None:
            raise ConfigurationError(f"no run with id {run_id}")
        typer.echo(
            history_views.render_run_detail(run, store.passes(found), store.actions(found), fmt, store.drifts(found))
        )
    except ReconcilerError as exc:
        raise fail(exc) from None


def _timeline(target: str, path: str, since: str | None, database_url: str | None, fmt: str) -> None:
    check_format(fmt)
    if not path.startswith("/"):
        raise typer.BadParameter(f"{path!r} is not a JSON Pointer such as /database/timeout", param_hint="--path")
    start = ago(since, "--since")
    try:
        store = compose.build_store(load(database_url=database_url))
        events = SqlTimeline(store.engine).timeline(target, path, start)
    except ReconcilerError as exc:
        raise fail(exc) from None
    typer.echo(audit_views.render_timeline(events, fmt, target, path))


def _export(since: str | None, database_url: str | None, fmt: str) -> None:
    check_format(fmt, audit_views.EXPORT_FORMATS)
    start = ago(since, "--since")
    try:
        store = compose.build_store(load(database_url=database_url))
        audit_views.write_export(SqlExport(store.engine).events(start), fmt, sys.stdout.write)
    except ReconcilerError as exc:
        raise fail(exc) from None
    sys.stdout.flush()


@db_app.command("prune")
def db_prune(
    older_than: Annotated[
        str | None,
        typer.Option("--older-than", help="Delete history older than this (30d, 12h); default: the retention."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would go; delete nothing.")] = False,
    desired: DesiredOpt = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Delete history older than --older-than (default RECONCILER_HISTORY__RETAIN_DAYS), in small batches.

    Kept however old: each target's newest pass, runs of open approvals, the newest write of every key (what a
    rollback undoes), the first drift under each active exception (the desired state is read for them), runs
    still running, and the desired versions those name."""
    try:
        settings = load(desired, database_url)
        now = datetime.now(UTC)
        cutoff = ago(older_than, "--older-than") if older_than is not None else retention.cutoff(settings.history, now)
        if cutoff is None:
            typer.echo("retention is off (RECONCILER_HISTORY__RETAIN_DAYS=0): nothing pruned; give --older-than")
            return
        state = loader.load(settings.desired_dir)
        store = compose.build_store(settings)
        stats = SqlRetention(store.engine).prune(
            cutoff, active_exceptions=retention.active_exceptions(state, now), dry_run=dry_run
        )
    except ReconcilerError as exc:
        raise fail(exc) from None
    typer.echo(audit_views.render_prune(stats))


@app.command("report")
def report_cmd(
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="An environment (glob, repeatable).")] = None,
    app_: Annotated[list[str] | None, typer.Option("--app", help="An app (glob, repeatable).")] = None,
    desired: DesiredOpt = None,
    database_url: DatabaseOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="markdown, json or html.")] = "markdown",
) -> None:
    """What runs where: per app and environment, the effective value of every key (secrets as keyed hashes;
    for layered sources the layer that wins), whether it matches desired, drift and since when, exceptions in
    force, the last recorded and last clean pass, and the desired version with its git commit.

    Reads live state as a dry-run pass does; writes and records nothing. Exit code 0, or 1 when a target could
    not be read (the report still lists it, with the error)."""
    check_format(fmt, inventory_views.FORMATS)
    try:
        settings = load(desired, database_url)
        source, adapters = compose.build_offline(settings)
        state = source.current()
        reader = SqlInventoryReader(compose.build_store(settings).engine)
        found = inventory.build(
            state,
            inventory.chosen(state, env or (), app_ or ()),
            adapters,
            reader.target_history,
            hmac_key=settings.hmac_key(),
            secret_file_roots=settings.secrets.file_roots,
            now=datetime.now(UTC),
        )
    except ReconcilerError as exc:
        raise fail(exc) from None
    typer.echo(inventory_views.render_inventory(found, fmt))
    raise typer.Exit(1 if any(t.error for t in found.targets) else 0)
