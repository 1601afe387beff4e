"""The web UI served by the daemon's HTTP server on the example: pages, live fragments, sessions, CSRF and secrets.

A real server on a free port, a real SQLite history and the example's live files; requests go over HTTP."""

from __future__ import annotations

import http.client
import json
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from reconciler.domain.run import Mode
from reconciler.runtime.compose import build
from reconciler.runtime.daemon import Daemon
from reconciler.settings import Settings
from reconciler.store import engine as engines
from reconciler.store import migrate

TOKEN = "ui-token-s3cret"
DESIRED_SECRET = "desired-pw-1f0a"
LIVE_SECRET = "live-pw-9c3b"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str
    cookies: list[str] = field(default_factory=list)


@dataclass
class Served:
    daemon: Daemon
    address: tuple[str, int]
    example: Path

    def request(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        cookie: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        conn = http.client.HTTPConnection(*self.address, timeout=10)
        sent = dict(headers or {})
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        if cookie:
            sent["Cookie"] = cookie
        conn.request(method, path, body=body, headers=sent)
        answer = conn.getresponse()
        reply = Reply(
            answer.status,
            {k.lower(): v for k, v in answer.getheaders()},
            answer.read().decode(),
            [v for k, v in answer.getheaders() if k.lower() == "set-cookie"],
        )
        conn.close()
        return reply

    def sign_in(self, actor: str = "alice") -> tuple[str, str]:
        """A session cookie and its CSRF token."""
        reply = self.request("POST", "/signin", {"actor": actor, "token": TOKEN, "next": "/approvals"})
        assert reply.status == 303, reply.body
        cookie = reply.cookies[0].split(";", 1)[0]
        page = self.request("GET", "/approvals", cookie=cookie).body
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        return cookie, csrf.group(1)


def _add_secret(example: Path) -> None:
    """payments-api's database password is a secret; prod desires one, live holds another in both environments."""
    manifest = example / "desired" / "payments-api.yaml"
    text = manifest.read_text().replace(
        "    database: {host: db.prod.internal, pool_size: 20}\n",
        f"    database: {{host: db.prod.internal, pool_size: 20, password: {DESIRED_SECRET}}}\n",
    )
    text = text.replace(
        '  ignore: ["/metadata/**"]\n', '  ignore: ["/metadata/**"]\n  secrets: ["/database/password"]\n', 1
    )
    manifest.write_text(text)
    live = example / "live" / "payments-api" / "prod" / "config.yaml"
    doc = yaml.safe_load(live.read_text())
    doc["database"]["password"] = LIVE_SECRET
    live.write_text(yaml.safe_dump(doc))
    staging = example / "live" / "payments-api" / "staging" / "config.yaml"
    doc = yaml.safe_load(staging.read_text())
    doc["database"]["password"] = LIVE_SECRET  # the same as prod's: "equal" by keyed hash
    staging.write_text(yaml.safe_dump(doc))  # not desired in staging: a drift there too


def _serve(
    settings: Settings, sqlite_url: str, example: Path, token: str | None, *, rollout: bool = False
) -> Iterator[Served]:
    engine = engines.create_engine(sqlite_url)
    migrate.upgrade(engine)
    engine.dispose()
    http_settings = settings.http.model_copy(update={"port": 0, "api_token": SecretStr(token) if token else None})
    components = build(settings.model_copy(update={"http": http_settings}), daemon=rollout)
    daemon = Daemon(components)
    state = components.desired.current()
    daemon._state = state
    components.metrics.init_targets((t.name, t.environment, t.metadata.app or "") for t in state.targets.values())
    for name in sorted(state.targets):
        outcome = components.reconciler.reconcile([name], trigger="test").targets[0]
        daemon.api.record(outcome.target.name, outcome)
    daemon.http.start()
    try:
        yield Served(daemon, daemon.http.address, example)
    finally:
        daemon.http.stop()
        components.notifier.stop()
        components.store.engine.dispose()


@pytest.fixture
def served(settings: Settings, sqlite_url: str, example: Path) -> Iterator[Served]:
    _add_secret(example)
    yield from _serve(settings, sqlite_url, example, TOKEN)


@pytest.fixture
def read_only(settings: Settings, sqlite_url: str, example: Path) -> Iterator[Served]:
    yield from _serve(settings, sqlite_url, example, None)


def test_the_fleet_shows_a_tile_per_target_coloured_by_its_worst_state(served: Served) -> None:
    """Each target is a tile in its app's row and its environment's column, in its worst state; the filters
    keep only what they name; htmx's refresh gets the tiles alone."""
    page = served.request("GET", "/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    states = dict(re.findall(r'data-target="([^"]+)" data-state="([^"]+)"', page.body))
    assert states == {
        "checkout-staging": "reversible",
        "payments-api-staging": "reversible",  # the password live only (see _add_secret)
        "payments-api-prod": "escalated",
    }
    assert "drifting for" in page.body and "desired version" in page.body
    only = served.request("GET", "/?state=escalated").body
    assert re.findall(r'data-target="([^"]+)"', only) == ["payments-api-prod"]
    assert re.findall(r'data-target="([^"]+)"', served.request("GET", "/?label=team%3Dcheckout").body) == [
        "checkout-staging"
    ]
    fragment = served.request("GET", "/", headers={"HX-Request": "true"}).body
    assert fragment.lstrip().startswith('<div id="tiles"') and "<html" not in fragment


def test_every_response_carries_a_strict_content_security_policy(served: Served) -> None:
    """Pages load nothing from elsewhere and run no inline script; the policy says so to the browser."""
    reply = served.request("GET", "/")
    policy = reply.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "unsafe" not in policy
    assert reply.headers["server"] == "reconciler" and reply.headers["cache-control"] == "no-store"
    assert "<script>" not in reply.body and "style=" not in reply.body
    htmx = served.request("GET", "/static/htmx.min.js")
    assert htmx.status == 200 and "htmx" in htmx.body


def test_the_parity_matrix_marks_differences_against_the_baseline_and_desired(served: Served) -> None:
    """The matrix of an app: an expected difference with its reason, an unexpected one, a drift from desired;
    a secret is masked and compared by keyed hash; "only differing keys" leaves the equal ones out."""
    page = served.request("GET", "/apps/payments-api").body
    rows = dict(re.findall(r'<tr data-key="([^"]+)">(.*?)</tr>', page))
    cells = {k: re.findall(r'<td class="([a-z-]+)', row)[0] for k, row in rows.items()}  # staging's column
    assert cells["/features/new_checkout"] == "expected" and "RFC-112" in page
    assert cells["/log_level"] == "differs"
    assert cells["/database/password"] == "equal"  # same value in both, said by keyed hash only
    assert "••••••" in page and "drifts (escalate)" in page
    only = served.request("GET", "/apps/payments-api?baseline=prod&only=1").body
    assert '<tr data-key="/database/host">' not in only and '<tr data-key="/log_level">' in only  # host: env-specific
    assert served.request("GET", "/apps/nope").status == 404


def test_the_target_page_shows_the_diff_the_explain_trace_and_pending_approvals(served: Served) -> None:
    """Side by side and inline; `why?` gives the same trace as `reconciler explain`; the pending approval is
    listed, with a prompt to sign in to decide."""
    page = served.request("GET", "/targets/payments-api-prod").body
    assert 'data-path="/database/pool_size"' in page and "escalate" in page and "sign in to decide" in page
    inline = served.request("GET", "/targets/payments-api-prod?view=inline").body
    assert '<div class="del">' in inline and '<div class="ins">' in inline
    why = served.request(
        "GET", "/targets/payments-api-prod/explain?path=/database/timeout", headers={"HX-Request": "true"}
    ).body
    assert "exception default/0" in why and "<html" not in why
    assert served.request("GET", "/targets/nope").status == 404
    assert served.request("GET", "/targets/payments-api-prod/explain?path=nope").status == 404


def test_no_secret_value_reaches_any_page(served: Served) -> None:
    """Neither the desired nor the live value of a secret appears in a page, fragment or API answer."""
    paths = [
        "/",
        "/apps/payments-api",
        "/apps/payments-api?only=1",
        "/targets/payments-api-prod",
        "/targets/payments-api-prod?view=inline",
        "/targets/payments-api-prod/explain?path=/database/password",
        "/history",
        "/approvals",
        "/exceptions",
        "/api/v1/drift",
        "/api/v1/status",
    ]
    runs = re.findall(r'data-run="([^"]+)"', served.request("GET", "/history").body)
    assert runs
    for path in paths + [f"/history/{run}" for run in runs]:
        body = served.request("GET", path).body
        assert DESIRED_SECRET not in body and LIVE_SECRET not in body, path


def test_actions_need_a_session_and_its_csrf_token(served: Served) -> None:
    """Approving without a session, or with a session but without (or with a wrong) CSRF token, is refused
    and changes nothing; a wrong API token starts no session; the cookie is HttpOnly and SameSite=Strict."""
    approvals = served.daemon.c.approvals.list()
    pending = next(a for a in approvals if a.pointer == "/database/pool_size")
    action = f"/approvals/{pending.id}/approve"
    assert served.request("POST", action, {"csrf": "x"}).status == 403
    assert served.request("POST", "/signin", {"actor": "mallory", "token": "wrong"}).status == 401
    reply = served.request("POST", "/signin", {"actor": "alice", "token": TOKEN, "next": "//evil.example/"})
    assert reply.status == 303 and reply.headers["location"] == "/"
    flags = reply.cookies[0].lower()
    assert "httponly" in flags and "samesite=strict" in flags and TOKEN not in reply.headers["location"]
    cookie, csrf = served.sign_in()
    assert served.request("POST", action, {}, cookie=cookie).status == 403
    assert served.request("POST", action, {"csrf": csrf + "x"}, cookie=cookie).status == 403
    assert served.daemon.c.approvals.list()[0].state.value == "pending"
    done = served.request("POST", action, {"csrf": csrf, "comment": "pool resized", "next": "/approvals"}, cookie)
    assert done.status == 303
    decided = next(a for a in served.daemon.c.approvals.list() if a.id == pending.id)
    assert decided.state.value == "approved" and decided.actor == "alice" and decided.comment == "pool resized"
    assert "approved by alice" in served.request("GET", "/approvals", cookie=cookie).body


def test_a_rollback_from_the_ui_previews_first_then_restores_the_live_file(served: Served) -> None:
    """After an apply run, the run's page offers a rollback: its preview is a dry run that writes nothing, and
    confirming it puts the live file back as it was; the run records who did it."""
    live = served.example / "live" / "checkout" / "staging.env"
    before = live.read_text()
    outcome = served.daemon.c.reconciler.reconcile(["checkout-staging"], mode=Mode.APPLY, trigger="test")
    assert live.read_text() != before
    cookie, csrf = served.sign_in("bob")
    run_page = served.request("GET", f"/history/{outcome.run_id}", cookie=cookie).body
    assert "Roll back this run" in run_page
    preview = served.request("POST", f"/history/{outcome.run_id}/rollback/preview", {"csrf": csrf}, cookie)
    assert preview.status == 200 and "nothing was written" in preview.body and "Roll back for real" in preview.body
    assert live.read_text() != before
    assert served.request("POST", f"/history/{outcome.run_id}/rollback", {}, cookie).status == 403
    done = served.request("POST", f"/history/{outcome.run_id}/rollback", {"csrf": csrf}, cookie)
    assert done.status == 200 and "fixed" in done.body
    assert live.read_text() == before
    runs = served.daemon.c.store.runs(5)
    assert runs[0].kind.value == "rollback" and runs[0].trigger == "ui:bob"
    assert served.request("POST", "/history/nope/rollback", {"csrf": csrf}, cookie).status == 404


def test_history_lists_runs_with_filters(served: Served) -> None:
    """Runs are listed newest first and filtered by kind and status; a run's page lists its passes and drift."""
    page = served.request("GET", "/history").body
    runs = re.findall(r'data-run="([^"]+)"', page)
    assert len(runs) == 3
    assert served.request("GET", "/history?kind=apply").body.count("data-run=") == 0
    assert served.request("GET", "/history?status=drift").body.count("data-run=") == 3
    detail = served.request("GET", f"/history/{runs[0]}").body
    assert "Passes" in detail and "Drift" in detail
    assert served.request("GET", "/history/nope").status == 404


def test_exceptions_and_the_parity_allowlist_are_listed_soonest_expiry_first(served: Served) -> None:
    page = served.request("GET", "/exceptions").body
    assert "INC-4711" in page and "RFC-112" in page and "payments-oncall" in page


def test_without_an_api_token_the_ui_is_read_only(read_only: Served) -> None:
    """No token: pages are readable, no sign-in form is offered and no session can start."""
    page = read_only.request("GET", "/")
    assert page.status == 200 and "read-only (no API token set)" in page.body
    assert read_only.request("POST", "/signin", {"actor": "a", "token": ""}).status == 403
    assert 'type="password"' not in read_only.request("GET", "/signin").body
    answer = json.loads(read_only.request("GET", "/api/v1/status").body)
    assert answer["targets_by_status"]


def test_a_keys_timeline_shows_its_story_with_who_decided(served: Served) -> None:
    """The target page links each drift to its key's timeline: seen and escalated at the first pass, then
    the approval given in the UI with the name signed in; a secret's timeline shows no value."""
    assert (
        "/targets/payments-api-prod/timeline?path=/database/pool_size"
        in served.request("GET", "/targets/payments-api-prod").body
    )
    pending = next(a for a in served.daemon.c.approvals.list() if a.pointer == "/database/pool_size")
    cookie, csrf = served.sign_in("carol")
    served.request("POST", f"/approvals/{pending.id}/approve", {"csrf": csrf}, cookie)
    page = served.request("GET", "/targets/payments-api-prod/timeline?path=/database/pool_size").body
    events = re.findall(r'data-event="([a-z]+)"', page)
    assert {"seen", "escalated", "approved"} <= set(events), events
    assert "carol" in page
    secret = served.request("GET", "/targets/payments-api-prod/timeline?path=/database/password").body
    assert "seen" in secret and DESIRED_SECRET not in secret and LIVE_SECRET not in secret and "redacted" not in secret
    assert served.request("GET", "/targets/payments-api-prod/timeline?path=nope").status == 404
