"""The cloud-migration actions: precheck and migration tasks (spec §1.2 to §1.5)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from cloudmig import errors
from cloudmig.api.actions.registry import Params, action
from cloudmig.domain.compression import InvalidCompressionMode, parse_mode
from cloudmig.domain.detail import render_detail
from cloudmig.domain.enums import TaskKind
from cloudmig.domain.ids import INSTANCE_ID_RE
from cloudmig.domain.time import gmt
from cloudmig.domain.tls import MAX_ROOT_CERT_CHARS, SSL_MODES, SourceTlsRequest
from cloudmig.domain.validation import (
    normalize_source_category,
    valid_account,
    valid_host,
    valid_pem_certificates,
)
from cloudmig.runtime import AppContext
from cloudmig.services import migrations as svc
from cloudmig.services.migrations import SourceRequest, TaskPage
from cloudmig.store.tasks import TaskFilter

MASKED_PASSWORD = "********"  # noqa: S105  (the mask, not a secret)


def _instance_name(p: Params) -> str:
    value = p.required_str("DBInstanceName", max_len=64)
    if not INSTANCE_ID_RE.match(value):
        raise errors.InstanceNotFound()
    return value


def _source_request(p: Params) -> SourceRequest:
    instance_id = _instance_name(p)
    ip = p.required_str("SourceIpAddress", max_len=253)
    if not valid_host(ip):
        raise errors.InvalidParameter("SourceIpAddress", "It must be an IP address or a host name.")
    port = p.required_int("SourcePort", lo=1, hi=65535)
    account = p.required_str("SourceAccount", max_len=63)
    if not valid_account(account):
        raise errors.InvalidParameter(
            "SourceAccount",
            "Use letters, digits and _ $ . @ -; quotes, semicolons and spaces are not allowed.",
        )
    password = p.secret("SourcePassword")
    category = normalize_source_category(p.required_str("SourceCategory", max_len=32))
    if category is None:
        raise errors.InvalidParameter(
            "SourceCategory", "It must be idcOnVpc, ecsOnVpc, internet, aliyunRDS or other (any case)."
        )
    task_name = p.optional_str("TaskName", max_len=128)
    return SourceRequest(instance_id, ip, port, account, password, category, task_name, tls=_tls(p))


def _tls(p: Params) -> SourceTlsRequest:
    """SourceSslMode and SourceSslRootCert (extensions: the SDKs drop them, the CLI sends them)."""
    mode = p.optional_str("SourceSslMode", max_len=16)
    if mode is not None and mode not in SSL_MODES:
        raise errors.InvalidParameter("SourceSslMode", f"It must be one of {', '.join(SSL_MODES)}.")
    pem = p.optional_str("SourceSslRootCert", max_len=MAX_ROOT_CERT_CHARS)
    if pem is not None and not valid_pem_certificates(pem):
        raise errors.InvalidParameter(
            "SourceSslRootCert", "It must be one or more PEM-encoded X.509 certificates."
        )
    if mode in ("verify-ca", "verify-full") and pem is None:
        # Without a CA of its own, libpq would look in ~/.postgresql of the user running it.
        raise errors.InvalidParameter(
            "SourceSslRootCert", f"SourceSslMode {mode} needs the CA certificate(s)."
        )
    return SourceTlsRequest(mode, pem)


def _filter(p: Params, kind: TaskKind) -> TaskFilter:
    return TaskFilter(
        instance_id=_instance_name(p),
        kind=kind,
        task_id=p.optional_int("TaskId", lo=0, hi=2**63 - 1),
        task_name=p.optional_str("TaskName", max_len=128),
        source_ip=p.optional_str("SourceIpAddress", max_len=253),
        source_port=p.optional_int("SourcePort", lo=0, hi=65535),
    )


def _precheck_item(page: TaskPage, i: int) -> dict[str, Any]:
    t = page.tasks[i]
    return {
        "TaskId": t.id,
        "TaskName": t.name,
        "GmtCreated": gmt(t.created_at),
        "GmtModified": gmt(t.modified_at),
        "SourceCategory": t.source_category.lower(),
        "SourceIpAddress": t.source_ip,
        "SourcePort": t.source_port,
        "SourceAccount": t.source_account,
        "SourcePassword": MASKED_PASSWORD,
        "TargetEip": "",
        "TargetInstanceName": t.instance_id,
        "Detail": render_detail(t.report, page.events.get(t.id, [])),
        # Extensions (the SDKs ignore unknown keys).
        "Status": t.status.value,
        "Reason": t.reason,
        "CheckResults": t.check_results,
    }


def _migration_item(page: TaskPage, i: int) -> dict[str, Any]:
    t = page.tasks[i]
    return {
        **_precheck_item(page, i),
        "MigrateStage": t.stage.value,
        "ReplicationState": t.replication_state.value,
        "ReplicationInfo": t.replication_info,
        "SwitchTime": gmt(t.switch_time),
        "Progress": _strip_private(t.progress),
        "Evidence": t.evidence,
        "ReasonCode": t.reason_code or None,
        # Writes the new primary does not have (None when nothing was lost), and the current
        # health warning (WAL kept on the source, storage), both null when all is well.
        "DataLoss": t.evidence.get("DataLoss"),
        "Warning": (t.progress.get("Health") or {}).get("Warning"),
    }


def _strip_private(progress: dict[str, Any]) -> dict[str, Any]:
    return {
        k: ({kk: vv for kk, vv in v.items() if not kk.startswith("_")} if isinstance(v, dict) else v)
        for k, v in progress.items()
        if not k.startswith("_")
    }


def _page_body(page: TaskPage, number: int, size: int, item: Any) -> dict[str, Any]:
    return {
        "TotalSize": page.total,
        "PageNumber": number,
        "PageSize": size,
        "Items": [item(page, i) for i in range(len(page.tasks))],
    }


def _copy_compression(p: Params) -> str | None:
    """Extension parameter CopyCompression: auto, none, lz4, zstd or zstd:LEVEL (issue 13)."""
    value = p.optional_str("CopyCompression", max_len=32)
    if value is None:
        return None
    try:
        return str(parse_mode(value))
    except InvalidCompressionMode as exc:
        raise errors.InvalidParameter("CopyCompression", str(exc)) from None


@action("CreateCloudMigrationTask")
def create_cloud_migration_task(ctx: AppContext, p: Params) -> dict[str, Any]:
    compression = _copy_compression(p)
    req = _source_request(p)
    if compression is not None:
        req = replace(req, extra={**req.extra, "CopyCompression": compression})
    t = svc.create_migration_task(ctx, req)
    return {"DBInstanceName": t.instance_id, "TaskId": t.id, "TaskName": t.name}


@action("CreateCloudMigrationPrecheckTask")
def create_cloud_migration_precheck_task(ctx: AppContext, p: Params) -> dict[str, Any]:
    t = svc.create_precheck_task(ctx, _source_request(p))
    return {"DBInstanceName": t.instance_id, "TaskId": t.id, "TaskName": t.name}


@action("DescribeCloudMigrationResult")
def describe_cloud_migration_result(ctx: AppContext, p: Params) -> dict[str, Any]:
    number, size = p.page()
    page = svc.describe_tasks(ctx, _filter(p, TaskKind.MIGRATION), page_number=number, page_size=size)
    return _page_body(page, number, size, _migration_item)


@action("DescribeCloudMigrationPrecheckResult")
def describe_cloud_migration_precheck_result(ctx: AppContext, p: Params) -> dict[str, Any]:
    number, size = p.page()
    page = svc.describe_tasks(ctx, _filter(p, TaskKind.PRECHECK), page_number=number, page_size=size)
    return _page_body(page, number, size, _precheck_item)
