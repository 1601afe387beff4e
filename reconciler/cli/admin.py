"""Administration: approvals, the circuit breaker, exceptions, the database."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from reconciler.classify import exceptions
from reconciler.cli import (
    ActorOpt,
    CommentOpt,
    DatabaseOpt,
    DesiredOpt,
    TableFormatOpt,
    approvals_app,
    breaker_app,
    check_format,
    db_app,
    exceptions_app,
    fail,
    load,
)
from reconciler.desired import loader
from reconciler.domain.approval import ApprovalState
from reconciler.domain.breaker import Breaker, BreakerState
from reconciler.errors import ReconcilerError
from reconciler.present import views
from reconciler.runtime import compose, controls
from reconciler.store import engine as engines
from reconciler.store import migrate
from reconciler.store.approvals import SqlApprovalStore
from reconciler.store.breakers import SqlBreakerStore
from reconciler.store.ids import SqlIds


@approvals_app.command("list")
def approvals_list(
    all_: Annotated[bool, typer.Option("--all", help="Decided, used and superseded ones too.")] = False,
    database_url: DatabaseOpt = None,
    fmt: TableFormatOpt = "table",
) -> None:
    """Approvals waiting for a decision (with --all: every approval, newest first)."""
    check_format(fmt, ("table", "json"))
    try:
        store = SqlApprovalStore(compose.build_store(load(database_url=database_url)).engine)
        found = store.list(() if all_ else (ApprovalState.PENDING, ApprovalState.APPROVED))
    except ReconcilerError as exc:
        raise fail(exc) from None
    typer.echo(views.render_approvals(found, fmt))


def _decide(approval_id: str, approve: bool, actor: str | None, comment: str | None, database_url: str | None) -> None:
    try:
        settings = load(database_url=database_url)
        store = SqlApprovalStore(compose.build_store(settings).engine)
        decided = store.decide(
            SqlIds(store.engine).resolve(approval_id, ("approval",)).id,
            approve=approve,
            actor=actor or getpass.getuser(),
            comment=comment,
            now=datetime.now(UTC),
            ttl=timedelta(seconds=settings.approvals.ttl_s),
        )
    except ReconcilerError as exc:
        raise fail(exc) from None
    until = f", usable until {decided.expires_at:%Y-%m-%d %H:%M} UTC by an apply pass" if decided.expires_at else ""
    typer.echo(f"{decided.state.value}: {decided.target} {decided.pointer} by {decided.actor}{until}")


@approvals_app.command("approve")
def approvals_approve(
    approval_id: Annotated[str, typer.Argument(help="The approval's id (or 6+ first characters).")],
    actor: ActorOpt = None,
    comment: CommentOpt = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Approve one escalated drift: the next apply pass fixes it, staged and verified, if the drift is still
    exactly the same (live and desired unchanged) and the approval has not expired."""
    _decide(approval_id, True, actor, comment, database_url)


@approvals_app.command("reject")
def approvals_reject(
    approval_id: Annotated[str, typer.Argument(help="The approval's id (or 6+ first characters).")],
    actor: ActorOpt = None,
    comment: CommentOpt = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Reject one escalated drift: it stays escalated and is not asked about again while it is the same."""
    _decide(approval_id, False, actor, comment, database_url)


def _breaker_store(database_url: str | None) -> SqlBreakerStore:
    return SqlBreakerStore(compose.build_store(load(database_url=database_url)).engine)


def _announce(summary: str, details: dict[str, str], database_url: str | None) -> None:
    """Tell the webhooks about a breaker change made by hand, and wait briefly for delivery."""
    notifier = compose.build_notifier(load(database_url=database_url))
    controls.announce_breaker(notifier.notify, summary, details, datetime.now(UTC))
    notifier.stop()


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
        raise fail(exc) from None
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
        who = actor or getpass.getuser()
        store.set(Breaker(BreakerState.OPEN, reason, now, None, who), now)
        typer.echo(_show_breaker(store.get()))
        _announce(f"remediation paused by {who}: {reason}", {"reset": "reconciler breaker reset"}, database_url)
    except ReconcilerError as exc:
        raise fail(exc) from None


@breaker_app.command("reset")
def breaker_reset(
    actor: ActorOpt = None,
    reason: Annotated[str | None, typer.Option("--reason", "-m", help="Why remediation may run again.")] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Close the circuit breaker: remediation runs again."""
    try:
        store = _breaker_store(database_url)
        notifier = compose.build_notifier(load(database_url=database_url))
        controls.reset_breaker(store, notifier.notify, actor or getpass.getuser(), reason, datetime.now(UTC))
        notifier.stop()  # wait briefly for delivery
    except ReconcilerError as exc:
        raise fail(exc) from None
    typer.echo("closed: remediation runs")


@exceptions_app.command("list")
def exceptions_list(
    desired: DesiredOpt = None,
    fmt: TableFormatOpt = "table",
    expiring: Annotated[bool, typer.Option("--expiring", help="Only entries expiring or expired.")] = False,
) -> None:
    """Every policy exception and expected difference (the parity allowlist) with its owner, reason, expiry
    as written (a date holds through that day, UTC) and state (active, expiring, expired).

    Exit code 0, or 2 when any entry is expiring or expired, so a scheduled job can nag.
    """
    check_format(fmt, ("table", "json"))
    try:
        settings = load(desired)
        state = loader.load(settings.desired_dir)
    except ReconcilerError as exc:
        raise fail(exc) from None
    horizon = timedelta(seconds=settings.policy.expiry_warning_s)
    statuses = exceptions.inventory(state, datetime.now(UTC), horizon)
    if expiring:
        statuses = [s for s in statuses if s.state is not exceptions.ExceptionState.ACTIVE]
    typer.echo(views.render_exceptions(statuses, fmt))
    raise typer.Exit(2 if any(s.state is not exceptions.ExceptionState.ACTIVE for s in statuses) else 0)


@db_app.command("upgrade")
def db_upgrade(
    database_url: DatabaseOpt = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Run the Alembic migrations (SQLite or PostgreSQL)."""
    try:
        settings = load(database_url=database_url)
        # Migrations may rewrite large tables: no statement timeout here.
        engine = engines.create_engine(
            settings.database_url, connect_timeout_s=settings.store.connect_timeout_s, statement_timeout_s=0
        )
        before = migrate.current(engine)
        migrate.upgrade(engine, revision)
        after = migrate.current(engine)
    except ReconcilerError as exc:
        raise fail(exc) from None
    url = engines.safe_url(settings.database_url)
    if before == after:
        typer.echo(f"{url}: already at revision {after}")
    else:
        typer.echo(f"{url}: upgraded from {before or 'empty'} to {after}")


@db_app.command("current")
def db_current(database_url: DatabaseOpt = None) -> None:
    """Show the database's revision and the code's."""
    try:
        settings = load(database_url=database_url)
        have = migrate.current(engines.create_engine(settings.database_url))
    except ReconcilerError as exc:
        raise fail(exc) from None
    want = migrate.head()
    typer.echo(f"database: {have or 'empty'}; code: {want}{'' if have == want else ' (run: reconciler db upgrade)'}")
    if have != want:
        raise typer.Exit(1)
