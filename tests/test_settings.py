"""Settings: every number finite, every problem named by its environment variable."""

from __future__ import annotations

import pytest

from reconciler.errors import ConfigurationError
from reconciler.settings import load_settings


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RECONCILER_SCHEDULER__DEFAULT_INTERVAL_S", "inf"),
        ("RECONCILER_SAFETY__WINDOW_S", "nan"),
        ("RECONCILER_ROLLOUT__BAKE_S", "-inf"),
        ("RECONCILER_RETRY__CALL_TIMEOUT_S", "Infinity"),
    ],
)
def test_infinite_or_nan_numbers_are_refused_by_name(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """`inf` passes `gt=0`, and a timer built from it breaks a worker: it is refused, naming the variable."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert name in str(caught.value) and "finite" in str(caught.value)
