"""A second major version: a PostgreSQL 16 source into an EngineVersion=16 instance, through switchover.

The binaries are found by major version (here the `pgserver` wheel's PostgreSQL 16)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from alibabacloud_rds20140815 import models as rds

from tests.support.flows import (
    MIGRATION_PASSWORD,
    create_migration,
    migration_item,
    wait_for,
    wait_running,
    wait_streaming,
)
from tests.support.pgcluster import SourceCluster, make_base_dir, runnable_bin_dir

pytestmark = pytest.mark.e2e


def test_postgresql_16_migration_and_switchover(service, e2e_base, make_source) -> None:
    runnable_bin_dir(16)
    d = make_base_dir("src16-", parent=e2e_base)
    source = SourceCluster.create(d, major=16)
    try:
        source.pgbench_init(scale=1)
        source.create_migration_account("migratetest", MIGRATION_PASSWORD)
        source.sql("GRANT pg_read_all_data TO migratetest")
        client = service.tea()
        iid = client.create_dbinstance(
            rds.CreateDBInstanceRequest(
                engine="PostgreSQL",
                engine_version="16",
                dbinstance_class="pg.n2.small.2c",
                dbinstance_storage=20,
            )
        ).body.dbinstance_id
        attr = wait_running(client, iid)
        assert attr.engine_version == "16"
        task_id = create_migration(client, iid, source).task_id
        item = wait_streaming(client, iid, task_id)
        assert "Check major version consistent: success" in item.detail

        client.activate_migration_target_instance(
            rds.ActivateMigrationTargetInstanceRequest(dbinstance_name=iid, switch_time_mode="0")
        )
        wait_for(lambda: migration_item(client, iid, task_id).migrate_stage == "success", 60, what="success")
        with psycopg.connect(
            host=attr.connection_string,
            port=int(attr.port),
            user="migratetest",
            password=MIGRATION_PASSWORD,
            dbname="postgres",
        ) as conn:
            row: Any = conn.execute(
                "SELECT current_setting('server_version_num')::int / 10000, "
                "(SELECT count(*) FROM pgbench_accounts)"
            ).fetchone()
        assert row == (16, 100000)
    finally:
        source.destroy()
