"""A target's desired document is kept packed: read back exactly (types, order, dates), a new dict each time."""

from __future__ import annotations

import marshal
import random
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from reconciler.desired.loader import load
from reconciler.domain.packed import MARSHAL_VERSION, Packed
from reconciler.errors import ConfigurationError

DOC = {"b": 1, "a": {"x": [1.5, None, True, "s"], "y": -0.0}, "n": 10**30}


def test_a_document_reads_back_as_it_was_packed() -> None:
    """Values, their types and the keys' order come back as they were; each read is a new dict."""
    packed = Packed.of(DOC)
    first, second = packed.unpack(), packed.unpack()
    assert first == DOC and list(first) == ["b", "a", "n"] and first is not second
    first["b"] = 2
    assert packed.unpack()["b"] == 1


def test_dates_and_times_are_kept() -> None:
    """YAML's dates and times (which marshal cannot hold) come back as the same types."""
    doc = {"on": date(2026, 1, 1), "at": datetime(2026, 1, 1, 12, tzinfo=UTC)}
    assert Packed.of(doc).unpack() == doc


def test_equality_is_strict() -> None:
    """1, 1.0 and true are different documents, as they are different values in a comparison."""
    assert Packed.of({"a": 1}) == Packed.of({"a": 1})
    assert Packed.of({"a": 1}) != Packed.of({"a": True})
    assert Packed.of({"a": 1}) != Packed.of({"a": 1.0})


def test_a_desired_that_is_not_a_map_is_refused_by_name(tmp_path: Path) -> None:
    """A manifest whose desired is a list names the file, the document and the field."""
    (tmp_path / "t.yaml").write_text(
        "kind: Target\nmetadata: {name: t}\nspec:\n  source: {adapter: file, path: x.yaml}\n  desired: [1, 2]\n"
    )
    with pytest.raises(ConfigurationError) as info:
        load(tmp_path)
    assert any(
        "t.yaml: document 1 (t): spec.desired: Input should be a valid dictionary" in str(p)
        for p in info.value.problems
    )


def test_a_target_reads_its_desired_document(tmp_path: Path) -> None:
    """spec.desired is the document the manifest holds."""
    (tmp_path / "t.yaml").write_text(
        "kind: Target\nmetadata: {name: t}\nspec:\n  source: {adapter: file, path: x.yaml}\n  desired: {a: 2026-01-01}\n"
    )
    assert load(tmp_path).targets["t"].spec.desired == {"a": date(2026, 1, 1)}


@pytest.mark.parametrize(
    "doc",
    [
        {"a": "${env:X}"},
        {"a": {"b": ["x", "${file:/s}"]}},
        {"é": "€${x}"},  # written as UTF-8 among other characters
        {"on": date(2026, 1, 1), "a": "${x}"},  # pickled
        {"a": "${x}", "b": "${x}"},  # the same string twice
    ],
)
def test_a_dollar_anywhere_is_seen_in_the_packed_bytes(doc: dict[str, object]) -> None:
    """may_hold never says no for a text that a string of the document holds (a yes may be wrong)."""
    assert Packed.of(doc).may_hold("$")


def test_has_references_without_and_with_a_dollar(tmp_path: Path) -> None:
    """A document without `$` has no references; `$` alone in a value that does not start with it is none
    either; a value that starts with `$` may be one."""
    source = "  source: {adapter: file, path: x.yaml}\n"
    (tmp_path / "t.yaml").write_text(
        f"kind: Target\nmetadata: {{name: plain}}\nspec:\n{source}  desired: {{a: b, n: {'x' * 36}}}\n---\n"
        f"kind: Target\nmetadata: {{name: priced}}\nspec:\n{source}  desired: {{price: 5$}}\n---\n"
        f"kind: Target\nmetadata: {{name: ref}}\nspec:\n{source}  desired: {{a: {{b: ['${{env:X}}']}}}}\n"
    )
    targets = load(tmp_path).targets
    assert not Packed.of({"a": "b"}).may_hold("$")
    assert [targets[n].has_references for n in ("plain", "priced", "ref")] == [False, False, True]


def test_a_large_repetitive_document_is_kept_deflated_and_reads_back_exactly() -> None:
    """A document that deflates by a quarter or more is kept deflated (the bench's 100-key documents: about
    five times smaller), with dates too; it reads back as it was, and equal documents stay equal."""
    doc = {f"key{k:03}": f"value-1234-{k}" for k in range(100)}
    dated = {**doc, "on": date(2026, 1, 1)}
    for document in (doc, dated):
        packed = Packed.of(document)
        assert len(packed) * 4 < len(marshal.dumps(doc, MARSHAL_VERSION)), len(packed)
        assert (
            packed.unpack() == document and packed == Packed.of(document) and hash(packed) == hash(Packed.of(document))
        )
    assert Packed.of(doc) != Packed.of(dated)
    assert Packed.of({**doc, "a": "${env:X}"}).may_hold("$") and not Packed.of(doc).may_hold("$")


def test_a_small_or_varied_document_is_kept_as_it_is() -> None:
    """Below COMPRESS_FROM bytes, or when deflate would save less than a quarter, the bytes are marshal's."""
    small = {"a": 1}
    rng = random.Random(5)
    varied = {"v": [rng.random() for _ in range(60)]}  # random floats: deflate saves little
    for document in (small, varied):
        assert len(Packed.of(document)) == len(marshal.dumps(document, MARSHAL_VERSION))
        assert Packed.of(document).unpack() == document


def test_equal_documents_pack_to_the_same_bytes_whatever_they_share() -> None:
    """A manifest's keys are shared across its documents (and marshal would mark each shared object); a live
    document read on its own shares nothing. Equal, with their keys in the same order, they pack alike; another
    type or order does not."""
    keys = [f"key{i:03}" for i in range(50)]
    shared = {k: f"value-{i}" for i, k in enumerate(keys)}
    also = {k: f"value-{i}" for i, k in enumerate(keys)}  # the same key objects, referenced twice
    fresh = {f"key{i:03}": f"value-{i}" for i in range(50)}
    assert Packed.of(shared) == Packed.of(fresh) and hash(Packed.of(shared)) == hash(Packed.of(fresh))
    assert also is not shared
    assert Packed.of({**fresh, "n": 1}) != Packed.of({**fresh, "n": 1.0})
    assert Packed.of({"a": 1, "b": 2}) != Packed.of({"b": 2, "a": 1})


def test_like_gives_the_known_packed_only_for_a_document_that_packs_to_its_bytes() -> None:
    """`like` tells by digest, before deflating: the known object for the same bytes (deflated or not, marshal's or
    pickle's), else the document packed as `of` packs it."""
    dated = {"since": date(2024, 5, 1), **{f"k{i}": f"value-{i}" for i in range(40)}}
    for document in ({f"key{i:03}": f"value-{i}" for i in range(50)}, {"a": 1}, dated):
        known = Packed.of(document)
        same = {k: v for k, v in document.items()}  # equal, built apart
        assert Packed.like(same, known) is known
        for other in ({**document, "extra": 1}, {k: (1.0 if v == 1 else v) for k, v in document.items()}):
            if other == document and repr(other) == repr(document):
                continue
            packed = Packed.like(other, known)
            assert packed is not known and packed == Packed.of(other) and packed.unpack() == other
    assert Packed.like({"since": "2024-05-01"}, Packed.of({"since": date(2024, 5, 1)})) != Packed.of(
        {"since": date(2024, 5, 1)}
    )
