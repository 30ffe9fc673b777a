"""Issue 10, failure 2: no replication slot is left on the production source.

The source goes down (pg_ctl stop -m immediate) during the copy for longer than the task's retry
budget: the task fails saying why, the slot cannot be dropped then, and the drop is retried, also
after a restart of the service, until the slot is gone once the source is back; meanwhile /metrics shows it pending.
"""

from __future__ import annotations

import pytest

from tests.support.faults import cloudmig_slots, item
from tests.support.flows import start_throttled_migration, wait_for
from tests.support.scrape import scrape, value

pytestmark = pytest.mark.e2e


def test_source_down_past_the_retry_budget_leaves_no_slot(fresh_service, make_source) -> None:
    svc = fresh_service
    # Fail fast; the orphan sweep only at start, so that the durable drop is what removes the slot.
    svc.extra_env.update({"CLOUDMIG_RETRY_SECONDS": "6", "CLOUDMIG_SLOT_SWEEP_SECONDS": "3600"})
    source = make_source(scale=1)
    _client, instance_id, _, task_id = start_throttled_migration(svc, source, rate_kb=512)

    def copying() -> bool:
        it = item(svc, instance_id, task_id)
        return (
            it["MigrateStage"] == "basebackup"
            and it["Progress"].get("BaseBackup", {}).get("BytesDone", 0) > 0
        )

    wait_for(copying, 60, interval=0.2, what="the copy to start")
    [(slot, _, _)] = cloudmig_slots(source)
    source.stop(mode="immediate")

    seen_disconnect: list[bool] = []

    def failed() -> dict | None:
        it = item(svc, instance_id, task_id)
        seen_disconnect.append(it["ReplicationState"] == "disconnect")
        return it if it["Status"] == "failed" else None

    it = wait_for(failed, 90, interval=0.2, what="the task to fail")
    assert any(seen_disconnect), "the outage was never shown as disconnect"
    assert it["ReasonCode"] == "RetriesExhausted"
    assert "the full copy kept failing" in it["Reason"] and "cannot reach the source" in it["Reason"]
    assert f"Replication slot {slot} could not be dropped yet" in it["Detail"]
    # The pending drop is visible to monitoring, not only in the task's Detail.
    samples, _ = scrape(svc)
    assert value(samples, "cloudmig_slot_drops_pending") == 1
    assert (value(samples, "cloudmig_slot_drop_oldest_seconds") or 0) > 0

    # The pending drop outlives the service.
    svc.kill()
    svc.start()
    source.start()
    source.pgbench(seconds=3)  # the WAL an orphan slot would keep
    wait_for(lambda: cloudmig_slots(source) == [], 90, interval=0.5, what="the slot to be dropped")
    it = item(svc, instance_id, task_id)
    assert f"Dropped replication slot {slot} on the source after" in it["Detail"]
    assert it["Status"] == "failed" and it["ReasonCode"] == "RetriesExhausted"
    samples, _ = scrape(svc)
    assert value(samples, "cloudmig_slot_drops_pending") == 0
    assert value(samples, "cloudmig_slot_drop_oldest_seconds") == 0
