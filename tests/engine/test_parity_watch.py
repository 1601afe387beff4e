"""The daemon's environment parity (engine/parity_watch.py) through the daemon's own components on file
targets: series from the start, recomputed only when a document changes, one notification per divergence and
per convergence, and /api/v1/parity equal to `compare --baseline --format json`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from reconciler.cli import app
from reconciler.diff import parity
from reconciler.domain.packed import Packed
from reconciler.engine import parity_watch
from reconciler.runtime import parity_api
from reconciler.runtime.compose import Components, build
from reconciler.settings import load_settings
from reconciler.store import engine as engines
from reconciler.store import migrate
from tests.cli.test_parity import FLAGS

LIVE = {
    "dev": {"new_ui": True, "checkout_v2": True, "beta": "on", "limits": {"rps": 100, "burst": 20}},
    "staging": {"new_ui": True, "checkout_v2": True, "beta": "off", "limits": {"rps": 100, "burst": 20}},
    "prod": {"new_ui": True, "checkout_v2": True, "beta": "on", "limits": {"rps": 100, "burst": 20}},
}


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: dict[str, Any]) -> Iterator[Components]:
    """Three file targets of one app (dev, staging, prod) whose live files equal dev's but for staging's beta,
    which the allowlist lets differ; webhooks go to `receiver`."""
    desired = tmp_path / "desired"
    desired.mkdir()
    (desired / "flags.yaml").write_text(FLAGS)
    for env, doc in LIVE.items():
        (desired / f"{env}.json").write_text(json.dumps(doc))
    url = f"sqlite:///{tmp_path / 'history.db'}"
    monkeypatch.setenv("RECONCILER_DESIRED_DIR", str(desired))
    monkeypatch.setenv("RECONCILER_FILE__ROOTS", f'["{desired}"]')
    monkeypatch.setenv("RECONCILER_DATABASE_URL", url)
    hook = {"url": receiver["url"], "events": ["parity_diverged", "parity_converged"]}
    monkeypatch.setenv("RECONCILER_NOTIFY__WEBHOOKS", json.dumps([hook]))
    monkeypatch.setenv("RECONCILER_NOTIFY__DEDUP_S", "0")
    engine = engines.create_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    components = build(load_settings(), daemon=True)
    yield components
    components.notifier.stop()


def series(components: Components, name: str, **labels: str) -> float | None:
    return components.metrics.registry.get_sample_value(name, {"app": "flags", **labels})


def delivered(components: Components, receiver: dict[str, Any]) -> list[dict[str, Any]]:
    components.notifier.stop()  # delivers what is queued
    components.notifier.start()
    bodies: list[dict[str, Any]] = receiver["bodies"]
    return bodies


def test_series_exist_before_any_pass_and_follow_live_edits(fleet: Components, receiver: dict[str, Any]) -> None:
    """Every series of the app is there (zero) once the desired state is loaded; prod's live beta differs from
    dev's baseline only where the allowlist does not cover it; a hand edit raises the count and notifies once
    (paths, never values); unchanged passes notify nothing; undoing the edit notifies convergence once."""
    assert fleet.parity is not None
    fleet.parity.load(fleet.desired.current())
    assert series(fleet, "reconciler_parity_unexpected_differences", environment="prod") == 0
    assert series(fleet, "reconciler_parity_expected_differences", environment="staging", state="expired") == 0
    assert series(fleet, "reconciler_parity_unexpected_differences", environment="dev") is None  # the baseline

    fleet.reconciler.reconcile()
    assert series(fleet, "reconciler_parity_unexpected_differences", environment="prod") == 0
    assert series(fleet, "reconciler_parity_expected_differences", environment="staging", state="active") == 1
    assert delivered(fleet, receiver) == []

    prod = Path(fleet.settings.desired_dir) / "prod.json"
    prod.write_text(
        json.dumps({**LIVE["prod"], "limits": {"rps": 100, "burst": "burst-value-7q"}, "checkout_v2": False})
    )
    fleet.reconciler.reconcile()
    fleet.reconciler.reconcile()  # unchanged: nothing new
    assert series(fleet, "reconciler_parity_unexpected_differences", environment="prod") == 2
    assert series(fleet, "reconciler_parity_drift_percent", environment="prod") == pytest.approx(200 / 5)
    (event,) = delivered(fleet, receiver)
    assert event["event"] == "parity_diverged"
    assert event["details"]["environments"] == {"prod": ["/checkout_v2", "/limits/burst"]}
    assert "burst-value-7q" not in json.dumps(event)  # a value no timestamp or id can hold

    prod.write_text(json.dumps(LIVE["prod"]))
    fleet.reconciler.reconcile()
    assert series(fleet, "reconciler_parity_unexpected_differences", environment="prod") == 0
    assert [b["event"] for b in delivered(fleet, receiver)] == ["parity_diverged", "parity_converged"]


def test_api_gives_what_compare_baseline_gives(fleet: Components) -> None:
    """GET /api/v1/parity (all apps, and ?app=) is the JSON of `compare --baseline dev --format json`; an
    unknown app is a 404."""
    assert fleet.parity is not None
    (Path(fleet.settings.desired_dir) / "prod.json").write_text(json.dumps({**LIVE["prod"], "new_ui": False}))
    fleet.reconciler.reconcile()
    view = parity_api.view_of(fleet.parity)
    assert view is not None
    result = CliRunner().invoke(app, ["compare", "--baseline", "dev", "--format", "json"])
    assert result.exit_code == 2, result.output
    assert view(None) == (200, json.loads(result.output))
    assert view("flags") == (200, json.loads(result.output))
    assert view("nope")[0] == 404


def test_policy_names_the_baseline_and_parity_can_be_off(
    fleet: Components, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A Policy's parity_baselines picks the app's baseline over the default; RECONCILER_PARITY__ENABLED=false
    builds no parity (and no series)."""
    policy = tmp_path / "desired" / "baseline.yaml"
    policy.write_text(
        "kind: Policy\nmetadata: {name: b}\nspec:\n  parity_baselines: [{apps: ['fl*'], environment: staging}]\n"
    )
    assert fleet.parity is not None
    fleet.parity.load(fleet.desired.current())
    assert series(fleet, "reconciler_parity_unexpected_differences", environment="dev") == 0
    assert series(fleet, "reconciler_parity_unexpected_differences", environment="staging") is None
    monkeypatch.setenv("RECONCILER_PARITY__ENABLED", "false")
    off = build(load_settings(), daemon=True)
    try:
        assert off.parity is None
        off.reconciler.reconcile()
        assert (
            off.metrics.registry.get_sample_value(
                "reconciler_parity_unexpected_differences", {"app": "flags", "environment": "prod"}
            )
            is None
        )
    finally:
        off.notifier.stop()


def test_a_new_desired_version_recomputes_only_the_apps_it_changed(
    fleet: Components, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edit that leaves an app's targets and baseline alone keeps its figures (no pair compared again: at
    100,000 targets every app recomputed cost a minute and a half of CPU per edit); an edit of one of its
    targets, or of the allowlist, recomputes it."""
    assert fleet.parity is not None
    fleet.reconciler.reconcile()
    before = series(fleet, "reconciler_parity_expected_differences", environment="staging", state="active")
    assert before == 1
    compared: list[str] = []
    real = parity.count_pair
    monkeypatch.setattr(
        parity, "count_pair", lambda app, a, *rest, **kw: compared.append(a.name) or real(app, a, *rest, **kw)
    )
    desired = Path(fleet.settings.desired_dir)

    (desired / "other.yaml").write_text("kind: Policy\nmetadata: {name: other}\nspec: {default: reversible}\n")
    fleet.parity.load(fleet.desired.current())
    assert compared == []  # the flags app's targets are the objects they were
    assert series(fleet, "reconciler_parity_expected_differences", environment="staging", state="active") == before

    flags = desired / "flags.yaml"
    flags.write_text(flags.read_text().replace("burst: 30}", "burst: 31}"))  # prod's desired state
    fleet.parity.load(fleet.desired.current())
    assert len(compared) == 2  # the app's two pairs (dev-staging, dev-prod)

    compared.clear()
    flags.write_text(flags.read_text().replace("expires: 2099-12-31", "expires: 2098-12-31"))  # the allowlist
    fleet.parity.load(fleet.desired.current())
    assert len(compared) == 2
    assert series(fleet, "reconciler_parity_expected_differences", environment="staging", state="active") == before


def test_a_pass_compares_its_own_pair_and_the_environment_sums_its_targets(
    fleet: Components, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With two prod targets, prod's series is the sum of both pairs; a changed prod document compares its own
    pair only (not every pair of its app), and its new figures replace its old ones in the sum."""
    assert fleet.parity is not None
    desired = Path(fleet.settings.desired_dir)
    second = FLAGS.split("---")[2].replace("flags-prod", "flags-prod2").replace("prod.json", "prod2.json")
    (desired / "prod2.yaml").write_text(second)
    (desired / "prod2.json").write_text(json.dumps({**LIVE["prod"], "checkout_v2": False}))
    fleet.reconciler.reconcile()
    assert series(fleet, "reconciler_parity_unexpected_differences", environment="prod") == 1
    assert series(fleet, "reconciler_parity_drift_percent", environment="prod") == pytest.approx(100 / 10)

    compared: list[tuple[str, str]] = []
    real = parity.count_pair
    monkeypatch.setattr(
        parity,
        "count_pair",
        lambda app, a, ad, b, *rest, **kw: compared.append((a.name, b.name)) or real(app, a, ad, b, *rest, **kw),
    )
    (desired / "prod2.json").write_text(json.dumps({**LIVE["prod"], "checkout_v2": False, "limits": {"rps": 1}}))
    fleet.reconciler.reconcile(["flags-prod2"])
    assert compared == [("flags-dev", "flags-prod2")]
    assert series(fleet, "reconciler_parity_unexpected_differences", environment="prod") == 3  # 0 + 3, not 1 + 3

    compared.clear()
    (desired / "dev.json").write_text(json.dumps({**LIVE["dev"], "new_ui": False}))  # the baseline's document
    fleet.reconciler.reconcile(["flags-dev"])
    assert sorted(compared) == [("flags-dev", n) for n in ("flags-prod", "flags-prod2", "flags-staging")]
    assert series(fleet, "reconciler_parity_unexpected_differences", environment="prod") == 1 + 4


def test_a_changed_document_is_compared_as_kept_not_unpacked_again(
    fleet: Components, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pass that keeps a changed document compares it as it packed it, and the baseline's document is kept
    unpacked until it changes: of parity's kept documents, only those of the other targets are unpacked (a
    first cycle packed and unpacked every document at once, and the baseline's again for every pass)."""
    assert fleet.parity is not None
    desired = Path(fleet.settings.desired_dir)
    (desired / "prod.json").write_text(json.dumps({**LIVE["prod"], "new_ui": False}))
    fleet.reconciler.reconcile()  # prod differs: the app's notification (which compares both again) is behind
    unpacked: list[Packed] = []
    real = Packed.unpack
    monkeypatch.setattr(Packed, "unpack", lambda self: unpacked.append(self) or real(self))

    def kept_unpacked() -> list[str]:
        assert fleet.parity is not None
        kept = {id(k.document): name for name, k in fleet.parity._documents.items()}
        return sorted(kept[id(p)] for p in unpacked if id(p) in kept)

    (desired / "prod.json").write_text(json.dumps({**LIVE["prod"], "new_ui": False, "checkout_v2": False}))
    fleet.reconciler.reconcile(["flags-prod"])
    assert kept_unpacked() == []  # dev's, the baseline's, was unpacked by the first pass that needed it
    assert series(fleet, "reconciler_parity_unexpected_differences", environment="prod") == 2

    unpacked.clear()
    (desired / "dev.json").write_text(json.dumps({**LIVE["dev"], "limits": {"rps": 101, "burst": 20}}))  # the baseline
    fleet.reconciler.reconcile(["flags-dev"])
    assert kept_unpacked() == ["flags-prod", "flags-staging"]
    assert series(fleet, "reconciler_parity_unexpected_differences", environment="prod") == 3

    unpacked.clear()  # prod's next change is compared with the baseline's new document, unpacked once
    (desired / "prod.json").write_text(json.dumps({**LIVE["prod"], "limits": {"rps": 101, "burst": 20}}))
    fleet.reconciler.reconcile(["flags-prod"])
    (desired / "prod.json").write_text(json.dumps({**LIVE["prod"], "limits": {"rps": 101, "burst": 21}}))
    fleet.reconciler.reconcile(["flags-prod"])
    assert kept_unpacked() == ["flags-dev"]
    assert series(fleet, "reconciler_parity_unexpected_differences", environment="prod") == 1  # /limits/burst
    assert set(fleet.parity._baselines) == {"flags-dev"}  # the baseline's only


def test_baselines_kept_unpacked_are_bounded(
    fleet: Components, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """At most BASELINES_UNPACKED baselines stay unpacked (a fleet of many apps keeps the most recently compared):
    past the bound the least recently used goes, and is unpacked again when next compared, with the same figures."""
    assert fleet.parity is not None
    monkeypatch.setattr(parity_watch, "BASELINES_UNPACKED", 0)
    fleet.reconciler.reconcile()
    assert fleet.parity._baselines == {}
    desired = Path(fleet.settings.desired_dir)
    (desired / "prod.json").write_text(json.dumps({**LIVE["prod"], "limits": {"rps": 100, "burst": 21}}))
    fleet.reconciler.reconcile(["flags-prod"])  # prod diverges: its notification compares the pair once more
    unpacked: list[Packed] = []
    real = Packed.unpack
    monkeypatch.setattr(Packed, "unpack", lambda self: unpacked.append(self) or real(self))
    for burst in (22, 23):
        (desired / "prod.json").write_text(json.dumps({**LIVE["prod"], "limits": {"rps": 100, "burst": burst}}))
        fleet.reconciler.reconcile(["flags-prod"])
        assert series(fleet, "reconciler_parity_unexpected_differences", environment="prod") == 1  # /limits/burst
    dev = fleet.parity._documents["flags-dev"].document
    assert sum(1 for p in unpacked if p is dev) == 2  # once for each pass of prod: not kept
    assert fleet.parity._baselines == {}

    monkeypatch.setattr(parity_watch, "BASELINES_UNPACKED", 1)
    unpacked.clear()
    for burst in (24, 25):
        (desired / "prod.json").write_text(json.dumps({**LIVE["prod"], "limits": {"rps": 100, "burst": burst}}))
        fleet.reconciler.reconcile(["flags-prod"])
    assert sum(1 for p in unpacked if p is dev) == 1  # kept after the first
    assert set(fleet.parity._baselines) == {"flags-dev"}
