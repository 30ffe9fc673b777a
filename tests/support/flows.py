"""Steps e2e tests repeat, driven through the official tea SDK (V3 signatures)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from alibabacloud_rds20140815 import models as rds

T = TypeVar("T")

MIGRATION_PASSWORD = "p@ss 'w\"o\\rd: ü;--"


def connect_target_tcp(
    attr: Any, user: str = "migratetest", password: str = MIGRATION_PASSWORD
) -> psycopg.Connection[Any]:
    """The instance over TCP, as the migration account by default (its role came with the copy)."""
    return psycopg.connect(
        host=attr.connection_string,
        port=int(attr.port),
        user=user,
        password=password,
        dbname="postgres",
        autocommit=True,
        connect_timeout=5,
    )


def wait_for(fn: Callable[[], T | None], timeout: float, interval: float = 0.5, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value {last!r}")


def source_fields(instance_id: str, port: int, **overrides: Any) -> dict[str, Any]:
    """The SDK request fields naming a local source, as the precheck and migration calls take them."""
    values: dict[str, Any] = {
        "dbinstance_name": instance_id,
        "source_ip_address": "127.0.0.1",
        "source_port": port,
        "source_account": "migratetest",
        "source_password": MIGRATION_PASSWORD,
        "source_category": "ecsOnVpc",
    }
    values.update(overrides)
    return values


def create_instance(
    client: Any,
    *,
    storage: int = 20,
    klass: str = "pg.n2.medium.2c",
    token: str | None = None,
    major: int | None = None,
) -> str:
    """CreateDBInstance of `major` (the tests' DEFAULT_MAJOR, the distribution's, by default)."""
    from tests.support.pgcluster import DEFAULT_MAJOR

    resp = client.create_dbinstance(
        rds.CreateDBInstanceRequest(
            region_id="cn-hangzhou",
            engine="PostgreSQL",
            engine_version=f"{major or DEFAULT_MAJOR}.0",
            dbinstance_class=klass,
            dbinstance_storage=storage,
            dbinstance_net_type="Intranet",
            security_iplist="127.0.0.1",
            pay_type="Postpaid",
            zone_id="cn-hangzhou-i",
            vpcid="vpc-test",
            v_switch_id="vsw-test",
            client_token=token,
        )
    )
    return str(resp.body.dbinstance_id)


def instance_attribute(client: Any, instance_id: str) -> Any:
    resp = client.describe_dbinstance_attribute(
        rds.DescribeDBInstanceAttributeRequest(dbinstance_id=instance_id)
    )
    return resp.body.items.dbinstance_attribute[0]


def _status_reason(client: Any, instance_id: str) -> str:
    from alibabacloud_tea_openapi import models as open_api
    from alibabacloud_tea_util import models as util

    params = open_api.Params(
        action="DescribeDBInstanceAttribute",
        version="2014-08-15",
        protocol="HTTP",
        pathname="/",
        method="POST",
        auth_type="AK",
        style="RPC",
        req_body_type="formData",
        body_type="json",
    )
    req = open_api.OpenApiRequest(query={"DBInstanceId": instance_id})
    body = client.call_api(params, req, util.RuntimeOptions())["body"]
    return str(body["Items"]["DBInstanceAttribute"][0].get("StatusReason", ""))


def wait_running(client: Any, instance_id: str, timeout: float = 120) -> Any:
    def running() -> Any:
        a = instance_attribute(client, instance_id)
        if a.dbinstance_status not in ("Creating", "Running"):
            raise AssertionError(
                f"instance {instance_id} is {a.dbinstance_status}: {_status_reason(client, instance_id)}"
            )
        return a if a.dbinstance_status == "Running" else None

    return wait_for(running, timeout, what=f"{instance_id} Running")


def create_migration(
    client: Any,
    instance_id: str,
    source: Any,
    account: str = "migratetest",
    password: str = MIGRATION_PASSWORD,
    task_name: str | None = None,
) -> Any:
    return client.create_cloud_migration_task(
        rds.CreateCloudMigrationTaskRequest(
            dbinstance_name=instance_id,
            source_ip_address="127.0.0.1",
            source_port=source.port,
            source_account=account,
            source_password=password,
            source_category="ecsOnVpc",
            task_name=task_name,
        )
    ).body


def migration_items(client: Any, instance_id: str, **filters: Any) -> list[Any]:
    resp = client.describe_cloud_migration_result(
        rds.DescribeCloudMigrationResultRequest(
            dbinstance_name=instance_id, page_number=1, page_size=30, **filters
        )
    )
    assert resp.body is not None, "response did not map onto the SDK model"
    return list(resp.body.items)


def migration_item(client: Any, instance_id: str, task_id: int) -> Any:
    items = migration_items(client, instance_id, task_id=task_id)
    assert len(items) == 1
    return items[0]


def wait_streaming(
    client: Any,
    instance_id: str,
    task_id: int,
    timeout: float = 240,
    seen: list[tuple[str, str]] | None = None,
) -> Any:
    def streaming() -> Any:
        it = migration_item(client, instance_id, task_id)
        if seen is not None and (not seen or seen[-1] != (it.migrate_stage, it.replication_state)):
            seen.append((it.migrate_stage, it.replication_state))
        raw = client_raw_status(it)
        assert raw != "failed", f"task failed: {it.detail}"
        return it if (it.migrate_stage, it.replication_state) == ("increment", "streaming") else None

    return wait_for(streaming, timeout, interval=0.3, what="increment/streaming")


def client_raw_status(item: Any) -> str:
    # The SDK model drops our extension fields; DescribeCloudMigrationResult's Detail says failure.
    return "failed" if "[Task failed]" in (item.detail or "") else "running"


def replication_info(item: Any) -> dict[str, str]:
    return dict(json.loads(item.replication_info))


def raw_items(service: Any, instance_id: str, *, client: Any = None, **filters: Any) -> list[dict[str, Any]]:
    """Items as JSON through aliyunsdkcore, which keeps cloudmig's extension fields; through
    `client` (an AcsClient of the service) when given, else through a new one."""
    from aliyunsdkrds.request.v20140815.DescribeCloudMigrationResultRequest import (
        DescribeCloudMigrationResultRequest,
    )

    req = DescribeCloudMigrationResultRequest()
    req.set_DBInstanceName(instance_id)
    req.set_PageNumber(1)
    req.set_PageSize(30)
    if "task_id" in filters:
        req.set_TaskId(filters["task_id"])
    return list(service.core_call(req, client=client)["Items"])


def start_throttled_migration(service: Any, source: Any, rate_kb: int) -> tuple[Any, str, Any, int]:
    """Start `service` with a slow full copy, make an instance, and start a migration from `source`:
    (client, instance id, instance attribute, task id). The copy is slow enough to act during it."""
    service.extra_env["CLOUDMIG_BASEBACKUP_MAX_RATE_KB"] = str(rate_kb)
    # The rate counts bytes on the wire: a compressed copy would get through many times faster.
    service.extra_env["CLOUDMIG_COPY_COMPRESSION"] = "none"
    service.start()
    client = service.tea()
    instance_id = create_instance(client)
    attr = wait_running(client, instance_id)
    return client, instance_id, attr, create_migration(client, instance_id, source).task_id
