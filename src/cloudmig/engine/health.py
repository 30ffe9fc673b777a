"""Watermarks that protect both sides: the WAL a task's slot keeps on the source, and the target's
size against its storage quota and its file system."""

from __future__ import annotations

from dataclasses import dataclass

from cloudmig.domain.watermarks import MB, STORAGE_WARNINGS, slot_wal_thresholds
from cloudmig.instances.managed import ManagedInstance
from cloudmig.pg.slots import SlotHealth
from cloudmig.settings import Settings


def _mb(n: int) -> str:
    return f"{n / MB:.0f} MB"


def copy_fits(inst: ManagedInstance, total_bytes: int, reserve_mb: int) -> str | None:
    """Why a copy of `total_bytes` cannot go into the instance, or None."""
    if total_bytes > inst.storage_bytes:
        return (
            f"the source's data ({_mb(total_bytes)}) is larger than the instance's storage "
            f"({inst.storage_gb} GB); nothing was written beyond it"
        )
    # What this copy wrote so far is room it already has.
    free = inst.free_bytes() + inst.copy_bytes()
    if total_bytes > free - reserve_mb * MB:
        return (
            f"the copy ({_mb(total_bytes)}) does not fit the free space of the instance's file system "
            f"({_mb(free)}, keeping {reserve_mb} MB free)"
        )
    return None


@dataclass(frozen=True)
class StorageReading:
    used: int
    quota: int
    free: int
    # What the instance can hold: its quota, or less when its file system cannot give that much
    # while keeping the reserve free (warnings are shares of this).
    capacity: int
    # The highest warning level (0.8, 0.9) passed, 0 for none, 1.0 at the quota or a full disk.
    level: float
    message: str


def read_storage(inst: ManagedInstance, reserve_mb: int) -> StorageReading:
    used = inst.size_bytes()
    quota = inst.storage_bytes
    free = inst.free_bytes()
    room = max(used + free - reserve_mb * MB, 0)
    capacity = min(quota, room)
    full = None
    if used >= quota:
        full = f"the instance uses {_mb(used)}, its storage quota is {inst.storage_gb} GB"
    elif free < reserve_mb * MB:
        full = f"its file system has {_mb(free)} free, less than the {reserve_mb} MB reserve"
    if full is not None:
        return StorageReading(used, quota, free, capacity, 1.0, full)
    share = used / capacity if capacity else 1.0
    level = max((w for w in STORAGE_WARNINGS if share >= w), default=0.0)
    of = (
        f"{inst.storage_gb} GB"
        if capacity == quota
        else f"the {_mb(capacity)} its file system can hold (keeping {reserve_mb} MB free; quota {inst.storage_gb} GB)"
    )
    return StorageReading(
        used, quota, free, capacity, level, f"the instance uses {_mb(used)} of {of} ({share:.0%})"
    )


@dataclass(frozen=True)
class WalReading:
    retained: int | None
    warning: int
    limit: int

    @property
    def over_warning(self) -> bool:
        return self.retained is not None and self.retained >= self.warning

    @property
    def over_limit(self) -> bool:
        return self.retained is not None and self.retained >= self.limit

    def describe(self) -> str:
        held = "unknown" if self.retained is None else _mb(self.retained)
        return f"the slot keeps {held} of WAL on the source (warning at {_mb(self.warning)}, limit {_mb(self.limit)})"


def read_wal(
    settings: Settings, slot: SlotHealth, max_wal_size_mb: int, keep_size_mb: int | None
) -> WalReading:
    warning, limit = slot_wal_thresholds(settings, max_wal_size_mb, keep_size_mb)
    return WalReading(slot.retained_bytes, warning, limit)
