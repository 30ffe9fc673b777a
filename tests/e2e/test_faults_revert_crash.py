"""SIGKILL of the service while a failed task's revert runs.

The task fails (its instance's disk below the storage reserve) while the source's postmaster is
frozen, so the revert's slot drop waits on a connection to it; the service is killed there. The
store then says: failed, the instance still held by the task, its slot still on the source. After
a restart the revert is run again to its end: the slot is gone, the instance is an empty running
cluster again and a new migration on it is accepted and streams. Before, nothing ran it again and
every new migration on the instance was refused for good.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from Tea.exceptions import TeaException

from tests.support.faults import cloudmig_slots, item, migrate_to_streaming, postmaster_pid, stopped
from tests.support.flows import create_migration, wait_for, wait_streaming

pytestmark = pytest.mark.e2e

MB = 1024 * 1024
RESERVE_MB = 64


def _fill_below_the_reserve(disk: Path) -> Path:
    filler = disk / "filler"
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, free - RESERVE_MB * MB // 2)
    return filler


def _holder(svc: Any, instance_id: str) -> int | None:
    conn = sqlite3.connect(f"file:{svc.data_dir / 'cloudmig.db'}?mode=ro", uri=True, timeout=30)
    try:
        row = conn.execute("SELECT migration_task_id FROM instances WHERE id = ?", (instance_id,)).fetchone()
    finally:
        conn.close()
    return None if row is None or row[0] is None else int(row[0])


@pytest.mark.parametrize("small_disk_service", [(384, RESERVE_MB)], indirect=True)
def test_sigkill_during_a_failed_tasks_revert(small_disk_service: Any, make_source: Any) -> None:
    svc = small_disk_service
    # The revert's slot drop then waits this long on the frozen source: the kill lands in it.
    svc.extra_env["CLOUDMIG_SOURCE_CONNECT_TIMEOUT"] = "30"
    svc.start()
    source = make_source(scale=1)
    client, instance_id, _, task_id = migrate_to_streaming(svc, source)
    assert len(cloudmig_slots(source)) == 1

    with stopped(postmaster_pid(source.pgdata)):
        filler = _fill_below_the_reserve(svc.data_dir / "instances")
        failed = wait_for(
            lambda: (it := item(svc, instance_id, task_id))["Status"] == "failed" and it,
            60,
            interval=0.05,
            what="the task to fail",
        )
        # Meanwhile a new migration on the instance is refused, saying why.
        with pytest.raises(TeaException) as refused:
            create_migration(svc.tea(), instance_id, source)
        svc.kill()
        filler.unlink()
    assert failed["ReasonCode"] == "StorageQuotaExceeded", failed["Reason"]
    assert refused.value.code == "IncorrectDBInstanceState", refused.value
    assert f"Migration task {task_id} failed and cloudmig is still cleaning up" in str(refused.value.message)
    # What the kill left: a failed task that still holds its instance, its slot on the source.
    assert _holder(svc, instance_id) == task_id
    assert "the migration can be retried" not in failed["Detail"]
    assert len(cloudmig_slots(source)) == 1

    svc.start()
    client = svc.tea()
    detail = wait_for(
        lambda: (
            (d := item(svc, instance_id, task_id)["Detail"]) and "the migration can be retried" in d and d
        ),
        90,
        interval=0.2,
        what="the revert to be run again to its end",
    )
    assert "Cleaning up after the failure, which had not completed" in detail
    assert _holder(svc, instance_id) is None
    wait_for(lambda: cloudmig_slots(source) == [], 60, what="the slot to be dropped")

    # The instance takes a new migration, which streams.
    new_task = create_migration(client, instance_id, source).task_id
    assert new_task != task_id
    wait_streaming(client, instance_id, new_task)
