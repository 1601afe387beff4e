"""What the daemon's parity keeps of live documents (packed, secrets hashed, per pair only figures) gives the
same pairs and series as `compare --baseline` on the full documents, on varied documents, and holds no secret
in plaintext."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from reconciler.desired.source import DesiredSource
from reconciler.diff import parity
from reconciler.domain.clock import FixedClock
from reconciler.domain.observed import Observed
from reconciler.domain.paths import PathGlob
from reconciler.domain.run import Mode
from reconciler.domain.state import DesiredState
from reconciler.engine.gate import ModeDecision
from reconciler.engine.outcome import PassOutcome
from reconciler.engine.parity_kept import keep
from reconciler.engine.parity_watch import ParityWatch
from reconciler.observe.parity import ENTRY_STATES, ParityStates

NOW = dt.datetime(2026, 12, 2, 12, tzinfo=dt.UTC)
HORIZON = dt.timedelta(days=7)
SECRETS = ("hunter2-dev", "hunter2-stg", "hunter2-pa", "hunter2-pb", "tok-dev", "tok-prod", "src-secret")

SPEC = """  source: {{adapter: file, path: {name}.yaml}}
  secrets: [/db/password, /vault/creds]
  ignore: ["/meta/**"]
  environment_specific: [/region]
  list_keys: {{/servers: name}}
  normalize: [{{paths: [/cache/size], as: bytes}}]
  desired: {{token: "${{env:TOKEN}}", db: {{host: h}}}}
"""
TARGETS = [("shop-dev", "shop", "dev"), ("shop-staging", "shop", "staging"), ("shop-prod-a", "shop", "prod")]
TARGETS += [("shop-prod-b", "shop", "prod"), ("solo-dev", "solo", "dev"), ("solo-prod", "solo", "prod")]
POLICY = """kind: Policy
metadata: {name: p}
spec:
  expected_differences:
    - {apps: [shop], paths: ["/feature/*"], reason: trial, owner: web, expires: 2099-01-01}
    - {apps: [shop], paths: [/cache/**], reason: tuning, owner: ops, expires: 2026-12-05}
    - {apps: ["*"], paths: [/limits/**], reason: incident, owner: ops, expires: 2026-11-01}
    - {apps: [shop], environments: [dev, staging], paths: [/servers/**], reason: canary, owner: web, expires: 2099-01-01}
"""


def base(i: int) -> dict[str, Any]:
    return {
        "token": "tok-dev",
        "db": {"host": "h", "password": "hunter2-dev", "pool": 10},
        "meta": {"updated": i},
        "region": f"r{i}",
        "feature": {"a": True, "b": "on"},
        "cache": {"size": "1mb", "ttl": 60},
        "limits": {"rps": 100, "burst": {"x": 1, "y": 2}},
        "servers": [{"name": "s1", "port": 80}, {"name": "s2", "port": 81}],
        "plain_list": [1, 2, 3],
        "started": dt.date(2026, 1, 1),
        "ratio": 0.5,
        "nothing": None,
        "empty": {},
    }


def documents() -> dict[str, dict[str, Any]]:
    dev, stg, pa, pb, solo_dev, solo_prod = (base(i) for i in range(6))
    stg["db"]["password"], stg["cache"]["size"], stg["servers"][1]["port"] = "hunter2-stg", "1048576", 82
    stg["feature"]["a"], stg["only_stg"] = False, {"x": 1, "y": {"z": 2}}
    pa["db"]["password"], pa["token"], pa["cache"]["size"] = "hunter2-pa", "tok-prod", "2mb"
    pa["limits"]["burst"], pa["plain_list"], pa["ratio"], pa["nothing"] = "none", [3, 2, 1], 1, 0
    pa["servers"] = [{"name": "s2", "port": 81}, {"name": "s1", "port": 80}, {"name": "s3", "port": 1}]
    pb["db"]["password"], pb["db"]["pool"], pb["empty"] = "hunter2-pb", "10", {"k": "v"}
    del pb["feature"]
    solo_prod["limits"]["rps"], solo_prod["src"] = 200, {"key": "src-secret", "other": 1}
    names = [name for name, _, _ in TARGETS]
    return dict(zip(names, [dev, stg, pa, pb, solo_dev, solo_prod], strict=True))


@pytest.fixture
def state(tmp_path: Path) -> DesiredState:
    text = "".join(
        f"kind: Target\nmetadata: {{name: {n}, app: {a}, environment: {e}}}\nspec:\n{SPEC.format(name=n)}---\n"
        for n, a, e in TARGETS
    )
    (tmp_path / "fleet.yaml").write_text(text + POLICY)
    return DesiredSource(tmp_path).current()


def observed(name: str, document: dict[str, Any], fingerprint: str) -> Observed:
    secrets = (PathGlob.parse("/src/key"),) if name == "solo-prod" else ()  # a secret the source itself holds
    return Observed(fingerprint, name, document=copy.deepcopy(document), secrets=secrets)


def feed(watch: ParityWatch, state: DesiredState, docs: dict[str, dict[str, Any]], fingerprint: str) -> None:
    for name, document in docs.items():
        target = state.targets[name]
        watch.read(target, observed(name, document, fingerprint))
        watch.pass_done(PassOutcome(target, ModeDecision(Mode.DRY_RUN)), None, state)  # type: ignore[arg-type]


def expected_results(state: DesiredState, docs: dict[str, dict[str, Any]]) -> list[parity.PairResult]:
    live = {n: observed(n, d, "").without_secrets() for n, d in docs.items()}
    return parity.compare_environments(state, ["staging", "prod"], documents=live, baseline="dev", now=NOW)


def pinned(results: tuple[parity.PairResult, ...] | list[parity.PairResult]) -> list[Any]:
    """Everything of a pair that the matrix and the allowlist audit show."""
    return [
        (
            (r.app, r.a.name, r.b.name, r.leaves, r.differing, r.expected_leaves, r.drift_percent, r.significant),
            [(i.pointer, i.kind, repr(i.a), repr(i.b), i.expected, i.note, i.leaves, i.entry) for i in r.items],
            [(u.entry.id, u.covered) for u in r.uses],
        )
        for r in results
    ]


def check_series(watch: ParityWatch, results: list[parity.PairResult]) -> None:
    """Each environment's series are its pairs' figures from `compare`, summed over its targets."""
    sums: dict[tuple[str, str], list[int]] = {}
    expected: dict[tuple[str, str], dict[str, int]] = {}
    for r in results:
        key = (r.app, r.b.environment)
        figures = sums.setdefault(key, [0, 0])
        figures[0] += r.differing
        figures[1] += r.leaves
        states = expected.setdefault(key, dict.fromkeys(ENTRY_STATES, 0))
        for item in r.items:
            if item.entry is not None:
                entry = next(u.entry for u in r.uses if u.entry.id == item.entry)
                end = entry.spec.expires
                state = "expired" if end <= NOW else "expiring" if end - HORIZON <= NOW else "active"
                states[state] += item.leaves
    assert set(sums) == {("shop", "staging"), ("shop", "prod"), ("solo", "prod")}
    for (app, environment), (differing, leaves) in sums.items():
        value = watch.states.get(app, environment)
        assert value is not None
        assert (value.unexpected, value.drift_percent) == (differing, differing * 100.0 / leaves)
        assert value.expected == expected[(app, environment)]


def test_kept_documents_give_what_compare_gives(state: DesiredState) -> None:
    """On nested maps, keyed and plain lists, type changes, one-sided maps, normalised values, dates, secrets of
    the target, of its source and behind `${...}` references, ignored and environment-specific paths, and
    allowlist entries active, expiring, expired and for one pair only: the daemon's pairs and series equal
    compare's on the full documents, after the first reads and after a target and the baseline change."""
    watch = ParityWatch(ParityStates(), lambda event: None, FixedClock(NOW), horizon=HORIZON, hmac_key=b"k")
    watch.load(state)
    docs = documents()
    feed(watch, state, docs, "1")
    results = expected_results(state, docs)
    assert {i.entry for r in results for i in r.items} >= {f"p/expected/{n}" for n in range(4)}
    assert pinned(watch.snapshot().results) == pinned(results)
    check_series(watch, results)

    docs["shop-prod-b"]["feature"] = {"a": False}
    docs["shop-dev"]["db"]["pool"], docs["shop-dev"]["cache"]["ttl"] = 11, 61
    feed(watch, state, {n: docs[n] for n in ("shop-prod-b", "shop-dev")}, "2")
    results = expected_results(state, docs)
    assert pinned(watch.snapshot().results) == pinned(results)
    assert pinned(watch.snapshot("solo").results) == pinned([r for r in results if r.app == "solo"])
    check_series(watch, results)


def test_no_secret_is_kept_in_plaintext(state: DesiredState) -> None:
    """The kept documents hold no value of a secret path, a `${...}` reference path or a source's own secret
    path: not in the bytes kept, nor in what they unpack to, nor in any pair's result."""
    watch = ParityWatch(ParityStates(), lambda event: None, FixedClock(NOW), hmac_key=b"k")
    watch.load(state)
    feed(watch, state, documents(), "1")
    kept = watch._documents  # the one place they are held
    assert set(kept) == {name for name, _, _ in TARGETS}
    for item in kept.values():
        assert not [s for s in SECRETS if s.encode() in item.document._data or s in repr(item.document.unpack())]
    assert "<redacted hmac-sha256:" in repr(kept["shop-dev"].document.unpack()["db"]["password"])
    results = repr([(i.a, i.b) for r in watch.snapshot().results for i in r.items])
    assert not [s for s in SECRETS if s in results]


def test_a_difference_over_a_map_with_a_secret_inside_counts_as_compare_counts(state: DesiredState) -> None:
    """A map on one side and a string on the other is one difference that takes in the map's leaves, its
    secret ones too: the daemon counts them as compare does, and shows keyed hashes where compare's output
    holds the secrets."""
    watch = ParityWatch(ParityStates(), lambda event: None, FixedClock(NOW), horizon=HORIZON, hmac_key=b"k")
    watch.load(state)
    docs = documents()
    docs["shop-dev"]["vault"] = {"creds": {"user": "vault-user", "pass": "vault-pass"}, "n": 1}
    docs["shop-staging"]["vault"] = "external"
    feed(watch, state, docs, "1")
    results = expected_results(state, docs)
    ours = watch.snapshot("shop").results
    counts = [[(i.pointer, i.leaves) for i in r.items] + [r.leaves, r.differing] for r in ours]
    assert counts == [[(i.pointer, i.leaves) for i in r.items] + [r.leaves, r.differing] for r in results[:3]]
    (vault,) = [i for i in ours[0].items if i.pointer == "/vault"]
    (shown,) = [i for i in results[0].items if i.pointer == "/vault"]
    assert (vault.leaves, "vault-pass" in repr(shown.a), "vault-pass" in repr(vault.a)) == (4, True, False)
    assert vault.a["n"] == 1 and "<redacted hmac-sha256:" in repr(vault.a["creds"]["pass"])


def test_a_live_document_as_desired_is_kept_as_the_manifest_s_own_bytes(tmp_path: Path) -> None:
    """No drift, the usual case: parity keeps the target's desired Packed object, not a second copy of the same
    bytes. 1.0 for 1, one more key or another order is packed on its own, and unpacks as read."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "t.yaml").write_text(
        "kind: Target\nmetadata: {name: t, app: a}\n"
        'spec:\n  source: {adapter: file, path: t.yaml}\n  desired: {n: 1, m: {x: [a, b]}, s: "on"}\n'
    )
    target = DesiredSource(tmp_path / "d").current().targets["t"]
    as_desired = {"n": 1, "m": {"x": ["a", "b"]}, "s": "on"}
    kept, document = keep(target, "fp", as_desired, b"k")
    assert kept.document is target.spec.packed and document == as_desired and kept.fingerprint == "fp"
    reordered = {"s": "on", "n": 1, "m": {"x": ["a", "b"]}}
    for live in (
        {**as_desired, "n": 1.0},
        {**as_desired, "extra": 2},
        {**as_desired, "m": {"x": ["b", "a"]}},
        reordered,
    ):
        kept, _ = keep(target, "fp", live, b"k")
        assert kept.document is not target.spec.packed
        assert kept.document.unpack() == live and type(kept.document.unpack()["n"]) is type(live["n"])
