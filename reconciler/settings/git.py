"""The settings groups of syncing changes back to git (`reconciler adopt --commit`, automatic proposals);
part of the one tree in settings.py (RECONCILER_GIT__*, RECONCILER_ADOPT__*)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from reconciler.domain import durations


class GitSettings(BaseModel):
    """Where adoptions go in git."""

    model_config = ConfigDict(allow_inf_nan=False)

    pull_request_url: str | None = Field(
        None,
        description="Link to open a pull request for a pushed branch, `{branch}` replaced by its name "
        "(https://git.example/org/desired/compare/main...{branch}). Defaults to none: no link.",
    )
    remote: str | None = Field(
        None,
        description="Remote that automatic proposals are pushed to (`adopt --push` names its own). Defaults to "
        "none: proposal branches stay in the desired-state folder's repository.",
    )
    email_domain: str = Field(
        "localhost",
        min_length=1,
        description="Domain of the author's email when the actor is a plain name (`dana` becomes "
        "dana@<domain>); an actor given as `Name <email>` keeps its own. Defaults to localhost.",
    )


class AdoptSettings(BaseModel):
    """Adopting emergency changes."""

    model_config = ConfigDict(allow_inf_nan=False)

    propose_after: float | None = Field(
        None,
        description="An escalated drift still pending after this long (`24h`, `90m`, seconds) gets a proposal "
        "branch with its adoption commit and one notification; nothing is written to live, nothing merged. "
        "Defaults to none: no automatic proposals.",
    )

    @field_validator("propose_after", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        return durations.seconds(value, min_s=60.0, max_s=365 * 86400.0)
