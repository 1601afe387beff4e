"""Documentation that must stay in step with the code."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from reconciler.adapters import registry
from reconciler.desired.loader import load
from reconciler.settings import Settings
from tests.conftest import REPO


def env_names(model: type[BaseModel], prefix: str = "RECONCILER_") -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += env_names(annotation, f"{prefix}{name.upper()}__")
        else:
            names.append(prefix + name.upper())
    return names


def test_every_setting_is_documented() -> None:
    """docs/settings.md names every environment variable the settings tree reads, and no other."""
    text = (REPO / "docs" / "settings.md").read_text()
    expected = set(env_names(Settings))
    documented = set(re.findall(r"RECONCILER_[A-Z_]*[A-Z]", text))
    assert expected <= documented, expected - documented
    assert documented <= expected, documented - expected


def test_every_setting_has_a_description() -> None:
    """Every settings field says what it does and what it defaults to."""
    for group in (
        Settings,
        *(
            f.annotation
            for f in Settings.model_fields.values()
            if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)
        ),
    ):
        for name, field in group.model_fields.items():
            nested = isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
            assert nested or field.description, f"{group.__name__}.{name} has no description"


def test_every_adapter_has_a_working_example_in_docs_adapters(tmp_path: Path) -> None:
    """docs/adapters.md has a manifest for every installed adapter; each loads, and names only options its
    adapter knows (layers included)."""
    text = (REPO / "docs" / "adapters.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "kind: Target" in b]
    for i, block in enumerate(blocks):
        (tmp_path / f"example-{i}.yaml").write_text(block)
    state = load(tmp_path)
    seen = set()
    for target in state.targets.values():
        sources = [target.spec.source.options() | {"adapter": target.spec.source.adapter}]
        if target.spec.source.adapter == "layered":
            sources += target.spec.source.options()["layers"]
        for source in sources:
            cls = registry.adapter_class(source["adapter"])
            layer_fields = {"adapter"} if source is sources[0] else {"adapter", "name"}
            unknown = set(source) - layer_fields - set(cls.known_options)
            assert not unknown, f"{target.name}: {source['adapter']} does not know {unknown}"
            seen.add(source["adapter"])
    assert seen == set(registry.available()), set(registry.available()) - seen
    for name in registry.available():
        assert f"| `{name}` |" in text, f"{name} is missing from the table"
