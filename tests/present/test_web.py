from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from reconciler.domain.manifest import DesiredVersion, Target
from reconciler.domain.state import DesiredState
from reconciler.present import fleet, web

NOW = datetime(2026, 12, 1, tzinfo=UTC)
EVERYTHING = fleet.Filters()

PASS = {"status": "drift", "drift": [{"class": "acceptable"}, {"class": "reversible"}]}


def test_a_tile_takes_the_worst_state_that_applies() -> None:
    """Escalated beats reversible beats acceptable; a failed pass is failing; no pass yet is waiting."""
    fresh = fleet.Times(open_since=None, last_success=1000.0)
    assert fleet.tile_state(None, fresh, 60, 1010) == "waiting"
    assert fleet.tile_state({"status": "clean", "drift": []}, fresh, 60, 1010) == "in-sync"
    assert fleet.tile_state({"status": "drift", "drift": [{"class": "acceptable"}]}, fresh, 60, 1010) == "acceptable"
    assert fleet.tile_state(PASS, fresh, 60, 1010) == "reversible"
    escalated = {**PASS, "drift": [*PASS["drift"], {"class": "escalate"}]}
    assert fleet.tile_state(escalated, fresh, 60, 1010) == "escalated"
    assert fleet.tile_state({**escalated, "status": "failed"}, fresh, 60, 1010) == "failing"


def test_a_tile_is_stale_when_its_last_good_pass_is_older_than_twice_its_interval() -> None:
    """Stale outranks everything: whatever the last pass said, it is old news."""
    times = fleet.Times(open_since=None, last_success=1000.0)
    assert fleet.tile_state(PASS, times, 60, 1000 + 120) == "reversible"
    assert fleet.tile_state(PASS, times, 60, 1000 + 121) == "stale"
    assert fleet.tile_state({"status": "failed", "drift": []}, times, 60, 1000 + 121) == "stale"


def test_a_secret_side_is_masked_whatever_it_holds() -> None:
    """A drift marked secret, or a journaled (redacted) value, shows as the mask; absent as (absent)."""
    secret = {"secret": True, "desired": {"$redacted": "hmac-sha256:abc"}, "desired_missing": False}
    assert web.side(secret, "desired") == web.MASK
    journaled = {"after": {"$redacted": "hmac-sha256:abc"}, "after_missing": False}
    assert web.side(journaled, "after") == web.MASK
    assert web.side({"before": None, "before_missing": True}, "before") == web.ABSENT
    assert web.side({"after": {"a": 1}, "after_missing": False}, "after") == '{"a": 1}'


def test_ages_read_like_people_say_them() -> None:
    assert [web.age(s) for s in (None, 5, 200, 3 * 3600 + 120, 2 * 86400 + 3600)] == [
        "-",
        "5s",
        "3m 20s",
        "3h 2m",
        "2d 1h",
    ]


def test_a_big_fleet_is_shown_a_page_of_apps_at_a_time_with_counts_over_all() -> None:
    """200 apps: the first page has the first 80, the last page the rest; the counts cover every target, and
    a filter pages over what it keeps."""
    targets = {
        f"app{i:03}-{env}": Target.model_validate(
            {
                "kind": "Target",
                "metadata": {"name": f"app{i:03}-{env}", "app": f"app{i:03}", "environment": env},
                "spec": {"source": {"adapter": "file", "path": "/x"}, "desired": {"a": 1}},
            }
        )
        for i in range(200)
        for env in ("staging", "prod")
    }
    state = DesiredState(Path("."), DesiredVersion("f" * 64), targets, ())
    latest = {name: {"status": "clean", "drift": [], "at": NOW.isoformat(), "error": None} for name in targets}

    def view(page: int, filters: fleet.Filters = EVERYTHING) -> fleet.Fleet:
        return fleet.build(
            state, latest, lambda _: fleet.Times(None, None), default_interval_s=60, now=NOW, filters=filters, page=page
        )

    first, last = view(1), view(99)
    assert first.apps[0] == "app000" and len(first.apps) == fleet.APPS_PER_PAGE and first.pages == 3
    assert last.page == 3 and last.apps[-1] == "app199" and len(last.apps) == 200 - 2 * fleet.APPS_PER_PAGE
    assert first.counts["in-sync"] == 400 and first.environments == ["staging", "prod"]
    only_prod = view(1, fleet.Filters(environment="prod"))
    assert only_prod.environments == ["prod"] and len(only_prod.grid) == fleet.APPS_PER_PAGE
