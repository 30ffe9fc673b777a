"""Service settings: CLOUDMIG_* environment variables, an optional YAML file, then CLI flags."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def running_as_root() -> bool:
    return os.geteuid() == 0


def default_data_dir() -> Path:
    if running_as_root():
        return Path("/var/lib/cloudmig")
    return Path.home() / ".local" / "share" / "cloudmig"


def default_runtime_dir() -> Path:
    # Passfiles live here: a tmpfs-like place outside the data dir, recreated by the engine on start.
    if running_as_root():
        return Path("/run/cloudmig")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "cloudmig"
    return Path(tempfile.gettempdir()) / f"cloudmig-{os.getuid()}"


# CopyCompression's grammar (domain/compression.py parses it; settings may not import domain).
COPY_COMPRESSION_PATTERN = r"(?i)^\s*(auto|none|lz4|zstd(:(level=)?(0?[1-9]|1[0-9]|2[0-2]))?)\s*$"


class Settings(BaseSettings):
    """Frozen settings object; build it with `load_settings`."""

    model_config = SettingsConfigDict(env_prefix="CLOUDMIG_", frozen=True, extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=9800, ge=1, le=65535)
    data_dir: Path = Field(default_factory=default_data_dir)
    runtime_dir: Path = Field(default_factory=default_runtime_dir)
    # SQLAlchemy URL of the store; empty means SQLite inside the data dir.
    store_url: str = ""
    # Fernet key (urlsafe base64); empty means a 0600 key file inside the data dir.
    secret_key: str = Field(default="", repr=False)

    # PostgreSQL binaries and the OS user that runs them when cloudmig runs as root.
    pg_os_user: str = "postgres"
    pg_bin_dirs: list[Path] = Field(default_factory=list)

    # Managed instances.
    instance_host: str = "127.0.0.1"
    instance_listen_addresses: str = "127.0.0.1"
    instance_port_min: int = Field(default=15432, ge=1024, le=65535)
    instance_port_max: int = Field(default=16431, ge=1024, le=65535)
    instance_shared_buffers: str = "128MB"

    # Engine.
    engine_tick_seconds: float = Field(default=1.0, gt=0)
    lease_seconds: float = Field(default=15.0, gt=0)
    observe_seconds: float = Field(default=2.0, gt=0)
    source_connect_timeout: int = Field(default=5, ge=1)
    # TLS towards sources unless a task asks otherwise (SourceSslMode / SourceSslRootCert): empty
    # means by SourceCategory (internet: verify-full with a CA, else require; others: prefer).
    source_sslmode: str = Field(default="", pattern="^(|disable|allow|prefer|require|verify-ca|verify-full)$")
    # A PEM file of the CA(s) that sign sources' server certificates.
    source_sslrootcert: Path | None = None
    # Extensions a source may use (the assessment's Check extensions); unset means any extension the
    # instances' PostgreSQL binaries provide. As an environment variable: a JSON list.
    extension_allow_list: list[str] | None = None
    # Throttle for pg_basebackup in kB/s (0 = unthrottled), to spare a busy source's disks.
    basebackup_max_rate_kb: int = Field(default=0, ge=0)
    # While a copy runs, the file systems it writes to are synced this often (write-behind, Linux
    # 5.8+), so that little is left to sync when it ends; 0 = synced once, at the end.
    copy_write_behind_seconds: float = Field(default=0.1, ge=0)
    # A copy that has received nothing from the source this long asks the source, through a new
    # session, whether the copy's sender still runs (it does during the start's checkpoint): when
    # the source does not answer, the task shows `disconnect` and the copy waits for it, at most
    # until the silence reaches the limit, as for a sender that runs but sends nothing (13+); a
    # sender that has ended restarts the copy at once.
    copy_stall_seconds: float = Field(default=60.0, gt=0)
    copy_stall_limit_seconds: float = Field(default=600.0, gt=0)
    # Replay lag (bytes) under which a connected standby counts as caught up.
    streaming_lag_bytes: int = Field(default=16 * 1024 * 1024, ge=0)
    # A stage that keeps failing (the source down, a copy broken off) is retried this long before
    # the task fails; the standby's replication link is retried for as long as it takes.
    retry_seconds: float = Field(default=900.0, gt=0)
    # WAL a task's slot may keep on its source (MB; 0 = derived from the source's max_wal_size,
    # see domain/watermarks.py): above the warning a Detail line, above the limit the slot goes.
    slot_wal_warning_mb: int = Field(default=0, ge=0)
    slot_wal_limit_mb: int = Field(default=0, ge=0)
    # A slot the source invalidated (max_slot_wal_keep_size): copy again, at most this many times.
    recopy_on_slot_loss: bool = True
    recopy_max_attempts: int = Field(default=2, ge=0)
    # The target's size is measured this often; free space below the reserve counts as full.
    storage_check_seconds: float = Field(default=30.0, gt=0)
    storage_reserve_mb: int = Field(default=256, ge=0)
    # How often cloudmig looks for slots of its own that no live task uses, and retries due drops.
    slot_sweep_seconds: float = Field(default=300.0, gt=0)

    # Switchover. With a fence (auto: when the account may) the source is made read-only; without,
    # the source must be proven quiet: no transaction id assigned over a window of
    # `switch_quiet_seconds`, tried up to `switch_quiet_attempts` times when only maintenance moved.
    # `switch_catchup_timeout` is the default SwitchoverTimeout (fence + catch-up, seconds).
    switch_fence: str = Field(default="auto", pattern="^(auto|off)$")
    switch_quiet_seconds: float = Field(default=1.5, gt=0)
    switch_quiet_attempts: int = Field(default=4, ge=1)
    switch_catchup_timeout: float = Field(default=60.0, ge=10, le=3600)
    # ActivateMigrationTargetInstance waits this long for the gate's verdict before it answers.
    switch_verdict_seconds: float = Field(default=8.0, ge=0)
    # After a switchover the old source is watched this long for writes that missed the switch.
    post_switch_watch_hours: float = Field(default=24.0, ge=0)
    post_switch_check_seconds: float = Field(default=10.0, gt=0)

    # API.
    timestamp_window_seconds: int = 15 * 60
    # Requests per second allowed to each access key (token bucket; 0 disables) and the burst above it.
    throttle_rate_per_second: float = Field(default=50.0, ge=0)
    throttle_burst: int = Field(default=100, ge=1)
    host_id: str = "rds.aliyuncs.com"
    log_level: str = "info"

    # Operator surfaces: /metrics (Prometheus, unsigned like any exporter) and the web console.
    metrics_enabled: bool = True
    console_enabled: bool = True
    console_session_hours: float = Field(default=8.0, gt=0)
    # Secure cookies even over plain http (set it behind a TLS-terminating proxy); https always is.
    console_secure_cookies: bool = False
    # The console's lag chart samples running migrations this often and keeps this many points each.
    console_sample_seconds: float = Field(default=2.0, gt=0)
    console_history_points: int = Field(default=900, ge=10)

    # Space reserve (MiB) kept in the data dir next to the SQLite store and given up when the disk is
    # full, so that DeleteDBInstance can still be recorded (store/reserve.py); 0 keeps none.
    store_reserve_mb: int = Field(default=32, ge=0)
    # Full copy over a network (docs/operations.md, "Copy compression and bandwidth budgets"):
    # server-side compression of the base backup (auto, none, lz4, zstd[:level]; PostgreSQL 15+),
    # and a per-host budget in kB/s shared by all running copies (0 = none) with what it counts:
    # "wire" (bytes on the network, compressed) or "source" (bytes read from the sources' disks).
    copy_compression: str = Field(default="auto", pattern=COPY_COMPRESSION_PATTERN)
    copy_budget_kb: int = Field(default=0, ge=0)
    copy_budget_counts: Literal["wire", "source"] = "wire"
    # Where `auto` changes mode, in MB/s (10^6 bytes) of the link: uncompressed from the first, lz4
    # from the second, zstd below. The defaults fit a 2-vCPU machine (engine/copy_plan.py); a source
    # whose one compressor thread is faster, or slower, moves them.
    copy_auto_none_from_mb: float = Field(default=200.0, gt=0)
    copy_auto_lz4_from_mb: float = Field(default=160.0, gt=0)

    @model_validator(mode="after")
    def _bounds_in_order(self) -> Settings:
        if self.copy_auto_lz4_from_mb > self.copy_auto_none_from_mb:
            raise ValueError(
                f"copy_auto_lz4_from_mb ({self.copy_auto_lz4_from_mb:g}) must not be above "
                f"copy_auto_none_from_mb ({self.copy_auto_none_from_mb:g})"
            )
        if self.copy_stall_limit_seconds < self.copy_stall_seconds:
            raise ValueError(
                f"copy_stall_limit_seconds ({self.copy_stall_limit_seconds:g}) must not be below "
                f"copy_stall_seconds ({self.copy_stall_seconds:g})"
            )
        return self

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "cloudmig.db"

    @property
    def effective_store_url(self) -> str:
        return self.store_url or f"sqlite:///{self.sqlite_path}"

    @property
    def instances_dir(self) -> Path:
        return self.data_dir / "instances"

    @property
    def key_file(self) -> Path:
        return self.data_dir / "secret.key"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Environment first, then values of an optional YAML file, then explicit overrides (CLI flags)."""
    values: dict[str, Any] = {}
    path = config_file or (Path(os.environ["CLOUDMIG_CONFIG"]) if os.environ.get("CLOUDMIG_CONFIG") else None)
    if path is not None:
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of settings")
        values.update(loaded)
    values.update({k: v for k, v in overrides.items() if v is not None})
    # Init kwargs win over env; let env fill what neither the file nor flags set.
    return Settings(**values)
