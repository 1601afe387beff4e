"""Commands that run or look at passes: validate, plan, apply, rollback, run, explain (compare is in parity.py,
diff in diff.py, history and reports in audit.py, adopt in adoption.py)."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from reconciler.cli import (
    ActorOpt,
    DatabaseOpt,
    DesiredOpt,
    PageFormatOpt,
    TargetOpt,
    app,
    check_format,
    fail,
    load,
    sources,
)
from reconciler.cli import parity as parity_cli
from reconciler.desired import loader
from reconciler.domain.run import Mode
from reconciler.engine import explain
from reconciler.engine.gate import Override
from reconciler.errors import ConfigurationError, ReconcilerError
from reconciler.observe import logging as logs
from reconciler.present import report, views
from reconciler.runtime import compose, undo
from reconciler.settings import load_settings
from reconciler.store.ids import SqlIds


@app.command()
def validate(
    directory: Annotated[
        Path | None,
        typer.Argument(help="Desired-state folder (or one manifest file); default: RECONCILER_DESIRED_DIR."),
    ] = None,
) -> None:
    """Check a desired-state folder; every problem names its file, document and field.

    Each target's source is checked against the settings as a pass would check it (adapter installed, options
    known and well typed, credentials configured, files inside the roots), without touching a live system.
    Expired exceptions and expected differences, and expected differences that no longer differ in the
    desired state, are warned about (exit code 0 still)."""
    try:
        settings = load()
        directory = directory or settings.desired_dir
        state = loader.load(directory)
        sources.check(state, settings)
    except ConfigurationError as exc:
        raise fail(exc) from None
    typer.echo(
        f"ok: {len(state.targets)} targets, {len(state.policies)} policies, version {state.version} in {directory}"
    )
    for warning in parity_cli.policy_warnings(state, datetime.now(UTC)):
        typer.echo(f"warning: {warning}")


def _pass(mode: Mode, desired: Path | None, database_url: str | None, fmt: str, targets: list[str] | None) -> None:
    check_format(fmt, report.PAGE_FORMATS)
    try:
        settings = load(desired, database_url)
        components = compose.build(settings)
        if mode is Mode.APPLY:
            undo.recover(components.reconciler)  # settle what an interrupted run left in flight, first
        result = components.reconciler.reconcile(targets or None, mode=mode, trigger="cli")
        components.notifier.stop()  # deliver this run's notifications before the process ends
    except ReconcilerError as exc:
        raise fail(exc) from None
    typer.echo(report.render_run(result, fmt, settings.hmac_key()))
    raise typer.Exit(report.exit_code(result.status))


@app.command()
def plan(
    desired: DesiredOpt = None,
    database_url: DatabaseOpt = None,
    fmt: PageFormatOpt = "table",
    target: TargetOpt = None,
) -> None:
    """One dry-run pass: the drift per target, its class, and what apply would do.

    Exit code 0 when nothing would change, 2 when drift was found, 1 on error.
    """
    _pass(Mode.DRY_RUN, desired, database_url, fmt, target)


@app.command()
def apply(
    desired: DesiredOpt = None,
    database_url: DatabaseOpt = None,
    fmt: PageFormatOpt = "table",
    target: TargetOpt = None,
) -> None:
    """One pass in apply mode: fix reversible drift (staged, verified, journaled); list escalations.

    A target whose manifest says `mode: dry-run` stays in dry-run. Exit code 0 when live now matches
    desired, 2 when drift remains (escalations, conflicts, dry-run targets), 1 on error.
    """
    _pass(Mode.APPLY, desired, database_url, fmt, target)


@app.command("explain")
def explain_cmd(
    target: Annotated[str, typer.Argument(help="The target's name.")],
    path: Annotated[str, typer.Argument(help="A JSON Pointer, e.g. /database/timeout.")],
    desired: DesiredOpt = None,
) -> None:
    """Show which exception or rule decides the class of a drift, and why the others did not."""
    try:
        settings = load(desired)
        source, adapters = compose.build_offline(settings)
        result = explain.explain_drift(
            source.current(),
            adapters,
            target,
            path,
            hmac_key=settings.hmac_key(),
            secret_file_roots=settings.secrets.file_roots,
            now=datetime.now(UTC),
        )
    except ReconcilerError as exc:
        raise fail(exc) from None
    typer.echo(views.render_explanation(result))


@app.command()
def rollback(
    run_id: Annotated[
        str, typer.Argument(help="The run whose applied actions to undo, or one action's id (or 6+ first characters).")
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be undone; change nothing.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Write despite an open breaker, the guard or the dry-run switch.")
    ] = False,
    reason: Annotated[str | None, typer.Option("--reason", "-m", help="Why --force is needed (recorded).")] = None,
    actor: ActorOpt = None,
    desired: DesiredOpt = None,
    database_url: DatabaseOpt = None,
    fmt: PageFormatOpt = "table",
) -> None:
    """Undo a run's applied actions (or a single action), newest first, only where live still holds what was
    written.

    Like every write, a rollback asks the safety gate: an open circuit breaker, an environment outside
    RECONCILER_GUARD__APPLY_ENVIRONMENTS or the dry-run switch refuse it, unless `--force --reason "…"` is
    given (recorded in history with the actor). The rollback is itself a run (and can be rolled back); a dry
    run is not recorded. LIVE NOW is what live holds at each key, read again after the rollback. A run already
    undone is refused, naming the run that undid it. Exit code 0 when everything was undone, 1 when something
    was refused or failed.
    """
    check_format(fmt, report.PAGE_FORMATS)
    if force and not (reason or "").strip():
        raise typer.BadParameter("--force needs --reason: why the gate may be overridden", param_hint="--reason")
    override = Override(actor or getpass.getuser(), (reason or "").strip()) if force else None
    try:
        settings = load(desired, database_url)
        components = compose.build(settings)
        engine, ids = components.reconciler, SqlIds(components.store.engine)
        undoing = ids.resolve(run_id, ("run", "action")).id
        if not dry_run:
            undo.recover(engine)
        result = undo.rollback(engine, undoing, dry_run=dry_run, override=override, undone_by=ids.undone_by)
    except ReconcilerError as exc:
        raise fail(exc) from None
    typer.echo(report.render_run(result, fmt, settings.hmac_key()))
    raise typer.Exit(1 if report.exit_code(result.status) == 1 else 0)


@app.command()
def run(
    desired: DesiredOpt = None,
    database_url: DatabaseOpt = None,
    mode: Annotated[Mode | None, typer.Option(help="Global mode [env RECONCILER_MODE]; defaults to dry-run.")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port [env RECONCILER_HTTP__PORT].")] = None,
) -> None:
    """The daemon: every target at its interval, /metrics /healthz /readyz, SIGTERM finishes passes in flight."""
    try:
        overrides: dict[str, Any] = {}
        if mode is not None:
            overrides["mode"] = mode
        settings = load_settings(
            **overrides,
            **({"desired_dir": desired} if desired else {}),
            **({"database_url": database_url} if database_url else {}),
        )
        if port is not None:
            settings.http.port = port
        logs.configure(settings.log.level, settings.log.format)
        # Only the daemon loads its HTTP stack (uvicorn, Starlette, Jinja2): every other command starts faster.
        from reconciler.runtime import daemon  # noqa: PLC0415

        code = daemon.Daemon(compose.build(settings, daemon=True)).run()
    except ReconcilerError as exc:
        raise fail(exc) from None
    except OSError as exc:  # for example, the HTTP port is taken
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)
