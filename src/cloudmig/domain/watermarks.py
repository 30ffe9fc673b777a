"""How much of the source's WAL a migration's slot may hold, and how full the target may get."""

from __future__ import annotations

from cloudmig.settings import Settings

MB = 1024 * 1024
MIN_WARNING_MB = 1024
MIN_LIMIT_MB = 2048
# Derived from max_wal_size: a healthy standby keeps the slot near the source's own WAL size.
WARNING_FACTOR = 4
LIMIT_FACTOR = 8
# max_slot_wal_keep_size invalidates the slot at its size: stop a little before.
KEEP_SIZE_SHARE = 0.9
# Storage of a target: warnings at these shares of DBInstanceStorage, stop at the quota.
STORAGE_WARNINGS = (0.8, 0.9)


def slot_wal_thresholds(
    settings: Settings, max_wal_size_mb: int, max_slot_wal_keep_size_mb: int | None
) -> tuple[int, int]:
    """(warning, limit) in bytes of WAL retained by a task's slot on its source."""
    warning_mb = settings.slot_wal_warning_mb or max(WARNING_FACTOR * max_wal_size_mb, MIN_WARNING_MB)
    limit_mb = settings.slot_wal_limit_mb or max(LIMIT_FACTOR * max_wal_size_mb, MIN_LIMIT_MB)
    if max_slot_wal_keep_size_mb is not None and max_slot_wal_keep_size_mb > 0:
        limit_mb = min(limit_mb, int(max_slot_wal_keep_size_mb * KEEP_SIZE_SHARE))
    return min(warning_mb, limit_mb) * MB, limit_mb * MB


def storage_level(used: int, quota: int) -> float:
    return used / quota if quota > 0 else 0.0
