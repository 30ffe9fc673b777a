"""SDK contract: every implemented action through the three official SDK paths, success and error.

The paths: the tea SDK with V3 signatures, the tea SDK with ``signature_algorithm="v2"`` (V1), and
aliyunsdkcore + aliyunsdkrds (V1). Assertions are on what each SDK hands its caller: the parsed
response model (tea; and every key the service sent must be one the model knows) or the JSON body
(aliyunsdkcore returns bytes), and the exception's code and HTTP status.

All SDK traffic goes through a recording proxy (a real HTTP hop), so the last test can search every
response of the module's full migrations (three of them, one per SDK path, through switchover) and
the service's logs for the source password and the access key secret.
"""

from __future__ import annotations

import json
import re
import time
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import psycopg
import pytest
from alibabacloud_tea_openapi import exceptions as tea_exceptions
from aliyunsdkcore.acs_exception.exceptions import ServerException as CoreServerException
from aliyunsdkcore.request import CommonRequest

from tests.support.flows import MIGRATION_PASSWORD, wait_for
from tests.support.pgcluster import DEFAULT_MAJOR, SourceCluster, make_base_dir
from tests.support.sdk import (
    FLAVOURS,
    Core,
    Flavour,
    RecordingProxy,
    Result,
    Tea,
    flavours,
    unmapped_keys,
)
from tests.support.service import Service

pytestmark = pytest.mark.e2e

GMT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
REQUEST_ID = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$")
UNKNOWN = "pgm-0000000000000000"
# One category spelling per path: each documented value is accepted in any case.
# Not `internet`: that category requires TLS by default and the contract's source has none
# (tests/e2e/test_tls.py covers it).
CATEGORIES = {"tea_v3": "ecsOnVpc", "tea_v1": "IDCONVPC", "core": "AliyunRds"}


def instance_params(**extra: Any) -> dict[str, Any]:
    return {
        "RegionId": "cn-hangzhou",
        "Engine": "PostgreSQL",
        "EngineVersion": f"{DEFAULT_MAJOR}.0",
        "DBInstanceClass": "pg.n2.medium.2c",
        "DBInstanceStorage": 20,
        "DBInstanceNetType": "Intranet",
        "SecurityIPList": "127.0.0.1",
        "PayType": "Postpaid",
        "ZoneId": "cn-hangzhou-i",
        "VPCId": "vpc-test",
        "VSwitchId": "vsw-test",
        "ResourceOwnerId": 1234567890,
        **extra,
    }


def source_params(instance_id: str, port: int, **extra: Any) -> dict[str, Any]:
    return {
        "DBInstanceName": instance_id,
        "SourceIpAddress": "127.0.0.1",
        "SourcePort": port,
        "SourceAccount": "migratetest",
        "SourcePassword": MIGRATION_PASSWORD,
        "SourceCategory": "ecsOnVpc",
        "ResourceOwnerId": 1234567890,
        **extra,
    }


@dataclass
class World:
    service: Service
    proxy: RecordingProxy
    source: SourceCluster
    by_name: dict[str, Flavour]
    instance: dict[str, str] = field(default_factory=dict)
    created: dict[str, Result] = field(default_factory=dict)
    spare: str = ""
    precheck: dict[str, Result] = field(default_factory=dict)
    migration: dict[str, Result] = field(default_factory=dict)
    switched: dict[str, Result] = field(default_factory=dict)

    def f(self, name: str) -> Flavour:
        return self.by_name[name]

    @property
    def tea(self) -> Flavour:
        return self.by_name["tea_v3"]

    def parsed(self, name: str, result: Result) -> dict[str, Any]:
        """The body as the SDK gave it; for tea, check the model kept every key that was sent."""
        if name != "core":
            last = self.proxy.last()
            raw = json.loads(last.response_body)
            assert unmapped_keys(raw, result.body, last.action) == [], "keys the SDK model does not know"
        return result.body

    def attribute(self, instance_id: str) -> dict[str, Any]:
        body = self.tea.call("DescribeDBInstanceAttribute", {"DBInstanceId": instance_id}).body
        return dict(body["Items"]["DBInstanceAttribute"][0])

    def raw_task(self, action: str, instance_id: str, task_id: int) -> dict[str, Any]:
        # aliyunsdkcore keeps cloudmig's extension fields (Status, Reason) that tea models drop.
        body = (
            self.f("core")
            .call(action, {"DBInstanceName": instance_id, "TaskId": task_id, "PageNumber": 1, "PageSize": 30})
            .body
        )
        assert body["TotalSize"] == 1, body
        return dict(body["Items"][0])


@pytest.fixture(scope="module")
def source(e2e_base: Path) -> Iterator[SourceCluster]:
    d = make_base_dir("src-", parent=e2e_base)
    src = SourceCluster.create(d)
    try:
        src.pgbench_init(scale=1)
        src.create_migration_account("migratetest", MIGRATION_PASSWORD)
        src.sql("GRANT pg_read_all_data TO migratetest")
        yield src
    finally:
        src.destroy()


@pytest.fixture(scope="module")
def world(service: Service, source: SourceCluster) -> Iterator[World]:
    proxy = RecordingProxy(service.endpoint).start()
    w = World(
        service,
        proxy,
        source,
        {f.name: f for f in flavours(proxy.endpoint, service.key_id, service.key_secret)},
    )
    try:
        # One instance per SDK path, created through that path; one spare for accounts and refusals.
        for name in FLAVOURS:
            w.created[name] = w.f(name).call("CreateDBInstance", instance_params(ClientToken=f"world-{name}"))
            w.instance[name] = str(w.created[name].body["DBInstanceId"])
        w.spare = str(w.tea.call("CreateDBInstance", instance_params()).body["DBInstanceId"])
        for iid in [*w.instance.values(), w.spare]:
            wait_for(lambda iid=iid: w.attribute(iid)["DBInstanceStatus"] == "Running", 180, what=iid)

        # The documented order: an assessment, then the migration, through each path.
        for name in FLAVOURS:
            params = source_params(w.instance[name], source.port, TaskName=f"pre-{name}")
            params["SourceCategory"] = CATEGORIES[name]
            w.precheck[name] = w.f(name).call("CreateCloudMigrationPrecheckTask", params)
        for name in FLAVOURS:
            task_id = int(w.precheck[name].body["TaskId"])
            item = wait_for(
                lambda name=name, task_id=task_id: (
                    (it := w.raw_task("DescribeCloudMigrationPrecheckResult", w.instance[name], task_id))[
                        "Status"
                    ]
                    != "running"
                    and it
                ),
                120,
                what=f"precheck of {name}",
            )
            assert item["Status"] == "succeeded", item["Detail"]
        for name in FLAVOURS:
            params = source_params(w.instance[name], source.port, TaskName=f"mig-{name}")
            params["SourceCategory"] = CATEGORIES[name]
            w.migration[name] = w.f(name).call("CreateCloudMigrationTask", params)
        yield w
    finally:
        proxy.stop()


def wait_stage(w: World, name: str, stage: str, state: str, timeout: float = 240) -> dict[str, Any]:
    task_id = int(w.migration[name].body["TaskId"])

    def reached() -> dict[str, Any] | None:
        it = w.raw_task("DescribeCloudMigrationResult", w.instance[name], task_id)
        assert it["Status"] in ("running", "succeeded"), it["Detail"]
        return it if (it["MigrateStage"], it["ReplicationState"]) == (stage, state) else None

    return wait_for(reached, timeout, interval=0.5, what=f"{name}: {stage}/{state}")


def switched_over(w: World, name: str) -> dict[str, Any]:
    """The migration of ``name``'s instance, switched over (by its test, or now if it did not run)."""
    if name not in w.switched:
        wait_stage(w, name, "increment", "streaming")
        w.switched[name] = w.f(name).call(
            "ActivateMigrationTargetInstance", {"DBInstanceName": w.instance[name]}
        )
    return wait_stage(w, name, "success", "finish", timeout=180)


def parse_xml(text: str | bytes) -> ET.Element:
    return ET.fromstring(text)  # noqa: S314 - the service's own output


def err_status(err: Any) -> tuple[str, int]:
    return err.code, err.status


# ---- instances ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FLAVOURS)
def test_create_db_instance(world: World, name: str) -> None:
    w, f = world, world.f(name)
    body = w.created[name].body
    assert re.fullmatch(r"pgm-[a-z0-9]{16}", body["DBInstanceId"])
    assert body["ConnectionString"] == "127.0.0.1" and body["Port"].isdigit()
    assert REQUEST_ID.match(body["RequestId"]) and isinstance(body["OrderId"], str)
    if name != "core":
        assert w.created[name].model.dbinstance_id == body["DBInstanceId"]

    # A retried call with the same ClientToken answers with the same instance.
    again = f.call("CreateDBInstance", instance_params(ClientToken=f"world-{name}"))
    assert w.parsed(name, again)["DBInstanceId"] == body["DBInstanceId"]

    err = f.error("CreateDBInstance", instance_params(DBInstanceClass="pg.no.such.class"))
    assert err_status(err) == ("InvalidDBInstanceClass.NotFound", 400)
    err = f.error("CreateDBInstance", {k: v for k, v in instance_params().items() if k != "Engine"})
    assert err_status(err) == ("MissingParameter", 400) and '"Engine"' in err.message
    err = f.error("CreateDBInstance", instance_params(Engine="MySQL"))
    assert err_status(err) == ("InvalidEngine.Malformed", 400)
    err = f.error("CreateDBInstance", instance_params(EngineVersion="9.6"))
    assert err_status(err) == ("InvalidEngineVersion.Malformed", 400) and "10 to 18" in err.message
    err = f.error("CreateDBInstance", instance_params(DBInstanceStorage="lots"))
    assert err_status(err) == ("InvalidParameter", 400) and '"DBInstanceStorage"' in err.message


@pytest.mark.parametrize("name", FLAVOURS)
def test_describe_db_instances(world: World, name: str) -> None:
    w, f = world, world.f(name)
    iid = w.instance[name]
    r = f.call("DescribeDBInstances", {"RegionId": "cn-hangzhou", "DBInstanceId": iid, "ResourceOwnerId": 1})
    body = w.parsed(name, r)
    (item,) = body["Items"]["DBInstance"]
    assert (
        item["DBInstanceId"] == iid
        and item["Engine"] == "PostgreSQL"
        and item["EngineVersion"] == str(DEFAULT_MAJOR)
    )
    assert item["DBInstanceClass"] == "pg.n2.medium.2c" and GMT.match(item["CreateTime"])
    assert body["TotalRecordCount"] == 1 and body["PageRecordCount"] == 1 and body["PageNumber"] == 1
    if name != "core":
        assert r.model.items.dbinstance[0].dbinstance_id == iid

    everything = f.call("DescribeDBInstances", {"RegionId": "cn-hangzhou", "PageSize": 100}).body
    total = everything["TotalRecordCount"]
    assert total >= 4 and {*w.instance.values(), w.spare} <= {
        i["DBInstanceId"] for i in everything["Items"]["DBInstance"]
    }
    page = f.call("DescribeDBInstances", {"PageSize": 1, "PageNumber": 2}).body
    assert len(page["Items"]["DBInstance"]) == 1 and page["TotalRecordCount"] == total
    past = f.call("DescribeDBInstances", {"PageSize": 30, "PageNumber": 1000}).body
    assert past["Items"]["DBInstance"] == [] and past["TotalRecordCount"] == total

    for size in (0, 101):
        err = f.error("DescribeDBInstances", {"PageSize": size})
        assert err_status(err) == ("InvalidParameter", 400) and '"PageSize"' in err.message


@pytest.mark.parametrize("name", FLAVOURS)
def test_describe_db_instance_attribute(world: World, name: str) -> None:
    w, f = world, world.f(name)
    r = f.call("DescribeDBInstanceAttribute", {"DBInstanceId": w.spare, "ResourceOwnerId": "42"})
    (a,) = w.parsed(name, r)["Items"]["DBInstanceAttribute"]
    assert a["DBInstanceId"] == w.spare and a["DBInstanceStatus"] == "Running"
    assert a["DBInstanceStorage"] == 20 and isinstance(a["DBInstanceStorage"], int)
    assert a["Port"].isdigit() and a["MaxConnections"] == 400
    if name != "core":
        assert r.model.items.dbinstance_attribute[0].dbinstance_storage == 20

    for bad in (UNKNOWN, "not-an-id", "pgm-' OR 1=1 --"):
        err = f.error("DescribeDBInstanceAttribute", {"DBInstanceId": bad})
        assert err_status(err) == ("InvalidDBInstanceName.NotFound", 404)
        assert err.request_id and REQUEST_ID.match(err.request_id)
    err = f.error("DescribeDBInstanceAttribute", {})
    assert err_status(err) == ("MissingParameter", 400) and '"DBInstanceId"' in err.message


@pytest.mark.parametrize("name", FLAVOURS)
def test_create_account(world: World, name: str) -> None:
    w, f = world, world.f(name)
    account, password = f"app_{name}", f"pw '{name}' ü"
    params = {
        "DBInstanceId": w.spare,
        "AccountName": account,
        "AccountPassword": password,
        "AccountType": "Super",
        "AccountDescription": "contract",
        "ResourceOwnerId": 7,
    }
    body = w.parsed(name, f.call("CreateAccount", params))
    assert set(body) == {"RequestId"}
    a = w.attribute(w.spare)
    with psycopg.connect(
        host=a["ConnectionString"], port=int(a["Port"]), user=account, password=password, dbname="postgres"
    ) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (account,)

    assert err_status(f.error("CreateAccount", params)) == ("InvalidAccountName.Duplicate", 400)
    err = f.error("CreateAccount", {**params, "AccountName": "bad name; DROP ROLE x"})
    assert err_status(err) == ("InvalidParameter", 400) and '"AccountName"' in err.message
    err = f.error("CreateAccount", {**params, "AccountType": "Root"})
    assert err_status(err) == ("InvalidParameter", 400)
    err = f.error("CreateAccount", {k: v for k, v in params.items() if k != "AccountPassword"})
    assert err_status(err) == ("MissingParameter", 400)
    err = f.error("CreateAccount", {**params, "DBInstanceId": UNKNOWN})
    assert err_status(err) == ("InvalidDBInstanceName.NotFound", 404)


# ---- assessment ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FLAVOURS)
def test_create_cloud_migration_precheck_task(world: World, name: str) -> None:
    w, f = world, world.f(name)
    body = w.precheck[name].body
    assert body["DBInstanceName"] == w.instance[name] and body["TaskName"] == f"pre-{name}"
    assert isinstance(body["TaskId"], int) and body["TaskId"] > 0
    if name != "core":
        assert w.precheck[name].model.task_id == body["TaskId"]

    params = source_params(w.instance[name], w.source.port, TaskName=f"pre-{name}")
    assert err_status(f.error("CreateCloudMigrationPrecheckTask", params)) == (
        "InvalidTaskName.Duplicate",
        400,
    )
    err = f.error("CreateCloudMigrationPrecheckTask", {**params, "SourceCategory": "moon"})
    assert err_status(err) == ("InvalidParameter", 400) and '"SourceCategory"' in err.message
    err = f.error("CreateCloudMigrationPrecheckTask", {**params, "SourcePort": "port"})
    assert err_status(err) == ("InvalidParameter", 400) and '"SourcePort"' in err.message
    err = f.error("CreateCloudMigrationPrecheckTask", {**params, "DBInstanceName": UNKNOWN})
    assert err_status(err) == ("InvalidDBInstanceName.NotFound", 404)
    err = f.error(
        "CreateCloudMigrationPrecheckTask", {k: v for k, v in params.items() if k != "SourceAccount"}
    )
    assert err_status(err) == ("MissingParameter", 400) and '"SourceAccount"' in err.message
    assert MIGRATION_PASSWORD not in err.message


@pytest.mark.parametrize("name", FLAVOURS)
def test_describe_cloud_migration_precheck_result(world: World, name: str) -> None:
    w, f = world, world.f(name)
    iid, task_id = w.instance[name], int(w.precheck[name].body["TaskId"])
    # PageNumber and PageSize left out: page 1 of 30.
    r = f.call("DescribeCloudMigrationPrecheckResult", {"DBInstanceName": iid, "TaskId": task_id})
    body = w.parsed(name, r)
    assert (body["TotalSize"], body["PageNumber"], body["PageSize"]) == (1, 1, 30)
    (item,) = body["Items"]
    assert item["TaskId"] == task_id and item["TaskName"] == f"pre-{name}"
    assert item["TargetInstanceName"] == iid and item["SourcePassword"] == "********"
    assert item["SourceCategory"] == CATEGORIES[name].lower() and item["SourcePort"] == w.source.port
    assert item["SourceIpAddress"] == "127.0.0.1" and item["SourceAccount"] == "migratetest"
    assert GMT.match(item["GmtCreated"]) and GMT.match(item["GmtModified"])
    assert item["Detail"].startswith("[Check rds empty]\n") and "*Migrate check success*" in item["Detail"]
    if name != "core":
        assert r.model.items[0].task_id == task_id and isinstance(r.model.items[0].source_port, int)

    by_name = f.call(
        "DescribeCloudMigrationPrecheckResult",
        {"DBInstanceName": iid, "TaskName": f"pre-{name}", "PageNumber": 1, "PageSize": 10},
    ).body
    assert [i["TaskId"] for i in by_name["Items"]] == [task_id]
    past = f.call(
        "DescribeCloudMigrationPrecheckResult", {"DBInstanceName": iid, "PageNumber": 2, "PageSize": 1}
    ).body
    assert past["Items"] == [] and past["TotalSize"] == 1 and past["PageNumber"] == 2
    none = f.call("DescribeCloudMigrationPrecheckResult", {"DBInstanceName": iid, "TaskName": "nope"}).body
    assert none["Items"] == [] and none["TotalSize"] == 0

    for extra in ({"PageSize": 0}, {"PageSize": 101}, {"PageNumber": 0}, {"TaskId": "x"}):
        err = f.error("DescribeCloudMigrationPrecheckResult", {"DBInstanceName": iid, **extra})
        assert err_status(err) == ("InvalidParameter", 400), extra
    err = f.error("DescribeCloudMigrationPrecheckResult", {"DBInstanceName": UNKNOWN})
    assert err_status(err) == ("InvalidDBInstanceName.NotFound", 404)


# ---- migration ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FLAVOURS)
def test_create_cloud_migration_task(world: World, name: str) -> None:
    w, f = world, world.f(name)
    body = w.migration[name].body
    assert body["DBInstanceName"] == w.instance[name] and body["TaskName"] == f"mig-{name}"
    assert isinstance(body["TaskId"], int) and REQUEST_ID.match(body["RequestId"])
    if name != "core":
        assert w.migration[name].model.task_name == f"mig-{name}"

    # One migration per instance; required parameters; the name rule.
    params = source_params(w.instance[name], w.source.port)
    assert err_status(f.error("CreateCloudMigrationTask", params)) == ("IncorrectDBInstanceState", 400)
    err = f.error("CreateCloudMigrationTask", {k: v for k, v in params.items() if k != "SourcePassword"})
    assert err_status(err) == ("MissingParameter", 400) and '"SourcePassword"' in err.message
    err = f.error("CreateCloudMigrationTask", {**params, "SourceIpAddress": "300.1.1.1"})
    assert err_status(err) == ("InvalidParameter", 400)
    err = f.error("CreateCloudMigrationTask", {**params, "DBInstanceName": UNKNOWN})
    assert err_status(err) == ("InvalidDBInstanceName.NotFound", 404)


@pytest.mark.parametrize("name", FLAVOURS)
def test_describe_cloud_migration_result(world: World, name: str) -> None:
    w, f = world, world.f(name)
    iid, task_id = w.instance[name], int(w.migration[name].body["TaskId"])
    wait_stage(w, name, "increment", "streaming")
    r = f.call(
        "DescribeCloudMigrationResult",
        {"DBInstanceName": iid, "TaskId": task_id, "PageNumber": 1, "PageSize": 30, "OwnerId": 5},
    )
    body = w.parsed(name, r)
    assert (body["TotalSize"], body["PageNumber"], body["PageSize"]) == (1, 1, 30)
    (item,) = body["Items"]
    assert item["TaskId"] == task_id and item["TaskName"] == f"mig-{name}"
    assert (item["MigrateStage"], item["ReplicationState"]) == ("increment", "streaming")
    info = json.loads(item["ReplicationInfo"])
    assert isinstance(item["ReplicationInfo"], str) and info["Status"] == "streaming"
    assert MIGRATION_PASSWORD not in item["ReplicationInfo"] and item["SourcePassword"] == "********"
    if name != "core":
        assert r.model.items[0].migrate_stage == "increment"

    by_name = f.call("DescribeCloudMigrationResult", {"DBInstanceName": iid, "TaskName": f"mig-{name}"}).body
    assert [i["TaskId"] for i in by_name["Items"]] == [task_id]
    # The precheck task of the same instance is not a migration task.
    other = f.call(
        "DescribeCloudMigrationResult",
        {"DBInstanceName": iid, "TaskId": int(w.precheck[name].body["TaskId"])},
    ).body
    assert other["Items"] == [] and other["TotalSize"] == 0
    past = f.call(
        "DescribeCloudMigrationResult", {"DBInstanceName": iid, "PageNumber": 3, "PageSize": 100}
    ).body
    assert past["Items"] == [] and past["TotalSize"] == 1

    err = f.error("DescribeCloudMigrationResult", {"DBInstanceName": iid, "PageSize": 1000})
    assert err_status(err) == ("InvalidParameter", 400)
    err = f.error("DescribeCloudMigrationResult", {"DBInstanceName": UNKNOWN})
    assert err_status(err) == ("InvalidDBInstanceName.NotFound", 404)
    err = f.error("DescribeCloudMigrationResult", {})
    assert err_status(err) == ("MissingParameter", 400) and '"DBInstanceName"' in err.message


@pytest.mark.parametrize("name", FLAVOURS)
def test_activate_migration_target_instance(world: World, name: str) -> None:
    w, f = world, world.f(name)
    iid, task_id = w.instance[name], int(w.migration[name].body["TaskId"])
    err = f.error("ActivateMigrationTargetInstance", {"DBInstanceName": w.spare})
    assert err_status(err) == ("IncorrectDBInstanceState", 400)
    err = f.error("ActivateMigrationTargetInstance", {"DBInstanceName": UNKNOWN})
    assert err_status(err) == ("InvalidDBInstanceName.NotFound", 404)
    err = f.error("ActivateMigrationTargetInstance", {"DBInstanceName": iid, "SwitchTimeMode": "1"})
    assert err_status(err) == ("InvalidParameter", 400) and '"SwitchTimeMode"' in err.message
    err = f.error("ActivateMigrationTargetInstance", {"DBInstanceName": iid, "ForceSwitch": "yes"})
    assert err_status(err) == ("InvalidParameter", 400) and '"ForceSwitch"' in err.message

    wait_stage(w, name, "increment", "streaming")
    params: dict[str, Any] = {"DBInstanceName": iid, "SwitchTimeMode": "0", "ResourceOwnerId": 9}
    if name == "tea_v3":
        params["SwitchTime"] = "2022-02-25T06:57:41Z"  # reserved: accepted, no effect
    r = f.call("ActivateMigrationTargetInstance", params)
    body = w.parsed(name, r)
    assert body["DBInstanceName"] == iid and body["TaskId"] == task_id
    assert body["SourceIpAddress"] == "127.0.0.1" and body["SourcePort"] == w.source.port
    if name != "core":
        assert r.model.task_id == task_id and isinstance(r.model.source_port, int)
    w.switched[name] = r

    done = wait_stage(w, name, "success", "finish", timeout=180)
    assert GMT.match(done["SwitchTime"]) and done["Status"] == "succeeded"
    err = f.error("ActivateMigrationTargetInstance", {"DBInstanceName": iid})
    assert err_status(err) == ("IncorrectDBInstanceState", 400)


# ---- the wire: unknown actions and versions, XML, GET, form bodies, plumbing -------------------


@pytest.mark.parametrize("name", FLAVOURS)
def test_unimplemented_action_is_invalid_action_not_found(world: World, name: str) -> None:
    # DescribeRegions is a real RDS action the SDKs know and cloudmig does not implement.
    err = world.f(name).error("DescribeRegions", {"RegionId": "cn-hangzhou"})
    assert err_status(err) == ("InvalidAction.NotFound", 404)
    assert "Specified api is not found" in err.message


def test_unknown_version_is_invalid_version(world: World) -> None:
    for f in (world.f("tea_v3"), world.f("tea_v1")):
        assert isinstance(f, Tea)
        with pytest.raises(tea_exceptions.ClientException) as info:
            f.generic("DescribeDBInstances", {}, version="2013-05-28")
        assert (info.value.code, info.value.status_code) == ("InvalidVersion", 400)
    core = world.f("core")
    assert isinstance(core, Core)
    req = CommonRequest(domain=core.endpoint, version="2013-05-28", action_name="DescribeDBInstances")
    req.set_method("POST")
    with pytest.raises(CoreServerException) as cinfo:
        core.send(req)
    assert (cinfo.value.get_error_code(), cinfo.value.get_http_status()) == ("InvalidVersion", 400)


def test_get_and_form_bodies_through_every_path(world: World) -> None:
    w = world
    iid = w.instance["tea_v3"]
    for name in ("tea_v3", "tea_v1"):
        f = w.f(name)
        assert isinstance(f, Tea)
        got = f.generic("DescribeCloudMigrationResult", {"DBInstanceName": iid}, method="GET")
        assert got["statusCode"] == 200 and got["body"]["TotalSize"] == 1
        # Parameters in a form-encoded body (the SDK signs them: V1 in the string to sign, V3 by hash).
        form = f.generic(
            "DescribeCloudMigrationResult",
            {"DBInstanceName": iid},
            body={"TaskName": "mig-tea_v3", "PageSize": "5"},
        )
        assert form["body"]["PageSize"] == 5 and len(form["body"]["Items"]) == 1
        assert w.proxy.last().method == "POST" and b"TaskName=mig-tea_v3" in w.proxy.last().body
    core = w.f("core")
    assert isinstance(core, Core)
    req = core.request("DescribeCloudMigrationResult", {"DBInstanceName": iid}, method="GET")
    assert json.loads(core.send(req))["TotalSize"] == 1 and w.proxy.last().method == "GET"
    req = core.request("DescribeCloudMigrationResult", {"DBInstanceName": iid})
    req.add_body_params("TaskName", "mig-tea_v3")
    req.add_body_params("PageSize", "7")
    body = json.loads(core.send(req))
    assert body["PageSize"] == 7 and len(body["Items"]) == 1


def test_xml_when_asked(world: World) -> None:
    w = world
    core = w.f("core")
    assert isinstance(core, Core)
    # do_action_with_exception forces Format=JSON; get_response keeps the format the caller set.
    switched_over(w, "core")
    req = core.request("DescribeCloudMigrationResult", {"DBInstanceName": w.instance["core"]})
    req.set_accept_format("XML")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        status, headers, body = core.client().get_response(req)
    assert status == 200 and headers["content-type"] == "text/xml;charset=utf-8"
    root = parse_xml(body)
    assert root.tag == "DescribeCloudMigrationResultResponse"
    assert REQUEST_ID.match(root.findtext("RequestId") or "") and root.findtext("TotalSize") == "1"
    items = root.findall("Items")
    assert len(items) == 1 and items[0].findtext("TaskName") == "mig-core"
    assert items[0].findtext("MigrateStage") == "success"

    # An error asked for as XML is rooted at <Error>.
    req = core.request("DescribeDBInstanceAttribute", {"DBInstanceId": UNKNOWN})
    req.set_accept_format("XML")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        status, headers, body = core.client().get_response(req)
    assert status == 404 and headers["content-type"] == "text/xml;charset=utf-8"
    err = parse_xml(body)
    assert err.tag == "Error" and err.findtext("Code") == "InvalidDBInstanceName.NotFound"
    assert err.findtext("HostId") and err.findtext("Recommend") and err.findtext("RequestId")

    # The tea SDK (V3) parses an XML error when the content type says so; success as a string.
    tea = w.f("tea_v3")
    assert isinstance(tea, Tea)
    with pytest.raises(tea_exceptions.ClientException) as tinfo:
        tea.generic("DescribeDBInstanceAttribute", {"DBInstanceId": UNKNOWN, "Format": "XML"})
    assert (tinfo.value.code, tinfo.value.status_code) == ("InvalidDBInstanceName.NotFound", 404)
    ok = tea.generic("DescribeDBInstances", {"Format": "xml"}, body_type="string")
    assert parse_xml(ok["body"]).tag == "DescribeDBInstancesResponse"


def test_source_category_accepts_every_documented_value_in_any_case(world: World) -> None:
    w = world
    core = w.f("core")
    seen = {}
    for i, value in enumerate(["idcOnVpc", "ECSONVPC", "internet", "AliyunRds", "OTHER", " ecsonvpc "]):
        params = source_params(w.spare, w.source.port, TaskName=f"category-{i}", SourceCategory=value)
        task_id = core.call("CreateCloudMigrationPrecheckTask", params).body["TaskId"]
        seen[task_id] = value.strip().lower()
    body = core.call(
        "DescribeCloudMigrationPrecheckResult", {"DBInstanceName": w.spare, "PageSize": 100}
    ).body
    got = {i["TaskId"]: i["SourceCategory"] for i in body["Items"] if i["TaskId"] in seen}
    assert got == seen


def test_task_name_is_unique_per_instance_and_unknown_parameters_are_ignored(world: World) -> None:
    w = world
    core = w.f("core")
    params = source_params(
        w.spare,
        w.source.port,
        TaskName="shared-name",
        OwnerId="1",
        ResourceOwnerAccount="acct",
        OwnerAccount="acct",
        ClientToken="ignored",
        SomethingNew="whatever",
    )
    core.call("CreateCloudMigrationPrecheckTask", params)
    err = core.error("CreateCloudMigrationPrecheckTask", params)
    assert err_status(err) == ("InvalidTaskName.Duplicate", 400)
    # The same name on another instance is another task.
    other = w.instance["tea_v3"]
    body = core.call("CreateCloudMigrationPrecheckTask", {**params, "DBInstanceName": other}).body
    assert body["TaskName"] == "shared-name" and body["DBInstanceName"] == other
    found = core.call(
        "DescribeCloudMigrationPrecheckResult", {"DBInstanceName": w.spare, "TaskName": "shared-name"}
    ).body
    assert found["TotalSize"] == 1


# ---- deletion: after every other use of the instances ------------------------------------------


@pytest.mark.parametrize("name", FLAVOURS)
def test_delete_db_instance(world: World, name: str) -> None:
    w, f = world, world.f(name)
    iid = w.instance[name]
    switched_over(w, name)
    body = w.parsed(name, f.call("DeleteDBInstance", {"DBInstanceId": iid, "ResourceOwnerId": 3}))
    assert REQUEST_ID.match(body["RequestId"])

    def gone() -> bool:
        try:
            return w.attribute(iid)["DBInstanceStatus"] not in ("Running", "Deleting")
        except tea_exceptions.ClientException as exc:
            return exc.code == "InvalidDBInstanceName.NotFound"

    wait_for(gone, 120, what=f"{iid} deleted")
    assert err_status(f.error("DeleteDBInstance", {"DBInstanceId": UNKNOWN})) == (
        "InvalidDBInstanceName.NotFound",
        404,
    )
    assert err_status(f.error("DeleteDBInstance", {})) == ("MissingParameter", 400)


# ---- secrets: the last test of the module, after three full migrations -------------------------


def _encodings(secret: str) -> set[str]:
    return {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote(quote(secret, safe="~"), safe="~"),
        quote_plus(secret),
        secret.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"),
    }


def test_no_secret_in_any_response_or_log(world: World) -> None:
    w = world
    for name in FLAVOURS:
        if name in w.instance and name not in w.switched:
            switched_over(w, name)
    # Refusals of requests that carry the password, with a wrong secret among them: searched too.
    for name in FLAVOURS:
        wrong = flavours(w.proxy.endpoint, w.service.key_id, "not-the-secret")[FLAVOURS.index(name)]
        params = source_params(w.spare, w.source.port, TaskName=f"pre-{name}")
        for f, p in (
            (wrong, params),
            (w.f(name), {**params, "SourceCategory": "moon"}),
            (w.f(name), {**params, "SourcePort": "x"}),
            (w.f(name), {**params, "DBInstanceName": UNKNOWN}),
        ):
            f.error("CreateCloudMigrationTask", p)
    exchanges = w.proxy.all()
    # It only means something after full migrations: each path created one and switched it over.
    ok = {(e.action, e.status) for e in exchanges}
    assert ("CreateCloudMigrationTask", 200) in ok and ("ActivateMigrationTargetInstance", 200) in ok
    assert len(w.switched) == 3
    assert sum(1 for e in exchanges if e.status >= 400) >= 12

    needles = _encodings(MIGRATION_PASSWORD) | _encodings(w.service.key_secret)
    for e in exchanges:
        text = e.response_body.decode("utf-8", "replace") + json.dumps(e.response_headers)
        leaked = [n for n in needles if n in text]
        assert not leaked, f"{e.action} {e.status} response leaks a secret"
        assert "Traceback" not in text

    time.sleep(0.5)  # the access log line is written after the response
    logs = w.service.data_dir / "logs"
    texts = {p.name: p.read_text(errors="replace") for p in logs.iterdir() if p.is_file()}
    texts["serve output"] = w.service.output()
    assert "access.log" in texts and "cloudmig.log" in texts
    assert "ActivateMigrationTargetInstance" in texts["access.log"]
    for where, text in texts.items():
        leaked = [n for n in needles if n in text]
        assert not leaked, f"{where} holds a secret"
        assert "SourcePassword" not in text, where
