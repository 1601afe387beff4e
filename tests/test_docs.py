"""Documentation that must stay in step with the code."""

from __future__ import annotations

import re

from pydantic import BaseModel

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
