"""The operator interface: parses, calls, renders. Exit codes: 0 clean, 2 drift remains, 1 error."""

from __future__ import annotations

import getpass
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from reconciler.classify import exceptions
from reconciler.desired import loader
from reconciler.diff import parity
from reconciler.domain.approval import ApprovalState
from reconciler.domain.breaker import Breaker, BreakerState
from reconciler.domain.paths import MISSING
from reconciler.domain.run import Mode
from reconciler.domain.values import render
from reconciler.errors import ConfigurationError, ReconcilerError
from reconciler.observe import logging as logs
from reconciler.runtime import daemon, inspect, report, views
from reconciler.settings import Settings, load_settings
from reconciler.store import engine as engines
from reconciler.store import migrate
from reconciler.store.adoptions import SqlAdoptionStore
from reconciler.store.approvals import SqlApprovalStore
from reconciler.store.breakers import SqlBreakerStore

app = typer.Typer(
    name="reconciler",
    help="Keep live configuration equal to a versioned desired state, or explain why not.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The history database.", no_args_is_help=True)
app.add_typer(db_app, name="db")
approvals_app = typer.Typer(help="Escalated drift waiting for a person.", no_args_is_help=True)
app.add_typer(approvals_app, name="approvals")
breaker_app = typer.Typer(help="The circuit breaker on remediation.", no_args_is_help=True)
app.add_typer(breaker_app, name="breaker")
exceptions_app = typer.Typer(
    help="Policy exceptions: acceptable drift with an owner and an expiry.", no_args_is_help=True
)
app.add_typer(exceptions_app, name="exceptions")

DesiredOpt = Annotated[
    Path | None, typer.Option("--desired-dir", "-d", help="Desired-state folder [env RECONCILER_DESIRED_DIR].")
]
DatabaseOpt = Annotated[
    str | None, typer.Option("--database-url", help="History database URL [env RECONCILER_DATABASE_URL].")
]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="table, json or markdown.")]
TargetOpt = Annotated[list[str] | None, typer.Option("--target", "-t", help="Only this target (repeatable).")]


def _fail(exc: ReconcilerError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(1)


def _settings(desired: Path | None = None, database_url: str | None = None, **extra: Any) -> Settings:
    overrides: dict[str, Any] = dict(extra)
    if desired is not None:
        overrides["desired_dir"] = desired
    if database_url is not None:
        overrides["database_url"] = database_url
    settings = load_settings(**overrides)
    # CLI output goes to stdout; logs go to stderr, quiet unless asked for.
    logs.configure("warning" if settings.log.level == "info" else settings.log.level, settings.log.format)
    return settings


def _check_format(fmt: str) -> None:
    if fmt not in report.FORMATS:
        raise typer.BadParameter(f"must be one of {', '.join(report.FORMATS)}", param_hint="--format")


@app.command()
def validate(
    directory: Annotated[Path, typer.Argument(help="Desired-state folder (or one manifest file).")],
) -> None:
    """Check a desired-state folder; every problem names its file, document and field."""
    try:
        state = loader.load(directory)
    except ConfigurationError as exc:
        raise _fail(exc) from None
    typer.echo(
        f"ok: {len(state.targets)} targets, {len(state.policies)} policies, version {state.version} in {directory}"
    )


def _pass(mode: Mode, desired: Path | None, database_url: str | None, fmt: str, targets: list[str] | None) -> None:
    _check_format(fmt)
    try:
        settings = _settings(desired, database_url)
        components = daemon.build(settings)
        if mode is Mode.APPLY:
            components.reconciler.recover()  # settle what an interrupted run left in flight, first
        result = components.reconciler.reconcile(targets or None, mode=mode, trigger="cli")
        components.notifier.stop()  # deliver this run's notifications before the process ends
    except ReconcilerError as exc:
        raise _fail(exc) from None
    typer.echo(report.render_run(result, fmt, settings.hmac_key()))
    raise typer.Exit(report.exit_code(result.status))


@app.command()
def plan(
    desired: DesiredOpt = None,
    database_url: DatabaseOpt = None,
    fmt: FormatOpt = "table",
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
    fmt: FormatOpt = "table",
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
        settings = _settings(desired)
        source, adapters = daemon.build_offline(settings)
        result = inspect.explain_drift(
            source.current(),
            adapters,
            target,
            path,
            hmac_key=settings.hmac_key(),
            secret_file_roots=settings.secrets.file_roots,
            now=datetime.now(UTC),
        )
    except ReconcilerError as exc:
        raise _fail(exc) from None
    typer.echo(views.render_explanation(result))


@exceptions_app.command("list")
def exceptions_list(
    desired: DesiredOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    expiring: Annotated[bool, typer.Option("--expiring", help="Only exceptions expiring or expired.")] = False,
) -> None:
    """Every policy exception with its owner, reason, expiry and state (active, expiring, expired).

    Exit code 0, or 2 when any exception is expiring or expired, so a scheduled job can nag.
    """
    if fmt not in ("table", "json"):
        raise typer.BadParameter("must be table or json", param_hint="--format")
    try:
        settings = _settings(desired)
        state = loader.load(settings.desired_dir)
    except ReconcilerError as exc:
        raise _fail(exc) from None
    horizon = timedelta(seconds=settings.policy.expiry_warning_s)
    statuses = exceptions.inventory(state, datetime.now(UTC), horizon)
    if expiring:
        statuses = [s for s in statuses if s.state is not exceptions.ExceptionState.ACTIVE]
    typer.echo(views.render_exceptions(statuses, fmt))
    raise typer.Exit(2 if any(s.state is not exceptions.ExceptionState.ACTIVE for s in statuses) else 0)


@app.command("compare")
def compare_cmd(
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="An environment (repeatable); default: every one.")
    ] = None,
    app_: Annotated[list[str] | None, typer.Option("--app", help="Only this app (glob, repeatable).")] = None,
    desired_only: Annotated[
        bool, typer.Option("--desired", help="Compare the desired state instead of live state.")
    ] = False,
    threshold: Annotated[
        float, typer.Option(min=0, max=1, help="Drift fraction above which a pair is significant (0.1 = 10%).")
    ] = 0.1,
    desired: DesiredOpt = None,
    fmt: FormatOpt = "table",
) -> None:
    """Does staging match production? Compare every pair of environments for every app.

    Exit code 0 when every difference is expected, 2 when any is not, 1 when a target could not be read.
    """
    _check_format(fmt)
    try:
        settings = _settings(desired)
        source, adapters = daemon.build_offline(settings)
        state = source.current()
        environments = env or sorted({t.environment for t in state.targets.values() if t.metadata.app})
        documents: dict[str, dict[str, Any]] | None = None
        errors: dict[str, str] = {}
        if not desired_only:
            chosen = parity.pairs(state, environments, app_ or ())
            names = sorted({t.name for _, a, b in chosen for t in (a, b)})
            documents, errors = inspect.live_documents(state, adapters, names)
        results = parity.compare_environments(
            state, environments, documents=documents, apps=app_ or (), threshold=threshold, now=datetime.now(UTC)
        )
    except ReconcilerError as exc:
        raise _fail(exc) from None
    source_name = "desired state" if desired_only else "live state"
    typer.echo(views.render_parity(results, errors, environments, source_name, fmt))
    if errors:
        raise typer.Exit(1)
    raise typer.Exit(2 if any(r.unexpected for r in results) else 0)


@approvals_app.command("list")
def approvals_list(
    all_: Annotated[bool, typer.Option("--all", help="Decided, used and superseded ones too.")] = False,
    database_url: DatabaseOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """Approvals waiting for a decision (with --all: every approval, newest first)."""
    if fmt not in ("table", "json"):
        raise typer.BadParameter("must be table or json", param_hint="--format")
    try:
        store = SqlApprovalStore(daemon.build_store(_settings(database_url=database_url)).engine)
        found = store.list(() if all_ else (ApprovalState.PENDING, ApprovalState.APPROVED))
    except ReconcilerError as exc:
        raise _fail(exc) from None
    typer.echo(views.render_approvals(found, fmt))


def _decide(approval_id: str, approve: bool, actor: str | None, comment: str | None, database_url: str | None) -> None:
    try:
        settings = _settings(database_url=database_url)
        store = SqlApprovalStore(daemon.build_store(settings).engine)
        decided = store.decide(
            approval_id,
            approve=approve,
            actor=actor or getpass.getuser(),
            comment=comment,
            now=datetime.now(UTC),
            ttl=timedelta(seconds=settings.approvals.ttl_s),
        )
    except ReconcilerError as exc:
        raise _fail(exc) from None
    until = f", usable until {decided.expires_at:%Y-%m-%d %H:%M} UTC by an apply pass" if decided.expires_at else ""
    typer.echo(f"{decided.state.value}: {decided.target} {decided.pointer} by {decided.actor}{until}")


ActorOpt = Annotated[str | None, typer.Option("--actor", help="Who decides; defaults to the login name.")]
CommentOpt = Annotated[str | None, typer.Option("--comment", "-m", help="Why.")]


@approvals_app.command("approve")
def approvals_approve(
    approval_id: Annotated[str, typer.Argument(help="The approval's id.")],
    actor: ActorOpt = None,
    comment: CommentOpt = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Approve one escalated drift: the next apply pass fixes it, staged and verified, if the drift is still
    exactly the same (live and desired unchanged) and the approval has not expired."""
    _decide(approval_id, True, actor, comment, database_url)


@approvals_app.command("reject")
def approvals_reject(
    approval_id: Annotated[str, typer.Argument(help="The approval's id.")],
    actor: ActorOpt = None,
    comment: CommentOpt = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Reject one escalated drift: it stays escalated and is not asked about again while it is the same."""
    _decide(approval_id, False, actor, comment, database_url)


def _breaker_store(database_url: str | None) -> SqlBreakerStore:
    return SqlBreakerStore(daemon.build_store(_settings(database_url=database_url)).engine)


def _show_breaker(breaker: Breaker) -> str:
    now = datetime.now(UTC)
    if not breaker.is_open(now):
        return "closed: remediation runs"
    until = f" until {breaker.until:%Y-%m-%d %H:%M} UTC" if breaker.until else " until reset"
    return f"open{until} (by {breaker.changed_by}): {breaker.reason}; apply runs dry-run, detection goes on"


@breaker_app.command("status")
def breaker_status(database_url: DatabaseOpt = None) -> None:
    """Whether remediation is paused, since when and why. Exit code 0 closed, 2 open."""
    try:
        breaker = _breaker_store(database_url).get()
    except ReconcilerError as exc:
        raise _fail(exc) from None
    typer.echo(_show_breaker(breaker))
    raise typer.Exit(2 if breaker.is_open(datetime.now(UTC)) else 0)


@breaker_app.command("open")
def breaker_open(
    reason: Annotated[str, typer.Option("--reason", "-m", help="Why remediation must pause.")],
    actor: ActorOpt = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Pause all remediation by hand, until `reconciler breaker reset`."""
    try:
        store = _breaker_store(database_url)
        now = datetime.now(UTC)
        store.set(Breaker(BreakerState.OPEN, reason, now, None, actor or getpass.getuser()), now)
        typer.echo(_show_breaker(store.get()))
    except ReconcilerError as exc:
        raise _fail(exc) from None


@breaker_app.command("reset")
def breaker_reset(actor: ActorOpt = None, database_url: DatabaseOpt = None) -> None:
    """Close the circuit breaker: remediation runs again."""
    try:
        store = _breaker_store(database_url)
        now = datetime.now(UTC)
        store.set(Breaker(BreakerState.CLOSED, None, None, None, actor or getpass.getuser()), now)
    except ReconcilerError as exc:
        raise _fail(exc) from None
    typer.echo("closed: remediation runs")


@app.command("adopt")
def adopt_cmd(
    drift_id: Annotated[int, typer.Argument(help="A drift's id, from `reconciler history RUN_ID`.")],
    reason: Annotated[str, typer.Option("--reason", "-m", help="Why the live value is right.")],
    actor: ActorOpt = None,
    desired: DesiredOpt = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Make a live value the desired one: write it into the target's manifest (comments and order kept),
    if live still holds it, and record who adopted it and why. Commit the manifest afterwards."""
    try:
        settings = _settings(desired, database_url)
        store = SqlAdoptionStore(daemon.build_store(settings).engine)
        drift = store.drift(drift_id)
        if drift is None:
            raise ConfigurationError(f"no drift with id {drift_id}")
        source, adapters = daemon.build_offline(settings)
        target, value, file = inspect.adopt_drift(source.current(), adapters, drift)
        who = actor or getpass.getuser()
        store.record(drift_id, target.name, drift["path"], value, str(file), who, reason, datetime.now(UTC))
    except ReconcilerError as exc:
        raise _fail(exc) from None
    what = "no longer desired" if value is MISSING else f"= {render(value)}"
    typer.echo(f"adopted by {who}: {target.name} {drift['path']} {what}, written to {file}; commit it")


@app.command()
def history(
    run_id: Annotated[str | None, typer.Argument(help="Show one run with its passes and actions.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many runs to list.")] = 20,
    database_url: DatabaseOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """List recent runs, or show one run's passes and actions."""
    if fmt not in ("table", "json"):
        raise typer.BadParameter("must be table or json", param_hint="--format")
    try:
        store = daemon.build_store(_settings(database_url=database_url))
        if run_id is None:
            typer.echo(report.render_runs(store.runs(limit), fmt))
            return
        run = store.run(run_id)
        if run is None:
            raise ConfigurationError(f"no run with id {run_id}")
        typer.echo(
            report.render_run_detail(run, store.passes(run_id), store.actions(run_id), fmt, store.drifts(run_id))
        )
    except ReconcilerError as exc:
        raise _fail(exc) from None


@app.command()
def rollback(
    run_id: Annotated[str, typer.Argument(help="The run whose applied actions to undo, or one action's id.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be undone; change nothing.")] = False,
    desired: DesiredOpt = None,
    database_url: DatabaseOpt = None,
    fmt: FormatOpt = "table",
) -> None:
    """Undo a run's applied actions (or a single action), newest first, only where live still holds what was
    written.

    The rollback is itself a run (and can be rolled back). Exit code 0 when everything was undone,
    1 when something was refused or failed.
    """
    _check_format(fmt)
    try:
        settings = _settings(desired, database_url)
        engine = daemon.build(settings).reconciler
        if not dry_run:
            engine.recover()
        result = engine.rollback(run_id, dry_run=dry_run)
    except ReconcilerError as exc:
        raise _fail(exc) from None
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
        code = daemon.Daemon(daemon.build(settings)).run()
    except ReconcilerError as exc:
        raise _fail(exc) from None
    except OSError as exc:  # for example, the HTTP port is taken
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


@db_app.command("upgrade")
def db_upgrade(
    database_url: DatabaseOpt = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Run the Alembic migrations (SQLite or PostgreSQL)."""
    try:
        settings = _settings(database_url=database_url)
        engine = engines.create_engine(settings.database_url)
        before = migrate.current(engine)
        migrate.upgrade(engine, revision)
        after = migrate.current(engine)
    except ReconcilerError as exc:
        raise _fail(exc) from None
    url = engines.safe_url(settings.database_url)
    if before == after:
        typer.echo(f"{url}: already at revision {after}")
    else:
        typer.echo(f"{url}: upgraded from {before or 'empty'} to {after}")


@db_app.command("current")
def db_current(database_url: DatabaseOpt = None) -> None:
    """Show the database's revision and the code's."""
    try:
        settings = _settings(database_url=database_url)
        have = migrate.current(engines.create_engine(settings.database_url))
    except ReconcilerError as exc:
        raise _fail(exc) from None
    want = migrate.head()
    typer.echo(f"database: {have or 'empty'}; code: {want}{'' if have == want else ' (run: reconciler db upgrade)'}")
    if have != want:
        raise typer.Exit(1)


def main() -> None:
    """Entry point. Usage errors exit 1, not click's 2, because 2 means "drift found" to CI gates."""
    try:
        code = app(standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors and the like
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        exit_code = getattr(exc, "exit_code", 1)
        sys.exit(1 if exit_code == 2 else exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
