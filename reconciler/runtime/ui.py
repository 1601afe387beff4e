"""The web UI's pages, served by the daemon under / (docs/ui.md): fleet, parity matrix of an app, target, history,
approvals, exceptions. Every page is plain HTML (readable without JavaScript); htmx refreshes the live parts
every 2 s by asking the same URL for just that part. The data is what the API, the CLI and the metrics already
compute (report.target_dict, diff/parity.py, engine/explain.py, history, approvals, exceptions)."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from reconciler.classify import exceptions
from reconciler.diff import parity
from reconciler.domain.approval import Approval, ApprovalState
from reconciler.domain.audit import AuditEvent
from reconciler.domain.history import TargetPass
from reconciler.domain.state import DesiredState
from reconciler.engine import explain
from reconciler.engine.rollout import Rollout
from reconciler.engine.run import Reconciler
from reconciler.errors import ConfigurationError, ReconcilerError
from reconciler.ports import BreakerStore
from reconciler.present import audit, fleet, matrix, views, web
from reconciler.present import history as history_views
from reconciler.runtime import compose, controls, ui_actions, ui_controls
from reconciler.runtime.api import Api
from reconciler.runtime.asgi import html_response
from reconciler.runtime.compose import Components
from reconciler.runtime.session import Session, Sessions

ListApprovals = Callable[[Sequence[ApprovalState], int], list[Approval]]
RUN_KINDS = ("dry-run", "apply", "rollback")
RUN_STATUSES = ("clean", "drift", "fixed", "failed", "running")
LAST_PASSES = 10  # on a target's page


@dataclass(frozen=True)
class UiSources:
    """What the pages read, all of it already kept by the daemon."""

    api: Api  # each target's last pass, the version, readiness, mode, approval decisions
    engine: Reconciler  # the desired state in force, adapters, history, the keyed-hash key
    list_approvals: ListApprovals
    drifts: Callable[[str], list[dict[str, Any]]]  # a run's recorded drift (secrets redacted), by run id
    timeline: Callable[[str, str, datetime], list[AuditEvent]]  # a key's story, as `reconciler history -t -p`
    target_passes: Callable[[str, int], list[TargetPass]]  # a target's last passes, newest first
    times: Callable[[str], tuple[float, float]]  # metrics: (drift open since, last good pass) per target
    default_interval_s: float
    secret_file_roots: tuple[Path, ...]
    expiry_warning_s: float
    breaker: BreakerStore  # the circuit breaker's state (reset from /remediation)
    notify: controls.Notify  # the daemon's notifier: a breaker reset is announced as the CLI's is
    rollout_versions: Callable[[str], list[str]]  # desired versions in history starting with a prefix
    undone_by: Callable[[Sequence[str]], dict[str, str]] | None = None  # what a repeat rollback names
    rollout: Rollout | None = None


class Ui:
    def __init__(self, sources: UiSources, sessions: Sessions) -> None:
        self.s = sources
        self.sessions = sessions

    def routes(self) -> list[BaseRoute]:
        pages = [
            ("/", self.fleet),
            ("/apps/{app:path}", self.app),
            ("/targets/{name}/explain", self.explain),
            ("/targets/{name}/timeline", self.timeline),
            ("/targets/{name}", self.target),
            ("/history", self.history),
            ("/history/{run_id}", self.run),
            ("/approvals", self.approvals),
            ("/exceptions", self.exceptions),
            ("/signin", self.signin),
            (ui_controls.PAGE, lambda request: ui_controls.page(self, request)),
        ]
        routes: list[BaseRoute] = [Route(path, self._guarded(handler), methods=["GET"]) for path, handler in pages]
        routes.append(Mount("/static", StaticFiles(directory=web.STATIC), name="static"))
        return routes + ui_actions.routes(self) + ui_controls.routes(self)

    def chrome(self, request: Request, session: Session | None = None) -> dict[str, Any]:
        """What every page shows around its content: who is signed in, the CSRF token, a one-time message."""
        session = session or self.sessions.get(request)
        flash = session.take_flash() if session else None
        query = f"?{request.url.query}" if request.url.query else ""
        return {
            "actor": session.actor if session else None,
            "csrf": session.csrf if session else "",
            "actions_on": self.sessions.actions_on,
            "flash": flash[0] if flash else None,
            "flash_error": bool(flash and flash[1]),
            "here": request.url.path + query,
        }

    def error(self, request: Request, status: int, title: str, message: str) -> Response:
        html = web.page("error.html", title=title, message=message, chrome=self.chrome(request))
        return html_response(html, status)

    def _guarded(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """A page whose data cannot be read says why, as a page: 404 for what does not exist, 503 for a store
        or live system that does not answer."""

        def page(request: Request) -> Response:
            try:
                return handler(request)
            except ConfigurationError as exc:
                return self.error(request, 404, "Not found", str(exc))
            except ReconcilerError as exc:
                return self.error(request, 503, "Not available right now", str(exc))

        return page

    def _render(self, request: Request, template: str, block: str, **context: Any) -> Response:
        """The whole page, or only `block` when htmx asks to refresh it."""
        context["chrome"] = self.chrome(request)
        context["refresh"] = context["chrome"]["here"]
        if request.headers.get("hx-request") == "true":
            return html_response(web.fragment(template, block, **context))
        return html_response(web.page(template, **context))

    def _state(self) -> DesiredState:
        return self.s.engine.desired()

    def fleet(self, request: Request) -> Response:
        q = request.query_params
        filters = fleet.Filters(q.get("environment", ""), q.get("app", ""), q.get("label", ""), q.get("state", ""))
        state = self._state()
        now = datetime.now(UTC)
        view = fleet.build(
            state,
            self.s.api.latest(),
            lambda name: fleet.Times(*(t or None for t in self.s.times(name))),
            default_interval_s=self.s.default_interval_s,
            now=now,
            filters=filters,
            page=_number(q.get("page"), 1),
        )
        ready = self.s.api.readiness()
        return self._render(
            request,
            "fleet.html",
            "tiles",
            title="Fleet",
            fleet=view,
            filters=filters,
            states=fleet.STATES,
            per_page=fleet.APPS_PER_PAGE,
            version={"digest": state.version.digest, "git_commit": state.version.git_commit},
            mode=self.s.api.guard.mode().value,
            remediation=ready.get("remediation"),
            held=self._held_waves(state),
            pages={n: _with(request, page=str(n)) for n in (view.page - 1, view.page + 1) if 1 <= n <= view.pages},
        )

    def _held_waves(self, state: DesiredState) -> list[tuple[int, str]]:
        if self.s.rollout is None:
            return []
        try:
            return [(w.wave, w.why or "") for w in self.s.rollout.status(state) if not w.open]
        except ReconcilerError as exc:
            return [(0, f"unknown: {exc}")]

    def app(self, request: Request) -> Response:
        name = request.path_params["app"]
        state = self._state()
        targets = [t for t in state.targets.values() if fleet.app_of(t) == name]
        if not targets:
            raise ConfigurationError(f"no app named {name} in the desired state")
        environments = sorted({t.environment for t in targets})
        documents, errors = explain.live_documents(state, self.s.engine.adapters, [t.name for t in targets])
        results = [
            r
            for r in parity.compare_environments(
                state, environments, documents=documents, apps=[name], now=datetime.now(UTC)
            )
            if r.app == name
        ]
        only = request.query_params.get("only") == "1"
        view = matrix.build(
            name,
            targets,
            documents,
            errors,
            results,
            self.s.api.latest(),
            baseline=request.query_params.get("baseline", ""),
            only_differing=only,
            hmac_key=self.s.engine.hmac_key,
        )
        return self._render(request, "app.html", "matrix", title=f"Parity of {name}", matrix=view, only=only)

    def approval_dicts(self, states: Sequence[ApprovalState], limit: int, target: str | None = None) -> list[Any]:
        found = [a for a in self.s.list_approvals(states, limit) if target is None or a.target == target]
        return list(json.loads(views.render_approvals(found, "json")))

    def target(self, request: Request) -> Response:
        name = request.path_params["name"]
        state = self._state()
        if name not in state.targets:
            raise ConfigurationError(f"no target named {name} in the desired state")
        view = "inline" if request.query_params.get("view") == "inline" else "side"
        pending = self.approval_dicts([ApprovalState.PENDING], 1000, target=name)
        return self._render(
            request,
            "target.html",
            "drift",
            title=name,
            target=state.targets[name],
            latest=self.s.api.latest([name]).get(name),
            view=view,
            approvals=pending,
            passes=self.s.target_passes(name, LAST_PASSES),
        )

    def explain(self, request: Request) -> Response:
        result = explain.explain_drift(
            self._state(),
            self.s.engine.adapters,
            request.path_params["name"],
            request.query_params.get("path", ""),
            hmac_key=self.s.engine.hmac_key,
            secret_file_roots=self.s.secret_file_roots,
            now=datetime.now(UTC),
        )
        title = f"Why {result.target.name} {result.pointer}"
        return self._render(request, "explain.html", "trace", title=title, result=result)

    def timeline(self, request: Request) -> Response:
        """A key's story: seen, classified, escalated, decided (by whom), written, verified or rolled back,
        gone, adopted; a secret's values are not shown."""
        name, pointer = request.path_params["name"], request.query_params.get("path", "")
        if not pointer.startswith("/"):
            raise ConfigurationError("path must be a JSON Pointer, e.g. ?path=/database/timeout")
        days = min(_number(request.query_params.get("days"), 30), 3650)
        events = self.s.timeline(name, pointer, datetime.now(UTC) - timedelta(days=days))
        rows = [
            {
                "at": e.at.strftime("%Y-%m-%d %H:%M:%S"),
                "event": e.event.value,
                "actor": e.actor,
                "what": f"{web.MASK} (a secret: its values are not shown)" if e.secret else audit.what(e),
                "run": e.run_id,
            }
            for e in events
        ]
        html = web.page(
            "timeline.html",
            title=f"{name} {pointer}",
            target=name,
            pointer=pointer,
            days=days,
            events=rows,
            chrome=self.chrome(request),
        )
        return html_response(html)

    def history(self, request: Request) -> Response:
        q = request.query_params
        limit = min(_number(q.get("limit"), 50), 1000)
        filters = {"kind": q.get("kind", ""), "status": q.get("status", ""), "trigger": q.get("trigger", "")}
        runs = json.loads(
            history_views.render_runs(self.s.engine.store.runs(limit * 5 if any(filters.values()) else limit), "json")
        )
        runs = [
            r
            for r in runs
            if (not filters["kind"] or r["kind"] == filters["kind"])
            and (not filters["status"] or r["status"] == filters["status"])
            and (not filters["trigger"] or filters["trigger"] in r["trigger"])
        ][:limit]
        html = web.page(
            "history.html",
            title="History",
            runs=runs,
            filters={**filters, "limit": limit},
            kinds=RUN_KINDS,
            statuses=RUN_STATUSES,
            chrome=self.chrome(request),
        )
        return html_response(html)

    def run(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        store = self.s.engine.store
        record = store.run(run_id)
        if record is None:
            raise ConfigurationError(f"no run with id {run_id}")
        actions = store.actions(run_id)
        detail = json.loads(
            history_views.render_run_detail(record, store.passes(run_id), actions, "json", self.s.drifts(run_id))
        )
        rows = [
            {**d, "target": a.target, "wrote": a.state.wrote, "secret": a.secret}
            for d, a in zip(detail["actions"], actions, strict=True)
        ]
        wrote = record.kind.value != "dry-run" and any(r["wrote"] for r in rows)
        html = web.page(
            "run.html", title=f"Run {run_id[:12]}", run=detail, actions=rows, wrote=wrote, chrome=self.chrome(request)
        )
        return html_response(html)

    def approvals(self, request: Request) -> Response:
        pending = list(reversed(self.approval_dicts([ApprovalState.PENDING], 1000)))
        decided = [a for a in self.approval_dicts([], 100) if a["state"] != "pending"][:50]
        html = web.page("approvals.html", title="Approvals", approvals=pending + decided, chrome=self.chrome(request))
        return html_response(html)

    def exceptions(self, request: Request) -> Response:
        """Exceptions and expected differences (the parity allowlist), soonest expiry first, as
        `reconciler exceptions list` gives them."""
        statuses = exceptions.inventory(self._state(), datetime.now(UTC), timedelta(seconds=self.s.expiry_warning_s))
        rows = json.loads(views.render_exceptions(statuses, "json"))
        for row in rows:
            row["left"] = _left(row["remaining_s"])
        html = web.page("exceptions.html", title="Exceptions", exceptions=rows, chrome=self.chrome(request))
        return html_response(html)

    def signin(self, request: Request) -> Response:
        html = web.page(
            "signin.html", title="Sign in", next=request.query_params.get("next", "/"), chrome=self.chrome(request)
        )
        return html_response(html)


def _number(text: str | None, default: int) -> int:
    """A positive whole number from a query parameter, or the default."""
    try:
        return max(int(text or default), 1)
    except ValueError:
        return default


def _with(request: Request, **changes: str) -> str:
    """This page's URL with some query parameters changed."""
    return request.url.path + "?" + urllib.parse.urlencode({**request.query_params, **changes})


def _left(seconds: float) -> str:
    return web.age(seconds) if seconds >= 0 else f"expired {web.age(-seconds)} ago"


def build(components: Components, api: Api) -> Ui:
    """The UI over the daemon's parts (runtime/daemon.py builds it beside the API)."""
    c = components
    sources = UiSources(
        api=api,
        engine=c.reconciler,
        list_approvals=c.approvals.list,
        drifts=c.store.drifts,
        timeline=compose.build_timeline(c.store).timeline,
        target_passes=c.store.target_passes,
        times=c.metrics.target_states.times,
        default_interval_s=c.settings.scheduler.default_interval_s,
        secret_file_roots=tuple(c.settings.secrets.file_roots),
        expiry_warning_s=c.settings.policy.expiry_warning_s,
        breaker=c.breaker,
        notify=c.notifier.notify,
        rollout_versions=compose.rollout_versions(c.store),
        undone_by=compose.undone_by(c.store),
        rollout=c.reconciler.gate.rollout,
    )
    return Ui(sources, Sessions(api.token))
