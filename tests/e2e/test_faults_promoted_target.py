"""Issue 10, failure 1: a promoted target is never wiped.

A crash after the point of no return (evidence Phase=promoting, persisted before the promotion is
issued) must leave the target as it is: after a restart the switch completes, the rows written
before the crash are on the new primary, and the timeline went up exactly once.
"""

from __future__ import annotations

import pytest

from tests.support.faults import (
    activate,
    cloudmig_slots,
    cluster_child,
    connect_target,
    crash_cluster,
    in_recovery,
    instance_pgdata,
    item,
    ledger,
    migrate_to_streaming,
    phase,
    postmaster_pid,
    stopped,
    timeline,
    wait_success,
)
from tests.support.flows import wait_for

pytestmark = pytest.mark.e2e

ROWS = 200


def _ids_on(service, instance_id, port) -> set[int]:
    with connect_target(service, instance_id, port) as conn:
        return {int(r[0]) for r in conn.execute("SELECT id FROM ledger").fetchall()}


def _promoted(service, instance_id, port) -> bool:
    try:
        with connect_target(service, instance_id, port) as conn:
            return not in_recovery(conn)
    except Exception:
        return False


def _replayed_all(service, instance_id, port, source) -> bool:
    with connect_target(service, instance_id, port) as conn:
        replay = conn.execute("SELECT pg_last_wal_replay_lsn()").fetchone()
    current = source.scalar("SELECT pg_current_wal_lsn()")
    return bool(replay and replay[0] is not None and replay[0] >= current)


def test_host_crash_after_promotion_keeps_the_promoted_target(fresh_service, make_source) -> None:
    """Service and target killed while the target is promoted and the evidence says `promoting`."""
    svc = fresh_service
    svc.extra_env["CLOUDMIG_SWITCH_CATCHUP_TIMEOUT"] = "300"
    svc.start()
    source = make_source(scale=1)
    ledger(source, ROWS // 2)
    client, instance_id, attr, task_id = migrate_to_streaming(svc, source)
    port, pgdata = int(attr.port), instance_pgdata(svc, instance_id)

    # Hold replay so that the switch waits in its catch-up phase, gate passed.
    with connect_target(svc, instance_id, port) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    source.sql("INSERT INTO ledger (id) SELECT generate_series(%s::int, %s::int)", (ROWS // 2 + 1, ROWS))
    activate(client, instance_id)
    wait_for(lambda: phase(svc, instance_id, task_id) == "catchup", 60, interval=0.1, what="catchup")

    # A frozen source makes every connection to it take the connect timeout: the promotion goes
    # through and the switch then lingers in its last steps (the slot drop) with Phase=promoting.
    with stopped(postmaster_pid(source.pgdata)):
        with connect_target(svc, instance_id, port) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")

        def promoted_not_done() -> bool:
            return phase(svc, instance_id, task_id) == "promoting" and _promoted(svc, instance_id, port)

        wait_for(promoted_not_done, 60, interval=0.05, what="promoted target with Phase=promoting")
        # A write only the new primary has, acknowledged before the crash.
        with connect_target(svc, instance_id, port) as conn:
            conn.execute("INSERT INTO ledger (id) VALUES (-1)")
        svc.kill()
        crash_cluster(pgdata)

    svc.start()
    it = wait_success(svc, instance_id, task_id)
    assert it["ReplicationState"] == "finish"
    assert _ids_on(svc, instance_id, port) == {-1, *range(1, ROWS + 1)}
    with connect_target(svc, instance_id, port) as conn:
        assert timeline(conn) == 2, "promoted more than once"
    ev = it["Evidence"]
    assert ev["TimelineBefore"] == 1 and ev["TimelineAfter"] == 2
    assert "reset to an empty cluster" not in it["Detail"]
    wait_for(lambda: cloudmig_slots(source) == [], 60, what="the slot to be dropped")


def test_target_dies_after_promotion(fresh_service, make_source) -> None:
    """Only the target's postmaster dies once promoted, while the switch is in its last steps:
    the switch completes and the new primary is started again, with everything it had."""
    svc = fresh_service.start()
    source = make_source(scale=1)
    ledger(source, ROWS)
    client, instance_id, attr, task_id = migrate_to_streaming(svc, source)
    port, pgdata = int(attr.port), instance_pgdata(svc, instance_id)
    wait_for(lambda: _replayed_all(svc, instance_id, port, source), 60, what="replay of everything")

    # A frozen source makes the switch linger in its slot drop, after the promotion.
    with stopped(postmaster_pid(source.pgdata)):
        activate(client, instance_id, force=True)

        def promoted_not_done() -> bool:
            return phase(svc, instance_id, task_id) == "promoting" and _promoted(svc, instance_id, port)

        wait_for(promoted_not_done, 60, interval=0.05, what="promoted target with Phase=promoting")
        # Past the switch's last use of the target (its role is made, the slot drop waits).
        wait_for(
            lambda: "Created cloudmig's reserved role" in item(svc, instance_id, task_id)["Detail"],
            30,
            interval=0.05,
            what="the last step on the target",
        )
        assert phase(svc, instance_id, task_id) == "promoting"
        with connect_target(svc, instance_id, port) as conn:
            conn.execute("INSERT INTO ledger (id) VALUES (-1)")
        crash_cluster(pgdata)

    it = wait_success(svc, instance_id, task_id)
    ids = wait_for(lambda: _ids_on_when_up(svc, instance_id, port), 60, what="the new primary to run again")
    assert ids == {-1, *range(1, ROWS + 1)}
    with connect_target(svc, instance_id, port) as conn:
        assert timeline(conn) == 2
    assert it["Evidence"]["TimelineAfter"] == 2
    wait_for(lambda: cloudmig_slots(source) == [], 60, what="the slot to be dropped")


def _ids_on_when_up(service, instance_id, port) -> set[int] | None:
    try:
        return _ids_on(service, instance_id, port)
    except Exception:
        return None


def test_target_dies_while_promoting(fresh_service, make_source) -> None:
    """Only the target's postmaster dies while the promotion is under way: the switch completes."""
    svc = fresh_service.start()
    source = make_source(scale=1)
    ledger(source, ROWS)
    client, instance_id, attr, task_id = migrate_to_streaming(svc, source)
    port, pgdata = int(attr.port), instance_pgdata(svc, instance_id)
    wait_for(lambda: _replayed_all(svc, instance_id, port, source), 60, what="replay of everything")

    # A frozen startup process cannot finish the promotion: the service waits for it.
    startup = cluster_child(pgdata, "startup")
    with stopped(startup):
        activate(client, instance_id, force=True)
        wait_for(lambda: phase(svc, instance_id, task_id) == "promoting", 60, interval=0.05, what="promoting")
        crash_cluster(pgdata)

    it = wait_success(svc, instance_id, task_id, timeout=180)
    assert _ids_on(svc, instance_id, port) == set(range(1, ROWS + 1))
    with connect_target(svc, instance_id, port) as conn:
        assert timeline(conn) == 2
    assert it["Evidence"]["TimelineAfter"] == 2
    assert "reset to an empty cluster" not in it["Detail"]
    wait_for(lambda: cloudmig_slots(source) == [], 60, what="the slot to be dropped")


def test_forced_switch_without_source_survives_a_crash(fresh_service, make_source) -> None:
    """ForceSwitch with the source gone, then a host crash: the target, the only copy, survives."""
    svc = fresh_service
    svc.extra_env["CLOUDMIG_SLOT_SWEEP_SECONDS"] = "2"
    svc.start()
    source = make_source(scale=1)
    ledger(source, ROWS)
    client, instance_id, attr, task_id = migrate_to_streaming(svc, source)
    port, pgdata = int(attr.port), instance_pgdata(svc, instance_id)
    wait_for(lambda: _replayed_all(svc, instance_id, port, source), 60, what="replay of everything")
    source.stop(mode="immediate")
    wait_for(
        lambda: item(svc, instance_id, task_id)["ReplicationState"] == "disconnect",
        30,
        interval=0.2,
        what="disconnect",
    )

    with stopped(cluster_child(pgdata, "startup")):
        activate(client, instance_id, force=True)
        wait_for(lambda: phase(svc, instance_id, task_id) == "promoting", 60, interval=0.05, what="promoting")
        svc.kill()
        crash_cluster(pgdata)

    svc.start()
    it = wait_success(svc, instance_id, task_id, timeout=180)
    assert _ids_on(svc, instance_id, port) == set(range(1, ROWS + 1))
    with connect_target(svc, instance_id, port) as conn:
        assert timeline(conn) == 2
    ev = it["Evidence"]
    assert ev["Forced"] is True and ev["SourceReachableAtPromote"] is False
    assert "BytesNotReplayed" not in ev and ev.get("LastKnownSourceLsn")
    assert "reset to an empty cluster" not in it["Detail"]

    # The slot goes once the source is back.
    source.start()
    wait_for(lambda: cloudmig_slots(source) == [], 60, what="the slot to be dropped")
