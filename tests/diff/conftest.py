"""Every comparison test runs on both walks: the compiled one (built by `make install`) and plain Python."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.diff import compare, walk
from tests.conftest import unavailable


@pytest.fixture(scope="module", params=["python", "compiled"], autouse=True)
def walker(request: pytest.FixtureRequest) -> Iterator[str]:
    # Module scope: hypothesis refuses function-scoped fixtures around @given tests.
    if request.param == "compiled":
        native = compare._native_walker()
        if native is None:
            unavailable("the compiled walk is not built, or not from this walk.py: python -m reconciler.diff.native")
        chosen = native
    else:
        chosen = walk.Walker
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compare, "Walker", chosen)
        yield request.param
