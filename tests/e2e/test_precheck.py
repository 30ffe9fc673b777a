"""The assessment through the SDK: precheck tasks, and a migration that stops at its precheck."""

from __future__ import annotations

from typing import Any

import pytest
from alibabacloud_rds20140815 import models as rds
from Tea.exceptions import TeaException

from tests.support.flows import (
    MIGRATION_PASSWORD,
    create_instance,
    create_migration,
    source_fields,
    wait_for,
    wait_running,
)

pytestmark = pytest.mark.e2e


def _precheck(client: Any, instance_id: str, port: int, **overrides: Any) -> Any:
    # Not `internet`: that category requires TLS by default, and these sources have none
    # (tests/e2e/test_tls.py covers it).
    fields = source_fields(instance_id, port, **{"source_category": "idcOnVpc", **overrides})
    return client.create_cloud_migration_precheck_task(
        rds.CreateCloudMigrationPrecheckTaskRequest(**fields)
    ).body


def _precheck_items(client: Any, instance_id: str, **f: Any) -> list[Any]:
    resp = client.describe_cloud_migration_precheck_result(
        rds.DescribeCloudMigrationPrecheckResultRequest(
            dbinstance_name=instance_id, page_number=1, page_size=30, **f
        )
    )
    assert resp.body is not None and isinstance(resp.body.items, list)
    return list(resp.body.items)


def _wait_report(client: Any, instance_id: str, task_id: int) -> Any:
    def done() -> Any:
        items = _precheck_items(client, instance_id, task_id=task_id)
        assert len(items) == 1
        return items[0] if "*Migrate check" in (items[0].detail or "") else None

    return wait_for(done, 90, interval=0.3, what="precheck report")


@pytest.fixture(scope="module")
def instance(service) -> str:
    client = service.tea()
    iid = create_instance(client)
    wait_running(client, iid)
    return iid


def test_precheck_task_reports_every_check(service, instance, make_source) -> None:
    client = service.tea()
    source = make_source(scale=1, max_slot_wal_keep_size="2GB")
    created = _precheck(client, instance, source.port, task_name="assess-1")
    assert created.dbinstance_name == instance and created.task_name == "assess-1" and created.task_id > 0
    item = _wait_report(client, instance, created.task_id)
    detail = item.detail
    assert detail.endswith("*Migrate check success*\n"), detail
    for line in (
        "[Check rds empty]\nCheck rds databases: success\n",
        "[Check source connectivity]\nCheck ip connectable: success\nCheck port connectable: success\n"
        "Check database connectable: success\nCheck account replication privilege: success\n"
        "Check account createrole privilege: success\nCheck account monitor privilege: success\n",
        "[Check source version]\nCheck major version consistent: success\n",
        "[Check spec params]\nCheck if spec params too large: success\n",
    ):
        assert line in detail
    assert item.source_password == "********" and item.source_category == "idconvpc"
    assert item.target_instance_name == instance
    # The machine-readable form sits next to Detail (aliyunsdkcore keeps extension fields).
    from aliyunsdkrds.request.v20140815.DescribeCloudMigrationPrecheckResultRequest import (
        DescribeCloudMigrationPrecheckResultRequest,
    )

    req = DescribeCloudMigrationPrecheckResultRequest()
    req.set_DBInstanceName(instance)
    req.set_PageNumber(1)
    req.set_PageSize(30)
    req.set_TaskName("assess-1")
    raw = service.core_call(req)["Items"][0]
    names = [r["Name"] for r in raw["CheckResults"]]
    assert names[0] == "Check rds databases" and "Check reserved accounts" in names
    assert {r["Level"] for r in raw["CheckResults"]} <= {"success", "warning"}
    assert raw["Status"] == "succeeded"
    # Nothing was created on the source.
    assert source.sql("SELECT count(*) FROM pg_replication_slots") == [(0,)]


def test_precheck_reports_errors_and_task_name_is_unique(service, instance, make_source) -> None:
    client = service.tea()
    source = make_source(scale=1)
    source.sql("ALTER ROLE migratetest NOREPLICATION")
    created = _precheck(client, instance, source.port, task_name="assess-2")
    item = _wait_report(client, instance, created.task_id)
    assert (
        "Check account replication privilege: error(error:migratetest has no replication privilege)"
        in item.detail
    )
    assert item.detail.endswith("*Migrate check failed*\n")
    assert MIGRATION_PASSWORD not in item.detail
    with pytest.raises(TeaException) as info:
        _precheck(client, instance, source.port, task_name="assess-2")
    assert info.value.code == "InvalidTaskName.Duplicate"


@pytest.mark.parametrize(
    "field,value,code",
    [
        ("source_account", "bad;name", "InvalidParameter"),
        ("source_account", "o'brien", "InvalidParameter"),
        ("source_category", "onTheMoon", "InvalidParameter"),
        ("source_port", 0, "InvalidParameter"),
        ("source_ip_address", "not an address", "InvalidParameter"),
        ("source_password", None, "MissingParameter"),
        ("dbinstance_name", "pgm-zzzzzzzzzzzzzzzz", "InvalidDBInstanceName.NotFound"),
    ],
)
def test_precheck_bad_input_creates_nothing(service, instance, field: str, value: Any, code: str) -> None:
    client = service.tea()
    before = len(_precheck_items(client, instance))
    with pytest.raises(TeaException) as info:
        _precheck(client, instance, 5432, **{field: value})
    assert info.value.code == code
    assert len(_precheck_items(client, instance)) == before


def test_migration_failing_precheck_leaves_both_sides_untouched(service, make_source) -> None:
    client = service.tea()
    source = make_source(scale=1)
    source.sql("ALTER ROLE migratetest NOCREATEROLE")
    iid = create_instance(client)
    wait_running(client, iid)
    instance_files_before = sorted(
        p.name for p in (service.data_dir / "instances" / iid / "pgdata").iterdir()
    )
    task_id = create_migration(client, iid, source).task_id

    def failed() -> Any:
        items = client.describe_cloud_migration_result(
            rds.DescribeCloudMigrationResultRequest(
                dbinstance_name=iid, task_id=task_id, page_number=1, page_size=10
            )
        ).body.items
        return items[0] if "[Task failed]" in items[0].detail else None

    item = wait_for(failed, 90, interval=0.3, what="task to fail at precheck")
    assert item.migrate_stage == "precheck" and item.replication_state == "unstarted"
    assert (
        "Check account createrole privilege: error(error:migratetest has no createrole privilege)"
        in item.detail
    )
    assert "*Migrate check failed*" in item.detail
    assert source.sql("SELECT count(*) FROM pg_replication_slots") == [(0,)]
    assert (
        sorted(p.name for p in (service.data_dir / "instances" / iid / "pgdata").iterdir())
        == instance_files_before
    )
    assert not (service.runtime_dir / "pgpass" / iid / "pgpass").exists()
    # The instance is free again: after fixing the source, a new migration is accepted.
    source.sql("ALTER ROLE migratetest CREATEROLE")
    assert create_migration(client, iid, source).task_id != task_id


def test_configured_extension_allow_list(fresh_service, make_source) -> None:
    svc = fresh_service
    svc.extra_env["CLOUDMIG_EXTENSION_ALLOW_LIST"] = '["plpgsql", "pg_stat_statements"]'
    svc.start()
    client = svc.tea()
    iid = create_instance(client)
    wait_running(client, iid)
    source = make_source(scale=1)
    source.sql("CREATE EXTENSION hstore")
    item = _wait_report(client, iid, _precheck(client, iid, source.port).task_id)
    assert (
        "Check extensions supported: error(error:extension hstore in database postgres is not supported by rds)"
        in item.detail
    )
