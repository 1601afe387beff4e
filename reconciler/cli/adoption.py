"""`reconciler adopt`: make an emergency change permanent, in the manifests or as a git branch for review."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from typing import Annotated

import typer

from reconciler.cli import ActorOpt, DatabaseOpt, DesiredOpt, app, fail, load
from reconciler.desired import adopt
from reconciler.domain.paths import MISSING
from reconciler.domain.values import render
from reconciler.engine import explain
from reconciler.errors import ConfigurationError, ReconcilerError
from reconciler.runtime import adoption, compose
from reconciler.store.adoptions import SqlAdoptionStore
from reconciler.store.ids import SqlIds

ScopeOpt = Annotated[
    str,
    typer.Option(
        "--scope",
        help="target: the target's own manifest. app: the Base it extends, so every environment of the app gets it.",
    ),
]


@app.command("adopt")
def adopt_cmd(
    drift_text: Annotated[
        str, typer.Argument(metavar="DRIFT_ID", help="A drift's id (a whole number), from `reconciler history RUN`.")
    ],
    reason: Annotated[str, typer.Option("--reason", "-m", help="Why the live value is right.")],
    scope: ScopeOpt = "target",
    commit: Annotated[
        bool, typer.Option("--commit", help="Commit the change on a new git branch; the working tree is left alone.")
    ] = False,
    branch: Annotated[str | None, typer.Option("--branch", help="Name of the new branch (with --commit).")] = None,
    push: Annotated[
        str | None, typer.Option("--push", metavar="REMOTE", help="Push the branch to this remote (with --commit).")
    ] = None,
    actor: ActorOpt = None,
    desired: DesiredOpt = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Make a live value the desired one, if live still holds it, and record who adopted it and why: written
    into the manifest (comments and order kept), or with --commit as a commit on a new branch (author: the
    actor; message: reason, target, path, drift, old and new value), pushed with --push, announced with the
    branch and the pull-request link (RECONCILER_GIT__PULL_REQUEST_URL)."""
    try:
        if scope not in ("target", "app"):
            raise ConfigurationError(f"--scope must be target or app, not {scope!r}")
        if (branch or push) and not commit:
            raise ConfigurationError("--branch and --push go with --commit")
        settings = load(desired, database_url)
        store = SqlAdoptionStore(compose.build_store(settings).engine)
        drift_id = int(SqlIds(store.engine).resolve(drift_text, ("drift",)).id)
        drift = store.drift(drift_id)
        if drift is None:
            raise ConfigurationError(f"no drift with id {drift_id}")
        source, adapters = compose.build_offline(settings)
        state = source.current()
        target, path, value = explain.adoptable(state, adapters, drift)
        who = actor or getpass.getuser()
        request = adoption.Adoption(
            target, path, drift["desired"], value, str(drift_id), reason, who, "app" if scope == "app" else "target"
        )
        if commit:
            proposal = adoption.commit(request, state, settings, branch=branch, remote=push)
            where = f"branch {proposal.branch} ({proposal.commit[:12]})"
            notifier = compose.build_notifier(settings)
            adoption.announce(notifier, request, proposal, f"{who} adopted {target.name} {drift['path']} on {where}")
            notifier.stop()
        else:
            files = adopt.adopt(target, path, value, state.root, request.scope)
            where = ", ".join(str(f) for f in files)
        store.record(drift_id, target.name, drift["path"], value, where, who, reason, datetime.now(UTC))
    except ReconcilerError as exc:
        raise fail(exc) from None
    what = "no longer desired" if value is MISSING else f"= {render(value)}"
    if not commit:
        typer.echo(f"adopted by {who}: {target.name} {drift['path']} {what}, written to {where}; commit it")
        return
    typer.echo(f"adopted by {who}: {target.name} {drift['path']} {what}, committed on {where}")
    if proposal.remote:
        typer.echo(f"pushed to {proposal.remote}")
    if proposal.pull_request_url:
        typer.echo(f"open the pull request: {proposal.pull_request_url}")
