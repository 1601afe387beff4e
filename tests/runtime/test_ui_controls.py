"""The web UI's remediation page and a target's last passes: the breaker reset and the rollout release behind a
session and its CSRF token, recorded with the signed-in name, as the CLI records them.

A real server on a free port over the example, as in test_ui.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from reconciler.domain.breaker import Breaker, BreakerState
from reconciler.domain.rollout import Hold
from reconciler.settings import Settings
from reconciler.store import tables as t
from tests.runtime.test_ui import TOKEN, Served, _serve


@pytest.fixture
def served(settings: Settings, sqlite_url: str, example: Path) -> Iterator[Served]:
    """The example served by a daemon that follows the rollout of desired versions."""
    yield from _serve(settings, sqlite_url, example, TOKEN, rollout=True)


@pytest.fixture
def read_only(settings: Settings, sqlite_url: str, example: Path) -> Iterator[Served]:
    yield from _serve(settings, sqlite_url, example, None, rollout=True)


def _open_breaker(served: Served) -> None:
    now = datetime.now(UTC)
    served.daemon.c.breaker.set(Breaker(BreakerState.OPEN, "too many failed writes", now, None, "error budget"), now)


def test_the_breaker_is_shown_and_reset_with_a_reason_by_the_signed_in_name(served: Served) -> None:
    """An open breaker shows its reason and who opened it; a reset needs the session, its CSRF token and a
    reason, and is recorded (state, reason, actor) in the breaker's history as `reconciler breaker reset` does."""
    _open_breaker(served)
    page = served.request("GET", "/remediation").body
    assert 'data-breaker="open"' in page and "too many failed writes" in page and "error budget" in page
    assert "/breaker/reset" not in page and "sign in to reset" in page
    refused = served.request("POST", "/breaker/reset", {"reason": "fixed", "csrf": "x"})
    assert refused.status == 403
    cookie, csrf = served.sign_in("carol")
    assert served.request("POST", "/breaker/reset", {"reason": "x", "csrf": "wrong"}, cookie=cookie).status == 403
    empty = served.request("POST", "/breaker/reset", {"reason": "  ", "csrf": csrf}, cookie=cookie)
    assert empty.status == 303 and served.daemon.c.breaker.get().is_open(datetime.now(UTC))
    assert "a reset needs a reason" in served.request("GET", "/remediation", cookie=cookie).body
    assert "/breaker/reset" in served.request("GET", "/remediation", cookie=cookie).body
    reset = served.request("POST", "/breaker/reset", {"reason": "INC-9 resolved", "csrf": csrf}, cookie=cookie)
    assert reset.status == 303 and reset.headers["location"] == "/remediation"
    breaker = served.daemon.c.breaker.get()
    assert (breaker.state, breaker.changed_by, breaker.reason) == (BreakerState.CLOSED, "carol", "INC-9 resolved")
    with served.daemon.c.store.engine.connect() as conn:
        last = conn.execute(sa.select(t.breaker_events).order_by(t.breaker_events.c.id.desc())).mappings().first()
    assert last is not None and (last["state"], last["changed_by"], last["reason"]) == (
        "closed",
        "carol",
        "INC-9 resolved",
    )
    after = served.request("GET", "/remediation", cookie=cookie).body
    assert 'data-breaker="closed"' in after and "breaker reset by carol" in after


def test_a_held_rollout_is_released_from_the_ui_by_the_signed_in_name(served: Served) -> None:
    """A held wave shows as closed with its reason; releasing it needs a session, its CSRF token and a reason,
    and lifts the hold with the actor recorded, as `reconciler rollout release` does."""
    rollout = served.daemon.c.reconciler.gate.rollout
    assert rollout is not None
    state = served.daemon.c.reconciler.desired()
    digest = state.version.digest
    first = min(t.wave for t in state.targets.values())
    rollout.store.set_hold(Hold(digest, first, "checkout-staging failed to verify", datetime.now(UTC)))
    page = served.request("GET", "/remediation").body
    assert "checkout-staging failed to verify" in page and "sign in to release" in page
    form = {"version": digest, "reason": "staging flake"}
    assert served.request("POST", "/rollout/release", form).status == 403
    cookie, csrf = served.sign_in("dave")
    assert served.request("POST", "/rollout/release", {**form, "csrf": "no"}, cookie=cookie).status == 403
    assert served.request("GET", "/remediation", cookie=cookie).body.count("/rollout/release") == 1
    no_reason = served.request("POST", "/rollout/release", {**form, "reason": "", "csrf": csrf}, cookie=cookie)
    assert no_reason.status == 303 and rollout.store.hold(digest) is not None
    assert "a release needs a reason" in served.request("GET", "/remediation", cookie=cookie).body
    wrong = served.request("POST", "/rollout/release", {**form, "version": "0" * 64, "csrf": csrf}, cookie=cookie)
    assert wrong.status == 303 and rollout.store.hold(digest) is not None
    released = served.request("POST", "/rollout/release", {**form, "csrf": csrf}, cookie=cookie)
    assert released.status == 303 and rollout.store.hold(digest) is None
    with served.daemon.c.store.engine.connect() as conn:
        row = conn.execute(sa.select(t.rollouts).where(t.rollouts.c.version == digest)).mappings().one()
    assert (row["released_by"], row["release_reason"]) == ("dave", "staging flake")
    assert f"released the rollout of {digest[:12]} by dave" in served.request("GET", "/remediation", cookie=cookie).body


def test_without_an_api_token_the_remediation_page_offers_no_action(read_only: Served) -> None:
    """With no API token the page shows the breaker and the waves, and no form, nor a sign-in hint."""
    _open_breaker(read_only)
    page = read_only.request("GET", "/remediation")
    assert page.status == 200 and 'data-breaker="open"' in page.body and "data-wave=" in page.body
    assert "<form" not in page.body.split("</header>", 1)[1] and "sign in to" not in page.body
    assert read_only.request("POST", "/breaker/reset", {"reason": "r", "csrf": ""}).status == 403


def test_the_target_page_lists_its_last_passes_newest_first(served: Served) -> None:
    """A target's page lists its recent passes from history (run, kind, trigger, status), newest first, and the
    live fragment carries them too."""
    name = "payments-api-prod"
    live = served.example / "live" / "payments-api" / "prod" / "config.yaml"
    live.write_text(live.read_text() + "extra_key: 1\n")  # seen anew: a pass over unchanged state is not recorded
    served.daemon.c.reconciler.reconcile([name], trigger="second")
    page = served.request("GET", f"/targets/{name}").body
    assert "Last passes" in page
    rows = page.split("Last passes", 1)[1]
    assert rows.count("data-pass=") == 2
    assert rows.index("second") < rows.index(">test<")
    passes = served.daemon.c.store.target_passes(name, 10)
    assert [p.trigger for p in passes] == ["second", "test"]
    assert all(f'data-pass="{p.run_id}"' in rows for p in passes)
    fragment = served.request("GET", f"/targets/{name}", headers={"HX-Request": "true"}).body
    assert fragment.count("data-pass=") == 2
