"""The CLI's side of the RDS API: the official SDK client, signed with the key of the client config
(cloudmig.cli.client_config), keeping the raw body of each answer for cloudmig's extension fields."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cloudmig.cli.client_config import (
    ENV_ENDPOINT,
    ClientConfig,
    load_client_config,
)
from cloudmig.cli.output import CliError, Failed, Refused

T = TypeVar("T")

# ---- the SDK -----------------------------------------------------------------------------------------


class Api:
    """The official tea SDK client (alibabacloud-rds20140815) with the raw JSON body of the last call
    kept, so that cloudmig's extension fields (Progress, Status, Reason, CheckResults...), which the
    SDK's models drop, are still readable."""

    def __init__(self, cfg: ClientConfig, *, read_timeout_ms: int = 60_000) -> None:
        try:
            from alibabacloud_rds20140815 import models  # type: ignore[import-untyped]
            from alibabacloud_rds20140815.client import Client  # type: ignore[import-untyped]
            from alibabacloud_tea_openapi.models import Config  # type: ignore[import-untyped]
        except ImportError as exc:
            raise CliError(
                f"the client commands need the Alibaba Cloud SDK ({exc.name} is missing): "
                "pip install alibabacloud-rds20140815 alibabacloud-tea-openapi"
            ) from None

        class _Client(Client):  # type: ignore[misc]
            last_body: Any = None

            def call_api(self, params: Any, request: Any, runtime: Any) -> Any:
                out = super().call_api(params, request, runtime)
                self.last_body = out.get("body") if isinstance(out, dict) else None
                return out

        self.cfg = cfg
        self.models: Any = models
        self.sdk: Any = _Client(
            Config(
                access_key_id=cfg.access_key_id,
                access_key_secret=cfg.access_key_secret,
                endpoint=cfg.endpoint.host_port,
                protocol=cfg.endpoint.protocol,
                region_id="cn-hangzhou",
                read_timeout=read_timeout_ms,
                connect_timeout=5_000,
            )
        )

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run one SDK call; a refusal (4xx) raises Refused, anything else that goes wrong Failed."""
        try:
            return fn(*args)
        except Exception as exc:
            raise self._translate(exc) from None

    def raw(self, fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
        """Run one SDK call and return the JSON body as the service sent it."""
        self.call(fn, *args)
        body = self.sdk.last_body
        if not isinstance(body, dict):
            raise Failed("the service answered with an unexpected body")
        return body

    def _translate(self, exc: Exception) -> CliError:
        code = getattr(exc, "code", None)
        status = getattr(exc, "status_code", None) or getattr(exc, "statusCode", None)
        message = getattr(exc, "message", None)
        if code and isinstance(status, int):
            text = _clean_message(str(message or ""))
            if code == "SignatureDoesNotMatch":
                text = "the request signature does not match: is the access key secret right?"
            elif code == "InvalidAccessKeyId.NotFound":
                text = (
                    f"the service at {self.cfg.endpoint.url} does not know access key "
                    f"{self.cfg.access_key_id} ({self._origin('access_key_id')}). `cloudmig keys create` "
                    "writes into the store of the data dir it runs with: create the key with the same "
                    "CLOUDMIG_DATA_DIR (or --data-dir) as `cloudmig serve`, or point the client at the "
                    "service that has it"
                )
            line = f"{code}: {text}" if text else str(code)
            if 400 <= status < 500:
                return Refused(line)
            return Failed(line)
        return Failed(
            f"cannot reach the service at {self.cfg.endpoint.url} ({self._origin('endpoint')}): "
            f"{_network_reason(exc)}. Is `cloudmig serve` running there? A service on another host or "
            f"port (CLOUDMIG_PORT) needs {ENV_ENDPOINT} or the client config's endpoint set to match"
        )

    def _origin(self, key: str) -> str:
        origin = self.cfg.origins.get(key)
        return f"from {origin}" if origin and origin != "default" else "the default"

    # ---- typed calls ------------------------------------------------------------------------------

    def create_instance(
        self, *, engine_version: str, instance_class: str, storage_gb: int, description: str | None
    ) -> str:
        m = self.models
        resp = self.call(
            self.sdk.create_dbinstance,
            m.CreateDBInstanceRequest(
                region_id="cn-hangzhou",
                engine="PostgreSQL",
                engine_version=engine_version,
                dbinstance_class=instance_class,
                dbinstance_storage=storage_gb,
                dbinstance_net_type="Intranet",
                pay_type="Postpaid",
                dbinstance_description=description,
            ),
        )
        return str(resp.body.dbinstance_id)

    def instances(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self.raw(
                self.sdk.describe_dbinstances,
                self.models.DescribeDBInstancesRequest(
                    region_id="cn-hangzhou", page_number=page, page_size=100
                ),
            )
            items = list((body.get("Items") or {}).get("DBInstance") or [])
            out.extend(items)
            if not items or len(out) >= int(body.get("TotalRecordCount") or 0):
                return out
            page += 1

    def instance(self, instance_id: str) -> dict[str, Any]:
        body = self.raw(
            self.sdk.describe_dbinstance_attribute,
            self.models.DescribeDBInstanceAttributeRequest(dbinstance_id=instance_id),
        )
        items = (body.get("Items") or {}).get("DBInstanceAttribute") or []
        if not items:
            raise Refused(f"no instance {instance_id}")
        return dict(items[0])

    def delete_instance(self, instance_id: str) -> None:
        self.call(self.sdk.delete_dbinstance, self.models.DeleteDBInstanceRequest(dbinstance_id=instance_id))

    def create_precheck(self, instance_id: str, source: SourceArgs) -> dict[str, Any]:
        return self.action(
            "CreateCloudMigrationPrecheckTask", {"DBInstanceName": instance_id, **source.query()}
        )

    def prechecks(self, instance_id: str, task_id: int | None = None) -> list[dict[str, Any]]:
        req = self.models.DescribeCloudMigrationPrecheckResultRequest(
            dbinstance_name=instance_id, page_number=1, page_size=100, task_id=task_id
        )
        return list(self.raw(self.sdk.describe_cloud_migration_precheck_result, req).get("Items") or [])

    def create_migration(self, instance_id: str, source: SourceArgs) -> dict[str, Any]:
        return self.action("CreateCloudMigrationTask", {"DBInstanceName": instance_id, **source.query()})

    def migrations(self, instance_id: str, task_id: int | None = None) -> list[dict[str, Any]]:
        req = self.models.DescribeCloudMigrationResultRequest(
            dbinstance_name=instance_id, page_number=1, page_size=100, task_id=task_id
        )
        return list(self.raw(self.sdk.describe_cloud_migration_result, req).get("Items") or [])

    def migration(self, instance_id: str, task_id: int | None = None) -> dict[str, Any]:
        """One migration task: the given one, or the instance's newest."""
        items = self.migrations(instance_id, task_id)
        if not items:
            what = f"task {task_id}" if task_id is not None else "migration task"
            raise Refused(f"no {what} on instance {instance_id}")
        return dict(items[0])

    def action(self, action: str, query: dict[str, Any]) -> dict[str, Any]:
        """Any action with any parameters (cloudmig's extension parameters, which the SDK's request
        models do not carry), through the SDK's own signer."""
        from alibabacloud_tea_openapi import models as open_api  # type: ignore[import-untyped]
        from alibabacloud_tea_util import models as util  # type: ignore[import-untyped]

        params = open_api.Params(
            action=action,
            version="2014-08-15",
            protocol=self.cfg.endpoint.protocol.upper(),
            pathname="/",
            method="POST",
            auth_type="AK",
            style="RPC",
            req_body_type="formData",
            body_type="json",
        )
        request = open_api.OpenApiRequest(query={k: str(v) for k, v in query.items() if v is not None})
        return self.raw(self.sdk.call_api, params, request, util.RuntimeOptions())

    def switchover(
        self, instance_id: str, *, force: bool, timeout: int | None = None, fence: bool = True
    ) -> dict[str, Any]:
        return self.action(
            "ActivateMigrationTargetInstance",
            {
                "DBInstanceName": instance_id,
                "SwitchTimeMode": "0",
                "ForceSwitch": "1" if force else None,
                "SwitchoverTimeout": timeout,
                "SourceFence": None if fence else "off",
            },
        )

    def create_account(
        self, instance_id: str, name: str, password: str, *, superuser: bool, description: str | None
    ) -> None:
        req = self.models.CreateAccountRequest(
            dbinstance_id=instance_id,
            account_name=name,
            account_password=password,
            account_type="Super" if superuser else "Normal",
            account_description=description,
        )
        self.call(self.sdk.create_account, req)

    def reset_account_password(self, instance_id: str, name: str, password: str) -> None:
        req = self.models.ResetAccountPasswordRequest(
            dbinstance_id=instance_id, account_name=name, account_password=password
        )
        self.call(self.sdk.reset_account_password, req)


@dataclass(frozen=True)
class SourceArgs:
    host: str
    port: int
    account: str
    password: str = field(repr=False)
    category: str = "ecsOnVpc"
    task_name: str | None = None
    # TLS towards the source (extension parameters; None: the service's defaults).
    ssl_mode: str | None = None
    ssl_root_cert: str | None = field(default=None, repr=False)
    # More extension parameters of the task (e.g. CopyCompression).
    extra: dict[str, str] = field(default_factory=dict)

    def query(self) -> dict[str, Any]:
        return {
            "SourceIpAddress": self.host,
            "SourcePort": self.port,
            "SourceAccount": self.account,
            "SourcePassword": self.password,
            "SourceCategory": self.category,
            "TaskName": self.task_name,
            "SourceSslMode": self.ssl_mode,
            "SourceSslRootCert": self.ssl_root_cert,
            **self.extra,
        }


def _network_reason(exc: BaseException) -> str:
    text = str(exc)
    for needle, reason in (
        ("Connection refused", "connection refused"),
        ("timed out", "timed out"),
        ("Name or service not known", "unknown host"),
        ("No route to host", "no route to host"),
        ("Temporary failure in name resolution", "unknown host"),
    ):
        if needle in text:
            return reason
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _clean_message(text: str) -> str:
    # The tea SDK appends "request id: ..." and "Response: {...}" to the service's message.
    for marker in (" request id:", "request id:", " Response:"):
        head, sep, _ = text.partition(marker)
        if sep:
            text = head
    text = text.strip().rstrip(",").strip()
    if text.startswith("code: "):
        _, _, text = text.partition(", ")
    return " ".join(text.split())


def api_from_env(path: Path | None = None) -> Api:
    return Api(load_client_config(path))
