"""The web UI's remediation page (/remediation): the circuit breaker's state and the rollout's waves, with reset
and release for a signed-in user. The forms go through the same session and CSRF check as approve, and through
runtime/controls.py, the code `reconciler breaker reset` and `reconciler rollout release` run: the actor is
the name given at sign-in."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from reconciler.errors import ReconcilerError
from reconciler.observe import logging as logs
from reconciler.present import web
from reconciler.runtime import controls
from reconciler.runtime.asgi import html_response
from reconciler.runtime.session import Session
from reconciler.runtime.ui_actions import signed

if TYPE_CHECKING:
    from reconciler.runtime.ui import Ui

log = logs.get_logger("reconciler.ui")
PAGE = "/remediation"


def routes(ui: Ui) -> list[BaseRoute]:
    return [
        Route("/breaker/reset", signed(ui, _reset), methods=["POST"]),
        Route("/rollout/release", signed(ui, _release), methods=["POST"]),
    ]


def page(ui: Ui, request: Request) -> Response:
    """The breaker (open or closed, why, since when, by whom) and each wave of the desired version in force."""
    now = datetime.now(UTC)
    breaker = ui.s.breaker.get()
    state = ui.s.engine.desired()
    waves: list[dict[str, Any]] = []
    rollout_error = None
    if ui.s.rollout is not None:
        try:
            waves = [_wave(w) for w in ui.s.rollout.status(state)]
        except ReconcilerError as exc:
            rollout_error = str(exc)
    html = web.page(
        "remediation.html",
        title="Remediation",
        breaker={
            "open": breaker.is_open(now),
            "reason": breaker.reason,
            "opened_at": breaker.opened_at,
            "until": breaker.until,
            "changed_by": breaker.changed_by,
        },
        version={"digest": state.version.digest, "git_commit": state.version.git_commit},
        rollout_on=ui.s.rollout is not None,
        waves=waves,
        held=any(not w["open"] for w in waves),
        rollout_error=rollout_error,
        chrome=ui.chrome(request),
    )
    return html_response(html)


def _wave(wave: Any) -> dict[str, Any]:
    return {k: getattr(wave, k) for k in ("wave", "targets", "done", "pending", "failed", "open", "why")}


def _reason(form: FormData) -> str:
    return str(form.get("reason") or "").strip()


def _reset(ui: Ui, request: Request, session: Session, form: FormData) -> Response:
    del request
    reason = _reason(form)
    if not reason:
        session.flash = ("a reset needs a reason: why remediation may run again", True)
        return RedirectResponse(PAGE, 303)
    try:
        controls.reset_breaker(ui.s.breaker, ui.s.notify, session.actor, reason, datetime.now(UTC))
    except ReconcilerError as exc:
        session.flash = (f"the breaker could not be reset: {exc}", True)
        return RedirectResponse(PAGE, 303)
    log.warning("circuit breaker reset from the web UI", actor=session.actor, reason=reason)
    session.flash = (f"breaker reset by {session.actor}: remediation runs", False)
    return RedirectResponse(PAGE, 303)


def _release(ui: Ui, request: Request, session: Session, form: FormData) -> Response:
    del request
    if ui.s.rollout is None:
        session.flash = ("this daemon follows no rollout", True)
        return RedirectResponse(PAGE, 303)
    try:
        digest, released = controls.release_rollout(
            ui.s.rollout,
            ui.s.rollout_versions,
            ui.s.engine.desired(),
            str(form.get("version") or ""),
            session.actor,
            _reason(form),
        )
    except ReconcilerError as exc:
        session.flash = (f"not released: {exc}", True)
        return RedirectResponse(PAGE, 303)
    session.flash = (
        f"released the rollout of {digest[:12]} by {session.actor}: {released} unsettled target(s) count as done",
        False,
    )
    return RedirectResponse(PAGE, 303)
