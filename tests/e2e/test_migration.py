"""The first real migration, end to end, through the official tea SDK with V3 signatures."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest
from alibabacloud_rds20140815 import models as rds

from tests.support.flows import (
    MIGRATION_PASSWORD,
    create_instance,
    create_migration,
    instance_attribute,
    migration_item,
    replication_info,
    wait_for,
    wait_running,
    wait_streaming,
)
from tests.support.pgcluster import DEFAULT_MAJOR
from tests.support.spec import REPLICATION_INFO_KEYS

pytestmark = pytest.mark.e2e

GMT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
STAGES = ["precheck", "basebackup", "startup", "increment"]
STATES = ["unstarted", "catchup", "streaming"]


def _target_rows(attr: Any, query: str, password: str = MIGRATION_PASSWORD) -> list[tuple[Any, ...]]:
    with psycopg.connect(
        host=attr.connection_string,
        port=int(attr.port),
        user="migratetest",
        password=password,
        dbname="postgres",
        connect_timeout=5,
    ) as conn:
        return conn.execute(query).fetchall()


def test_instance_lifecycle_and_client_token(service) -> None:
    client = service.tea()
    token = "token-lifecycle-1"
    instance_id = create_instance(client, token=token)
    assert re.fullmatch(r"pgm-[a-z0-9]{16}", instance_id)
    # ClientToken makes the call idempotent.
    assert create_instance(client, token=token) == instance_id
    first = instance_attribute(client, instance_id).dbinstance_status
    assert first in ("Creating", "Running")
    attr = wait_running(client, instance_id)
    assert attr.engine == "PostgreSQL" and attr.engine_version == str(DEFAULT_MAJOR)
    assert attr.dbinstance_class == "pg.n2.medium.2c" and attr.dbinstance_storage == 20
    listed = client.describe_dbinstances(rds.DescribeDBInstancesRequest(region_id="cn-hangzhou")).body
    assert instance_id in [i.dbinstance_id for i in listed.items.dbinstance]

    # A client connects over TCP with a password; the class fixes the spec parameters.
    client.create_account(
        rds.CreateAccountRequest(
            dbinstance_id=instance_id,
            account_name="app",
            account_password="s3cret pass'",
            account_type="Super",
        )
    )
    with psycopg.connect(
        host=attr.connection_string,
        port=int(attr.port),
        user="app",
        password="s3cret pass'",
        dbname="postgres",
    ) as conn:
        assert conn.execute("SHOW max_connections").fetchone() == ("400",)
        assert conn.execute("SHOW max_wal_senders").fetchone() == ("16",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            host=attr.connection_string, port=int(attr.port), user="app", password="wrong", dbname="postgres"
        ).close()

    pgdata = service.data_dir / "instances" / instance_id
    assert pgdata.exists()
    client.delete_dbinstance(rds.DeleteDBInstanceRequest(dbinstance_id=instance_id))

    def gone() -> bool:
        ids = [
            i.dbinstance_id
            for i in client.describe_dbinstances(
                rds.DescribeDBInstancesRequest(region_id="cn-hangzhou")
            ).body.items.dbinstance
        ]
        return instance_id not in ids and not pgdata.exists()

    wait_for(gone, 60, what="instance deleted")


def test_migration_end_to_end(service, make_source) -> None:
    client = service.tea()
    source = make_source(scale=1)
    instance_id = create_instance(client)
    attr = wait_running(client, instance_id)

    created = create_migration(client, instance_id, source, task_name="first-migration")
    assert created.dbinstance_name == instance_id
    assert created.task_name == "first-migration"
    assert isinstance(created.task_id, int) and created.task_id > 0
    assert re.fullmatch(r"[0-9A-F-]{36}", created.request_id)

    seen: list[tuple[str, str]] = []
    item = wait_streaming(client, instance_id, created.task_id, seen=seen)

    # Stages and states only move forward, in the documented order.
    stage_idx = [STAGES.index(s) for s, _ in seen]
    assert stage_idx == sorted(stage_idx), seen
    assert seen[-1] == ("increment", "streaming")
    states_in_increment = [STATES.index(r) for s, r in seen if r in STATES]
    assert states_in_increment == sorted(states_in_increment), seen

    assert item.task_name == "first-migration" and item.target_instance_name == instance_id
    assert item.source_password == "********"
    assert item.source_account == "migratetest" and item.source_port == source.port
    assert GMT.match(item.gmt_created) and GMT.match(item.gmt_modified)
    detail = item.detail
    assert detail.startswith("[Check rds empty]\nCheck rds databases: success\n")
    assert "*Migrate check success*\n" in detail
    assert re.search(
        r"\[Start RDS instance\]\n\d{4}-\d\d-\d\d \d\d:\d\d:\d\d --- Start RDS instance as slave "
        r"for data replication\n",
        detail,
    )
    assert re.search(
        r"\[Synchronize data\]\n\d{4}-\d\d-\d\d \d\d:\d\d:\d\d --- Synchronize data from source to "
        r"RDS by streaming replication \n",
        detail,
    )

    info = replication_info(item)
    assert set(info) >= REPLICATION_INFO_KEYS
    assert all(isinstance(v, str) for v in info.values())
    assert info["Status"] == "streaming" and info["IsSlave"] == "true"
    # The standby reads the password from a passfile; Conninfo shows it masked as RDS's sample does,
    # never the password nor the server-internal passfile path.
    assert "password=********" in info["Conninfo"] and "passfile" not in info["Conninfo"]
    assert MIGRATION_PASSWORD not in info["Conninfo"]
    assert "user=migratetest" in info["Conninfo"]
    assert re.fullmatch(r"[0-9A-F]+/[0-9A-F]+", info["ReplayLsn"])

    # Rows written on the source afterwards reach the target; the source's own account reads them there.
    source.sql("CREATE TABLE after_copy (id int primary key, note text)")
    source.sql("INSERT INTO after_copy SELECT g, 'row ' || g FROM generate_series(1, 500) g")

    def rows_arrived() -> bool:
        return _has_table(attr) and _target_rows(attr, "SELECT count(*) FROM after_copy") == [(500,)]

    wait_for(rows_arrived, 60, what="rows on target")
    assert _target_rows(attr, "SELECT count(*) FROM pgbench_accounts") == source.sql(
        "SELECT count(*) FROM pgbench_accounts"
    )

    # ReplicationInfo is refreshed while the task runs.
    before = replication_info(migration_item(client, instance_id, created.task_id))["ReplayLsn"]
    source.sql("INSERT INTO after_copy SELECT g, 'more' FROM generate_series(501, 600) g")
    wait_for(
        lambda: replication_info(migration_item(client, instance_id, created.task_id))["ReplayLsn"] != before,
        30,
        what="ReplayLsn to move",
    )

    # Filters: by TaskName, by source address and port; unknown TaskId gives an empty array.
    assert len(_items(client, instance_id, task_name="first-migration")) == 1
    assert len(_items(client, instance_id, source_ip_address="127.0.0.1", source_port=source.port)) == 1
    assert _items(client, instance_id, task_id=created.task_id + 1000) == []


def _has_table(attr: Any) -> bool:
    return _target_rows(attr, "SELECT to_regclass('after_copy') IS NOT NULL") == [(True,)]


def _items(client: Any, instance_id: str, **f: Any) -> list[Any]:
    resp = client.describe_cloud_migration_result(
        rds.DescribeCloudMigrationResultRequest(dbinstance_name=instance_id, page_number=1, page_size=30, **f)
    )
    assert isinstance(resp.body.items, list)
    return list(resp.body.items)


def test_source_restart_during_increment(service, make_source) -> None:
    """The engine keeps its observation connections open; a restarted source must not stop it."""
    client = service.tea()
    source = make_source(scale=1)
    instance_id = create_instance(client)
    attr = wait_running(client, instance_id)
    task_id = create_migration(client, instance_id, source).task_id
    wait_streaming(client, instance_id, task_id)
    before = replication_info(migration_item(client, instance_id, task_id))["ReplayLsn"]

    source.restart()
    source.sql("CREATE TABLE after_restart AS SELECT g AS id FROM generate_series(1, 300) g")

    def caught_up() -> bool:
        it = migration_item(client, instance_id, task_id)
        info = replication_info(it)
        return (
            it.replication_state == "streaming" and info["ReplayLsn"] != before and info["Synced"] == "true"
        )

    wait_for(caught_up, 90, what="streaming again after the source restarted")
    assert _target_rows(attr, "SELECT count(*) FROM after_restart") == [(300,)]
    # A restart is not a failure of the stage: the kept connections are simply opened again.
    assert "failed, will retry" not in migration_item(client, instance_id, task_id).detail
