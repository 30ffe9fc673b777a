"""Issue 10, failure 2: no replication slot is left on the production source.

The source goes down (pg_ctl stop -m immediate) during the copy for longer than the task's retry
budget: the task fails saying why, the slot cannot be dropped then, and the drop is retried, also
after a restart of the service, until the slot is gone once the source is back; meanwhile /metrics shows it pending.
A source that is gone for good: the operator gives the drop up (`cloudmig slots give-up`), the task's
Detail says how to drop the slot by hand, and should the source come back the orphan sweep drops it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.faults import cloudmig_slots, item
from tests.support.flows import start_throttled_migration, wait_for
from tests.support.scrape import scrape, value

pytestmark = pytest.mark.e2e


def _fail_with_the_source_down(svc, source) -> tuple[str, int, str, dict]:
    """A copy under way, then the source stopped until the task fails: (instance, task, slot, item)."""
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
        # The task shows failed first, then its stage reverts (slot drop, reset): wait for the end.
        reverted = "the migration can be retried" in it["Detail"]
        return it if it["Status"] == "failed" and reverted else None

    it = wait_for(failed, 90, interval=0.2, what="the task to fail and be reverted")
    assert any(seen_disconnect), "the outage was never shown as disconnect"
    return instance_id, task_id, slot, it


def test_source_down_past_the_retry_budget_leaves_no_slot(fresh_service, make_source) -> None:
    svc = fresh_service
    # Fail fast; the orphan sweep only at start, so that the durable drop is what removes the slot.
    svc.extra_env.update({"CLOUDMIG_RETRY_SECONDS": "6", "CLOUDMIG_SLOT_SWEEP_SECONDS": "3600"})
    source = make_source(scale=1)
    instance_id, task_id, slot, it = _fail_with_the_source_down(svc, source)
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


def test_a_drop_given_up_by_the_operator_stops_and_says_how_to_drop_by_hand(
    fresh_service, make_source
) -> None:
    svc = fresh_service
    # The orphan sweep runs often: while the source is down it finds nothing to add.
    svc.extra_env.update({"CLOUDMIG_RETRY_SECONDS": "6", "CLOUDMIG_SLOT_SWEEP_SECONDS": "2"})
    source = make_source(scale=1)
    instance_id, task_id, slot, _ = _fail_with_the_source_down(svc, source)

    [row] = json.loads(svc.cli("slots", "list", "--output", "json").stdout)
    assert (row["Slot"], row["TaskId"], row["Source"]) == (slot, task_id, f"127.0.0.1:{source.port}")
    assert row["Attempts"] >= 1 and row["LastError"]

    # Not on a terminal and without --yes: refused, nothing given up.
    asked = subprocess.run(
        [sys.executable, "-m", "cloudmig", "slots", "give-up", slot],
        env=svc.env(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert asked.returncode == 2 and "--yes" in asked.stderr
    unknown = subprocess.run(
        [sys.executable, "-m", "cloudmig", "slots", "give-up", "no_such_slot", "--yes"],
        env=svc.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unknown.returncode == 1 and "no pending slot drop no_such_slot" in unknown.stderr
    samples, _ = scrape(svc)
    assert value(samples, "cloudmig_slot_drops_pending") == 1

    out = svc.cli("slots", "give-up", str(row["Id"]), "--yes").stdout
    assert f"SELECT pg_drop_replication_slot('{slot}');" in out
    assert json.loads(svc.cli("slots", "list", "--output", "json").stdout) == []
    samples, _ = scrape(svc)
    assert value(samples, "cloudmig_slot_drops_pending") == 0
    it = item(svc, instance_id, task_id)
    assert (
        f"The drop of replication slot {slot} on the source was given up by the operator after"
        in it["Detail"]
    )
    assert it["Status"] == "failed"

    # The source was not gone for good after all: the slot it still has is an orphan, and the sweep
    # drops it.
    source.start()
    wait_for(lambda: cloudmig_slots(source) == [], 60, interval=0.5, what="the sweep to drop the slot")
