"""Emergency changes synced back to git: an adoption as a commit on a new branch, pushed for review, and the
daemon's automatic proposals for escalated drift that nobody reverted or adopted.

Nothing here writes live state, and nothing is merged: a person reviews the branch, and the daemon reads the
change from the desired state once it is merged and pulled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from reconciler.desired import adopt, gitsync
from reconciler.domain.approval import Approval, ApprovalState
from reconciler.domain.manifest import Target
from reconciler.domain.paths import MISSING, KeyPath, from_pointer, to_pointer
from reconciler.domain.state import DesiredState
from reconciler.domain.values import Redacted, render
from reconciler.errors import ReconcilerError
from reconciler.observe import logging as logs
from reconciler.observe.notify import Event, EventKind, Notifier
from reconciler.settings import Settings

log = logs.get_logger("reconciler.adoption")
PROPOSE_EVERY_S = 60.0  # how often the daemon looks for escalations old enough to propose


@dataclass(frozen=True)
class Adoption:
    """One live value to write into the manifests, and the paper trail its commit carries."""

    target: Target
    path: KeyPath
    old: Any  # the desired value it replaces (MISSING: none)
    new: Any  # the live value (MISSING: stop desiring the key)
    drift: str  # the drift's id (an approval's id for proposals)
    reason: str
    actor: str
    scope: adopt.Scope = "target"
    secret: bool = False

    @property
    def pointer(self) -> str:
        return to_pointer(self.path)

    def message(self) -> str:
        """The commit message: what, why, where and who; values unless the path is secret."""
        where = "app (the Base it extends)" if self.scope == "app" else "target"

        def shown(value: Any) -> str:
            return "<secret>" if self.secret else ("(none)" if value is MISSING else render(value))

        return (
            f"adopt {self.target.name} {self.pointer}: {self.reason}\n\n"
            f"Reason: {self.reason}\nTarget: {self.target.name}\nPath: {self.pointer}\nDrift: {self.drift}\n"
            f"Old value: {shown(self.old)}\nNew value: {shown(self.new)}\nScope: {where}\nAdopted-by: {self.actor}\n"
        )


def commit(
    adoption: Adoption, state: DesiredState, settings: Settings, *, branch: str | None, remote: str | None
) -> gitsync.Proposal:
    """The adoption as one commit on a new branch of the desired state's repository, pushed to `remote` when
    given. The working tree is left alone; the new manifests must load (checked in a copy)."""
    files = adopt.plan(adoption.target, adoption.path, adoption.new, state.root, adoption.scope)
    adopt.check(files, state.root)
    repo = gitsync.repository(state.root)
    name = branch or gitsync.branch_name(adoption.target.name, adoption.pointer.strip("/"), adoption.drift[:12])
    author = gitsync.Author.of(adoption.actor, settings.git.email_domain)
    sha = gitsync.propose(repo, files, branch=name, author=author, message=adoption.message(), remote=remote)
    url = gitsync.pull_request_url(settings.git.pull_request_url, name) if remote else None
    return gitsync.Proposal(name, sha, remote, url)


def announce(notifier: Notifier, adoption: Adoption, proposal: gitsync.Proposal, summary: str) -> None:
    """One notification: target, path, reason, branch and pull-request link; never a value."""
    details: dict[str, Any] = {
        "target": adoption.target.name,
        "path": adoption.pointer,
        "reason": adoption.reason,
        "branch": proposal.branch,
        "commit": proposal.commit,
        "scope": adoption.scope,
    }
    if proposal.remote:
        details["remote"] = proposal.remote
    if proposal.pull_request_url:
        details["pull_request"] = proposal.pull_request_url
    notifier.notify(
        Event(EventKind.ADOPTION, f"{adoption.target.name}{adoption.pointer}@{proposal.branch}", summary, details)
    )


class Approvals(Protocol):
    """Lists approvals by state (the SQL approval store)."""

    def list(self, states: Sequence[ApprovalState] = (), limit: int = 200) -> list[Approval]: ...


class Proposer:
    """In the daemon: every escalation pending for longer than RECONCILER_ADOPT__PROPOSE_AFTER gets a branch
    with its adoption commit and one notification. The branch name is the proposal's record (`adopt/
    proposal-<target>-<approval>`): one that exists, here or on the remote, is not proposed again."""

    def __init__(
        self, settings: Settings, approvals: Approvals, notifier: Notifier, state: Callable[[], DesiredState | None]
    ) -> None:
        self.settings = settings
        self.after = timedelta(seconds=settings.adopt.propose_after or 0)
        self.approvals = approvals
        self.notifier = notifier
        self.state = state
        self._done: set[str] = set()  # approvals proposed (or found proposed) by this process
        self._lock = threading.Lock()

    def tick(self, now: datetime | None = None) -> list[gitsync.Proposal]:
        """Propose what is due; a failure is logged and tried again at the next tick."""
        state = self.state()
        if state is None or not self._lock.acquire(blocking=False):
            return []
        try:
            moment = now or datetime.now(UTC)
            due = [
                a
                for a in self.approvals.list([ApprovalState.PENDING])
                if a.created_at <= moment - self.after and a.id not in self._done and a.target in state.targets
            ]
            return [p for a in due if (p := self._propose(a, state)) is not None]
        except ReconcilerError as exc:
            log.error("automatic proposals failed", error=str(exc))
            return []
        finally:
            self._lock.release()

    def _propose(self, approval: Approval, state: DesiredState) -> gitsync.Proposal | None:
        self._done.add(approval.id)
        if isinstance(approval.observed, Redacted) or isinstance(approval.desired, Redacted):
            return None  # a secret's value is not kept, so it cannot be proposed
        target = state.targets[approval.target]
        adoption = Adoption(
            target=target,
            path=from_pointer(approval.pointer),
            old=approval.desired,
            new=approval.observed,
            drift=approval.id,
            reason=f"escalated drift in place since {approval.created_at:%Y-%m-%d %H:%M} UTC, neither reverted "
            "nor adopted",
            actor="reconciler",
        )
        name = gitsync.branch_name("proposal", target.name, approval.id[:8])
        remote = self.settings.git.remote
        try:
            if gitsync.branch_exists(gitsync.repository(state.root), name, remote):
                return None
            proposal = commit(adoption, state, self.settings, branch=name, remote=remote)
        except ReconcilerError as exc:
            self._done.discard(approval.id)
            log.error("proposal failed", target=target.name, path=approval.pointer, error=str(exc))
            return None
        log.info("adoption proposed", target=target.name, path=approval.pointer, branch=proposal.branch)
        announce(self.notifier, adoption, proposal, f"proposed adopting {target.name} {approval.pointer} on {name}")
        return proposal
