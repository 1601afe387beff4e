"""The parity series are written once per change: a scrape between changes gets the text written before, which
is the text the families give."""

from __future__ import annotations

from reconciler.observe.parity import EnvironmentParity, ParityStates
from reconciler.observe.targets import render_families


def test_the_kept_text_is_the_families_until_a_series_changes() -> None:
    states = ParityStates()
    states.sync({"pay": ["prod", "staging"], "web": ["prod"]})
    first = states.render()
    assert first == render_families(states.collect())
    assert b'reconciler_parity_unexpected_differences{app="pay",environment="prod"} 0.0' in first
    assert states.render() is first  # nothing changed: the same text, not written again

    states.set("pay", "prod", EnvironmentParity())  # the value it had: still nothing changed
    assert states.render() is first
    states.set("pay", "prod", EnvironmentParity(3, 7.5, {"active": 1, "expiring": 0, "expired": 2}))
    changed = states.render()
    assert changed == render_families(states.collect()) and changed != first
    assert b'reconciler_parity_drift_percent{app="pay",environment="prod"} 7.5' in changed
    assert b'reconciler_parity_expected_differences{app="pay",environment="prod",state="expired"} 2.0' in changed

    states.set("gone", "prod", EnvironmentParity(1))  # no such app: nothing to change
    assert states.render() is changed
    states.sync({"pay": ["prod"]})  # web and pay's staging go
    synced = states.render()
    assert synced == render_families(states.collect()) and b'app="web"' not in synced
    assert b'reconciler_parity_drift_percent{app="pay",environment="prod"} 7.5' in synced
