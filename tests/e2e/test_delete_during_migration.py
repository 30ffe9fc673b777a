"""Deleting an instance while its migration copies: the copy stops, the slot goes, nothing is left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from alibabacloud_rds20140815 import models as rds

from tests.support.flows import raw_items, start_throttled_migration, wait_for

pytestmark = pytest.mark.e2e


def _pg_basebackups() -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"pg_basebackup" in cmd.split(b"\0")[0]:
                found.append(pid)
    return found


def test_delete_instance_mid_copy(fresh_service, make_source) -> None:
    svc = fresh_service
    source = make_source(scale=1)
    client, iid, _, task_id = start_throttled_migration(svc, source, rate_kb=512)

    def copying() -> bool:
        it = raw_items(svc, iid, task_id=task_id)[0]
        return bool(it["Progress"].get("BaseBackup", {}).get("BytesDone", 0) > 0)

    wait_for(copying, 60, interval=0.2, what="the copy to start")
    assert source.sql("SELECT count(*) FROM pg_replication_slots") == [(1,)]
    client.delete_dbinstance(rds.DeleteDBInstanceRequest(dbinstance_id=iid))

    def gone() -> bool:
        ids = [
            i.dbinstance_id
            for i in client.describe_dbinstances(
                rds.DescribeDBInstancesRequest(region_id="cn-hangzhou")
            ).body.items.dbinstance
        ]
        return iid not in ids

    wait_for(gone, 60, what="the instance to be deleted")
    wait_for(
        lambda: source.sql("SELECT count(*) FROM pg_replication_slots") == [(0,)],
        30,
        what="the slot to be dropped on the source",
    )
    wait_for(lambda: not _pg_basebackups(), 30, what="pg_basebackup to stop")
    assert not (svc.data_dir / "instances" / iid).exists()
    assert not (svc.runtime_dir / "pgpass" / iid / "pgpass").exists()
