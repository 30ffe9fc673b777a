"""Issue 10, failure 6: the storage quota holds.

The instances live on a small tmpfs (the instance's disk). As the source grows, the task warns at
80 % and 90 % of what the instance can hold, then stops replicating with ReasonCode
StorageQuotaExceeded before the disk is full; the API answers throughout (Describe, Delete). A
copy that cannot fit is refused before it fills the disk.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest
from alibabacloud_rds20140815 import models as rds

from cloudmig.domain.lsn import parse_lsn
from tests.support.faults import cloudmig_slots, item, migrate_to_streaming
from tests.support.flows import create_instance, create_migration, instance_attribute, wait_for, wait_running
from tests.support.service import Service

pytestmark = pytest.mark.e2e

MB = 1024 * 1024


def _free_mb(path: Path) -> float:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / MB


def _failed(svc: Service, instance_id: str, task_id: int) -> dict | None:
    it = item(svc, instance_id, task_id)
    return it if it["Status"] == "failed" else None


def _arrived(svc: Service, client, instance_id: str, task_id: int, lsn: int) -> dict | None:
    """The item once the target received `lsn` (or the task failed); the API answers meanwhile."""
    assert instance_attribute(client, instance_id).dbinstance_status == "Running"
    it = item(svc, instance_id, task_id)
    if it["Status"] == "failed":
        return it
    received = (it["Progress"].get("Replication") or {}).get("ReceivedLsn")
    health = it["Progress"].get("Health") or {}
    return it if received and parse_lsn(received) >= lsn and health.get("StorageUsedBytes") else None


@pytest.mark.parametrize("small_disk_service", [(384, 64)], indirect=True)
def test_storage_warnings_then_stop_before_the_disk_is_full(small_disk_service, make_source) -> None:
    svc = small_disk_service.start()
    disk = svc.data_dir / "instances"
    source = make_source(scale=1)
    source.sql("CREATE TABLE growth (id int, pad text)")
    source.sql("ALTER TABLE growth ALTER COLUMN pad SET STORAGE EXTERNAL")  # not compressed
    client, instance_id, _, task_id = migrate_to_streaming(svc, source)

    warnings: list[str] = []
    lowest_free = _free_mb(disk)
    for chunk in range(100):
        # About 3 % of what the instance can hold (rows and their WAL), so no warning level is
        # skipped, however the WAL segments (16 MB files) fall.
        source.sql(
            "INSERT INTO growth SELECT g, repeat(md5(g::text), 100) FROM generate_series(%s::int, %s::int) g",
            (chunk * 1500, chunk * 1500 + 1499),
        )
        lsn = parse_lsn(str(source.scalar("SELECT pg_current_wal_lsn()")))
        it = wait_for(partial(_arrived, svc, client, instance_id, task_id, lsn), 60, what="the chunk")
        lowest_free = min(lowest_free, _free_mb(disk))
        if it["Warning"] and (not warnings or warnings[-1] != it["Warning"].split(":")[0]):
            warnings.append(it["Warning"].split(":")[0])
        if it["Status"] == "failed":
            break
    else:
        pytest.fail("the task never stopped")

    assert warnings[:2] == ["Storage above 80%", "Storage above 90%"], warnings
    assert it["ReasonCode"] == "StorageQuotaExceeded", it["Reason"]
    assert "less than the 64 MB reserve" in it["Reason"] and "replication stopped" in it["Reason"]
    assert lowest_free > 16, f"the disk came down to {lowest_free:.0f} MB free"
    assert "No space left on device" not in svc.output()
    wait_for(lambda: cloudmig_slots(source) == [], 60, what="the slot to be dropped")

    # Describe and Delete work; the instance's disk is free again.
    assert item(svc, instance_id, task_id)["Status"] == "failed"
    client.delete_dbinstance(rds.DeleteDBInstanceRequest(dbinstance_id=instance_id))
    wait_for(lambda: not any(disk.iterdir()), 60, what="the instance to be deleted")


@pytest.mark.parametrize("small_disk_service", [(128, 96)], indirect=True)
def test_copy_that_does_not_fit_is_refused(small_disk_service, make_source) -> None:
    svc = small_disk_service.start()
    source = make_source(scale=1)
    client = svc.tea()
    instance_id = create_instance(client)
    wait_running(client, instance_id)
    task_id = create_migration(client, instance_id, source).task_id

    it = wait_for(lambda: _failed(svc, instance_id, task_id), 60, what="the copy to be refused")
    assert it["ReasonCode"] == "StorageQuotaExceeded"
    assert "does not fit the free space of the instance's file system" in it["Reason"]
    wait_for(lambda: cloudmig_slots(source) == [], 60, what="the slot to be dropped")
    assert instance_attribute(client, instance_id).dbinstance_status == "Running"
