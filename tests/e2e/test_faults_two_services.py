"""Issue 10, failure 3: slot names never collide.

Two cloudmig services migrate from one source, each to its own instance: their slots have
distinct names, neither touches the other's walsender or slot (their orphan sweeps included), and
deleting one's instance leaves the other streaming. Task ids are never reused after a deletion.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from alibabacloud_rds20140815 import models as rds

from tests.support.faults import cloudmig_slots, item, walsender_of
from tests.support.flows import create_instance, create_migration, wait_for, wait_running, wait_streaming
from tests.support.pgcluster import make_base_dir
from tests.support.service import Service

pytestmark = pytest.mark.e2e


@pytest.fixture
def two_services(e2e_base) -> Iterator[tuple[Service, Service]]:
    env = {"CLOUDMIG_SLOT_SWEEP_SECONDS": "1"}  # sweeps run all along
    made = [Service(make_base_dir("svc-", parent=e2e_base), extra_env=dict(env)) for _ in range(2)]
    yield made[0], made[1]
    for svc in made:
        svc.destroy()


def _has_rows(svc: Service, instance_id: str, port: int, table: str) -> bool:
    from tests.support.faults import connect_target

    with connect_target(svc, instance_id, port) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone() == (True,)


def _slot_of(svc: Service, instance_id: str, task_id: int) -> str:
    """The task's slot, as its Detail names it once the copy starts."""

    def named() -> str | None:
        found = re.search(r"through slot (cloudmig_\w+)", item(svc, instance_id, task_id)["Detail"])
        return found.group(1) if found else None

    return wait_for(named, 60, what=f"the slot of task {task_id}")


def test_two_services_on_one_source(two_services, make_source) -> None:
    a, b = (svc.start() for svc in two_services)
    source = make_source(scale=1)
    ca, cb = a.tea(), b.tea()
    ia, ib = create_instance(ca), create_instance(cb)
    attr_b = wait_running(cb, ib)
    wait_running(ca, ia)
    tb = create_migration(cb, ib, source).task_id
    wait_streaming(cb, ib, tb)
    slot_b = _slot_of(b, ib, tb)
    sender_b = walsender_of(source, slot_b)
    assert sender_b is not None

    # A's migration starts while B streams (with the old names both would be task 1's slot).
    ta = create_migration(ca, ia, source).task_id
    wait_streaming(ca, ia, ta)
    slot_a = _slot_of(a, ia, ta)
    assert {name for name, _, _ in cloudmig_slots(source)} == {slot_a, slot_b}
    assert slot_a.rsplit("_", 1)[0] != slot_b.rsplit("_", 1)[0], "the installations share a prefix"
    assert walsender_of(source, slot_a) not in (None, sender_b)
    assert walsender_of(source, slot_b) == sender_b

    # Several sweeps of both services later, both still stream through their own walsenders.
    source.sql("CREATE TABLE after_both AS SELECT 1 AS n")
    wait_for(lambda: _has_rows(b, ib, int(attr_b.port), "after_both"), 30, what="B to receive")
    assert walsender_of(source, slot_b) == sender_b

    # Deleting A's instance drops A's slot only; B keeps streaming through the same walsender.
    ca.delete_dbinstance(rds.DeleteDBInstanceRequest(dbinstance_id=ia))
    wait_for(lambda: {n for n, _, _ in cloudmig_slots(source)} == {slot_b}, 60, what="A's slot to go")
    source.sql("CREATE TABLE after_delete AS SELECT 1 AS n")
    wait_for(lambda: _has_rows(b, ib, int(attr_b.port), "after_delete"), 30, what="B to go on receiving")
    assert walsender_of(source, slot_b) == sender_b
    it = item(b, ib, tb)
    assert (it["MigrateStage"], it["ReplicationState"], it["Status"]) == ("increment", "streaming", "running")

    # A's next task gets a new id, and so a slot name A never used.
    ia2 = create_instance(ca)
    wait_running(ca, ia2)
    ta2 = create_migration(ca, ia2, source).task_id
    assert ta2 > ta
    slot_a2 = _slot_of(a, ia2, ta2)
    assert slot_a2 == f"{slot_a.rsplit('_', 1)[0]}_{ta2}"
    wait_for(lambda: {n for n, _, _ in cloudmig_slots(source)} == {slot_b, slot_a2}, 60, what="A's new slot")
