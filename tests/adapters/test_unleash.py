"""The unleash adapter against a real unleash-server (npm) with its own PostgreSQL database."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from reconciler.adapters.unleash import UnleashAdapter
from reconciler.cli import app
from reconciler.domain.paths import MISSING
from reconciler.errors import AccessDenied, ApplyError, ConfigurationError, ConflictError, DiscoveryError
from reconciler.ports import Change, ChangeResult
from reconciler.settings import AdapterSettings, Settings
from tests.adapters.helpers import target
from tests.conftest import free_port
from tests.unleash_server import ADMIN_TOKEN, Unleash

pytestmark = pytest.mark.integration
SETTINGS = Settings(adapters=AdapterSettings(credentials={"unleash": ADMIN_TOKEN}, timeout_s=5))
ROLLOUT = {"name": "flexibleRollout", "parameters": {"rollout": "25", "stickiness": "default", "groupId": "g"}}
BLUE = {"name": "blue", "weight": 1000, "weightType": "variable", "stickiness": "default"}


def source(server: Unleash, environment: str, **extra: Any) -> dict[str, Any]:
    return {"adapter": "unleash", "url": server.url, "environment": environment, "token": "unleash", **extra}


def new_flag(server: Unleash) -> str:
    name = f"flag-{uuid.uuid4().hex[:10]}"
    server.flag(name)
    return name


@pytest.fixture
def adapter() -> UnleashAdapter:
    return UnleashAdapter(SETTINGS)


def test_reads_each_flag_as_one_environment_sees_it(tmp_path: Path, unleash: Unleash, adapter: UnleashAdapter) -> None:
    """Enabled state and strategies (parameters, constraints, variants) per environment, without ids, sort
    order or metrics; a flag with no strategies there has no `strategies` key."""
    flag = new_flag(unleash)
    unleash.strategy(
        flag,
        "development",
        {
            **ROLLOUT,
            "constraints": [{"contextName": "userId", "operator": "IN", "values": ["b", "a"]}],
            "variants": [BLUE],
        },
    )
    unleash.switch(flag, "development", on=True)
    dev = adapter.discover(target(tmp_path, source(unleash, "development")))
    prod = adapter.discover(target(tmp_path, source(unleash, "production")))
    assert dev.document[flag] == {
        "enabled": True,
        "strategies": [
            {
                "name": "flexibleRollout",
                "parameters": {"rollout": "25", "stickiness": "default", "groupId": "g"},
                "constraints": [{"contextName": "userId", "operator": "IN", "values": ["a", "b"]}],
                "variants": [{"name": "blue", "weightType": "variable", "stickiness": "default"}],
            }
        ],
    }
    assert prod.document[flag] == {"enabled": False}
    assert dev.unwritable == {"": "the source has no `write: true` (read-only)"}
    assert dev.location.endswith("project default environment development")


def test_the_fingerprint_follows_the_flags(tmp_path: Path, unleash: Unleash, adapter: UnleashAdapter) -> None:
    """The fingerprint is unchanged while nothing changes, and changes with a flag's state."""
    flag = new_flag(unleash)
    t = target(tmp_path, source(unleash, "production"))
    first = adapter.discover(t).fingerprint
    assert adapter.discover(t).fingerprint == first
    unleash.strategy(flag, "production", {"name": "default"})
    assert adapter.discover(t).fingerprint != first


def test_desired_is_normalised_like_live(tmp_path: Path, unleash: Unleash, adapter: UnleashAdapter) -> None:
    """A manifest's numbers are Unleash's strings, a gradual rollout gets the server's defaults, and a flag's
    keys may be left out (then they are not managed)."""
    t = target(tmp_path, source(unleash, "production"))
    desired = {
        "a": {"enabled": True, "strategies": [{"name": "flexibleRollout", "parameters": {"rollout": 50}}]},
        "b": {"enabled": False},
    }
    assert adapter.normalize(t, desired) == {
        "a": {
            "enabled": True,
            "strategies": [
                {
                    "name": "flexibleRollout",
                    "parameters": {"rollout": "50", "groupId": "a", "stickiness": "default"},
                    "constraints": [],
                    "variants": [],
                }
            ],
        },
        "b": {"enabled": False},
    }


@pytest.mark.parametrize(
    ("desired", "field", "message"),
    [
        ({"f": {"enabled": "yes"}}, "spec.desired.f.enabled", "must be true or false"),
        ({"f": {"state": "on"}}, "spec.desired.f.state", "unknown field"),
        ({"f": {"strategies": [{"parameters": {}}]}}, r"spec.desired.f.strategies\[0\].name", "needs a name"),
        ({"f": {"enabled": True, "strategies": []}}, "spec.desired.f.strategies", "an enabled flag needs a strategy"),
        (
            {"f": {"strategies": [{"name": "x", "variants": [{"name": "v", "weightType": "fix"}]}]}},
            r"spec.desired.f.strategies\[0\].variants\[0\].weight",
            "whole number from 0 to 1000",
        ),
        ({"f": "on"}, "spec.desired.f", "must be a mapping"),
    ],
)
def test_a_desired_flag_of_the_wrong_shape_is_refused(
    tmp_path: Path, adapter: UnleashAdapter, desired: dict[str, Any], field: str, message: str
) -> None:
    """Bad desired flags are a configuration error naming the manifest field."""
    t = target(tmp_path, {"adapter": "unleash", "url": "http://127.0.0.1:1", "environment": "production"})
    with pytest.raises(ConfigurationError, match=f"{field}: .*{message}"):
        adapter.normalize(t, desired)


def test_promoting_a_flag_writes_through_the_admin_api(
    tmp_path: Path, unleash: Unleash, adapter: UnleashAdapter
) -> None:
    """Staging checks each change against its `before`; committing makes the environment hold `after`, which
    a fresh read (what verification does) sees at once."""
    flag = new_flag(unleash)
    t = target(tmp_path, source(unleash, "production", write=True))
    after = adapter.normalize(t, {flag: {"enabled": True, "strategies": [{**ROLLOUT, "variants": [BLUE]}]}})[flag]
    staged = adapter.stage(t, [Change((flag,), {"enabled": False}, after)], dry_run=False)
    assert staged.results == [ChangeResult.WRITE]
    adapter.commit(staged)
    assert adapter.discover(t).document[flag] == after
    assert unleash.state(flag, "production")["enabled"] is True


def test_strategies_are_updated_in_place_and_the_surplus_deleted(
    tmp_path: Path, unleash: Unleash, adapter: UnleashAdapter
) -> None:
    """A changed strategy keeps its id (PUT), the ones beyond the new list are deleted, and a flag that should
    be off is switched off last."""
    flag = new_flag(unleash)
    kept = unleash.strategy(flag, "production", ROLLOUT)
    unleash.strategy(flag, "production", {"name": "default"})
    unleash.switch(flag, "production", on=True)
    t = target(tmp_path, source(unleash, "production", write=True))
    before = adapter.discover(t).document[flag]
    after = {
        "enabled": False,
        "strategies": [{**before["strategies"][0], "parameters": {**ROLLOUT["parameters"], "rollout": "75"}}],
    }
    adapter.commit(adapter.stage(t, [Change((flag,), before, after)], dry_run=False))
    live = unleash.state(flag, "production")
    assert [s["id"] for s in live["strategies"]] == [kept]
    assert live["strategies"][0]["parameters"]["rollout"] == "75"
    assert live["enabled"] is False


def test_a_new_flag_is_created(tmp_path: Path, unleash: Unleash, adapter: UnleashAdapter) -> None:
    """A flag the project does not have yet is created, then given its strategies and state."""
    flag = f"flag-{uuid.uuid4().hex[:10]}"
    t = target(tmp_path, source(unleash, "development", write=True))
    after = adapter.normalize(t, {flag: {"enabled": True, "strategies": [{"name": "default"}]}})[flag]
    adapter.commit(adapter.stage(t, [Change((flag,), MISSING, after)], dry_run=False))
    assert adapter.discover(t).document[flag] == after


def test_dry_run_and_noop_write_nothing(tmp_path: Path, unleash: Unleash, adapter: UnleashAdapter) -> None:
    """A dry run stages (and says it would write) but commits nothing; a change live already holds is a noop."""
    flag = new_flag(unleash)
    t = target(tmp_path, source(unleash, "production", write=True))
    on = adapter.normalize(t, {flag: {"enabled": True, "strategies": [{"name": "default"}]}})[flag]
    staged = adapter.stage(t, [Change((flag,), {"enabled": False}, on)], dry_run=True)
    assert staged.results == [ChangeResult.WRITE] and staged.messages == ["dry run: would write"]
    adapter.commit(staged)
    assert unleash.state(flag, "production")["enabled"] is False
    noop = adapter.stage(t, [Change((flag, "enabled"), True, False)], dry_run=False)
    assert noop.results == [ChangeResult.NOOP]


def test_a_stale_before_is_a_conflict_at_stage(tmp_path: Path, unleash: Unleash, adapter: UnleashAdapter) -> None:
    """Live holding neither `before` nor `after` makes the change a conflict; nothing is planned for it."""
    flag = new_flag(unleash)
    t = target(tmp_path, source(unleash, "production", write=True))
    staged = adapter.stage(t, [Change((flag, "enabled"), True, MISSING)], dry_run=False)
    assert staged.results == [ChangeResult.CONFLICT]


def test_a_writer_between_stage_and_commit_makes_a_conflict(
    tmp_path: Path, unleash: Unleash, adapter: UnleashAdapter
) -> None:
    """The admin API has no preconditions, so commit reads the flag again first: another writer's change since
    staging makes the commit a ConflictError, and nothing of this change is written."""
    flag = new_flag(unleash)
    t = target(tmp_path, source(unleash, "production", write=True))
    on = adapter.normalize(t, {flag: {"enabled": True, "strategies": [{"name": "default"}]}})[flag]
    staged = adapter.stage(t, [Change((flag,), {"enabled": False}, on)], dry_run=False)
    unleash.strategy(flag, "production", ROLLOUT)  # the other writer
    with pytest.raises(ConflictError, match="changed by another writer"):
        adapter.commit(staged)
    live = unleash.state(flag, "production")
    assert live["enabled"] is False and [s["name"] for s in live["strategies"]] == ["flexibleRollout"]


def test_writes_unleash_cannot_do_are_refused(tmp_path: Path, unleash: Unleash, adapter: UnleashAdapter) -> None:
    """Removing a flag from one environment, enabling one without a strategy, and any write to a read-only
    source fail at stage with the reason."""
    flag = new_flag(unleash)
    t = target(tmp_path, source(unleash, "production", write=True))
    with pytest.raises(ApplyError, match="cannot be removed from one environment"):
        adapter.stage(t, [Change((flag,), {"enabled": False}, MISSING)], dry_run=False)
    with pytest.raises(ApplyError, match="enabled without a strategy"):
        adapter.stage(t, [Change((flag, "enabled"), False, True)], dry_run=False)
    read_only = target(tmp_path, source(unleash, "production"))
    with pytest.raises(ApplyError, match="read-only"):
        adapter.stage(read_only, [Change((flag, "enabled"), False, True)], dry_run=False)


def test_errors_name_the_server_and_never_the_token(tmp_path: Path, unleash: Unleash) -> None:
    """A refused token is AccessDenied without the token; an unreachable server and an environment the project
    lacks are DiscoveryErrors that say which (the latter listing the project's environments)."""
    wrong = UnleashAdapter(Settings(adapters=AdapterSettings(credentials={"unleash": "*:*.not-the-token"})))
    with pytest.raises(AccessDenied, match="Unleash refused the token") as caught:
        wrong.discover(target(tmp_path, source(unleash, "production")))
    assert "not-the-token" not in str(caught.value)
    adapter = UnleashAdapter(SETTINGS)
    with pytest.raises(DiscoveryError, match="cannot reach Unleash"):
        adapter.discover(target(tmp_path, source(unleash, "production", url=f"http://127.0.0.1:{free_port()}")))
    with pytest.raises(DiscoveryError, match=r"no such environment .*its environments: default, development"):
        adapter.discover(target(tmp_path, source(unleash, "staging")))
    with pytest.raises(DiscoveryError, match=r"no such environment .*none: is the project there\?"):
        adapter.discover(target(tmp_path, source(unleash, "production", project="nope")))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"environment": None}, r"spec\.source\.environment: the unleash adapter needs environment"),
        ({"url": "ftp://x"}, r"spec\.source\.url: must be an http"),
        ({"url": "http://a:b@127.0.0.1"}, r"spec\.source\.url: holds credentials"),
        ({"token": "other"}, r"spec\.source\.token: no credential named 'other'"),
        ({"write": "yes"}, r"spec\.source\.write: must be true or false"),
        ({"poll_interval": "0s"}, r"spec\.source\.poll_interval: a duration must be between"),
        ({"flags": ["a"]}, r"spec\.source\.flags: unknown option of the unleash adapter"),
    ],
)
def test_bad_options(tmp_path: Path, adapter: UnleashAdapter, options: dict[str, Any], message: str) -> None:
    """Each bad option is a configuration error naming the field; `check` (validate) finds them offline."""
    base = {"adapter": "unleash", "url": "http://127.0.0.1:1", "environment": "production", "token": "unleash"}
    merged = {k: v for k, v in {**base, **options}.items() if v is not None}
    with pytest.raises(ConfigurationError, match=message) as caught:
        adapter.check(target(tmp_path, merged))
    assert ADMIN_TOKEN not in str(caught.value)


def test_watch_wakes_the_environment_that_changed(tmp_path: Path, unleash: Unleash, adapter: UnleashAdapter) -> None:
    """Polling the client API with If-None-Match: a change in production wakes the production target only."""
    flag = new_flag(unleash)
    dev = target(tmp_path, source(unleash, "development", poll_interval="200ms"))
    prod = target(tmp_path, source(unleash, "production", poll_interval="200ms"))
    seen: list[str] = []
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=adapter.watch, args=([dev, prod], seen.append, ready.set, stop))
    thread.start()
    try:
        assert ready.wait(10)
        time.sleep(0.5)
        seen.clear()  # changes of other tests that the revision caught up with late
        unleash.strategy(flag, "production", {"name": "default"})
        deadline = time.monotonic() + 15
        while prod.name not in seen and time.monotonic() < deadline:
            time.sleep(0.05)
        assert prod.name in seen and dev.name not in seen
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


def test_reconciler_diff_of_two_environments(tmp_path: Path, unleash: Unleash, monkeypatch: pytest.MonkeyPatch) -> None:
    """`reconciler diff unleash:ENV,url=...,token=NAME` compares two environments without manifests."""
    flag = new_flag(unleash)
    unleash.strategy(flag, "development", {"name": "default"})
    unleash.switch(flag, "development", on=True)
    monkeypatch.setenv("RECONCILER_ADAPTERS__CREDENTIALS", json.dumps({"unleash": ADMIN_TOKEN}))
    dev, prod = (f"unleash:{env},url={unleash.url},token=unleash" for env in ("development", "production"))
    result = CliRunner().invoke(app, ["diff", dev, prod, "-f", "json"])
    assert result.exit_code == 2, result.output
    differences = {d["path"]: (d["a"], d["b"]) for d in json.loads(result.stdout)["differences"]}
    assert differences[f"/{flag}/enabled"] == (True, False)
    assert ADMIN_TOKEN not in result.output
