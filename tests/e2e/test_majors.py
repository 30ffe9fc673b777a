"""Every PostgreSQL major cloudmig migrates, 10 to 18: a source of that major into an instance of the
same EngineVersion, streaming, rows written while streaming, switchover, and the slot gone.

The majors besides the distribution's come from tools/install-pg-majors (`make test` runs it); a
major whose binaries are not here is skipped, and the skip reason says what is missing, unless it is
listed in CLOUDMIG_TEST_REQUIRE_MAJORS (CI lists them all): then the test fails."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_rds20140815 import models as rds

from cloudmig.pg import compat
from tests.support.flows import (
    MIGRATION_PASSWORD,
    connect_target_tcp,
    create_instance,
    create_migration,
    migration_item,
    raw_items,
    replication_info,
    wait_for,
    wait_running,
    wait_streaming,
)
from tests.support.pgcluster import (
    SourceCluster,
    make_base_dir,
    require_migratable_major,
)

pytestmark = pytest.mark.e2e

ROWS_BEFORE = 500
ROWS_WHILE_STREAMING = 50


@pytest.mark.parametrize("major", compat.SUPPORTED_MAJORS, ids=lambda m: f"pg{m}")
def test_migration_and_switchover_of_each_major(service, e2e_base: Path, major: int) -> None:
    require_migratable_major(major)
    source = SourceCluster.create(make_base_dir(f"src{major}-", parent=e2e_base), major=major)
    try:
        source.create_migration_account("migratetest", MIGRATION_PASSWORD)
        source.sql("CREATE TABLE ledger (id int PRIMARY KEY, note text NOT NULL)")
        source.sql(
            "INSERT INTO ledger SELECT g, 'before ' || g FROM generate_series(1, %s::int) g", (ROWS_BEFORE,)
        )
        source.sql("GRANT SELECT, INSERT ON ledger TO migratetest")  # pg_read_all_data only exists since 14

        client = service.tea()
        iid = create_instance(client, klass="pg.n2.small.2c", major=major)
        attr = wait_running(client, iid)
        assert attr.engine_version == str(major)
        task_id = create_migration(client, iid, source).task_id
        item = wait_streaming(client, iid, task_id)
        assert "Check major version consistent: success" in item.detail
        # pg_stat_wal_receiver differs between majors; ReplicationInfo reads it the same way on all.
        info = replication_info(item)
        assert info["Status"] == "streaming" and info["ReceivedLsn"] and info["IsSlave"] == "true"

        # Written while streaming: only the replication stream can bring these over.
        source.sql(
            "INSERT INTO ledger SELECT g, 'streamed ' || g FROM generate_series(%s::int, %s::int) g",
            (ROWS_BEFORE + 1, ROWS_BEFORE + ROWS_WHILE_STREAMING),
        )
        client.activate_migration_target_instance(
            rds.ActivateMigrationTargetInstanceRequest(dbinstance_name=iid, switch_time_mode="0")
        )

        def succeeded() -> bool:
            it = migration_item(client, iid, task_id)
            assert "[Task failed]" not in it.detail, it.detail
            return bool(it.migrate_stage == "success")

        wait_for(succeeded, 90, what=f"PostgreSQL {major} switchover")

        with connect_target_tcp(attr) as conn:
            row: Any = conn.execute(
                "SELECT current_setting('server_version_num')::int / 10000, pg_is_in_recovery(),"
                " count(*), count(*) FILTER (WHERE note LIKE 'streamed %%') FROM ledger"
            ).fetchone()
            assert row == (major, False, ROWS_BEFORE + ROWS_WHILE_STREAMING, ROWS_WHILE_STREAMING)
            conn.execute("INSERT INTO ledger VALUES (0, 'written on the new primary')")
        assert source.scalar("SELECT count(*) FROM pg_replication_slots") == 0
        (raw,) = raw_items(service, iid, task_id=task_id)
        evidence = raw["Evidence"] if isinstance(raw["Evidence"], dict) else json.loads(raw["Evidence"])
        assert evidence["SlotDropped"] is True

        # No standby marker is left that a restart would obey: recovery.conf (before 12, renamed to
        # recovery.done by the promotion) or standby.signal.
        pgdata = service.data_dir / "instances" / iid / "pgdata"
        assert not (pgdata / compat.RECOVERY_CONF).exists() and not (pgdata / compat.STANDBY_SIGNAL).exists()
    finally:
        source.destroy()
