"""Bad input gets the right RDS error through both official SDKs, and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from alibabacloud_rds20140815 import models as rds
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkrds.request.v20140815.CreateCloudMigrationTaskRequest import CreateCloudMigrationTaskRequest
from aliyunsdkrds.request.v20140815.DescribeCloudMigrationResultRequest import (
    DescribeCloudMigrationResultRequest,
)
from Tea.exceptions import TeaException

from tests.support.flows import (
    MIGRATION_PASSWORD,
    create_instance,
    create_migration,
    migration_items,
    source_fields,
    wait_running,
    wait_streaming,
)

pytestmark = pytest.mark.e2e


def _tea_error(fn: Any, *args: Any) -> TeaException:
    with pytest.raises(TeaException) as info:
        fn(*args)
    return info.value


def _migration_request(instance_id: str, port: int, **overrides: Any) -> rds.CreateCloudMigrationTaskRequest:
    return rds.CreateCloudMigrationTaskRequest(**source_fields(instance_id, port, **overrides))


@pytest.fixture(scope="module")
def running_instance(service) -> str:
    client = service.tea()
    instance_id = create_instance(client)
    wait_running(client, instance_id)
    return instance_id


def test_missing_parameter(service, running_instance) -> None:
    client = service.tea()
    err = _tea_error(
        client.create_cloud_migration_task, _migration_request(running_instance, 5432, source_account=None)
    )
    assert err.code == "MissingParameter" and err.status_code == 400  # type: ignore[attr-defined]
    assert '"SourceAccount"' in err.message
    assert migration_items(client, running_instance) == []


def test_unknown_instance(service) -> None:
    client = service.tea()
    err = _tea_error(client.create_cloud_migration_task, _migration_request("pgm-0000000000000000", 5432))
    assert err.code == "InvalidDBInstanceName.NotFound" and err.status_code == 404  # type: ignore[attr-defined]
    err = _tea_error(
        client.describe_cloud_migration_result,
        rds.DescribeCloudMigrationResultRequest(dbinstance_name="pgm-nope", page_number=1, page_size=10),
    )
    assert err.code == "InvalidDBInstanceName.NotFound"


@pytest.mark.parametrize(
    "field,value",
    [
        ("source_category", "moon"),
        ("source_port", 70000),
        ("source_ip_address", "300.1.1.1"),
        ("source_account", "x'; DROP ROLE y; --"),
        ("source_account", 'bad"name'),
    ],
)
def test_invalid_parameters(service, running_instance, field: str, value: Any) -> None:
    client = service.tea()
    err = _tea_error(
        client.create_cloud_migration_task, _migration_request(running_instance, 5432, **{field: value})
    )
    assert err.code == "InvalidParameter" and err.status_code == 400  # type: ignore[attr-defined]
    assert migration_items(client, running_instance) == []


def test_wrong_secret_and_unknown_key(service, running_instance) -> None:
    req = rds.DescribeCloudMigrationResultRequest(
        dbinstance_name=running_instance, page_number=1, page_size=10
    )
    err = _tea_error(service.tea(secret="not-the-secret").describe_cloud_migration_result, req)
    assert err.code == "SignatureDoesNotMatch" and err.status_code == 400  # type: ignore[attr-defined]
    assert "server string to sign is:" in err.message
    err = _tea_error(service.tea(v1=True, secret="not-the-secret").describe_cloud_migration_result, req)
    assert err.code == "SignatureDoesNotMatch"
    err = _tea_error(service.tea(key_id="LTAInotakey000000000000").describe_cloud_migration_result, req)
    assert err.code == "InvalidAccessKeyId.NotFound" and err.status_code == 404  # type: ignore[attr-defined]

    # aliyunsdkcore recognises its own string to sign in the message and reports a wrong secret.
    core_req = DescribeCloudMigrationResultRequest()
    core_req.set_DBInstanceName(running_instance)
    core_req.set_PageNumber(1)
    core_req.set_PageSize(10)
    with pytest.raises(ServerException) as info:
        service.core_call(core_req, secret="not-the-secret")
    assert info.value.get_error_code() == "InvalidAccessKeySecret"
    with pytest.raises(ServerException) as info:
        service.core_call(core_req, key_id="LTAInotakey000000000000")
    assert info.value.get_error_code() == "InvalidAccessKeyId.NotFound"
    assert info.value.get_http_status() == 404


def test_non_empty_and_not_running_and_second_migration(service, make_source) -> None:
    client = service.tea()
    source = make_source(scale=1)

    # Not running: an instance still being created, or being deleted.
    creating = create_instance(client)
    err = _tea_error(client.create_cloud_migration_task, _migration_request(creating, source.port))
    assert err.code in ("IncorrectDBInstanceState",)
    wait_running(client, creating)

    # A second active migration into the same instance is refused; so is one into a non-empty instance.
    first = create_migration(client, creating, source)
    err = _tea_error(client.create_cloud_migration_task, _migration_request(creating, source.port))
    assert err.code == "IncorrectDBInstanceState"
    assert len(migration_items(client, creating)) == 1
    wait_streaming(client, creating, first.task_id)

    other = create_instance(client)
    wait_running(client, other)
    client.create_account(
        rds.CreateAccountRequest(
            dbinstance_id=other, account_name="owner", account_password="pw-owner-1", account_type="Super"
        )
    )
    import psycopg

    attr = client.describe_dbinstance_attribute(rds.DescribeDBInstanceAttributeRequest(dbinstance_id=other))
    a = attr.body.items.dbinstance_attribute[0]
    with psycopg.connect(
        host=a.connection_string,
        port=int(a.port),
        user="owner",
        password="pw-owner-1",
        dbname="postgres",
        autocommit=True,
    ) as conn:
        conn.execute("CREATE DATABASE appdb")
    err = _tea_error(client.create_cloud_migration_task, _migration_request(other, source.port))
    assert err.code == "IncorrectDBInstanceState" and "appdb" in err.message
    assert migration_items(client, other) == []

    client.delete_dbinstance(rds.DeleteDBInstanceRequest(dbinstance_id=other))
    err = _tea_error(client.create_cloud_migration_task, _migration_request(other, source.port))
    assert err.code in ("IncorrectDBInstanceState", "InvalidDBInstanceName.NotFound")


def test_old_sdk_creates_and_describes(service, make_source) -> None:
    client = service.tea()
    source = make_source(scale=1)
    instance_id = create_instance(client)
    wait_running(client, instance_id)

    req = CreateCloudMigrationTaskRequest()
    req.set_DBInstanceName(instance_id)
    req.set_SourceIpAddress("127.0.0.1")
    req.set_SourcePort(source.port)
    req.set_SourceAccount("migratetest")
    req.set_SourcePassword(MIGRATION_PASSWORD)
    req.set_SourceCategory("idcOnVpc")
    req.set_TaskName("core-sdk-task")
    created = service.core_call(req)
    assert created["DBInstanceName"] == instance_id and created["TaskName"] == "core-sdk-task"
    assert isinstance(created["TaskId"], int) and created["RequestId"]

    desc = DescribeCloudMigrationResultRequest()
    desc.set_DBInstanceName(instance_id)
    desc.set_PageNumber(1)
    desc.set_PageSize(10)
    desc.set_TaskId(created["TaskId"])
    body = service.core_call(desc)
    assert body["TotalSize"] == 1 and isinstance(body["Items"], list)
    assert body["Items"][0]["TaskName"] == "core-sdk-task"
    assert body["Items"][0]["SourcePassword"] == "********"
    assert body["Items"][0]["SourceCategory"] == "idconvpc"
    wait_streaming(client, instance_id, created["TaskId"])
