"""`reconciler compare`: environment parity of every app, pairwise or against a baseline, as a CI gate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from reconciler.classify import exceptions
from reconciler.cli import DesiredOpt, PageFormatOpt, app, check_format, fail, load
from reconciler.diff import allowlist, parity, significance
from reconciler.domain.state import DesiredState
from reconciler.engine import explain
from reconciler.errors import ConfigurationError, ReconcilerError
from reconciler.present import parity as parity_views
from reconciler.present import report as report_views
from reconciler.runtime import compose


class FailOn(StrEnum):
    UNEXPECTED = "unexpected"  # any difference no active allowlist entry covers
    SIGNIFICANT = "significant"  # ... in a pair whose drift is above the threshold


def threshold_option(value: str) -> str:
    """Check --threshold as the exact fraction it will be compared as; usage errors exit 1."""
    try:
        significance.parse(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


ThresholdOpt = Annotated[
    str,
    typer.Option(
        callback=threshold_option,
        help="Drift above which a pair is significant: a fraction (0.1 = 10%) or a percentage (7.2%), "
        "compared exactly.",
    ),
]


@app.command("compare")
def compare_cmd(
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="An environment (repeatable); default: every one.")
    ] = None,
    app_: Annotated[list[str] | None, typer.Option("--app", help="Only this app (glob, repeatable).")] = None,
    baseline: Annotated[
        str | None, typer.Option("--baseline", "-b", help="Compare every other environment with this one only.")
    ] = None,
    desired_only: Annotated[
        bool, typer.Option("--desired", help="Compare the desired state instead of live state.")
    ] = False,
    threshold: ThresholdOpt = "0.1",
    fail_on: Annotated[
        FailOn, typer.Option("--fail-on", help="Exit 2 on any unexpected difference, or only on significant drift.")
    ] = FailOn.UNEXPECTED,
    desired: DesiredOpt = None,
    fmt: PageFormatOpt = "table",
) -> None:
    """Does staging match production? Compare every pair of environments for every app, or with --baseline
    each environment with the baseline only (one row per drifted key, like the matrix a person draws).

    Expired and stale allowlist entries (expected_differences) are reported. Exit code 0 when the gate passes,
    2 when it fails (--fail-on unexpected: any unexpected difference; significant: an unexpected difference in
    a pair whose drift is above --threshold), 1 when a target could not be read or an environment is unknown.
    """
    check_format(fmt, report_views.PAGE_FORMATS)
    now = datetime.now(UTC)
    environments, results, errors = _compared(desired, env, app_, baseline, desired_only, threshold, now)
    report = parity_views.ParityReport(
        "desired state" if desired_only else "live state",
        environments,
        results,
        parity.findings(results, now),
        errors,
        baseline,
        fail_on.value,
    )
    typer.echo(parity_views.render_parity(report, fmt))
    if errors:
        raise typer.Exit(1)
    raise typer.Exit(2 if report.failed else 0)


def _compared(
    desired: Path | None,
    env: list[str] | None,
    apps: list[str] | None,
    baseline: str | None,
    desired_only: bool,
    threshold: str,
    now: datetime,
) -> tuple[list[str], list[Any], dict[str, str]]:
    """The environments compared, each pair's result, and the targets whose live state could not be read."""
    try:
        settings = load(desired)
        source, adapters = compose.build_offline(settings)
        state = source.current()
        environments = [e for e in (env or parity.environments_of(state)) if e != baseline]
        parity.check_environments(state, [*environments, *([baseline] if baseline else [])])
        if baseline and not environments:
            raise ConfigurationError(f"no environment besides the baseline {baseline} to compare with it")
        documents: dict[str, dict[str, Any]] | None = None
        errors: dict[str, str] = {}
        if not desired_only:
            chosen = parity.pairs(state, environments, apps or (), baseline)
            names = sorted({t.name for _, a, b in chosen for t in (a, b)})
            documents, errors = explain.live_documents(state, adapters, names)
        results = parity.compare_environments(
            state, environments, documents=documents, apps=apps or (), threshold=threshold, baseline=baseline, now=now
        )
    except ReconcilerError as exc:
        raise fail(exc) from None
    return environments, list(results), errors


def policy_warnings(state: DesiredState, now: datetime) -> list[str]:
    """What `validate` warns about in policies without failing: expired exceptions and expected differences,
    and expected differences that are stale on the desired state (no pair of environments they are about
    differs at their paths, or there is no such pair at all)."""
    warnings = [
        f"{s.kind.value.replace('_', ' ')} {s.id} expired {s.exception.expires_text}: {s.exception.reason}"
        for s in exceptions.inventory(state, now, timedelta(0))
        if s.state is exceptions.ExceptionState.EXPIRED
    ]
    results = parity.compare_environments(state, parity.environments_of(state), now=now)
    warnings += [f"expected difference {f.message}" for f in parity.findings(results, now) if f.state == "stale"]
    judged = {u.entry.id for r in results for u in r.uses}
    warnings += [
        f"expected difference {e.id} is about no pair of targets (apps {', '.join(e.spec.apps)}"
        + (f", environments {', '.join(e.spec.environments)})" if e.spec.environments else ")")
        for e in allowlist.entries(state)
        if e.id not in judged
    ]
    return warnings
