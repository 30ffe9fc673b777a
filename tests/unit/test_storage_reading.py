"""Storage warnings and the limit against what an instance can really hold (engine/health.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from cloudmig.engine.health import copy_fits, read_storage

MB = 1024 * 1024
GB = 1024 * MB


@dataclass
class FakeInstance:
    used: int
    free: int
    storage_gb: int = 20
    copied: int = 0  # written so far by a copy in progress (part of `used`)

    @property
    def storage_bytes(self) -> int:
        return self.storage_gb * GB

    def size_bytes(self) -> int:
        return self.used

    def copy_bytes(self) -> int:
        return self.copied

    def free_bytes(self) -> int:
        return self.free


def _read(inst: FakeInstance, reserve_mb: int = 64) -> Any:
    return read_storage(cast(Any, inst), reserve_mb)


def test_the_quota_binds_on_a_large_disk() -> None:
    r = _read(FakeInstance(used=810 * MB, free=100 * GB, storage_gb=1))
    assert r.capacity == GB and r.level == 0.0
    r = _read(FakeInstance(used=830 * MB, free=100 * GB, storage_gb=1))
    assert r.level == 0.8 and "of 1 GB (81%)" in r.message
    r = _read(FakeInstance(used=930 * MB, free=100 * GB, storage_gb=1))
    assert r.level == 0.9
    r = _read(FakeInstance(used=GB, free=100 * GB, storage_gb=1))
    assert r.level == 1.0 and "storage quota is 1 GB" in r.message


def test_a_small_file_system_binds_before_the_quota() -> None:
    # 100 MB used, 164 MB free, 64 MB kept free: the instance can hold 200 MB.
    r = _read(FakeInstance(used=100 * MB, free=164 * MB))
    assert r.capacity == 200 * MB and r.level == 0.0
    r = _read(FakeInstance(used=165 * MB, free=99 * MB))
    assert r.level == 0.8 and "the 200 MB its file system can hold (keeping 64 MB free" in r.message
    r = _read(FakeInstance(used=185 * MB, free=79 * MB))
    assert r.level == 0.9
    r = _read(FakeInstance(used=201 * MB, free=63 * MB))
    assert r.level == 1.0 and "less than the 64 MB reserve" in r.message


def test_a_copy_must_fit_the_quota_and_the_file_system() -> None:
    assert copy_fits(cast(Any, FakeInstance(used=40 * MB, free=GB)), 500 * MB, 64) is None
    too_big = copy_fits(cast(Any, FakeInstance(used=40 * MB, free=GB, storage_gb=1)), 2 * GB, 64)
    assert too_big is not None and "larger than the instance's storage" in too_big
    no_room = copy_fits(cast(Any, FakeInstance(used=40 * MB, free=60 * MB)), 50 * MB, 64)
    assert no_room is not None and "does not fit the free space" in no_room
    # What the copy already wrote is its own room; the data directory it replaces stays until the
    # copy is complete, so it is not.
    assert (
        copy_fits(cast(Any, FakeInstance(used=400 * MB, free=100 * MB, copied=400 * MB)), 430 * MB, 64)
        is None
    )
    kept_until_done = copy_fits(cast(Any, FakeInstance(used=2 * GB, free=GB)), GB + 500 * MB, 64)
    assert kept_until_done is not None and "does not fit the free space" in kept_until_done
