"""The one settings tree. Every field reads from RECONCILER_<GROUP>__<FIELD> and says its default."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reconciler.domain.run import Mode
from reconciler.settings.base import Group
from reconciler.settings.git import AdoptSettings, GitSettings
from reconciler.settings.operations import (
    BreakerSettings as BreakerSettings,
)
from reconciler.settings.operations import (
    HistorySettings as HistorySettings,
)
from reconciler.settings.operations import (
    RolloutSettings as RolloutSettings,
)
from reconciler.settings.operations import (
    SafetySettings as SafetySettings,
)
from reconciler.settings.operations import (
    StoreSettings as StoreSettings,
)
from reconciler.settings.parity import ParitySettings


class FileSettings(Group):
    """The file adapter."""

    roots: list[Path] = Field(
        default_factory=list,
        description="Directories the file adapter may read and write; any other path is refused. "
        "Defaults to none, so every file target is refused until roots are configured.",
    )
    max_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1,
        description="Largest live file the file adapter reads; a bigger one fails its target's pass with an "
        "error naming it. Defaults to 16 MiB.",
    )
    undo_dir: Path | None = Field(
        None,
        description="Where the file adapter keeps, per live file, the lines its last write replaced (files "
        "0600, none for writes that touch a secret path), so that a rollback from another process restores the "
        "original bytes. Defaults to none: kept in memory, for rollbacks within the process that wrote.",
    )
    watch: bool = Field(
        True,
        description="Watch the folders of live files (inotify, one watcher for all of them) so that a change "
        "wakes its target at once; the interval still applies. Defaults to true.",
    )
    parse_workers: int = Field(
        1,
        ge=0,
        le=8,
        description="Worker processes that parse a batch's live files, read ahead of its passes, while the passes "
        "run (a first cycle, or most files changed): started for a batch of 8 files or more, ended after 60 s "
        "without one, never more than the machine's cores less one. 0 parses every file in its pass. "
        "Defaults to 1.",
    )
    trust_stat: bool = Field(
        True,
        description="A live file whose device, inode, size, modification and change time are those it had when "
        "last hashed (and that was not changed within 2 s before that read) is not read again to see whether "
        "it changed. Set false where stat() may lag behind the content: on NFS, attribute caching can hide a "
        "change made on another host for up to the mount's acregmax. Defaults to true.",
    )


class SchedulerSettings(Group):
    """When passes run in the daemon."""

    default_interval_s: float = Field(60.0, gt=0, description="Interval of a target without one. Defaults to 60.")
    jitter_s: float = Field(
        5.0,
        ge=0,
        description="Most a pass waits past its interval to come to its target's own second of the interval (at "
        "most half the interval; a pass may also come up to half an interval early for it), so that targets do not "
        "fire together; 0 turns this off. Defaults to 5.",
    )
    workers: int = Field(4, ge=1, le=64, description="Passes worked at once (never two for one target). Defaults to 4.")
    backoff_base_s: float = Field(1.0, gt=0, description="First retry delay after a failed pass. Defaults to 1.")
    backoff_max_s: float = Field(300.0, gt=0, description="Longest retry delay after failed passes. Defaults to 300.")
    desired_poll_s: float = Field(
        2.0, gt=0, description="How often the daemon looks for edits of the desired state. Defaults to 2."
    )
    desired_watch: bool = Field(
        True,
        description="Watch the desired-state folder (inotify) and walk its files only after an event there, and "
        "at least once a minute, instead of at every look. Set false where the folder's edits raise no inotify "
        "event (NFS and other network filesystems edited from another host). Defaults to true.",
    )
    watch_debounce_s: float = Field(
        0.1,
        ge=0,
        le=60,
        description="After a watched change, how long to wait for more before the pass, so that a burst of "
        "changes is one pass. Defaults to 0.1.",
    )
    lease_ttl_s: float = Field(
        30.0,
        gt=0,
        description="With PostgreSQL history, how long a replica's leases live after its last heartbeat "
        "(written every third of this); the targets of a replica that died are taken over within this long of its "
        "death, plus the claim itself (within seconds when its process died and its database session with it). Keep "
        "it at or below the shortest interval. Defaults to 30.",
    )
    shutdown_timeout_s: float = Field(
        60.0, gt=0, description="How long SIGTERM waits for passes in flight. Defaults to 60."
    )


class HttpSettings(Group):
    """The daemon's HTTP endpoint (/metrics, /healthz, /readyz)."""

    host: str = Field("127.0.0.1", description="Address to listen on. Defaults to 127.0.0.1.")
    port: int = Field(9108, ge=0, le=65535, description="Port to listen on; 0 picks a free one. Defaults to 9108.")
    api_token: SecretStr | None = Field(
        None,
        description="Bearer token that the state-changing API (approve, reject, mode) requires. Defaults to none, "
        "which turns that API off; the read-only /api/v1/status and /api/v1/drift are always on.",
    )


class LogSettings(Group):
    """Logging."""

    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Defaults to info.")
    format: Literal["json", "console"] = Field("json", description="Defaults to json.")


class GcSettings(Group):
    """How the daemon keeps Python's garbage collector from stopping it for long (runtime/heap.py)."""

    freeze_after_s: float = Field(
        0.05,
        ge=0,
        le=60,
        description="After a full collection longer than this, the objects that survived it are left out of later "
        "full collections (gc.freeze); 0 turns this off. Defaults to 0.05.",
    )
    thaw_growth: float = Field(
        1.0,
        gt=0,
        le=100,
        description="Once the process's allocated blocks have grown by this share (1: doubled) since a full "
        "collection walked all objects, or since the daemon's first cycle built its heap, the next full collection "
        "walks all of them again, freeing any garbage cycle among those left out. Defaults to 1.",
    )


class SecretSettings(Group):
    """How secret values are resolved and compared."""

    file_roots: list[Path] = Field(
        default_factory=list,
        description="Directories that ${file:/path} references may read (for example /run/secrets). "
        "Defaults to none, so file references are refused until configured.",
    )
    hmac_key: SecretStr | None = Field(
        None,
        description="Key of the HMAC that secret values are compared and recorded by. Defaults to a random "
        "key per process, which makes secret fingerprints in history incomparable across restarts.",
    )


class PolicySettings(Group):
    """How policies are watched."""

    expiry_warning_s: float = Field(
        7 * 86400.0,
        ge=0,
        description="An exception ending within this many seconds is reported as expiring (logs, metrics, "
        "`reconciler exceptions list`). Defaults to 7 days.",
    )


class ApprovalSettings(Group):
    """Approvals of escalated drift."""

    ttl_s: float = Field(
        86400.0,
        gt=0,
        description="An approval not used by an apply within this many seconds expires and must be "
        "given again. Defaults to 86400 (a day).",
    )


EventName = Literal[
    "escalation", "failed_fix", "rollback", "breaker", "wave_held", "adoption", "parity_diverged", "parity_converged"
]
EVENT_NAMES: tuple[EventName, ...] = (
    "escalation",
    "failed_fix",
    "rollback",
    "breaker",
    "wave_held",
    "adoption",
    "parity_diverged",
    "parity_converged",
)


class WebhookSettings(Group):
    """One webhook."""

    url: SecretStr = Field(description="Where to POST; kept secret because such URLs often hold a token.")
    kind: Literal["json", "slack"] = Field(
        "json", description="Plain JSON, or Slack-compatible text. Defaults to json."
    )
    events: list[EventName] = Field(
        default_factory=lambda: list(EVENT_NAMES),
        description="Which events to send. Defaults to all.",
    )
    timeout_s: float = Field(5.0, gt=0, description="Per request. Defaults to 5.")


class NotifySettings(Group):
    """Notifications."""

    webhooks: list[WebhookSettings] = Field(
        default_factory=list, description="Webhooks, as JSON. Defaults to none (no notifications)."
    )
    dedup_s: float = Field(
        3600.0, ge=0, description="The same event is sent once per this many seconds. Defaults to 3600."
    )


class GuardSettings(Group):
    """Where apply may run at all, and how to stop it without a restart."""

    apply_environments: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Environment globs where apply may write; any other environment runs dry-run whatever "
        "the mode. Defaults to every environment; list them explicitly in production.",
    )
    dry_run_file: Path | None = Field(
        None,
        description="While this file exists the daemon runs dry-run, whatever the mode (checked before every "
        "pass). SIGUSR1 switches to dry-run too, SIGUSR2 back. Defaults to none.",
    )


class RetrySettings(Group):
    """Retries of single adapter calls (reads and stages) on temporary errors."""

    attempts: int = Field(3, ge=1, le=20, description="Tries per call, the first included. Defaults to 3.")
    initial_s: float = Field(0.1, gt=0, description="First wait between tries; doubles, with jitter. Defaults to 0.1.")
    max_s: float = Field(2.0, gt=0, description="Longest wait between tries. Defaults to 2.")
    call_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Deadline of one adapter read (discover, bulk fingerprints), retries included: a read "
        "that has not returned by then fails its target's pass, and the worker moves on. Defaults to 30.",
    )


class AdapterSettings(Group):
    """What every network adapter shares."""

    timeout_s: float = Field(
        5.0, gt=0, le=300, description="Timeout of every network call an adapter makes (connect, read). Defaults to 5."
    )
    credentials: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Named secrets that manifests refer to by name (`password: NAME`, `auth: NAME`), as a JSON "
        "object, so that no password is ever written in a manifest. Defaults to none.",
    )


class KubernetesSettings(Group):
    """The Kubernetes adapter."""

    kubeconfig: Path | None = Field(
        None,
        description="kubeconfig file to use. Defaults to none: the in-cluster service account, or ~/.kube/config.",
    )
    context: str | None = Field(None, description="kubeconfig context to use. Defaults to its current context.")


class AwsSettings(Group):
    """The AWS adapters (ssm, aws-secrets)."""

    region: str | None = Field(
        None,
        description="AWS region of targets that name none (`region:` in spec.source). Defaults to none: "
        "the standard chain's (AWS_REGION, AWS_DEFAULT_REGION, ~/.aws/config).",
    )
    endpoint_url: str | None = Field(
        None,
        description="Endpoint URL of targets that name none (`endpoint_url:`), for VPC endpoints, FIPS "
        "endpoints or an emulator. Defaults to none: AWS's own endpoint for the region.",
    )


class MetricsSettings(Group):
    """What /metrics exports."""

    per_target: bool = Field(
        False,
        description="Also export each target's drift, pending escalations, last success and drift age as "
        "reconciler_target_* series with a target label (six series per target). Defaults to false: "
        "aggregates by environment and app only, which keeps a scrape of 10,000 targets fast.",
    )


class Settings(BaseSettings):
    """Everything reconciler can be told, from the environment (RECONCILER_ prefix, `__` between groups)."""

    model_config = SettingsConfigDict(
        env_prefix="RECONCILER_", env_nested_delimiter="__", extra="ignore", allow_inf_nan=False
    )

    desired_dir: Path = Field(Path("desired"), description="Folder of desired-state manifests. Defaults to ./desired.")
    database_url: str = Field(
        "sqlite:///reconciler.db",
        description="SQLAlchemy URL of the history store. Defaults to sqlite:///reconciler.db; "
        "use postgresql+psycopg://... in production.",
    )
    mode: Mode = Field(Mode.DRY_RUN, description="Global mode; a target can only make it safer. Defaults to dry-run.")
    file: FileSettings = Field(default_factory=FileSettings)
    adapters: AdapterSettings = Field(default_factory=AdapterSettings)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    aws: AwsSettings = Field(default_factory=AwsSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    gc: GcSettings = Field(default_factory=GcSettings)
    secrets: SecretSettings = Field(default_factory=SecretSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    guard: GuardSettings = Field(default_factory=GuardSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    approvals: ApprovalSettings = Field(default_factory=ApprovalSettings)
    safety: SafetySettings = Field(default_factory=SafetySettings)
    rollout: RolloutSettings = Field(default_factory=RolloutSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    git: GitSettings = Field(default_factory=GitSettings)
    adopt: AdoptSettings = Field(default_factory=AdoptSettings)
    parity: ParitySettings = Field(default_factory=ParitySettings)

    @field_validator("database_url")
    @classmethod
    def _url_has_scheme(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError("must be a SQLAlchemy URL such as sqlite:///reconciler.db")
        return value

    def hmac_key(self) -> bytes:
        """The configured HMAC key, or one random key for the life of this process."""
        if self.secrets.hmac_key is not None:
            return self.secrets.hmac_key.get_secret_value().encode()
        return _PROCESS_KEY


_PROCESS_KEY = secrets.token_bytes(32)


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; a bad value is a ConfigurationError naming the variable."""
    from pydantic import ValidationError  # noqa: PLC0415 - keeps the module's import light

    from reconciler.errors import ConfigurationError, Problem  # noqa: PLC0415

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = [
            Problem(
                file="environment",
                field="RECONCILER_" + "__".join(str(p) for p in err["loc"]).upper(),
                message=err["msg"],
            )
            for err in exc.errors()
        ]
        raise ConfigurationError("invalid settings", problems) from None
