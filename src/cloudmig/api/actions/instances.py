"""CreateDBInstance, DescribeDBInstances, DescribeDBInstanceAttribute, DeleteDBInstance, CreateAccount."""

from __future__ import annotations

from typing import Any

from cloudmig import errors
from cloudmig.api.actions.registry import Params, action
from cloudmig.domain import classes
from cloudmig.domain.ids import INSTANCE_ID_RE
from cloudmig.domain.time import gmt
from cloudmig.domain.validation import valid_account
from cloudmig.runtime import AppContext
from cloudmig.services import instances as svc
from cloudmig.store.records import InstanceRecord


def _instance_id(p: Params, name: str = "DBInstanceId") -> str:
    value = p.required_str(name, max_len=64)
    if not INSTANCE_ID_RE.match(value):
        raise errors.InstanceNotFound()
    return value


def _common(ctx: AppContext, r: InstanceRecord) -> dict[str, Any]:
    cls = classes.lookup(r.instance_class)
    return {
        "DBInstanceId": r.id,
        "DBInstanceDescription": r.description,
        "DBInstanceStatus": r.status.value,
        "Engine": r.engine,
        "EngineVersion": r.engine_version,
        "DBInstanceClass": r.instance_class,
        "DBInstanceType": "Primary",
        "DBInstanceNetType": "Intranet",
        "InstanceNetworkType": "VPC",
        "ConnectionMode": "Standard",
        "PayType": "Postpaid",
        "LockMode": "Unlock",
        "Category": "Basic",
        "DBInstanceStorageType": "local_ssd",
        "RegionId": "cn-hangzhou",
        "ZoneId": "cn-hangzhou-local",
        "CreateTime": gmt(r.created_at),
        "ConnectionString": ctx.settings.instance_host,
        "MutriORsignle": False,
        "DBInstanceCPU": str(cls.cpu) if cls else "",
        "DBInstanceMemory": cls.memory_mb if cls else 0,
        "ReadOnlyDBInstanceIds": {"ReadOnlyDBInstanceId": []},
    }


@action("CreateDBInstance")
def create_db_instance(ctx: AppContext, p: Params) -> dict[str, Any]:
    req = svc.InstanceRequest(
        engine=p.required_str("Engine", max_len=32),
        engine_version=p.required_str("EngineVersion", max_len=16),
        instance_class=p.required_str("DBInstanceClass", max_len=64),
        storage_gb=p.required_int("DBInstanceStorage", lo=1, hi=65536),
        description=p.optional_str("DBInstanceDescription", max_len=256) or "",
        client_token=p.optional_str("ClientToken", max_len=64),
    )
    r = svc.create_instance(ctx, req)
    return {
        "DBInstanceId": r.id,
        "OrderId": str(r.created_at.timestamp()).replace(".", "")[:12],
        "ConnectionString": ctx.settings.instance_host,
        "Port": str(r.port),
    }


@action("DescribeDBInstances")
def describe_db_instances(ctx: AppContext, p: Params) -> dict[str, Any]:
    number, size = p.page(default_size=30)
    total, recs = svc.list_instances(
        ctx,
        instance_id=p.optional_str("DBInstanceId", max_len=64),
        engine=p.optional_str("Engine", max_len=32),
        page_number=number,
        page_size=size,
    )
    items = [{**_common(ctx, r), "Port": str(r.port)} for r in recs]
    return {
        "Items": {"DBInstance": items},
        "PageNumber": number,
        "PageRecordCount": len(items),
        "TotalRecordCount": total,
    }


@action("DescribeDBInstanceAttribute")
def describe_db_instance_attribute(ctx: AppContext, p: Params) -> dict[str, Any]:
    r = svc.get_instance(ctx, _instance_id(p))
    cls = classes.lookup(r.instance_class)
    # The attribute model names the creation time CreationTime and has no MutriORsignle.
    common = {k: v for k, v in _common(ctx, r).items() if k not in ("CreateTime", "MutriORsignle")}
    item = {
        **common,
        "CreationTime": gmt(r.created_at),
        "Port": str(r.port),
        "DBInstanceStorage": r.storage_gb,
        "MaxConnections": cls.max_connections if cls else 0,
        "CurrentKernelVersion": "",
        "AccountMaxQuantity": 100,
        # Extension: why a Failed instance failed (empty otherwise).
        "StatusReason": r.status_reason,
    }
    return {"Items": {"DBInstanceAttribute": [item]}}


@action("DeleteDBInstance")
def delete_db_instance(ctx: AppContext, p: Params) -> dict[str, Any]:
    svc.delete_instance(ctx, _instance_id(p))
    return {}


def _account_name(p: Params) -> str:
    name = p.required_str("AccountName", max_len=63)
    if not valid_account(name):
        raise errors.InvalidParameter("AccountName", "Use letters, digits and underscores.")
    return name


@action("CreateAccount")
def create_account(ctx: AppContext, p: Params) -> dict[str, Any]:
    instance_id = _instance_id(p)
    name = _account_name(p)
    account_type = (p.optional_str("AccountType", max_len=16) or "Normal").lower()
    if account_type not in ("normal", "super"):
        raise errors.InvalidParameter("AccountType", "It must be Normal or Super.")
    svc.create_account(
        ctx,
        instance_id,
        name,
        p.secret("AccountPassword"),
        superuser=account_type == "super",
        description=p.optional_str("AccountDescription", max_len=256) or "",
    )
    return {}


@action("ResetAccountPassword")
def reset_account_password(ctx: AppContext, p: Params) -> dict[str, Any]:
    instance_id = _instance_id(p)
    svc.reset_account_password(ctx, instance_id, _account_name(p), p.secret("AccountPassword"))
    return {}
