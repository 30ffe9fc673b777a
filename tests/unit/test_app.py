"""The HTTP app in process (no server): internal errors, throttling, body limits, access log.

Requests are V1-signed with the tea SDK's own signing function. The e2e tier checks the same
behaviour through the SDKs against a real `cloudmig serve`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from alibabacloud_tea_openapi.utils import Utils
from sqlalchemy import func, select
from starlette.applications import Starlette

from cloudmig.api.actions import REGISTRY
from cloudmig.api.app import MAX_BODY_BYTES, create_app
from cloudmig.runtime import AppContext, build_context
from cloudmig.services import keys as key_service
from cloudmig.settings import Settings
from cloudmig.store.tables import nonces


def _ctx(tmp_path: Path, **settings: Any) -> AppContext:
    s = Settings(data_dir=tmp_path / "data", runtime_dir=tmp_path / "run", **settings)
    return build_context(s, for_server=False)


@pytest.fixture
def ctx(tmp_path: Path) -> AppContext:
    return _ctx(tmp_path)


def signed(key: key_service.NewKey, action: str, method: str = "POST", **params: str) -> dict[str, str]:
    q = {
        "Action": action,
        "Format": "json",
        "Version": "2014-08-15",
        "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "SignatureNonce": uuid.uuid4().hex,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "AccessKeyId": key.access_key_id,
        **params,
    }
    q["Signature"] = Utils.get_rpcsignature(q, method, key.access_key_secret)
    return q


class Client:
    """Synchronous calls into the ASGI app through httpx's ASGI transport (no socket)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    def request(self, method: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                return await c.request(method, "/", **kw)

        return asyncio.run(go())

    def post(self, _path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", **kw)

    def get(self, _path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", **kw)


@pytest.fixture
def client(ctx: AppContext) -> Client:
    return Client(create_app(ctx))


def test_unexpected_exception_is_a_generic_internal_error(
    ctx: AppContext, client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(ctx: AppContext, p: Any) -> dict[str, Any]:
        raise RuntimeError("boom: /var/lib/cloudmig/secret.key password=hunter2")

    monkeypatch.setitem(REGISTRY, "BrokenAction", broken)
    key = key_service.create_key(ctx)
    with caplog.at_level(logging.ERROR, logger="cloudmig.api.app"):
        r = client.post("/", params=signed(key, "BrokenAction"))
    assert r.status_code == 500
    body = r.json()
    assert body["Code"] == "InternalError"
    assert body["Message"] == "The request processing has failed due to some unknown error."
    assert "Traceback" not in r.text and "hunter2" not in r.text and "boom" not in r.text
    # The operator finds the traceback in the log, under the RequestId the caller got.
    assert any(body["RequestId"] in rec.getMessage() and rec.exc_info for rec in caplog.records)


def test_unexpected_exception_as_xml(
    ctx: AppContext, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(REGISTRY, "BrokenAction", lambda c, p: 1 / 0)
    key = key_service.create_key(ctx)
    r = client.get("/", params=signed(key, "BrokenAction", method="GET", Format="XML"))
    assert r.status_code == 500 and r.headers["content-type"] == "text/xml;charset=utf-8"
    assert r.text.startswith('<?xml version="1.0" encoding="UTF-8"?><Error>')
    assert "<Code>InternalError</Code>" in r.text and "ZeroDivision" not in r.text


def _nonce_count(ctx: AppContext) -> int:
    with ctx.db.connect() as c:
        return int(c.execute(select(func.count()).select_from(nonces)).scalar_one())


def test_throttling_per_key_with_retry_after_and_no_nonce_recorded(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, throttle_rate_per_second=0.5, throttle_burst=2)
    a, b = key_service.create_key(ctx), key_service.create_key(ctx)
    client = Client(create_app(ctx))
    assert [client.post("/", params=signed(a, "DescribeDBInstances")).status_code for _ in range(2)] == [
        200,
        200,
    ]
    before = _nonce_count(ctx)
    r = client.post("/", params=signed(a, "DescribeDBInstances"))
    assert r.status_code == 400 and r.json()["Code"] == "Throttling"
    assert r.json()["Message"] == "Request was denied due to request throttling."
    assert 1 <= int(r.headers["x-acs-retry-after"]) <= 2000
    assert int(r.headers["retry-after"]) in (1, 2)
    assert _nonce_count(ctx) == before  # refused before its nonce was spent
    # Another key has its own budget; a request that fails its signature spends nobody's.
    assert client.post("/", params=signed(b, "DescribeDBInstances")).status_code == 200
    forged = signed(b, "DescribeDBInstances")
    forged["Signature"] = "AAAA" + forged["Signature"][4:]
    for _ in range(5):
        assert client.post("/", params=forged).json()["Code"] == "SignatureDoesNotMatch"
    assert client.post("/", params=signed(b, "DescribeDBInstances")).status_code == 200


def test_oversized_body_is_refused_before_parsing(ctx: AppContext, client: Client) -> None:
    key = key_service.create_key(ctx)
    r = client.post(
        "/",
        params=signed(key, "DescribeDBInstances"),
        content=b"a=" + b"x" * MAX_BODY_BYTES,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 400 and r.json()["Code"] == "InvalidParameter"
    assert '"Body"' in r.json()["Message"]


def test_access_log_has_no_query_and_no_caller_controlled_line_breaks(
    ctx: AppContext, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    key = key_service.create_key(ctx)
    with caplog.at_level(logging.INFO, logger="cloudmig.access"):
        r = client.post("/", params=signed(key, "Fake\nline 200 Injected", SourcePassword="pw-in-query"))
    assert r.json()["Code"] == "InvalidAction.NotFound"
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "cloudmig.access"]
    assert len(lines) == 1
    assert "\n" not in lines[0] and "Injected" not in lines[0] and "pw-in-query" not in lines[0]
    assert '"POST /" 404 ?:InvalidAction.NotFound ' + r.json()["RequestId"] in lines[0]
