"""How much WAL a migration's replication slot may hold on the source before cloudmig reports it
(warning) and before it stops the migration and drops the slot (limit), so that a stalled migration
never fills the source's disk. The assessment's "Check wal keep size" explains these numbers; the
engine enforces them. Pure.
"""

from __future__ import annotations

from typing import Protocol

MB = 1024 * 1024
# Derived levels when the settings are 0: multiples of the source's max_wal_size, with floors.
WARNING_WAL_SIZES = 4
LIMIT_WAL_SIZES = 8
MIN_WARNING_MB = 1024
MIN_LIMIT_MB = 2048
# When the source itself invalidates slots (max_slot_wal_keep_size) at or below the limit, act first.
KEEP_SIZE_FRACTION_NUM, KEEP_SIZE_FRACTION_DEN = 9, 10


class SlotWalSettings(Protocol):
    """The two settings (cloudmig.settings.Settings has them); 0 = derived from the source."""

    @property
    def slot_wal_warning_mb(self) -> int: ...

    @property
    def slot_wal_limit_mb(self) -> int: ...


def slot_wal_thresholds(
    settings: SlotWalSettings, max_wal_size_mb: int, max_slot_wal_keep_size_mb: int | None
) -> tuple[int, int]:
    """(warning_bytes, limit_bytes) of WAL retained by the migration's slot.

    `max_slot_wal_keep_size_mb` is the source's setting (None before PostgreSQL 13, -1 unbounded).
    The warning level never exceeds the limit: when it would, it is half the limit.
    """
    wal = max(0, max_wal_size_mb)
    warning_mb = settings.slot_wal_warning_mb or max(WARNING_WAL_SIZES * wal, MIN_WARNING_MB)
    limit_mb = settings.slot_wal_limit_mb or max(LIMIT_WAL_SIZES * wal, MIN_LIMIT_MB)
    limit = limit_mb * MB
    if max_slot_wal_keep_size_mb is not None and 0 <= max_slot_wal_keep_size_mb * MB <= limit:
        limit = max_slot_wal_keep_size_mb * MB * KEEP_SIZE_FRACTION_NUM // KEEP_SIZE_FRACTION_DEN
    warning = warning_mb * MB
    if warning > limit:
        warning = limit // 2
    return warning, limit


# Storage of a target: warnings at these shares of DBInstanceStorage; at the quota the task stops.
STORAGE_WARNINGS = (0.8, 0.9)
