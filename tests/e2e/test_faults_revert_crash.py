"""A failed task's revert cut short is run again to its end: after a SIGKILL of the service, and
while a fence left up cannot be lifted yet.

SIGKILL while a failed task's revert runs:

The task fails (its instance's disk below the storage reserve) while the source's postmaster is
frozen, so the revert's slot drop waits on a connection to it; the service is killed there. The
store then says: failed, the instance still held by the task, its slot still on the source. After
a restart the revert is run again to its end: the slot is gone, the instance is an empty running
cluster again and a new migration on it is accepted and streams. Before, nothing ran it again and
every new migration on the instance was refused for good.

A fence left up: a switchover is given up while the source's postmaster is frozen, so its fence
stays up; the task then fails (the disk). Its revert lifts the fence first and waits for the
source: once the source answers, the fence is lifted and only then the instance reset and released.
Before, the revert reset the instance and left the source read-only for new sessions.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from Tea.exceptions import TeaException

from tests.support.cutover import activate, evidence, grant_fence, new_sessions_read_only
from tests.support.faults import (
    cloudmig_slots,
    connect_target,
    item,
    migrate_to_streaming,
    postmaster_pid,
    stopped,
)
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


def _failed(svc: Any, instance_id: str, task_id: int) -> dict[str, Any]:
    def failed() -> dict[str, Any] | None:
        it = item(svc, instance_id, task_id)
        return it if it["Status"] == "failed" else None

    return wait_for(failed, 60, interval=0.05, what="the task to fail")


def _reverted(svc: Any, instance_id: str, task_id: int, what: str) -> str:
    """The Detail once the revert has ended (its last line says the migration can be retried)."""

    def ended() -> str | None:
        detail = str(item(svc, instance_id, task_id)["Detail"])
        return detail if "the migration can be retried" in detail else None

    return wait_for(ended, 90, interval=0.2, what=what)


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
        failed = _failed(svc, instance_id, task_id)
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
    detail = _reverted(svc, instance_id, task_id, "the revert to be run again to its end")
    assert "Cleaning up after the failure, which had not completed" in detail
    assert _holder(svc, instance_id) is None
    wait_for(lambda: cloudmig_slots(source) == [], 60, what="the slot to be dropped")

    # The instance takes a new migration, which streams.
    new_task = create_migration(client, instance_id, source).task_id
    assert new_task != task_id
    wait_streaming(client, instance_id, new_task)


@pytest.mark.parametrize("small_disk_service", [(384, RESERVE_MB)], indirect=True)
def test_a_fence_left_up_is_lifted_before_the_instance_is_released(
    small_disk_service: Any, make_source: Any
) -> None:
    svc = small_disk_service
    svc.extra_env.update(CLOUDMIG_SWITCH_CATCHUP_TIMEOUT="10", CLOUDMIG_SWITCH_VERDICT_SECONDS="1")
    svc.start()
    source = make_source(scale=1)
    grant_fence(source)
    client, instance_id, attr, task_id = migrate_to_streaming(svc, source)
    # Replay held: the switch fences the source and waits for the target past its timeout.
    with connect_target(svc, instance_id, int(attr.port)) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    source.sql("CREATE TABLE behind_the_cut AS SELECT 1 AS x")
    activate(client, instance_id)
    wait_for(
        lambda: evidence(svc, instance_id, task_id).get("FenceState") == "up",
        60,
        interval=0.05,
        what="the fence to be up",
    )

    with stopped(postmaster_pid(source.pgdata)):
        # Given up while the source takes no new connection: the fence cannot be lifted.
        wait_for(
            lambda: "Switchover aborted" in item(svc, instance_id, task_id)["Detail"],
            90,
            interval=0.2,
            what="the switchover to be given up",
        )
        assert evidence(svc, instance_id, task_id).get("FenceState") in ("up", "lifting")
        filler = _fill_below_the_reserve(svc.data_dir / "instances")
        failed = _failed(svc, instance_id, task_id)
        assert failed["ReasonCode"] == "StorageQuotaExceeded", failed["Reason"]
        # The revert waits for the source: the instance is held meanwhile.
        wait_for(
            lambda: "did not complete" in item(svc, instance_id, task_id)["Detail"],
            60,
            interval=0.2,
            what="the revert to say it waits",
        )
        assert _holder(svc, instance_id) == task_id
        filler.unlink()

    detail = _reverted(svc, instance_id, task_id, "the revert to end once the source answers")
    assert not new_sessions_read_only(source), "the source was left read-only"
    assert detail.index("Fence lifted") < detail.index("The instance was reset"), detail
    assert evidence(svc, instance_id, task_id).get("FenceState") == "lifted"
    assert _holder(svc, instance_id) is None
    wait_for(lambda: cloudmig_slots(source) == [], 60, what="the slot to be dropped")
