"""The operator interface: parses, calls, renders. Exit codes: 0 clean, 2 drift remains, 1 error.

Shared options and helpers live here; the commands are in commands.py (passes and looks), admin.py
(approvals, breaker, exceptions, database), rollout.py (the daemon's rollout of desired versions),
parity.py (`compare`: environment parity), diff.py (`diff`: any two sources), audit.py (history, its export
and retention, the report of what runs where) and adoption.py (`adopt`, and its git side)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from reconciler.errors import ReconcilerError
from reconciler.observe import logging as logs
from reconciler.present import report
from reconciler.settings import Settings, load_settings

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
rollout_app = typer.Typer(help="The daemon's rollout of desired versions in waves.", no_args_is_help=True)
app.add_typer(rollout_app, name="rollout")
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
PageFormatOpt = Annotated[str, typer.Option("--format", "-f", help="table, json, markdown or html (one page).")]
TableFormatOpt = Annotated[str, typer.Option("--format", "-f", help="table or json.")]
TargetOpt = Annotated[list[str] | None, typer.Option("--target", "-t", help="Only this target (repeatable).")]


def fail(exc: ReconcilerError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(1)


def load(desired: Path | None = None, database_url: str | None = None, **extra: Any) -> Settings:
    overrides: dict[str, Any] = dict(extra)
    if desired is not None:
        overrides["desired_dir"] = desired
    if database_url is not None:
        overrides["database_url"] = database_url
    settings = load_settings(**overrides)
    # CLI output goes to stdout; logs go to stderr, quiet unless asked for.
    logs.configure("warning" if settings.log.level == "info" else settings.log.level, settings.log.format)
    return settings


def check_format(fmt: str, formats: tuple[str, ...] = report.FORMATS) -> None:
    if fmt not in formats:
        raise typer.BadParameter(f"must be one of {', '.join(formats)}", param_hint="--format")


ActorOpt = Annotated[str | None, typer.Option("--actor", help="Who decides; defaults to the login name.")]
CommentOpt = Annotated[str | None, typer.Option("--comment", "-m", help="Why.")]


def main() -> None:
    """Entry point. Usage errors exit 1, not click's 2, because 2 means "drift found" to CI gates."""
    from reconciler.runtime import malloc  # noqa: PLC0415 - as _collector_policy's

    malloc.limit_arenas()  # before any thread (runtime/malloc.py)
    _collector_policy()
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


def _collector_policy() -> None:
    """The garbage collector's policy for this process (runtime/heap.py), from RECONCILER_GC__*; a bad setting is
    left for the command to report."""
    from reconciler.errors import ConfigurationError  # noqa: PLC0415
    from reconciler.runtime import heap  # noqa: PLC0415

    try:
        gc_settings = load_settings().gc
    except ConfigurationError:
        return
    heap.install(gc_settings.freeze_after_s, gc_settings.thaw_growth)


if __name__ == "__main__":
    main()


# The commands register themselves on the apps above.
from reconciler.cli import admin, adoption, audit, commands, diff, parity, rollout  # noqa: E402, F401
