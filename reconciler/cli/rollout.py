"""The rollout of desired versions in the daemon: where each wave is, and releasing a held one."""

from __future__ import annotations

import getpass
import json
from typing import Annotated

import typer

from reconciler.cli import ActorOpt, DatabaseOpt, DesiredOpt, TableFormatOpt, check_format, fail, load, rollout_app
from reconciler.desired.source import DesiredSource
from reconciler.domain.rollout import WaveState
from reconciler.errors import ReconcilerError
from reconciler.observe.metrics import Metrics
from reconciler.present import report
from reconciler.runtime import compose, controls
from reconciler.store.rollouts import SqlRolloutStore


@rollout_app.command("status")
def rollout_status(
    desired: DesiredOpt = None,
    database_url: DatabaseOpt = None,
    fmt: TableFormatOpt = "table",
) -> None:
    """Each wave of the desired version in force: its targets by progress, and why it is not open yet.

    Exit code 0 when every wave is open, 2 while a wave waits or is held, 1 on error.
    """
    check_format(fmt, ("table", "json"))
    try:
        settings = load(desired, database_url)
        state = DesiredSource(settings.desired_dir).current()
        store = compose.build_store(settings)
        rollout = compose.build_rollout(settings, store, Metrics(), lambda event: None)
        waves = rollout.status(state)
        hold = SqlRolloutStore(store.engine).hold(state.version.digest)
    except ReconcilerError as exc:
        raise fail(exc) from None
    if fmt == "json":
        typer.echo(
            json.dumps(
                {
                    "version": state.version.digest,
                    "git_commit": state.version.git_commit,
                    "held": None if hold is None else {"after_wave": hold.wave, "reason": hold.reason},
                    "waves": [_wave_dict(w) for w in waves],
                },
                indent=2,
            )
        )
    else:
        typer.echo(f"desired version {state.version}")
        rows = [[str(w.wave), str(w.targets), str(w.done), str(w.pending), str(w.failed), _words(w)] for w in waves]
        typer.echo(report.table(["wave", "targets", "done", "pending", "failed", "state"], rows))
    raise typer.Exit(0 if all(w.open for w in waves) else 2)


def _wave_dict(wave: WaveState) -> dict[str, object]:
    return {
        "wave": wave.wave,
        "targets": wave.targets,
        "done": wave.done,
        "pending": wave.pending,
        "failed": wave.failed,
        "open": wave.open,
        "why": wave.why,
    }


def _words(wave: WaveState) -> str:
    return "open" if wave.open else f"closed: {wave.why}"


@rollout_app.command("release")
def rollout_release(
    version: Annotated[str, typer.Argument(help="The held desired version (its digest, or a prefix of it).")],
    reason: Annotated[str, typer.Option("--reason", "-m", help="Why the later waves may go on.")],
    actor: ActorOpt = None,
    desired: DesiredOpt = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Release the rollout in force: a failed write's hold is lifted and the targets of its earliest wave that
    have not settled (failed, waiting, unreadable) count as done, so the next wave is written, within the
    limits; the waves after it still go one by one."""
    try:
        settings = load(desired, database_url)
        state = DesiredSource(settings.desired_dir).current()
        store = compose.build_store(settings)
        notifier = compose.build_notifier(settings)
        rollout = compose.build_rollout(settings, store, Metrics(), notifier.notify)
        versions = SqlRolloutStore(store.engine).versions
        digest, released = controls.release_rollout(
            rollout, versions, state, version, actor or getpass.getuser(), reason
        )
        notifier.stop()
    except ReconcilerError as exc:
        raise fail(exc) from None
    typer.echo(
        f"released the rollout of {digest[:12]}: {released} unsettled target(s) count as done; later waves go on"
    )
