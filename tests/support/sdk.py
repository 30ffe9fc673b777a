"""The three official SDK paths as one interface, a recording HTTP proxy, raw requests, store snapshots.

    proxy = RecordingProxy(service.endpoint).start()
    for flavour in flavours(service, endpoint=proxy.endpoint):     # tea V3, tea V1, aliyunsdkcore
        r = flavour.call("DescribeDBInstanceAttribute", {"DBInstanceId": iid})
        r.body                       # the parsed body, wire names (tea: the SDK model's to_map())
        r.model                      # tea: the SDK response body model; core: None
        err = flavour.error("DescribeDBInstanceAttribute", {"DBInstanceId": "pgm-0000000000000000"})
        err.code, err.status         # from the SDK's exception

Nothing here fakes HTTP or the service: the proxy is a real HTTP hop that forwards every byte
unchanged (so signatures, which cover the Host header, stay valid) and keeps a copy of each exchange.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import importlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, urlencode

from alibabacloud_rds20140815 import models as rds
from alibabacloud_tea_openapi import utils_models
from alibabacloud_tea_openapi.utils import Utils
from aliyunsdkcore.acs_exception.exceptions import ServerException as CoreServerException
from darabonba.runtime import RuntimeOptions
from Tea.exceptions import TeaException

API_VERSION = "2014-08-15"

# Action -> tea SDK client method (the SDK's own snake_case names).
TEA_METHODS = {
    "CreateDBInstance": "create_dbinstance",
    "DescribeDBInstances": "describe_dbinstances",
    "DescribeDBInstanceAttribute": "describe_dbinstance_attribute",
    "DeleteDBInstance": "delete_dbinstance",
    "CreateAccount": "create_account",
    "CreateCloudMigrationPrecheckTask": "create_cloud_migration_precheck_task",
    "DescribeCloudMigrationPrecheckResult": "describe_cloud_migration_precheck_result",
    "CreateCloudMigrationTask": "create_cloud_migration_task",
    "DescribeCloudMigrationResult": "describe_cloud_migration_result",
    "ActivateMigrationTargetInstance": "activate_migration_target_instance",
    "DescribeRegions": "describe_regions",
}
# Keys cloudmig adds beyond the SDK models (the SDKs ignore unknown keys): the task status fields of
# the migration Describe items, and the Port of each DescribeDBInstances item (the real API has it
# only in DescribeDBInstanceAttribute; a self-hosted instance needs it to be reached).
EXTENSION_KEYS = frozenset(
    {"Status", "Reason", "ReasonCode", "CheckResults", "Progress", "Evidence", "DataLoss", "Warning"}
)
EXTENSION_KEYS_BY_ACTION = {
    "DescribeDBInstances": frozenset({"Port"}),
    "DescribeDBInstanceAttribute": frozenset({"StatusReason"}),
}


# ---- a recording proxy ------------------------------------------------------------------------


@dataclass
class Exchange:
    method: str
    target: str  # path and query, as sent
    headers: list[tuple[str, str]]
    body: bytes
    status: int = 0
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    response_body: bytes = b""

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    @property
    def action(self) -> str:
        from urllib.parse import parse_qsl, urlsplit

        q = dict(parse_qsl(urlsplit(self.target).query, keep_blank_values=True))
        return q.get("Action") or self.header("x-acs-action") or ""


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(
    endpoint: str,
    method: str,
    target: str,
    headers: list[tuple[str, str]] | Mapping[str, str] = (),
    body: bytes = b"",
    timeout: float = 30,
    *,
    add_host: bool = True,
) -> RawResponse:
    """Send these headers as given (a Host header is added only if absent and ``add_host``)."""
    host, port = endpoint.rsplit(":", 1)
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        names = {k.lower() for k, _ in pairs}
        if "host" not in names and add_host:
            conn.putheader("host", endpoint)
        for k, v in pairs:
            if k.lower() not in ("connection", "content-length"):
                conn.putheader(k, v)
        conn.putheader("content-length", str(len(body)))
        conn.putheader("connection", "close")
        # The server may answer (and close) before reading everything: then read its answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


class RecordingProxy:
    """A forwarding HTTP proxy on 127.0.0.1 that keeps every exchange."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                ex = Exchange(self.command, self.path, list(self.headers.items()), body)
                resp = raw_request(proxy.upstream, self.command, self.path, ex.headers, body)
                ex.status, ex.response_body = resp.status, resp.body
                ex.response_headers = list(resp.headers.items())
                with proxy._lock:
                    proxy.exchanges.append(ex)
                self.send_response(resp.status)
                for k, v in resp.headers.items():
                    if k not in ("content-length", "connection", "date", "server", "transfer-encoding"):
                        self.send_header(k, v)
                self.send_header("content-length", str(len(resp.body)))
                self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(resp.body)

            do_GET = do_POST = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> RecordingProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def last(self) -> Exchange:
        with self._lock:
            return self.exchanges[-1]

    def all(self) -> list[Exchange]:
        with self._lock:
            return list(self.exchanges)


# ---- one interface over the three SDK paths ---------------------------------------------------


@dataclass
class Result:
    body: dict[str, Any]
    model: Any  # the tea SDK's response body model (None for aliyunsdkcore)


@dataclass
class ApiError:
    code: str
    status: int
    message: str
    request_id: str | None
    exc: BaseException


class Flavour:
    name = ""

    def __init__(self, endpoint: str, key_id: str, secret: str) -> None:
        self.endpoint, self.key_id, self.secret = endpoint, key_id, secret

    def call(self, action: str, params: Mapping[str, Any]) -> Result:
        raise NotImplementedError

    def error(self, action: str, params: Mapping[str, Any]) -> ApiError:
        try:
            r = self.call(action, params)
        except (TeaException, CoreServerException) as exc:
            return to_api_error(exc)
        raise AssertionError(f"{self.name} {action} succeeded: {r.body}")

    def __repr__(self) -> str:
        return self.name


def to_api_error(exc: BaseException) -> ApiError:
    if isinstance(exc, CoreServerException):
        return ApiError(
            exc.get_error_code(), exc.get_http_status(), exc.get_error_msg(), exc.get_request_id(), exc
        )
    assert isinstance(exc, TeaException)
    status = getattr(exc, "status_code", None) or (exc.data or {}).get("statusCode")
    request_id = getattr(exc, "request_id", None) or (exc.data or {}).get("RequestId")
    return ApiError(str(exc.code), int(status or 0), str(exc.message), request_id, exc)


class Tea(Flavour):
    """alibabacloud_rds20140815's client: V3 (ACS3-HMAC-SHA256) signatures, or V1 with v1=True."""

    def __init__(self, endpoint: str, key_id: str, secret: str, *, v1: bool = False) -> None:
        super().__init__(endpoint, key_id, secret)
        self.v1 = v1
        self.name = "tea_v1" if v1 else "tea_v3"

    def client(self, retry_options: Any = None) -> Any:
        from alibabacloud_rds20140815.client import Client
        from alibabacloud_tea_openapi.models import Config

        cfg = Config(
            access_key_id=self.key_id,
            access_key_secret=self.secret,
            endpoint=self.endpoint,
            protocol="http",
            region_id="cn-hangzhou",
            read_timeout=60000,
            connect_timeout=10000,
            retry_options=retry_options,
        )
        if self.v1:
            cfg.signature_algorithm = "v2"
        return Client(cfg)

    def call(self, action: str, params: Mapping[str, Any]) -> Result:
        request = getattr(rds, f"{action}Request")().from_map(dict(params))
        resp = getattr(self.client(), TEA_METHODS[action])(request)
        assert resp.body is not None, f"{action}: the response did not map onto the SDK model"
        assert resp.status_code == 200
        return Result(resp.body.to_map(), resp.body)

    def generic(
        self,
        action: str,
        query: Mapping[str, Any],
        *,
        method: str = "POST",
        body: Mapping[str, Any] | None = None,
        version: str = API_VERSION,
        body_type: str = "json",
    ) -> Any:
        """The SDK's generic `call_api`: any action, method, version, form body, response type."""
        params = utils_models.Params(
            action=action,
            version=version,
            protocol="HTTP",
            pathname="/",
            method=method,
            auth_type="AK",
            style="RPC",
            req_body_type="formData",
            body_type=body_type,
        )
        req = utils_models.OpenApiRequest(
            query=Utils.query(dict(query)), body=None if body is None else Utils.query(dict(body))
        )
        return self.client().call_api(params, req, RuntimeOptions())


class Core(Flavour):
    """aliyunsdkcore + aliyunsdkrds request classes (V1 signatures); bodies parsed with json."""

    name = "core"

    def client(self) -> Any:
        from aliyunsdkcore.client import AcsClient

        return AcsClient(self.key_id, self.secret, "cn-hangzhou", timeout=60)

    def request(self, action: str, params: Mapping[str, Any], *, method: str | None = None) -> Any:
        module = importlib.import_module(f"aliyunsdkrds.request.v20140815.{action}Request")
        req = getattr(module, f"{action}Request")()
        req.set_endpoint(self.endpoint)
        if method:
            req.set_method(method)
        for k, v in params.items():
            setter = getattr(req, f"set_{k}", None)
            if setter is not None:
                setter(v)
            else:
                req.add_query_param(k, v)
        return req

    def send(self, req: Any) -> bytes:
        return bytes(self.client().do_action_with_exception(req))

    def call(self, action: str, params: Mapping[str, Any]) -> Result:
        return Result(dict(json.loads(self.send(self.request(action, params)))), None)


def flavours(endpoint: str, key_id: str, secret: str) -> list[Flavour]:
    return [
        Tea(endpoint, key_id, secret),
        Tea(endpoint, key_id, secret, v1=True),
        Core(endpoint, key_id, secret),
    ]


FLAVOURS = ("tea_v3", "tea_v1", "core")


def flavour(name: str, endpoint: str, key_id: str, secret: str) -> Flavour:
    return {f.name: f for f in flavours(endpoint, key_id, secret)}[name]


def unmapped_keys(raw: Any, mapped: Any, action: str = "", path: str = "") -> list[str]:
    """Keys of a raw JSON body that the SDK model dropped (cloudmig's extension keys excepted)."""
    out: list[str] = []
    allowed = EXTENSION_KEYS | EXTENSION_KEYS_BY_ACTION.get(action, frozenset())
    if isinstance(raw, dict):
        if not isinstance(mapped, dict):
            return [path or "."]
        for k, v in raw.items():
            if k in allowed:
                continue
            if k not in mapped:
                out.append(f"{path}.{k}")
            else:
                out += unmapped_keys(v, mapped[k], action, f"{path}.{k}")
    elif isinstance(raw, list):
        if not isinstance(mapped, list) or len(mapped) != len(raw):
            return [path or "."]
        for i, (a, b) in enumerate(zip(raw, mapped, strict=True)):
            out += unmapped_keys(a, b, action, f"{path}[{i}]")
    return out


# ---- signing by hand (with the SDKs' own signing functions) -----------------------------------


def utc_timestamp(offset_seconds: float = 0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset_seconds))


def v1_query(
    action: str,
    params: Mapping[str, Any],
    key_id: str,
    secret: str,
    *,
    method: str = "POST",
    timestamp: str | None = None,
    nonce: str | None = None,
    version: str = API_VERSION,
    fmt: str = "JSON",
) -> dict[str, str]:
    """A V1-signed parameter set, signed by the tea SDK's `Utils.get_rpcsignature`."""
    q = {
        "Action": action,
        "Format": fmt,
        "Version": version,
        "Timestamp": timestamp or utc_timestamp(),
        "SignatureNonce": nonce or uuid.uuid4().hex,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "AccessKeyId": key_id,
        **{k: str(v) for k, v in params.items()},
    }
    q["Signature"] = Utils.get_rpcsignature(q, method, secret)
    return q


def v3_signed(
    endpoint: str,
    action: str,
    query: Mapping[str, str],
    key_id: str,
    secret: str,
    *,
    method: str = "POST",
    body: bytes = b"",
    content_type: str | None = None,
    date: str | None = None,
    nonce: str | None = None,
    version: str = API_VERSION,
    extra_headers: Mapping[str, str] | None = None,
) -> tuple[str, dict[str, str]]:
    """A V3-signed request as ``(target, headers)``, signed by the tea SDK's `Utils.get_authorization`.

    Every header given is signed, as the SDK does.
    """
    headers = {
        "host": endpoint,
        "x-acs-action": action,
        "x-acs-version": version,
        "x-acs-date": date or utc_timestamp(),
        "x-acs-signature-nonce": nonce or uuid.uuid4().hex,
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
        **({"content-type": content_type} if content_type else {}),
        **(extra_headers or {}),
    }
    request = SimpleNamespace(pathname="/", query=dict(query), headers=headers, method=method)
    headers["Authorization"] = Utils.get_authorization(
        request, "ACS3-HMAC-SHA256", headers["x-acs-content-sha256"], key_id, secret
    )
    target = "/?" + urlencode(dict(query), quote_via=quote) if query else "/"
    return target, headers


# ---- the service's store ----------------------------------------------------------------------

SNAPSHOT_TABLES = ("instances", "tasks", "task_events", "access_keys")


def store_snapshot(
    data_dir: Path, tables: tuple[str, ...] = SNAPSHOT_TABLES
) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the given tables of the service's SQLite store, read-only, in a stable order."""
    conn = sqlite3.connect(f"file:{data_dir / 'cloudmig.db'}?mode=ro", uri=True, timeout=30)
    try:
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    finally:
        conn.close()


def wait_store_quiet(data_dir: Path, timeout: float = 120) -> dict[str, list[tuple[Any, ...]]]:
    """Wait until no task runs or holds a lease and the store stops changing; return its snapshot."""
    deadline = time.monotonic() + timeout
    last: dict[str, list[tuple[Any, ...]]] | None = None
    while time.monotonic() < deadline:
        conn = sqlite3.connect(f"file:{data_dir / 'cloudmig.db'}?mode=ro", uri=True, timeout=30)
        try:
            busy = conn.execute(
                "SELECT count(*) FROM tasks WHERE status = 'running' OR lease_owner IS NOT NULL"
            ).fetchone()[0]
        finally:
            conn.close()
        snap = store_snapshot(data_dir)
        if not busy and snap == last:
            return snap
        last = snap
        time.sleep(0.5)
    raise AssertionError("the store did not settle")
