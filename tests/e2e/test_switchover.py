"""Switchover: the zero-loss gate, refusals, forced switch, and restart safety (exactly one promotion)."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from alibabacloud_rds20140815 import models as rds
from Tea.exceptions import TeaException

from tests.support.flows import (
    MIGRATION_PASSWORD,
    connect_target_tcp,
    create_instance,
    create_migration,
    instance_attribute,
    migration_item,
    raw_items,
    start_throttled_migration,
    wait_for,
    wait_running,
    wait_streaming,
)
from tests.support.pgcluster import SourceCluster

pytestmark = pytest.mark.e2e


class Writer:
    """Inserts numbered rows into the source and remembers every commit that was acknowledged."""

    def __init__(self, source: SourceCluster) -> None:
        self.source = source
        self.acked: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.source.connect_tcp("migratetest", MIGRATION_PASSWORD) as conn:
            n = 0
            while not self.stop.is_set():
                n += 1
                conn.execute("INSERT INTO ledger (id) VALUES (%s)", (n,))  # autocommit: returns once durable
                self.acked.append(n)
                time.sleep(0.002)

    def __enter__(self) -> Writer:
        self.thread.start()
        wait_for(lambda: len(self.acked) > 20, 30, what="writer to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt()

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(30)


def _activate(client: Any, instance_id: str, force: bool = False) -> Any:
    return client.activate_migration_target_instance(
        rds.ActivateMigrationTargetInstanceRequest(
            dbinstance_name=instance_id, switch_time_mode="0", force_switch="1" if force else None
        )
    ).body


def _activate_error(client: Any, instance_id: str, force: bool = False) -> TeaException:
    with pytest.raises(TeaException) as info:
        _activate(client, instance_id, force)
    return info.value


def _timeline(attr: Any) -> int:
    with connect_target_tcp(attr) as conn:
        row = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
    assert row is not None
    return int(str(row[0])[:8], 16)


def _wait_success(client: Any, instance_id: str, task_id: int, timeout: float = 60) -> Any:
    def done() -> Any:
        it = migration_item(client, instance_id, task_id)
        assert "[Task failed]" not in it.detail, it.detail
        return it if it.migrate_stage == "success" else None

    return wait_for(done, timeout, interval=0.1, what="switchover to succeed")


def _migrated(service: Any, make_source: Any) -> tuple[Any, SourceCluster, str, int, Any]:
    client = service.tea()
    source = make_source(scale=1)
    source.sql("CREATE TABLE ledger (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
    source.sql("GRANT INSERT, SELECT ON ledger TO migratetest")
    instance_id = create_instance(client)
    attr = wait_running(client, instance_id)
    task_id = create_migration(client, instance_id, source).task_id
    wait_streaming(client, instance_id, task_id)
    return client, source, instance_id, task_id, attr


def test_zero_loss_switchover(service, make_source) -> None:
    client, source, instance_id, task_id, attr = _migrated(service, make_source)
    with Writer(source) as writer:
        time.sleep(1.0)
    acked = list(writer.acked)

    body = _activate(client, instance_id)
    assert body.dbinstance_name == instance_id and body.task_id == task_id
    assert body.source_ip_address == "127.0.0.1" and body.source_port == source.port
    item = _wait_success(client, instance_id, task_id)

    assert item.replication_state == "finish" and item.switch_time
    with connect_target_tcp(attr) as conn:
        on_target = {r[0] for r in conn.execute("SELECT id FROM ledger").fetchall()}
        assert not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        conn.execute("INSERT INTO ledger (id) VALUES (-1)")  # the new primary accepts writes
    missing = [n for n in acked if n not in on_target]
    assert missing == [], f"{len(missing)} acknowledged rows lost"
    assert source.sql("SELECT slot_name FROM pg_replication_slots") == []
    assert _timeline(attr) == 2
    assert "[Switch over]" in item.detail and "promoted to primary on timeline 2" in item.detail

    ev = raw_items(service, instance_id, task_id=task_id)[0]["Evidence"]
    assert ev["TimelineBefore"] == 1 and ev["TimelineAfter"] == 2 and ev["Forced"] is False
    assert ev["BytesNotReplayed"] == 0 and ev["SlotDropped"] is True
    assert ev["ReplayLsnAtPromote"] == ev["CutLsn"] or ev["BytesNotReplayed"] == 0
    for key in ("CatchupSeconds", "PromoteSeconds", "TotalSeconds"):
        assert isinstance(ev[key], (int, float)) and ev[key] >= 0
    # The instance is a plain Running primary again, with cloudmig's own role.
    assert instance_attribute(client, instance_id).dbinstance_status == "Running"
    with connect_target_tcp(attr) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'cloudmig_admin'").fetchone() == (
            True,
        )

    # A second Activate after success is refused.
    err = _activate_error(client, instance_id)
    assert err.code == "IncorrectDBInstanceState"


def test_refusals_and_forced_switch(service, make_source) -> None:
    client = service.tea()
    # Unknown instance; an instance without any migration.
    assert _activate_error(client, "pgm-0000000000000000").code == "InvalidDBInstanceName.NotFound"
    bare = create_instance(client)
    wait_running(client, bare)
    err = _activate_error(client, bare)
    assert err.code == "IncorrectDBInstanceState" and "no cloud migration task" in err.message

    client, source, instance_id, task_id, attr = _migrated(service, make_source)
    with Writer(source) as writer:
        # Writes still arriving: refused, nothing changes, replication goes on.
        err = _activate_error(client, instance_id)
        assert err.code == "IncorrectDBInstanceState" and "Writes are still arriving" in err.message
        item = migration_item(client, instance_id, task_id)
        assert (item.migrate_stage, item.replication_state) == ("increment", "streaming")
        assert source.sql("SELECT count(*) FROM pg_replication_slots") == [(1,)]

        # Forced: promotes at once and reports the gap.
        body = _activate(client, instance_id, force=True)
        assert body.task_id == task_id
        _wait_success(client, instance_id, task_id)
        ev = raw_items(service, instance_id, task_id=task_id)[0]["Evidence"]
        assert (
            ev["Forced"] is True and isinstance(ev["BytesNotReplayed"], int) and ev["BytesNotReplayed"] >= 0
        )
        assert ev["TimelineAfter"] == ev["TimelineBefore"] + 1
        # The writer kept writing to the old source: Describe reports it.

        def reported() -> bool:
            e = raw_items(service, instance_id, task_id=task_id)[0]["Evidence"]
            return bool(e.get("SourceWritesAfterSwitch"))

        wait_for(reported, 60, what="writes after the switch to be reported")
    item = migration_item(client, instance_id, task_id)
    assert "Writes reached the old source after the switchover" in item.detail
    with connect_target_tcp(attr) as conn:
        conn.execute("INSERT INTO ledger (id) VALUES (-1)")
    assert len(writer.acked) > 0


def test_activate_before_increment_is_refused(fresh_service, make_source) -> None:
    source = make_source(scale=1)
    client, instance_id, _, task_id = start_throttled_migration(fresh_service, source, rate_kb=1024)
    wait_for(
        lambda: migration_item(client, instance_id, task_id).migrate_stage == "basebackup",
        60,
        interval=0.1,
        what="basebackup",
    )
    err = _activate_error(client, instance_id)
    assert err.code == "IncorrectDBInstanceState" and "stage basebackup" in err.message


@pytest.mark.parametrize("moment", ["before_promotion", "during_promotion"])
def test_sigkill_during_switchover_promotes_once(fresh_service, make_source, moment: str) -> None:
    svc = fresh_service
    svc.extra_env["CLOUDMIG_SWITCH_CATCHUP_TIMEOUT"] = "300"
    svc.start()
    client, source, instance_id, task_id, attr = _migrated(svc, make_source)
    socket_dir = svc.runtime_dir / "sockets" / instance_id

    def on_target_as_superuser(query: str) -> None:
        with psycopg.connect(
            host=str(socket_dir), port=int(attr.port), user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(query)

    if moment == "before_promotion":
        # Hold replay so the switch waits in its catch-up phase, accepted but not yet promoted.
        on_target_as_superuser("SELECT pg_wal_replay_pause()")
        source.sql("INSERT INTO ledger (id) VALUES (1)")
        _activate(client, instance_id)
        wait_for(
            lambda: migration_item(client, instance_id, task_id).migrate_stage == "switch",
            30,
            interval=0.05,
            what="stage switch",
        )
        time.sleep(0.5)
        svc.kill()
        with connect_target_tcp(attr) as conn:  # accepted but not promoted
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        on_target_as_superuser("SELECT pg_wal_replay_resume()")
    else:
        source.sql("INSERT INTO ledger (id) VALUES (1)")
        _activate(client, instance_id)

        def promoting() -> bool:
            return raw_items(svc, instance_id, task_id=task_id)[0]["Evidence"].get("Phase") in (
                "promoting",
                "done",
            )

        wait_for(promoting, 30, interval=0.02, what="promotion to be issued")
        svc.kill()

    svc.start()
    client = svc.tea()
    item = _wait_success(client, instance_id, task_id, timeout=120)
    assert item.replication_state == "finish"
    assert _timeline(attr) == 2, "promoted more than once or not at all"
    with connect_target_tcp(attr) as conn:
        assert conn.execute("SELECT id FROM ledger WHERE id = 1").fetchone() == (1,)
    ev = raw_items(svc, instance_id, task_id=task_id)[0]["Evidence"]
    assert ev["TimelineBefore"] == 1 and ev["TimelineAfter"] == 2
    assert source.sql("SELECT slot_name FROM pg_replication_slots") == []
