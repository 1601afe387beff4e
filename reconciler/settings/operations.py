"""Settings of what keeps writes safe and history kept: the blast radius, the history store and its
retention, the rollout of desired versions, the circuit breaker."""

from __future__ import annotations

from pydantic import Field

from reconciler.settings.base import Group


class SafetySettings(Group):
    """Limits on what one run may change, and when to stop fixing a path another writer keeps changing."""

    max_actions_per_run: int = Field(
        1000, ge=0, description="Writes one run may make; targets past the limit run dry-run. Defaults to 1000."
    )
    max_targets_per_run: int = Field(
        100, ge=0, description="Targets one run may write to; later ones run dry-run. Defaults to 100."
    )
    max_actions_per_wave: int = Field(
        1000, ge=0, description="Writes one wave of a run may make; later targets run dry-run. Defaults to 1000."
    )
    max_targets_per_wave: int = Field(100, ge=0, description="Targets one wave of a run may write to. Defaults to 100.")
    max_fleet_fraction: float = Field(
        1.0, gt=0, le=1, description="Share of all targets one run may write to (0.25: a quarter). Defaults to 1."
    )
    flap_threshold: int = Field(
        3,
        ge=1,
        description="Fixes of one target and path within the window after which reconciler stops fixing "
        "it and escalates: another writer is fighting it. Defaults to 3.",
    )
    flap_window_s: float = Field(3600.0, gt=0, description="The window of flap_threshold. Defaults to 3600.")
    window_s: float = Field(
        600.0,
        gt=0,
        le=7 * 86400,
        description="In the daemon, the per-run limits hold over a rolling window of this many seconds across "
        "all passes (and all replicas on PostgreSQL); a pass past a limit runs dry-run until the window allows "
        "it. Defaults to 600.",
    )


class StoreSettings(Group):
    """Bounds on waiting for the history database (PostgreSQL), so that an unreachable one never hangs a pass
    or /readyz."""

    connect_timeout_s: float = Field(
        5.0, ge=1, le=300, description="Longest wait to connect, or for a pooled connection. Defaults to 5."
    )
    statement_timeout_s: float = Field(
        30.0,
        ge=0,
        le=86400,
        description="Longest one statement may run (0: no limit); `reconciler db upgrade` has none. Defaults to 30.",
    )
    backlog_passes: int = Field(
        10_000,
        ge=0,
        le=10_000_000,
        description="Passes the daemon keeps in memory while the history store is unreachable, written when it "
        "is back; past this, new passes' history is dropped (counted and logged). Defaults to 10000.",
    )
    backlog_rows: int = Field(
        1_000_000,
        ge=0,
        le=100_000_000,
        description="Drift rows and actions those passes may hold in all (memory: about 1 KB each). "
        "Defaults to 1000000.",
    )


class RolloutSettings(Group):
    """Progressive rollout of a new desired version in the daemon: its writes go in waves."""

    bake_s: float = Field(
        300.0,
        ge=0,
        le=7 * 86400,
        description="Time after the last verified write of a wave before the next wave is written. Defaults to 300.",
    )
    check_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="How long a replica trusts its view of a rollout's progress before reading it again from "
        "history. Defaults to 5.",
    )


class HistorySettings(Group):
    """How long history is kept, and how the daemon prunes it."""

    retain_days: float = Field(
        90.0,
        ge=0,
        le=36500,
        description="History older than this many days is pruned by the daemon and by `reconciler db prune` "
        "(what is still needed stays: each target's newest pass, open approvals, the newest write of a key, "
        "active exceptions' first drift). 0 keeps everything. Defaults to 90.",
    )
    prune_interval_s: float = Field(
        3600.0, ge=60, le=7 * 86400, description="How often the daemon prunes. Defaults to 3600 (hourly)."
    )
    prune_batch_rows: int = Field(
        2000,
        ge=100,
        le=100_000,
        description="Rows deleted per transaction: the longest a pass ever waits for a prune. Defaults to 2000.",
    )
    prune_pause_s: float = Field(
        0.05, ge=0, le=60, description="Pause between two of the daemon's prune transactions. Defaults to 0.05."
    )


class BreakerSettings(Group):
    """The circuit breaker on remediation (detection goes on while it is open)."""

    window_s: float = Field(600.0, gt=0, description="Window of the error budget. Defaults to 600.")
    failure_ratio: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Share of failed or rolled-back writes in the window above which the breaker "
        "opens. Defaults to 0.5.",
    )
    min_writes: int = Field(5, ge=1, description="Writes the window needs before the ratio counts. Defaults to 5.")
    cooldown_s: float = Field(
        900.0, gt=0, description="How long an opened breaker stays open unless reset. Defaults to 900."
    )
