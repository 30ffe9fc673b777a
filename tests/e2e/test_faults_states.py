"""Issue 10, failure 4: states that tell the truth.

A target that is down or not answering is `disconnect` within a few observation intervals and
Activate is refused against it; a slot the source invalidated (max_slot_wal_keep_size) is copied
again, or the task fails with ReasonCode SlotInvalidated; a standby that stopped receiving while
its slot keeps WAL on the source is `disconnect` with a Warning, and above the limit the task fails
and the slot is dropped.
"""

from __future__ import annotations

import time

import pytest
from Tea.exceptions import TeaException

from tests.support.faults import (
    activate,
    children,
    cloudmig_slots,
    cluster_child,
    connect_target,
    crash_cluster,
    instance_pgdata,
    item,
    make_wal,
    migrate_to_streaming,
    postmaster_pid,
    stopped,
)
from tests.support.flows import wait_for, wait_streaming

pytestmark = pytest.mark.e2e

OBSERVE_SECONDS = 1.0


def _state(svc, instance_id, task_id) -> str:
    return str(item(svc, instance_id, task_id)["ReplicationState"])


def _activate_refused(client, instance_id) -> str:
    with pytest.raises(TeaException) as info:
        activate(client, instance_id)
    assert info.value.code == "IncorrectDBInstanceState", info.value
    return str(info.value.message)


def test_target_down_or_frozen_is_disconnect(fresh_service, make_source) -> None:
    svc = fresh_service.start()
    source = make_source(scale=1)
    client, instance_id, _, task_id = migrate_to_streaming(svc, source)
    pgdata = instance_pgdata(svc, instance_id)

    # Frozen: the postmaster answers no connection.
    with stopped(postmaster_pid(pgdata)):
        started = time.monotonic()
        wait_for(
            lambda: _state(svc, instance_id, task_id) == "disconnect", 20, interval=0.1, what="disconnect"
        )
        took = time.monotonic() - started
        _activate_refused(client, instance_id)
    assert took < 10 * OBSERVE_SECONDS, f"disconnect shown after {took:.1f} s"
    wait_streaming(client, instance_id, task_id, timeout=60)

    # Killed: refused meanwhile, shown as down, and started again by the service.
    downs = str(item(svc, instance_id, task_id)["Detail"]).count("Replication is down")
    crash_cluster(pgdata)
    _activate_refused(client, instance_id)

    def restarted() -> str | None:
        detail = str(item(svc, instance_id, task_id)["Detail"])
        return detail if "Standby was not running; started it again" in detail else None

    detail = wait_for(restarted, 30, interval=0.2, what="the standby to be started again")
    assert detail.count("Replication is down") > downs
    wait_streaming(client, instance_id, task_id, timeout=60)
    assert "Switchover requested" not in item(svc, instance_id, task_id)["Detail"]


@pytest.mark.parametrize("recopy", [True, False], ids=["recopy", "no-recopy"])
def test_invalidated_slot_is_copied_again_or_fails(fresh_service, make_source, recopy: bool) -> None:
    svc = fresh_service
    svc.extra_env["CLOUDMIG_RECOPY_ON_SLOT_LOSS"] = "true" if recopy else "false"
    svc.start()
    source = make_source(scale=1)
    _client, instance_id, attr, task_id = migrate_to_streaming(svc, source)
    # Small enough to invalidate the slot quickly (the assessment refuses it at the start).
    source.sql("ALTER SYSTEM SET max_slot_wal_keep_size = '32MB'")
    source.sql("SELECT pg_reload_conf()")
    pgdata = instance_pgdata(svc, instance_id)
    [(slot, _, _)] = cloudmig_slots(source)

    receiver = cluster_child(pgdata, "walreceiver")
    with stopped(receiver):
        # The frozen receiver's walsender ends (as wal_sender_timeout would end it; a walsender
        # blocked on a full socket would hold the source's checkpoint); the slot stays behind.
        source.sql("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE active")
        wait_for(lambda: cloudmig_slots(source) == [(slot, False, "reserved")], 30, what="slot inactive")
        # A burst of WAL between two observations (the service held meanwhile): the source
        # invalidates the slot at its next checkpoint, before any watermark could act.
        with stopped(svc.proc.pid):
            make_wal(source, 4)
            source.sql("CREATE TABLE during_outage AS SELECT generate_series(1, 1000) AS n")
            source.sql("CHECKPOINT")
            assert cloudmig_slots(source) == [(slot, False, "lost")]

    if recopy:

        def copied_again() -> dict | None:
            it = item(svc, instance_id, task_id)
            assert it["Status"] == "running", it["Detail"]
            again = it["Progress"].get("Recopies") == 1
            return (
                it
                if again and (it["MigrateStage"], it["ReplicationState"]) == ("increment", "streaming")
                else None
            )

        it = wait_for(copied_again, 180, interval=0.3, what="a new copy, streaming")
        assert f"Replication slot {slot} was invalidated by the source" in it["Detail"]
        assert "copying the source again (attempt 1 of 2)" in it["Detail"]
        assert it["Detail"].count("Full backup finished") == 2
        with connect_target(svc, instance_id, int(attr.port)) as conn:
            assert conn.execute("SELECT count(*) FROM during_outage").fetchone() == (1000,)
        assert [(n, wal) for n, _, wal in cloudmig_slots(source)] == [(slot, "reserved")]
    else:

        def failed() -> dict | None:
            it = item(svc, instance_id, task_id)
            return it if it["Status"] == "failed" else None

        it = wait_for(failed, 60, what="the task to fail")
        assert it["ReasonCode"] == "SlotInvalidated"
        assert "invalidated" in it["Reason"] and "re-copying is off" in it["Reason"]
        wait_for(lambda: cloudmig_slots(source) == [], 30, what="the slot to be dropped")


def test_frozen_receiver_warns_then_stops_at_the_limit(fresh_service, make_source) -> None:
    svc = fresh_service
    svc.extra_env.update({"CLOUDMIG_SLOT_WAL_WARNING_MB": "48", "CLOUDMIG_SLOT_WAL_LIMIT_MB": "112"})
    svc.start()
    source = make_source(scale=1)
    _client, instance_id, _, task_id = migrate_to_streaming(svc, source)
    pgdata = instance_pgdata(svc, instance_id)
    [(slot, _, _)] = cloudmig_slots(source)

    with stopped(cluster_child(pgdata, "walreceiver")):
        make_wal(source, 4)  # 64 MB kept by the slot: above the warning, below the limit

        def warned() -> dict | None:
            it = item(svc, instance_id, task_id)
            return it if it["Warning"] and it["ReplicationState"] == "disconnect" else None

        it = wait_for(warned, 30, interval=0.2, what="a warning and disconnect")
        assert "WAL kept on the source is high" in it["Warning"]
        assert it["Status"] == "running"
        assert "WAL kept on the source is high" in it["Detail"]
        assert "the standby stopped receiving while the source writes" in it["Detail"]

        make_wal(source, 4)  # 128 MB: above the limit

        def failed() -> dict | None:
            it = item(svc, instance_id, task_id)
            return it if it["Status"] == "failed" else None

        it = wait_for(failed, 60, interval=0.2, what="the task to fail")
        assert it["ReasonCode"] == "SourceWalLimitExceeded"
        assert "the slot dropped to protect the source's disk" in it["Reason"]
        wait_for(lambda: cloudmig_slots(source) == [], 60, what="the slot to be dropped")

    def cleaned_up() -> str | None:
        detail = str(item(svc, instance_id, task_id)["Detail"])
        return detail if "reset to an empty cluster" in detail or "did not complete" in detail else None

    detail = wait_for(cleaned_up, 60, what="the clean-up to end")
    assert f"Dropped replication slot {slot}" in detail
    assert "did not complete" not in detail


def test_frozen_source_does_not_stall_the_observation(fresh_service, make_source) -> None:
    """A source that answers nothing (a frozen host, a network partition): observation goes on and
    says the source cannot be read (the state then follows the standby's own receiver, which
    gives up after its wal_receiver_timeout)."""
    svc = fresh_service.start()
    source = make_source(scale=1)
    _client, instance_id, _, task_id = migrate_to_streaming(svc, source)

    def observed(reachable: bool, after: float) -> dict | None:
        repl = item(svc, instance_id, task_id)["Progress"]["Replication"]
        return repl if repl.get("SourceReachable") is reachable and repl["ObservedAt"] > after else None

    pm = postmaster_pid(source.pgdata)
    with stopped(pm, *children(pm)):
        frozen_at = time.time()
        repl = wait_for(lambda: observed(False, frozen_at), 30, interval=0.2, what="an observation")
        assert repl["SourceLsn"], "the last source position read is kept"
        assert repl["SourceLsnAt"] <= frozen_at
    thawed_at = time.time()
    wait_for(lambda: observed(True, thawed_at), 30, interval=0.2, what="the source to be read again")
    assert _state(svc, instance_id, task_id) == "streaming"
