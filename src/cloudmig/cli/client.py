"""The CLI's side of the RDS API: where the service is, which key signs, and the official SDK client.

The endpoint and key come from environment variables (`CLOUDMIG_ENDPOINT`,
`ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`) or, for what they leave unset, from
a YAML client config file (`CLOUDMIG_CLIENT_CONFIG`, default `~/.config/cloudmig/client.yaml`) that
`cloudmig keys create --write-config` writes with mode 0600.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

from cloudmig.cli.output import CliError, Failed, Refused

DEFAULT_ENDPOINT = "http://127.0.0.1:9800"
ENV_ENDPOINT = "CLOUDMIG_ENDPOINT"
ENV_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"  # noqa: S105  (a variable name)
ENV_CLIENT_CONFIG = "CLOUDMIG_CLIENT_CONFIG"
CLIENT_CONFIG_KEYS = ("endpoint", "access_key_id", "access_key_secret")

T = TypeVar("T")


def default_client_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cloudmig" / "client.yaml"


# Set by `cloudmig --client-config FILE` for the commands of this run.
override_path: Path | None = None


def client_config_path(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return explicit
    if override_path is not None:
        return override_path
    env = os.environ.get(ENV_CLIENT_CONFIG)
    return Path(env) if env else default_client_config_path()


@dataclass(frozen=True)
class Endpoint:
    protocol: str
    host_port: str

    @property
    def url(self) -> str:
        return f"{self.protocol}://{self.host_port}"


def parse_endpoint(text: str) -> Endpoint:
    """`http://127.0.0.1:9800`, `https://host`, or a bare `host:port` (http)."""
    raw = text.strip()
    if "://" not in raw:
        raw = "http://" + raw
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(f"invalid endpoint {text!r}: use http://HOST:PORT or https://HOST[:PORT]")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise CliError(f"invalid endpoint {text!r}: no path, query or user part")
    try:
        _ = parts.port
    except ValueError:
        raise CliError(f"invalid endpoint {text!r}: bad port") from None
    return Endpoint(parts.scheme, parts.netloc)


@dataclass(frozen=True)
class ClientConfig:
    endpoint: Endpoint
    access_key_id: str
    access_key_secret: str = field(repr=False)
    # Where each value came from: "env CLOUDMIG_ENDPOINT", "file /path", "default".
    origins: dict[str, str] = field(default_factory=dict)


def read_client_file(path: Path) -> dict[str, str]:
    """The YAML mapping of a client config file; {} when there is none. CliError when malformed."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CliError(f"cannot read client config {path}: {exc.strerror}") from None
    try:
        loaded = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise CliError(f"client config {path} is not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise CliError(f"client config {path}: expected a mapping of {', '.join(CLIENT_CONFIG_KEYS)}")
    unknown = sorted(set(map(str, loaded)) - set(CLIENT_CONFIG_KEYS))
    if unknown:
        raise CliError(f"client config {path}: unknown key(s) {', '.join(unknown)}")
    return {str(k): str(v) for k, v in loaded.items() if v is not None}


def load_client_config(path: Path | None = None, *, require_key: bool = True) -> ClientConfig:
    cfg_path = client_config_path(path)
    from_file = read_client_file(cfg_path)
    values: dict[str, str] = {}
    origins: dict[str, str] = {}
    for key, env in (
        ("endpoint", ENV_ENDPOINT),
        ("access_key_id", ENV_KEY_ID),
        ("access_key_secret", ENV_KEY_SECRET),
    ):
        if os.environ.get(env):
            values[key], origins[key] = os.environ[env], f"env {env}"
        elif from_file.get(key):
            values[key], origins[key] = from_file[key], f"file {cfg_path}"
    if "endpoint" not in values:
        values["endpoint"], origins["endpoint"] = DEFAULT_ENDPOINT, "default"
    if require_key and not (values.get("access_key_id") and values.get("access_key_secret")):
        raise CliError(
            "no access key: run `cloudmig keys create --write-config` on the service host, or set "
            f"{ENV_KEY_ID} and {ENV_KEY_SECRET}"
        )
    return ClientConfig(
        endpoint=parse_endpoint(values["endpoint"]),
        access_key_id=values.get("access_key_id", ""),
        access_key_secret=values.get("access_key_secret", ""),
        origins=origins,
    )


def write_client_config(path: Path, endpoint: str, key_id: str, secret: str) -> None:
    """Write the client config with mode 0600 (created so, never widened), replacing an older one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = yaml.safe_dump(
        {"endpoint": endpoint, "access_key_id": key_id, "access_key_secret": secret}, sort_keys=False
    )
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


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
