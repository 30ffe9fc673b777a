"""Issue 10, failure 8: a copy survives a source restart of about a minute.

The source stops during a (throttled) full copy for longer than the old retry budget (5 attempts,
about 30 s): the task shows `disconnect` and says it retries, the copy starts again by itself once
the source is back, and the task reaches streaming with all the data.

The first copy's pg_basebackup creates the task's slot on its own WAL connection (-C); the copy
after the outage finds the slot there and streams through it without creating it again.
"""

from __future__ import annotations

import time

import pytest

from tests.support.faults import cloudmig_slots, connect_target, item
from tests.support.flows import start_throttled_migration, wait_for, wait_streaming

pytestmark = pytest.mark.e2e

# Longer than the old budget; the default retry time (15 min) covers much longer outages.
OUTAGE_SECONDS = 50


def test_copy_survives_a_source_restart(fresh_service, make_source) -> None:
    svc = fresh_service
    source = make_source(scale=1, log_replication_commands="on")
    client, instance_id, attr, task_id = start_throttled_migration(svc, source, rate_kb=2048)

    def copying() -> bool:
        it = item(svc, instance_id, task_id)
        return (
            it["MigrateStage"] == "basebackup"
            and it["Progress"].get("BaseBackup", {}).get("BytesDone", 0) > 0
        )

    wait_for(copying, 60, interval=0.2, what="the copy to start")
    source.stop(mode="immediate")
    down_at = time.monotonic()
    wait_for(
        lambda: item(svc, instance_id, task_id)["ReplicationState"] == "disconnect", 30, what="disconnect"
    )
    while time.monotonic() - down_at < OUTAGE_SECONDS:
        it = item(svc, instance_id, task_id)  # the API answers, and the task waits
        assert it["Status"] == "running" and it["ReplicationState"] == "disconnect", it["Detail"]
        time.sleep(1)
    assert "[Retrying]" in it["Detail"] and "Stage basebackup failed, will retry" in it["Detail"]
    source.start()

    it = wait_streaming(client, instance_id, task_id, timeout=180)
    assert "Restart full backup of source data" in it.detail
    assert "[Task failed]" not in it.detail
    with connect_target(svc, instance_id, int(attr.port)) as conn:
        assert conn.execute("SELECT count(*) FROM pgbench_accounts").fetchone() == (100000,)
    [(slot, active, _)] = cloudmig_slots(source)
    assert active, "the standby does not stream through the task's slot"
    log = source.logfile.read_text(errors="replace")
    command = f'received replication command: CREATE_REPLICATION_SLOT "{slot}"'
    assert log.count(command) == 1, [line for line in log.splitlines() if "CREATE_REPLICATION_SLOT" in line]
