"""The daemon's own counting shortcuts give what prometheus_client's calls give."""

from __future__ import annotations

import pytest

from reconciler.observe.metrics import Metrics


@pytest.mark.parametrize("duration", [0.0, 0.003, 0.07, 4.0, 100.0])
def test_a_batch_of_passes_counts_as_its_passes_one_by_one(duration: float) -> None:
    """passes_done(n) leaves the pass counter and the duration histogram (its buckets, sum and count) as n calls
    of pass_done would (the sum to a float's rounding): a prometheus_client upgrade that keeps a histogram
    otherwise fails here."""
    one_by_one, at_once = Metrics(), Metrics()
    for metrics in (one_by_one, at_once):
        metrics.init_targets([("a", "prod", "pay")])
        metrics.pass_done("prod", "clean", 0.2)
    for _ in range(7):
        one_by_one.pass_done("prod", "unchanged", duration)
    at_once.passes_done("prod", "unchanged", duration, 7)

    def samples(metrics: Metrics) -> list[tuple[str, dict[str, str], float]]:
        return [
            (s.name, s.labels, s.value)
            for family in metrics.registry.collect()
            if family.name in ("reconciler_passes", "reconciler_pass_duration_seconds")
            for s in family.samples
            if not s.name.endswith("_created")
        ]

    expected, got = samples(one_by_one), samples(at_once)
    assert [s[:2] for s in got] == [s[:2] for s in expected]
    assert [s[2] for s in got] == pytest.approx([s[2] for s in expected])  # a sum added at once rounds once
    assert [s for s in got if not s[0].endswith("_sum")] == [s for s in expected if not s[0].endswith("_sum")]
    assert ("reconciler_pass_duration_seconds_count", {"environment": "prod"}, 8.0) in expected
