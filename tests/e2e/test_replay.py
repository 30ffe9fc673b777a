"""Replay, stale signatures, tampering and revoked keys: refused, and the store does not change.

Requests are captured on their way from the official SDKs to a real `cloudmig serve` by a
recording proxy, then sent again byte for byte (or with one thing changed) straight to the service.
Old timestamps are signed with the SDKs' own signing functions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import pytest
from alibabacloud_tea_openapi import exceptions as tea_exceptions
from aliyunsdkcore.acs_exception.exceptions import ServerException as CoreServerException

from tests.support.flows import MIGRATION_PASSWORD, create_instance, wait_running
from tests.support.sdk import (
    FLAVOURS,
    Exchange,
    RawResponse,
    RecordingProxy,
    flavour,
    raw_request,
    store_snapshot,
    utc_timestamp,
    v1_query,
    v3_signed,
    wait_store_quiet,
)
from tests.support.service import Service

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def proxy(service: Service) -> Iterator[RecordingProxy]:
    p = RecordingProxy(service.endpoint).start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def instance_id(service: Service) -> str:
    client = service.tea()
    iid = create_instance(client)
    wait_running(client, iid)
    return iid


def precheck_params(instance_id: str, task_name: str) -> dict[str, Any]:
    return {
        "DBInstanceName": instance_id,
        "SourceIpAddress": "127.0.0.1",
        "SourcePort": 1,  # nothing listens there: the precheck fails fast, which is fine here
        "SourceAccount": "migratetest",
        "SourcePassword": MIGRATION_PASSWORD,
        "SourceCategory": "ecsOnVpc",
        "TaskName": task_name,
    }


def replay(
    service: Service, ex: Exchange, *, target: str | None = None, headers: Any = None, body: Any = None
) -> RawResponse:
    return raw_request(
        service.endpoint,
        ex.method,
        ex.target if target is None else target,
        ex.headers if headers is None else headers,
        ex.body if body is None else body,
    )


def code_of(r: RawResponse) -> tuple[str, int]:
    return str(r.json()["Code"]), r.status


def with_query_value(target: str, name: str, value: str) -> str:
    """The same target with one query parameter's value replaced (encoded like aliyunsdkcore)."""
    pairs = [
        (k, value if k == name else v) for k, v in parse_qsl(urlsplit(target).query, keep_blank_values=True)
    ]
    assert any(k == name for k, _ in pairs), name
    return "/?" + urlencode(pairs, quote_via=quote)


def without_content_type(ex: Exchange) -> list[tuple[str, str]]:
    return [(k, v) for k, v in ex.headers if k.lower() != "content-type"]


def tasks_of(service: Service, instance_id: str) -> list[tuple[Any, ...]]:
    return [row for row in store_snapshot(service.data_dir)["tasks"] if instance_id in row]


# ---- replay ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FLAVOURS)
def test_replayed_request_is_signature_nonce_used(
    service: Service, proxy: RecordingProxy, instance_id: str, name: str
) -> None:
    f = flavour(name, proxy.endpoint, service.key_id, service.key_secret)
    created = f.call("CreateCloudMigrationPrecheckTask", precheck_params(instance_id, f"replay-{name}")).body
    captured = proxy.last()
    assert captured.status == 200 and captured.action == "CreateCloudMigrationPrecheckTask"

    before = store_snapshot(service.data_dir)
    r = replay(service, captured)
    assert code_of(r) == ("SignatureNonceUsed", 400)
    assert r.json()["Message"] == "Specified signature nonce was used already."
    # Not a second task: the replayed creation changed nothing (the engine may have moved the first
    # task on meanwhile, so compare the rows of other tables and the set of tasks).
    after = store_snapshot(service.data_dir)
    assert {row[0] for row in after["tasks"]} == {row[0] for row in before["tasks"]}
    assert after["instances"] == before["instances"] and after["access_keys"] == before["access_keys"]
    names = [row for row in tasks_of(service, instance_id) if f"replay-{name}" in row]
    assert len(names) == 1 and names[0][0] == created["TaskId"]

    # A read is refused just the same.
    f.call("DescribeDBInstanceAttribute", {"DBInstanceId": instance_id})
    assert code_of(replay(service, proxy.last())) == ("SignatureNonceUsed", 400)


# ---- stale and future timestamps -----------------------------------------------------------------


@pytest.mark.parametrize("offset", [-20 * 60, 20 * 60])
def test_request_signed_twenty_minutes_off_is_expired(
    service: Service, instance_id: str, offset: int
) -> None:
    before = wait_store_quiet(service.data_dir)
    params = precheck_params(instance_id, f"stale-{offset}")
    stamp = utc_timestamp(offset)

    q = v1_query(
        "CreateCloudMigrationPrecheckTask", params, service.key_id, service.key_secret, timestamp=stamp
    )
    r = raw_request(service.endpoint, "POST", "/?" + urlencode(q, quote_via=quote))
    assert code_of(r) == ("InvalidTimeStamp.Expired", 400)
    assert r.json()["Message"] == "Specified time stamp or date value is expired."

    target, headers = v3_signed(
        service.endpoint,
        "CreateCloudMigrationPrecheckTask",
        {k: str(v) for k, v in params.items()},
        service.key_id,
        service.key_secret,
        date=stamp,
    )
    r = raw_request(service.endpoint, "POST", target, headers)
    assert code_of(r) == ("InvalidTimeStamp.Expired", 400)

    # The same requests signed now pass: the timestamp was the only fault.
    ok_q = v1_query(
        "DescribeDBInstanceAttribute", {"DBInstanceId": instance_id}, service.key_id, service.key_secret
    )
    assert raw_request(service.endpoint, "POST", "/?" + urlencode(ok_q, quote_via=quote)).status == 200
    assert store_snapshot(service.data_dir)["tasks"] == before["tasks"]
    assert not [row for row in tasks_of(service, instance_id) if f"stale-{offset}" in row]


def test_malformed_timestamps(service: Service) -> None:
    for bad in ("2024-01-01 00:00:00", "yesterday", "2024-13-01T00:00:00Z", ""):
        q = v1_query("DescribeDBInstances", {}, service.key_id, service.key_secret, timestamp=bad or " ")
        r = raw_request(service.endpoint, "POST", "/?" + urlencode(q, quote_via=quote))
        assert code_of(r) == ("IllegalTimestamp", 400), bad


# ---- tampering -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FLAVOURS)
def test_tampered_parameter_is_signature_does_not_match(
    service: Service, proxy: RecordingProxy, instance_id: str, name: str
) -> None:
    f = flavour(name, proxy.endpoint, service.key_id, service.key_secret)
    # Capture a request that fails (the task name is taken), so it can be changed and sent again.
    f.call("CreateCloudMigrationPrecheckTask", precheck_params(instance_id, f"tamper-{name}"))
    f.error("CreateCloudMigrationPrecheckTask", precheck_params(instance_id, f"tamper-{name}"))
    captured = proxy.last()
    assert captured.status == 400
    before = wait_store_quiet(service.data_dir)  # the first call's precheck runs meanwhile

    r = replay(service, captured, target=with_query_value(captured.target, "TaskName", f"tampered-{name}"))
    assert code_of(r) == ("SignatureDoesNotMatch", 400)
    message = r.json()["Message"]
    if name == "tea_v3":
        assert message.startswith(
            "Specified signature is not matched with our calculation. server string to sign is:ACS3-HMAC-SHA256\n"
        )
    else:
        # V1: the server's string to sign, with the password it carried masked.
        assert "server string to sign is:POST&%2F&" in message and "TaskName%3Dtampered-" in message
        assert quote(quote(MIGRATION_PASSWORD, safe="~"), safe="~") not in message
    assert MIGRATION_PASSWORD not in r.body.decode()

    r = replay(service, captured, target=with_query_value(captured.target, "SourcePort", "5432"))
    assert code_of(r) == ("SignatureDoesNotMatch", 400)
    if name == "tea_v3":
        # V3 signs the headers too: another action in x-acs-action does not pass.
        headers = [(k, "DeleteDBInstance" if k.lower() == "x-acs-action" else v) for k, v in captured.headers]
        assert code_of(replay(service, captured, headers=headers)) == ("SignatureDoesNotMatch", 400)
        # A body the signature did not cover does not pass either.
        headers = [*without_content_type(captured), ("content-type", "application/x-www-form-urlencoded")]
        r = replay(service, captured, headers=headers, body=b"ClientToken=smuggled")
        assert code_of(r)[0] in ("SignatureDoesNotMatch", "IncompleteSignature")
    else:
        # V1: a parameter added to the query, or in a form body, is not covered by the signature.
        assert code_of(replay(service, captured, target=captured.target + "&PageSize=5")) == (
            "SignatureDoesNotMatch",
            400,
        )
        headers = [*without_content_type(captured), ("content-type", "application/x-www-form-urlencoded")]
        r = replay(service, captured, headers=headers, body=b"Extra=1")
        assert code_of(r) == ("SignatureDoesNotMatch", 400)
    assert store_snapshot(service.data_dir) == before


def test_wrong_secret_without_password_is_invalid_access_key_secret_for_aliyunsdkcore(
    service: Service, instance_id: str
) -> None:
    # aliyunsdkcore recognises its own string to sign in SignatureDoesNotMatch and says why.
    core = flavour("core", service.endpoint, service.key_id, "not-the-secret")
    err = core.error("DescribeDBInstanceAttribute", {"DBInstanceId": instance_id})
    assert (err.code, err.status) == ("InvalidAccessKeySecret", 400)
    # With a password in the request, the echoed string to sign masks it; the code stays.
    err = core.error("CreateCloudMigrationPrecheckTask", precheck_params(instance_id, "never-created"))
    assert (err.code, err.status) == ("SignatureDoesNotMatch", 400)
    assert "server string to sign is:" in err.message and "p%2540ss" not in err.message


# ---- revoked keys ----------------------------------------------------------------------------------


def test_revoked_key_is_refused_everywhere(service: Service, proxy: RecordingProxy, instance_id: str) -> None:
    created = json.loads(service.cli("keys", "create", "--json", "--description", "to revoke").stdout)
    key_id, secret = created["AccessKeyId"], created["AccessKeySecret"]
    for name in FLAVOURS:
        f = flavour(name, proxy.endpoint, key_id, secret)
        assert f.call("DescribeDBInstanceAttribute", {"DBInstanceId": instance_id}).body["RequestId"]
    # A request signed while the key was good, not yet sent (a V1 one, signed ahead).
    pending = v1_query(
        "CreateCloudMigrationPrecheckTask",
        {k: str(v) for k, v in precheck_params(instance_id, "after-revoke").items()},
        key_id,
        secret,
    )

    service.cli("keys", "revoke", key_id)
    listed = {k["AccessKeyId"]: k["Status"] for k in json.loads(service.cli("keys", "list", "--json").stdout)}
    assert listed[key_id] == "Inactive" and listed[service.key_id] == "Active"

    before = wait_store_quiet(service.data_dir)
    for name in FLAVOURS:
        f = flavour(name, proxy.endpoint, key_id, secret)
        err = f.error("CreateCloudMigrationPrecheckTask", precheck_params(instance_id, f"revoked-{name}"))
        assert (err.code, err.status) == ("InvalidAccessKeyId.Inactive", 400), name
    r = raw_request(service.endpoint, "POST", "/?" + urlencode(pending, quote_via=quote))
    assert code_of(r) == ("InvalidAccessKeyId.Inactive", 400)
    # Replaying what the key sent before its revocation is refused too.
    good_before = [
        e for e in proxy.all() if e.header("authorization") and key_id in (e.header("authorization") or "")
    ]
    assert good_before
    assert code_of(replay(service, good_before[-1])) == ("InvalidAccessKeyId.Inactive", 400)
    assert store_snapshot(service.data_dir) == before

    # The service's own key is untouched.
    tea = flavour("tea_v3", service.endpoint, service.key_id, service.key_secret)
    assert tea.call("DescribeDBInstanceAttribute", {"DBInstanceId": instance_id}).body["RequestId"]


def test_unknown_key_and_sdk_exception_types(service: Service, instance_id: str) -> None:
    tea = flavour("tea_v3", service.endpoint, "LTAIunknownunknown00000", "whatever")
    err = tea.error("DescribeDBInstanceAttribute", {"DBInstanceId": instance_id})
    assert (err.code, err.status) == ("InvalidAccessKeyId.NotFound", 404)
    assert isinstance(err.exc, tea_exceptions.ClientException)
    core = flavour("core", service.endpoint, "LTAIunknownunknown00000", "whatever")
    err = core.error("DescribeDBInstanceAttribute", {"DBInstanceId": instance_id})
    assert (err.code, err.status) == ("InvalidAccessKeyId.NotFound", 404)
    assert isinstance(err.exc, CoreServerException)


def test_incomplete_signatures(service: Service, instance_id: str) -> None:
    before = wait_store_quiet(service.data_dir)
    target, headers = v3_signed(
        service.endpoint,
        "DescribeDBInstanceAttribute",
        {"DBInstanceId": instance_id},
        service.key_id,
        service.key_secret,
    )
    auth = headers["Authorization"]
    cases = {
        # Another scheme, another ACS3 algorithm, a malformed header, an x-acs-* header left unsigned.
        "bearer": {**headers, "Authorization": "Bearer abc"},
        "sm3": {**headers, "Authorization": auth.replace("ACS3-HMAC-SHA256", "ACS3-HMAC-SM3")},
        "malformed": {**headers, "Authorization": "ACS3-HMAC-SHA256 Credential=" + service.key_id},
        "unsigned x-acs header": {**headers, "x-acs-extra": "1"},
        "host unsigned": {
            **headers,
            "Authorization": auth.replace("SignedHeaders=host;", "SignedHeaders="),
        },
    }
    for what, h in cases.items():
        r = raw_request(service.endpoint, "POST", target, h)
        assert code_of(r) == ("IncompleteSignature", 400), what
        assert r.json()["Message"].startswith("The request signature does not conform to Aliyun standards.")
    q = v1_query("DescribeDBInstances", {}, service.key_id, service.key_secret)
    for name, value in (("SignatureMethod", "HMAC-SHA256"), ("SignatureVersion", "2.0")):
        bad = {**q, name: value}
        r = raw_request(service.endpoint, "POST", "/?" + urlencode(bad, quote_via=quote))
        assert code_of(r) == ("IncompleteSignature", 400), name
    assert store_snapshot(service.data_dir) == before
    # The untouched request still passes.
    assert raw_request(service.endpoint, "POST", target, headers).status == 200
