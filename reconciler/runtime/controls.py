"""A person's hand on remediation: reset the circuit breaker, release a held rollout. One code path for the CLI
(`reconciler breaker reset`, `reconciler rollout release`) and the web UI, so both record the same things."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from reconciler.domain.breaker import Breaker, BreakerState
from reconciler.domain.state import DesiredState
from reconciler.engine.rollout import Rollout
from reconciler.errors import ConfigurationError
from reconciler.observe.notify import Event, EventKind
from reconciler.ports import BreakerStore

Notify = Callable[[Event], None]


def announce_breaker(notify: Notify, summary: str, details: dict[str, str], now: datetime) -> None:
    """Tell the webhooks about a breaker change made by hand."""
    notify(Event(EventKind.BREAKER, f"remediation:{now.isoformat()}", summary, details))


def reset_breaker(store: BreakerStore, notify: Notify, actor: str, reason: str | None, now: datetime) -> None:
    """Close the breaker: remediation runs again. The actor (and the reason, when given) go into the breaker's
    history (`reconciler history export`) and the announcement."""
    store.set(Breaker(BreakerState.CLOSED, reason, None, None, actor), now)
    announce_breaker(notify, f"remediation resumed by {actor}" + (f": {reason}" if reason else ""), {}, now)


def release_rollout(
    rollout: Rollout,
    versions: Callable[[str], list[str]],
    state: DesiredState,
    version: str,
    actor: str,
    reason: str,
) -> tuple[str, int]:
    """Release the rollout of the desired version in force, named by its digest or a prefix of it: (the full
    digest, how many unsettled targets now count as done). Refused (ConfigurationError) when the prefix names
    no version or several, or a version that is not in force, or no reason is given."""
    if not reason.strip():
        raise ConfigurationError("a release needs a reason: why the later waves may go on")
    found = versions(version)
    if len(found) != 1:
        what = "no desired version" if not found else f"{len(found)} desired versions"
        raise ConfigurationError(f"{what} in history start with {version!r}; give more of the digest")
    if found[0] != state.version.digest:
        raise ConfigurationError(
            f"version {found[0][:12]} is not the desired version in force ({state.version.digest[:12]}): "
            "only the rollout in force can be released"
        )
    return found[0], rollout.release(state, found[0], actor, reason.strip())
