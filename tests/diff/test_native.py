"""The compiled walk is used only when it was built from the walk.py in place; building it never fails."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reconciler.diff import compare, native, walk


def test_a_build_from_another_walk_py_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if compare._native_walker() is None:
        pytest.skip("the compiled walk is not built (the conftest's compiled run says so under CI)")
    edited = tmp_path / "walk.py"
    shutil.copy(walk.__file__, edited)
    monkeypatch.setattr(walk, "__file__", str(edited))
    assert compare._native_walker() is not None  # the same source
    edited.write_text(edited.read_text() + "\n# edited after the build\n")
    assert compare._native_walker() is None


def test_no_compiler_means_plain_python(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert native.build() == "no C compiler (cc or gcc) on PATH"
    assert native.main() == 0
    assert "compiled walk not built (no C compiler (cc or gcc) on PATH); compare runs as plain Python" in (
        capsys.readouterr().err
    )
