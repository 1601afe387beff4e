"""The web UI's forms that change state: sign in and out, approve or reject an escalation, roll back a run or an
action (its dry-run preview first). Each needs a session started with the API token and the session's CSRF
token in the form; the actor recorded is the name given at sign-in. The token is posted, never put in a URL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from reconciler.errors import ConfigurationError, ReconcilerError
from reconciler.observe import logging as logs
from reconciler.present import report, web
from reconciler.runtime import undo
from reconciler.runtime.asgi import html_response
from reconciler.runtime.session import Session, Sessions, local_path

if TYPE_CHECKING:
    from reconciler.runtime.ui import Ui

log = logs.get_logger("reconciler.ui")
FORM_TIMEOUT_S = 10.0
MAX_FORM = 16 * 1024
TRIGGER = 32  # the history column's width


def routes(ui: Ui) -> list[BaseRoute]:
    return [
        Route("/signin", _signin(ui), methods=["POST"]),
        Route("/signout", signed(ui, _signout), methods=["POST"]),
        Route("/approvals/{id}/{verdict:str}", signed(ui, _decide), methods=["POST"]),
        Route("/history/{undo}/rollback/preview", signed(ui, _rollback_preview), methods=["POST"]),
        Route("/history/{undo}/rollback", signed(ui, _rollback), methods=["POST"]),
    ]


async def _form(request: Request) -> FormData | None:
    """The posted form, bounded in size and time; None when it is too big, too slow or not a form."""
    try:
        length = int(request.headers.get("content-length") or -1)
    except ValueError:
        return None
    if not 0 <= length <= MAX_FORM:
        return None
    try:
        form = request.form(max_files=0, max_fields=20, max_part_size=MAX_FORM)
        return await asyncio.wait_for(form, FORM_TIMEOUT_S)
    except (TimeoutError, HTTPException):  # too slow, or a malformed multipart body
        return None


Handler = Callable[["Ui", Request, Session, FormData], Response]


def signed(ui: Ui, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A form that needs a session and its CSRF token: refused with 403 otherwise, before anything is read."""

    async def endpoint(request: Request) -> Response:
        session = ui.sessions.get(request)
        if session is None:
            why = "sign in first" if ui.sessions.actions_on else "actions are off: no API token is set"
            return ui.error(request, 403, "Not signed in", why)
        form = await _form(request)
        if form is None or not Sessions.csrf_ok(session, form.get("csrf")):
            return ui.error(request, 403, "Refused", "the form's CSRF token is missing or wrong; reload the page")
        return await run_in_threadpool(handler, ui, request, session, form)

    return endpoint


def _signin(ui: Ui) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        form = await _form(request)
        if form is None:
            return ui.error(request, 400, "Refused", "a sign-in form is expected")
        actor, token = str(form.get("actor") or "").strip(), str(form.get("token") or "")
        if not ui.sessions.actions_on:
            return ui.error(request, 403, "Actions are off", "no API token is set (RECONCILER_HTTP__API_TOKEN)")
        started = ui.sessions.start(actor, token) if actor else None
        if started is None:
            log.warning("web sign-in refused", client=request.client.host if request.client else None)
            return ui.error(request, 401, "Sign-in refused", "a name and the daemon's API token are required")
        sid, session = started
        log.info("web sign-in", actor=session.actor)
        response = RedirectResponse(local_path(form.get("next")), 303)
        Sessions.set_cookie(response, request, sid)
        return response

    return endpoint


def _signout(ui: Ui, request: Request, session: Session, form: FormData) -> Response:
    del session, form
    ui.sessions.end(request)
    response = RedirectResponse("/", 303)
    Sessions.clear_cookie(response)
    return response


def _decide(ui: Ui, request: Request, session: Session, form: FormData) -> Response:
    verdict = request.path_params["verdict"]
    if verdict not in ("approve", "reject"):
        return ui.error(request, 404, "Not found", f"no such decision: {verdict}")
    comment = str(form.get("comment") or "").strip() or None
    status, body = ui.s.api.decide(
        request.path_params["id"], approve=verdict == "approve", actor=session.actor, comment=comment
    )
    if status == 200:
        session.flash = (f"{body['state']} by {session.actor}: {body['target']} {body['path']}", False)
    else:
        session.flash = (body["error"], True)
    return RedirectResponse(local_path(form.get("next"), "/approvals"), 303)


def _rollback_preview(ui: Ui, request: Request, session: Session, form: FormData) -> Response:
    del form
    return _undo(ui, request, session, dry_run=True)


def _rollback(ui: Ui, request: Request, session: Session, form: FormData) -> Response:
    del form
    return _undo(ui, request, session, dry_run=False)


def _undo(ui: Ui, request: Request, session: Session, *, dry_run: bool) -> Response:
    """Roll back a run or one action through the same code as `reconciler rollback` (the gate decides whether
    it may write); the run records `ui:<actor>` as its trigger."""
    target = request.path_params["undo"]
    trigger = f"ui:{session.actor}"[:TRIGGER]
    try:
        result = undo.rollback(ui.s.engine, target, dry_run=dry_run, trigger=trigger, undone_by=ui.s.undone_by)
    except ConfigurationError as exc:
        return ui.error(request, 404, "Cannot roll back", str(exc))
    except ReconcilerError as exc:
        return ui.error(request, 503, "Cannot roll back right now", str(exc))
    if not dry_run:
        log.warning("rollback from the web UI", undo=target, actor=session.actor, run_id=result.run_id)
    data: dict[str, Any] = report.run_dict(result, ui.s.engine.hmac_key)
    html = web.page(
        "rollback.html",
        title=f"Roll back {target[:12]}",
        result=data,
        undo=target,
        preview=dry_run,
        chrome=ui.chrome(request, session),
    )
    return html_response(html)
