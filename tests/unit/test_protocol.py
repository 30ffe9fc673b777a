"""Request parsing and authentication, judged by the official SDKs (offline: no sockets).

The SDK round trips patch the one function each SDK uses to put bytes on the wire, turn the prepared
HTTP request into an `IncomingRequest`, run `authenticate` + `render`, and hand the rendered bytes
back to the SDK, so both the request the SDK builds and the way it reads our answer are exercised.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from alibabacloud_rds20140815 import models as rds
from alibabacloud_rds20140815.client import Client as RdsClient
from alibabacloud_tea_openapi import exceptions as tea_exceptions
from alibabacloud_tea_openapi import utils_models
from alibabacloud_tea_openapi.models import Config
from alibabacloud_tea_openapi.utils import Utils
from aliyunsdkcore.acs_exception.exceptions import ServerException as CoreServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.http.http_response import HttpResponse
from aliyunsdkcore.vendored.requests import Request as CoreRequest
from aliyunsdkrds.request.v20140815.CreateCloudMigrationPrecheckTaskRequest import (
    CreateCloudMigrationPrecheckTaskRequest,
)
from darabonba.core import DaraCore
from darabonba.request import DaraRequest
from darabonba.response import DaraResponse
from darabonba.runtime import RuntimeOptions
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudmig import errors
from cloudmig.api import protocol, render, signing
from cloudmig.api.incoming import IncomingRequest, decode_query, parse_params, peek_format
from cloudmig.api.protocol import Authenticated, KeyRecord, authenticate, parse_timestamp

AK, SECRET = "testid", "testsecret"
ENDPOINT = "127.0.0.1:8080"
REQUEST_ID = "7E4A6E1B-789B-5F16-9736-39AA57FC7374"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
NONCE = "0123456789abcdef0123456789abcdef"
KEYS = {AK: KeyRecord(SECRET, True), "disabled": KeyRecord("othersecret", False)}


@dataclass
class NonceBook:
    seen: dict[tuple[str, str], datetime] = field(default_factory=dict)

    def __call__(self, ak: str, nonce: str, expires_at: datetime, action: str = "") -> bool:
        if (ak, nonce) in self.seen:
            return False
        self.seen[(ak, nonce)] = expires_at
        return True


def auth(
    req: IncomingRequest, *, now: datetime = T0, book: NonceBook | None = None, **kw: Any
) -> Authenticated:
    return authenticate(
        req, keys=KEYS.get, record_nonce=book if book is not None else NonceBook(), now=now, **kw
    )


def make_request(
    query: list[tuple[str, str]] | None = None,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    content_type: str = "",
) -> IncomingRequest:
    hdrs = {k.lower(): v for k, v in (headers or {}).items()}
    if content_type:
        hdrs["content-type"] = content_type
    return IncomingRequest(
        method=method, path="/", query=query or [], headers=hdrs, body=body, content_type=content_type
    )


def from_wire(method: str, url: str, headers: dict[str, str], body: bytes | str | None) -> IncomingRequest:
    """What an HTTP server sees for a prepared request (http.client adds Host when absent)."""
    parts = urlsplit(url)
    hdrs = {k.lower(): v for k, v in headers.items()}
    hdrs.setdefault("host", parts.netloc)
    raw = body.encode("utf-8") if isinstance(body, str) else (body or b"")
    return IncomingRequest(
        method=method,
        path=parts.path or "/",
        query=decode_query(parts.query),
        headers=hdrs,
        body=raw,
        content_type=hdrs.get("content-type", ""),
    )


# ---- V1 requests built with the tea SDK's signing function ---------------------------------------


def v1_params(**extra: str) -> dict[str, str]:
    params = {
        "Action": "CreateCloudMigrationPrecheckTask",
        "Format": "json",
        "Version": "2014-08-15",
        "Timestamp": "2024-01-01T00:00:00Z",
        "SignatureNonce": NONCE,
        "DBInstanceName": "pgm-bp1xxxx",
        "SourcePassword": "Pass word+1*~",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "AccessKeyId": AK,
    }
    params.update(extra)
    return params


def v1_request(
    params: dict[str, str] | None = None, *, secret: str = SECRET, method: str = "POST"
) -> IncomingRequest:
    p = dict(params if params is not None else v1_params())
    p["Signature"] = Utils.get_rpcsignature(p, method, secret)
    return make_request(list(p.items()), method=method)


def without(req: IncomingRequest, name: str) -> IncomingRequest:
    return dataclasses.replace(req, query=[(k, v) for k, v in req.query if k != name])


def with_param(req: IncomingRequest, name: str, value: str) -> IncomingRequest:
    return dataclasses.replace(req, query=[(k, value if k == name else v) for k, v in req.query])


# ---- V3 requests built with the tea SDK's signing function ---------------------------------------


def v3_headers(**extra: str) -> dict[str, str]:
    headers = {
        "host": ENDPOINT,
        "x-acs-version": "2014-08-15",
        "x-acs-action": "CreateCloudMigrationPrecheckTask",
        "user-agent": "AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2",
        "x-acs-date": "2024-01-01T00:00:00Z",
        "x-acs-signature-nonce": NONCE,
        "accept": "application/json",
        "x-acs-content-sha256": signing.EMPTY_BODY_SHA256,
    }
    headers.update(extra)
    return headers


def v3_request(
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    *,
    body: bytes = b"",
    secret: str = SECRET,
    method: str = "POST",
    algorithm: str = "ACS3-HMAC-SHA256",
) -> IncomingRequest:
    q = dict(query if query is not None else {"DBInstanceName": "pgm-bp1xxxx", "TaskName": "task 1"})
    h = dict(headers if headers is not None else v3_headers())
    if body and "x-acs-content-sha256" in h:
        h["x-acs-content-sha256"] = hashlib.sha256(body).hexdigest()
    dara = DaraRequest()
    dara.method, dara.pathname, dara.query, dara.headers = method, "/", q, h
    payload = h.get("x-acs-content-sha256", signing.EMPTY_BODY_SHA256)
    h["authorization"] = Utils.get_authorization(dara, algorithm, payload, AK, secret)
    return make_request(
        list(q.items()), method=method, headers=h, body=body, content_type=h.get("content-type", "")
    )


def with_header(req: IncomingRequest, name: str, value: str | None) -> IncomingRequest:
    headers = dict(req.headers)
    if value is None:
        headers.pop(name, None)
    else:
        headers[name] = value
    return dataclasses.replace(req, headers=headers)


# ==== parse_params ================================================================================


def test_parse_params_merges_query_and_form_body() -> None:
    req = make_request(
        [("Action", "X"), ("Blank", "")],
        body=b"TaskName=a+b&SourcePassword=p%2Bq%20r&Empty=",
        content_type="application/x-www-form-urlencoded; charset=UTF-8",
    )
    assert parse_params(req) == {
        "Action": "X",
        "Blank": "",
        "TaskName": "a b",
        "SourcePassword": "p+q r",
        "Empty": "",
    }


def test_decode_query_plus_is_space_and_percent_2b_is_plus() -> None:
    tea_style = decode_query("TaskName=task+1&P=a%2Bb&E=&S=%2A~")  # urlencode: space -> '+'
    core_style = decode_query(b"TaskName=task%201&P=a%2Bb&E=&S=%2A~")  # aliyunsdkcore: space -> '%20'
    assert tea_style == core_style == [("TaskName", "task 1"), ("P", "a+b"), ("E", ""), ("S", "*~")]


def test_decode_query_keeps_order_and_duplicates_for_parse_params_to_reject() -> None:
    assert decode_query("b=1&a=2&b=3") == [("b", "1"), ("a", "2"), ("b", "3")]


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ([("TaskName", "a"), ("TaskName", "b")], b""),
        ([("TaskName", "a"), ("TaskName", "a")], b""),
        ([("TaskName", "a")], b"TaskName=b"),
        ([], b"TaskName=a&TaskName=b"),
    ],
)
def test_parse_params_rejects_a_repeated_name(query: list[tuple[str, str]], body: bytes) -> None:
    req = make_request(query, body=body, content_type="application/x-www-form-urlencoded")
    with pytest.raises(errors.InvalidParameter) as info:
        parse_params(req)
    assert info.value.parameter == "TaskName"
    assert info.value.status == 400
    assert "is given more than once" in info.value.message


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"TaskName=\xff", "application/x-www-form-urlencoded"),
        (b"TaskName=%FF", "application/x-www-form-urlencoded"),
        (b"TaskName=%C3", "application/x-www-form-urlencoded"),
        (b"justtext", "application/x-www-form-urlencoded"),
        (b'{"a": 1}', "application/x-www-form-urlencoded"),
        (b"a=1", "application/x-www-form-urlencoded; charset=latin-1"),
    ],
)
def test_parse_params_rejects_bad_form_bodies(body: bytes, content_type: str) -> None:
    with pytest.raises(errors.InvalidParameter):
        parse_params(make_request(body=body, content_type=content_type))


def test_parse_params_ignores_non_form_bodies_and_empty_fields() -> None:
    assert parse_params(make_request([("a", "1")], body=b'{"b": 2}', content_type="application/json")) == {
        "a": "1"
    }
    assert parse_params(make_request([("a", "1")], body=b"b=2")) == {"a": "1"}  # no content type
    form = make_request(body=b"&a=1&&b=2&", content_type="APPLICATION/X-WWW-FORM-URLENCODED")
    assert parse_params(form) == {"a": "1", "b": "2"}


@pytest.mark.parametrize(
    ("req", "expected"),
    [
        (make_request([("Format", "XML")]), "XML"),
        (make_request([("Format", "xml")]), "XML"),
        (make_request([("Format", "json")]), "JSON"),
        (make_request([("Format", "yaml")]), "JSON"),
        (make_request([]), "JSON"),
        (make_request(body=b"Format=XML", content_type="application/x-www-form-urlencoded"), "XML"),
        (make_request(body=b"\xff", content_type="application/x-www-form-urlencoded"), "JSON"),
        (make_request([("Format", "XML"), ("Format", "XML")]), "XML"),
    ],
)
def test_peek_format(req: IncomingRequest, expected: str) -> None:
    assert peek_format(req) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01T00:00:00Z", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01T00:00:00.000Z", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-02-29T23:59:59.1234567Z", datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=UTC)),
        ("2024-02-30T00:00:00Z", None),
        ("2024-01-01T00:00:00", None),
        ("2024-01-01 00:00:00Z", None),
        ("2024-01-01T00:00:00+00:00", None),
        ("2024-01-01T00:00:00z", None),
        ("2024-01-01T24:00:00Z", None),
        ("٢٠٢٤-01-01T00:00:00Z", None),
        ("", None),
    ],
)
def test_parse_timestamp(text: str, expected: datetime | None) -> None:
    assert parse_timestamp(text) == expected


# ==== V1 authentication ===========================================================================


def test_v1_accepts_spec_vector_a() -> None:
    params = {
        **v1_params(),
        "SourceAccount": "migratetest",
        "SourceCategory": "ecsOnVpc",
        "SourceIpAddress": "172.16.0.1",
        "SourcePort": "5432",
        "TaskName": "task 1",
        "Signature": "S4tDiLARX6YJQq0j9FqwJOmEBMo=",
    }
    book = NonceBook()
    result = auth(make_request(list(params.items())), book=book)
    assert result == Authenticated(
        action="CreateCloudMigrationPrecheckTask",
        version="2014-08-15",
        params={
            "DBInstanceName": "pgm-bp1xxxx",
            "SourceAccount": "migratetest",
            "SourceCategory": "ecsOnVpc",
            "SourceIpAddress": "172.16.0.1",
            "SourcePassword": "Pass word+1*~",
            "SourcePort": "5432",
            "TaskName": "task 1",
        },
        format="JSON",
        access_key_id=AK,
        nonce=NONCE,
        signature_version="V1",
    )
    assert book.seen == {(AK, NONCE): T0 + timedelta(seconds=900)}


def test_v1_accepts_core_style_vector_b_and_keeps_region_id() -> None:
    params = {
        **v1_params(Format="JSON", RegionId="cn-hangzhou", SignatureType=""),
        "SourceAccount": "migratetest",
        "SourceCategory": "ecsOnVpc",
        "SourceIpAddress": "172.16.0.1",
        "SourcePort": "5432",
        "TaskName": "task 1",
        "Signature": "tKDJx4oyHyIZ/fcViU/hzCrKWE4=",
    }
    result = auth(make_request(list(params.items())))
    assert result.params["RegionId"] == "cn-hangzhou"
    assert "SignatureType" not in result.params


@pytest.mark.parametrize(
    ("method", "signature"),
    [("POST", "4Gd3Xn6ffiMJ5JDJF/Wi81epI2U="), ("GET", "Z9acxbfjFaID/KM/Te40RsHiL0c=")],
)
def test_v1_accepts_vector_c_with_the_received_method(method: str, signature: str) -> None:
    params = {
        **v1_params(Action="ActivateMigrationTargetInstance", SwitchTimeMode="0", ForceSwitch="1"),
        "Signature": signature,
    }
    del params["SourcePassword"]
    req = make_request(list(params.items()), method=method)
    assert auth(req).params == {"DBInstanceName": "pgm-bp1xxxx", "SwitchTimeMode": "0", "ForceSwitch": "1"}
    other = "GET" if method == "POST" else "POST"
    with pytest.raises(errors.SignatureDoesNotMatch):
        auth(dataclasses.replace(req, method=other))


def test_v1_format_xml_and_default() -> None:
    assert auth(v1_request(v1_params(Format="XML"))).format == "XML"
    params = v1_params()
    del params["Format"]
    assert auth(v1_request(params)).format == "JSON"


def test_v1_tampered_param_is_signature_does_not_match_with_splittable_message() -> None:
    req = with_param(v1_request(), "DBInstanceName", "pgm-other")
    with pytest.raises(errors.SignatureDoesNotMatch) as info:
        auth(req)
    err = info.value
    assert (err.code, err.status) == ("SignatureDoesNotMatch", 400)
    # The echoed string to sign masks the password the request carries (SourcePassword here).
    server_sts = signing.v1_string_to_sign("POST", protocol.masked(parse_params(req)))
    assert err.message.endswith("server string to sign is:" + server_sts)
    # aliyunsdkcore: `Message.split(':')[1]` must be exactly the V1 string to sign.
    assert err.message.split(":")[1] == server_sts
    assert "SourcePassword%3D%252A%252A%252A%252A%252A%252A" in server_sts
    assert signing.percent_encode(signing.percent_encode("Pass word+1*~")) not in err.message


def test_v1_mismatch_without_secret_params_echoes_the_exact_string_to_sign() -> None:
    params = {k: v for k, v in v1_params().items() if k != "SourcePassword"}
    req = with_param(v1_request(params), "DBInstanceName", "pgm-other")
    with pytest.raises(errors.SignatureDoesNotMatch) as info:
        auth(req)
    assert info.value.message.split(":")[1] == signing.v1_string_to_sign("POST", parse_params(req))


def test_v1_added_param_is_signature_does_not_match() -> None:
    req = v1_request()
    with pytest.raises(errors.SignatureDoesNotMatch):
        auth(dataclasses.replace(req, query=[*req.query, ("Extra", "1")]))


def test_v1_wrong_secret() -> None:
    with pytest.raises(errors.SignatureDoesNotMatch):
        auth(v1_request(secret="notthesecret"))


def test_v1_signature_with_non_ascii_is_a_mismatch_not_a_crash() -> None:
    with pytest.raises(errors.SignatureDoesNotMatch):
        auth(with_param(v1_request(), "Signature", "é" * 28))


@pytest.mark.parametrize("skew", [timedelta(seconds=901), timedelta(seconds=-901), timedelta(days=3)])
def test_v1_expired_timestamp(skew: timedelta) -> None:
    with pytest.raises(errors.TimestampExpired) as info:
        auth(v1_request(), now=T0 + skew)
    assert info.value.code == "InvalidTimeStamp.Expired"


@pytest.mark.parametrize("skew", [timedelta(seconds=900), timedelta(seconds=-900), timedelta(0)])
def test_v1_timestamp_window_edges_are_accepted(skew: timedelta) -> None:
    assert auth(v1_request(), now=T0 + skew).action == "CreateCloudMigrationPrecheckTask"


def test_v1_window_is_configurable_and_nonce_expiry_follows_it() -> None:
    with pytest.raises(errors.TimestampExpired):
        auth(v1_request(), now=T0 + timedelta(seconds=61), window_seconds=60)
    book = NonceBook()
    auth(v1_request(), now=T0, book=book, window_seconds=60)
    assert book.seen[(AK, NONCE)] == T0 + timedelta(seconds=60)


def test_v1_naive_now_is_utc() -> None:
    assert auth(v1_request(), now=datetime(2024, 1, 1, 0, 5)).access_key_id == AK


@pytest.mark.parametrize("value", ["2024-01-01 00:00:00", "yesterday", "2024-13-01T00:00:00Z"])
def test_v1_illegal_timestamp(value: str) -> None:
    with pytest.raises(errors.IllegalTimestamp) as info:
        auth(v1_request(v1_params(Timestamp=value)))
    assert info.value.code == "IllegalTimestamp"


def test_v1_fractional_timestamp_is_accepted() -> None:
    assert auth(v1_request(v1_params(Timestamp="2024-01-01T00:00:00.000Z"))).access_key_id == AK


def test_v1_replayed_nonce() -> None:
    book = NonceBook()
    req = v1_request()
    auth(req, book=book)
    with pytest.raises(errors.SignatureNonceUsed) as info:
        auth(req, book=book, now=T0 + timedelta(seconds=10))
    assert info.value.code == "SignatureNonceUsed"


def test_v1_same_nonce_for_another_key_is_not_a_replay() -> None:
    keys = {**KEYS, "second": KeyRecord("s2", True)}
    book = NonceBook()
    authenticate(v1_request(), keys=keys.get, record_nonce=book, now=T0)
    other = v1_request(v1_params(AccessKeyId="second"), secret="s2")
    assert authenticate(other, keys=keys.get, record_nonce=book, now=T0).access_key_id == "second"


@pytest.mark.parametrize(
    ("req", "keys"),
    [
        (with_param(v1_request(), "DBInstanceName", "x"), KEYS),  # bad signature
        (v1_request(), {}),  # unknown key
        (v1_request(), {AK: KeyRecord(SECRET, False)}),  # inactive key
    ],
)
def test_v1_rejected_request_records_no_nonce(req: IncomingRequest, keys: dict[str, KeyRecord]) -> None:
    book = NonceBook()
    with pytest.raises(errors.CloudmigError):
        authenticate(req, keys=keys.get, record_nonce=book, now=T0)
    assert book.seen == {}


def test_v1_expired_request_records_no_nonce_and_original_still_works() -> None:
    book = NonceBook()
    with pytest.raises(errors.TimestampExpired):
        auth(v1_request(), now=T0 + timedelta(hours=1), book=book)
    with pytest.raises(errors.SignatureDoesNotMatch):
        auth(with_param(v1_request(), "DBInstanceName", "x"), book=book)
    assert book.seen == {}
    assert auth(v1_request(), book=book).nonce == NONCE


def test_v1_unknown_key() -> None:
    with pytest.raises(errors.AccessKeyNotFound) as info:
        auth(v1_request(v1_params(AccessKeyId="nobody")))
    assert (info.value.code, info.value.status) == ("InvalidAccessKeyId.NotFound", 404)


def test_v1_inactive_key() -> None:
    with pytest.raises(errors.AccessKeyInactive) as info:
        auth(v1_request(v1_params(AccessKeyId="disabled"), secret="othersecret"))
    assert info.value.code == "InvalidAccessKeyId.Inactive"


@pytest.mark.parametrize("name", protocol.V1_REQUIRED)
def test_v1_missing_required_param(name: str) -> None:
    with pytest.raises(errors.MissingParameter) as info:
        auth(without(v1_request(), name))
    assert info.value.parameter == name
    assert info.value.message == (
        f'The input parameter "{name}" that is mandatory for processing this request is not supplied.'
    )


@pytest.mark.parametrize("name", protocol.V1_REQUIRED)
def test_v1_empty_required_param_counts_as_missing(name: str) -> None:
    with pytest.raises(errors.MissingParameter) as info:
        auth(with_param(v1_request(), name, ""))
    assert info.value.parameter == name


def test_unsigned_request_gets_missing_access_key_id() -> None:
    req = make_request([("Action", "DescribeCloudMigrationResult"), ("Version", "2014-08-15")])
    with pytest.raises(errors.MissingParameter) as info:
        auth(req)
    assert info.value.parameter == "AccessKeyId"


@pytest.mark.parametrize("method", ["HMAC-SHA256", "hmac-sha1", "HMAC-SM3"])
def test_v1_bad_signature_method(method: str) -> None:
    with pytest.raises(errors.IncompleteSignature) as info:
        auth(v1_request(v1_params(SignatureMethod=method)))
    assert "SignatureMethod" in info.value.message


@pytest.mark.parametrize("version", ["2.0", "1", "1.0 "])
def test_v1_bad_signature_version(version: str) -> None:
    with pytest.raises(errors.IncompleteSignature):
        auth(v1_request(v1_params(SignatureVersion=version)))


def test_v1_wrong_api_version() -> None:
    with pytest.raises(errors.InvalidVersion) as info:
        auth(v1_request(v1_params(Version="2017-08-01")))
    assert info.value.code == "InvalidVersion"


def test_v1_overlong_nonce() -> None:
    with pytest.raises(errors.InvalidParameter) as info:
        auth(v1_request(v1_params(SignatureNonce="n" * 129)))
    assert info.value.parameter == "SignatureNonce"


def test_foreign_authorization_scheme_without_signature_is_incomplete() -> None:
    req = make_request([("Action", "X")], headers={"authorization": "acs testid:abc"})
    with pytest.raises(errors.IncompleteSignature):
        auth(req)


def test_v1_with_a_stray_non_acs3_authorization_header_still_verifies_v1() -> None:
    req = with_header(v1_request(), "authorization", "Bearer abc")
    assert auth(req).signature_version == "V1"


def test_v1_body_params_are_signed_and_returned() -> None:
    params = v1_params()
    body_params = {"TaskName": "from body", "SourcePort": "5432"}
    signature = Utils.get_rpcsignature({**params, **body_params}, "POST", SECRET)
    req = make_request(
        [*params.items(), ("Signature", signature)],
        body=urlencode(body_params).encode(),
        content_type="application/x-www-form-urlencoded",
    )
    result = auth(req)
    assert result.params["TaskName"] == "from body"
    tampered = dataclasses.replace(req, body=b"TaskName=other&SourcePort=5432")
    with pytest.raises(errors.SignatureDoesNotMatch):
        auth(tampered)


# ==== V3 authentication ===========================================================================


def test_v3_accepts_spec_vector_a() -> None:
    query = [
        ("DBInstanceName", "pgm-bp1xxxx"),
        ("SourceAccount", "migratetest"),
        ("SourceCategory", "ecsOnVpc"),
        ("SourceIpAddress", "172.16.0.1"),
        ("SourcePassword", "Pass word+1*~"),
        ("SourcePort", "5432"),
        ("TaskName", "task 1"),
    ]
    headers = v3_headers()
    names = "accept;host;user-agent;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
    sig = "fece10f3cf4f69963e21073991b81e63276c222905ddab4f14d4fc132cf21f3f"
    headers["authorization"] = f"ACS3-HMAC-SHA256 Credential=testid,SignedHeaders={names},Signature={sig}"
    book = NonceBook()
    result = auth(make_request(query, headers=headers), book=book)
    assert result == Authenticated(
        action="CreateCloudMigrationPrecheckTask",
        version="2014-08-15",
        params=dict(query),
        format="JSON",
        access_key_id=AK,
        nonce=NONCE,
        signature_version="V3",
    )
    assert book.seen == {(AK, NONCE): T0 + timedelta(seconds=900)}

    # Same request signing only host + x-acs-* (the minimum the server demands).
    only = "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
    sig2 = "81149aea6a7d1df98b8945bd2a3728dc25f382e0d42e627c6e6a099a085905de"
    headers["authorization"] = f"ACS3-HMAC-SHA256 Credential=testid,SignedHeaders={only},Signature={sig2}"
    assert auth(make_request(query, headers=headers)).signature_version == "V3"


def test_v3_accepts_spec_vector_b() -> None:
    headers = v3_headers(
        **{"x-acs-action": "DescribeCloudMigrationPrecheckResult", "x-acs-credentials-provider": "static_ak"}
    )
    headers["authorization"] = (
        "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=accept;host;user-agent;x-acs-action;"
        "x-acs-content-sha256;x-acs-credentials-provider;x-acs-date;x-acs-signature-nonce;x-acs-version,"
        "Signature=bf99d8bd22084924cc3b97833f242f545404ffc4007692e1048daa794c6ec175"
    )
    req = make_request(
        [("DBInstanceName", "pgm-bp1xxxx"), ("PageNumber", "1"), ("PageSize", "30")], headers=headers
    )
    result = auth(req)
    assert result.action == "DescribeCloudMigrationPrecheckResult"
    assert result.params == {"DBInstanceName": "pgm-bp1xxxx", "PageNumber": "1", "PageSize": "30"}


def test_v3_uppercase_hex_signature_is_accepted() -> None:
    req = v3_request()
    value = req.headers["authorization"]
    head, _, sig = value.rpartition("Signature=")
    assert (
        auth(with_header(req, "authorization", head + "Signature=" + sig.upper())).signature_version == "V3"
    )


def test_v3_format_param_is_honoured() -> None:
    assert auth(v3_request({"DBInstanceName": "x", "Format": "XML"})).format == "XML"
    assert auth(v3_request()).format == "JSON"


def test_v3_tampered_query_value() -> None:
    req = v3_request()
    tampered = dataclasses.replace(req, query=[(k, "task 2" if k == "TaskName" else v) for k, v in req.query])
    with pytest.raises(errors.SignatureDoesNotMatch) as info:
        auth(tampered)
    names = signing.v3_parse_authorization(tampered.headers["authorization"]).signed_headers
    canonical = signing.v3_canonical_request(
        "POST", "/", tampered.query, tampered.headers, names, signing.EMPTY_BODY_SHA256
    )
    assert info.value.message == (
        "Specified signature is not matched with our calculation. server string to sign is:"
        + signing.v3_string_to_sign(canonical)
    )


def test_v3_tampered_signed_header() -> None:
    with pytest.raises(errors.SignatureDoesNotMatch):
        auth(with_header(v3_request(), "x-acs-action", "ActivateMigrationTargetInstance"))
    with pytest.raises(errors.SignatureDoesNotMatch):
        auth(with_header(v3_request(), "user-agent", "evil"))


def test_v3_unsigned_header_may_change() -> None:
    assert auth(with_header(v3_request(), "content-length", "0")).signature_version == "V3"


def test_v3_method_and_path_are_signed() -> None:
    with pytest.raises(errors.SignatureDoesNotMatch):
        auth(dataclasses.replace(v3_request(), method="GET"))
    with pytest.raises(errors.SignatureDoesNotMatch):
        auth(dataclasses.replace(v3_request(), path="/other"))


def test_v3_wrong_secret() -> None:
    with pytest.raises(errors.SignatureDoesNotMatch):
        auth(v3_request(secret="notthesecret"))


@pytest.mark.parametrize(
    "value",
    [
        "ACS3-HMAC-SHA256",
        "ACS3-HMAC-SHA256 Credential=testid",
        "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host,Signature=",
        "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host;host,Signature=ab",
        "ACS3-HMAC-SHA256 Credential=testid SignedHeaders=host Signature=ab",
        "ACS3-",
    ],
)
def test_v3_malformed_authorization(value: str) -> None:
    with pytest.raises(errors.IncompleteSignature):
        auth(with_header(v3_request(), "authorization", value))


@pytest.mark.parametrize("algorithm", ["ACS3-HMAC-SM3", "ACS3-RSA-SHA256"])
def test_v3_other_algorithms_are_incomplete_signature(algorithm: str) -> None:
    req = v3_request()
    value = req.headers["authorization"].replace("ACS3-HMAC-SHA256", algorithm, 1)
    with pytest.raises(errors.IncompleteSignature) as info:
        auth(with_header(req, "authorization", value))
    assert algorithm in info.value.message and "ACS3-HMAC-SHA256" in info.value.message


@pytest.mark.parametrize("name", protocol.V3_REQUIRED_HEADERS)
def test_v3_missing_required_header(name: str) -> None:
    headers = v3_headers()
    del headers[name]
    with pytest.raises(errors.MissingParameter) as info:
        auth(v3_request(headers=headers))
    assert info.value.parameter == name


def test_v3_host_must_be_signed() -> None:
    req = v3_request(headers={k: v for k, v in v3_headers().items() if k != "host"})
    with pytest.raises(errors.IncompleteSignature) as info:
        auth(with_header(req, "host", ENDPOINT))
    assert "host" in info.value.message


def test_v3_every_acs_header_must_be_signed() -> None:
    req = with_header(v3_request(), "x-acs-security-token", "sneaky")
    with pytest.raises(errors.IncompleteSignature) as info:
        auth(req)
    assert "x-acs-security-token" in info.value.message


def test_v3_signed_header_must_be_present() -> None:
    with pytest.raises(errors.IncompleteSignature):
        auth(with_header(v3_request(), "accept", None))


def test_v3_authorization_cannot_sign_itself() -> None:
    req = v3_request()
    value = req.headers["authorization"].replace("SignedHeaders=", "SignedHeaders=authorization;", 1)
    with pytest.raises(errors.IncompleteSignature):
        auth(with_header(req, "authorization", value))


def test_v3_sts_access_key_header_must_match_credential() -> None:
    req = v3_request(headers=v3_headers(**{"x-acs-accesskey-id": AK}))
    assert auth(req).access_key_id == AK
    other = v3_request(headers=v3_headers(**{"x-acs-accesskey-id": "someoneelse"}))
    with pytest.raises(errors.IncompleteSignature):
        auth(other)


def test_v3_body_changed_after_signing() -> None:
    form = {"TaskName": "a b", "SourcePort": "5432"}
    headers = v3_headers(**{"content-type": "application/x-www-form-urlencoded"})
    req = v3_request({"DBInstanceName": "x"}, headers=headers, body=urlencode(form).encode())
    assert auth(req).params == {"DBInstanceName": "x", "TaskName": "a b", "SourcePort": "5432"}
    with pytest.raises(errors.SignatureDoesNotMatch):
        auth(dataclasses.replace(req, body=b"TaskName=evil&SourcePort=5432"))


def test_v3_content_sha256_header_that_lies_about_the_body() -> None:
    # A client that signs the real body hash as payload but announces another one in the header.
    body = b"TaskName=x"
    claimed = hashlib.sha256(b"something else").hexdigest()
    headers = v3_headers(
        **{"content-type": "application/x-www-form-urlencoded", "x-acs-content-sha256": claimed}
    )
    names = sorted(headers)
    canonical = signing.v3_canonical_request(
        "POST", "/", [], headers, names, hashlib.sha256(body).hexdigest()
    )
    sig = signing.v3_sign(SECRET, signing.v3_string_to_sign(canonical))
    headers["authorization"] = (
        f"ACS3-HMAC-SHA256 Credential={AK},SignedHeaders={';'.join(names)},Signature={sig}"
    )
    req = make_request([], headers=headers, body=body, content_type="application/x-www-form-urlencoded")
    with pytest.raises(errors.SignatureDoesNotMatch):
        auth(req)


def test_v3_body_with_empty_body_hash() -> None:
    req = v3_request()
    with pytest.raises(errors.SignatureDoesNotMatch):
        auth(dataclasses.replace(req, body=b"TaskName=x", content_type="application/octet-stream"))


@pytest.mark.parametrize("value", ["abc", "UNSIGNED-PAYLOAD", "g" * 64])
def test_v3_malformed_content_sha256(value: str) -> None:
    with pytest.raises(errors.IncompleteSignature):
        auth(v3_request(headers=v3_headers(**{"x-acs-content-sha256": value})))


def test_v3_content_type_must_be_signed_when_there_is_a_body() -> None:
    headers = v3_headers(**{"x-acs-content-sha256": hashlib.sha256(b"a=1").hexdigest()})
    req = v3_request(headers=headers, body=b"a=1")
    with pytest.raises(errors.IncompleteSignature) as info:
        auth(with_header(req, "content-type", "application/x-www-form-urlencoded"))
    assert "content-type" in info.value.message


def test_v3_expired_and_illegal_date() -> None:
    with pytest.raises(errors.TimestampExpired):
        auth(v3_request(), now=T0 - timedelta(minutes=16))
    with pytest.raises(errors.IllegalTimestamp) as info:
        auth(v3_request(headers=v3_headers(**{"x-acs-date": "Mon, 01 Jan 2024 00:00:00 GMT"})))
    assert "x-acs-date" in info.value.message


def test_v3_replayed_nonce_and_rejections_record_nothing() -> None:
    book = NonceBook()
    with pytest.raises(errors.SignatureDoesNotMatch):
        auth(v3_request(secret="wrong"), book=book)
    with pytest.raises(errors.AccessKeyNotFound):
        authenticate(v3_request(), keys={}.get, record_nonce=book, now=T0)
    assert book.seen == {}
    auth(v3_request(), book=book)
    with pytest.raises(errors.SignatureNonceUsed):
        auth(v3_request(), book=book)


def test_v3_unknown_and_inactive_key() -> None:
    with pytest.raises(errors.AccessKeyNotFound):
        authenticate(v3_request(), keys={}.get, record_nonce=NonceBook(), now=T0)
    with pytest.raises(errors.AccessKeyInactive):
        authenticate(v3_request(), keys=lambda ak: KeyRecord(SECRET, False), record_nonce=NonceBook(), now=T0)


def test_v3_wrong_api_version() -> None:
    with pytest.raises(errors.InvalidVersion):
        auth(v3_request(headers=v3_headers(**{"x-acs-version": "2017-08-01"})))


def test_v3_overlong_nonce() -> None:
    with pytest.raises(errors.InvalidParameter) as info:
        auth(v3_request(headers=v3_headers(**{"x-acs-signature-nonce": "n" * 200})))
    assert info.value.parameter == "x-acs-signature-nonce"


def test_v3_common_params_in_the_query_are_not_business_params() -> None:
    result = auth(v3_request({"DBInstanceName": "x", "Action": "Other", "RegionId": "cn-hangzhou"}))
    assert result.action == "CreateCloudMigrationPrecheckTask"
    assert result.params == {"DBInstanceName": "x", "RegionId": "cn-hangzhou"}


def test_v3_keys_encoded_per_published_description_are_accepted_too() -> None:
    query = [("Odd Key*", "v 1"), ("DBInstanceName", "x")]
    headers = v3_headers()
    names = sorted(headers)
    for encode_keys in (False, True):
        canonical = signing.v3_canonical_request(
            "POST", "/", query, headers, names, signing.EMPTY_BODY_SHA256, encode_keys=encode_keys
        )
        sig = signing.v3_sign(SECRET, signing.v3_string_to_sign(canonical))
        h = {
            **headers,
            "authorization": f"ACS3-HMAC-SHA256 Credential={AK},SignedHeaders={';'.join(names)},Signature={sig}",
        }
        assert auth(make_request(query, headers=h)).params["Odd Key*"] == "v 1"


def test_v3_duplicate_query_param_is_invalid_parameter() -> None:
    req = v3_request()
    with pytest.raises(errors.InvalidParameter):
        auth(dataclasses.replace(req, query=[*req.query, ("TaskName", "again")]))


# ==== round trips through the real SDK clients (offline) ==========================================


class _Exchange:
    """A pure in-process 'server': IncomingRequest -> authenticate -> render."""

    def __init__(self, *, now: datetime | None = None, keys: dict[str, KeyRecord] | None = None) -> None:
        self.now = now
        self.keys = KEYS if keys is None else keys
        self.book = NonceBook()
        self.mutate: Callable[[IncomingRequest], IncomingRequest] = lambda r: r
        self.seen: list[Authenticated] = []
        self.errors: list[errors.CloudmigError] = []

    def handle(self, req: IncomingRequest) -> tuple[int, str, bytes]:
        req = self.mutate(req)
        now = self.now or datetime.now(UTC)
        try:
            result = authenticate(req, keys=self.keys.get, record_nonce=self.book, now=now)
        except errors.CloudmigError as err:
            self.errors.append(err)
            body, ctype, status = render.render_error(
                err, request_id=REQUEST_ID, host_id="rds.aliyuncs.com", fmt=peek_format(req)
            )
            return status, ctype, body
        self.seen.append(result)
        payload = {"RequestId": REQUEST_ID, "TaskId": 1, "TaskName": "t", "DBInstanceName": "pgm-x"}
        body, ctype = render.render_success(result.action, payload, result.format)
        return 200, ctype, body


@contextmanager
def tea_wire(exchange: _Exchange) -> Iterator[None]:
    def do_action(request: DaraRequest, runtime_option: Any = None) -> DaraResponse:
        # Same preparation as DaraCore.do_action, minus the socket.
        body = request.body.encode("utf-8") if isinstance(request.body, str) else request.body
        prepared = requests.PreparedRequest()
        prepared.prepare(
            method=request.method.upper(),
            url=DaraCore.compose_url(request),
            data=body,
            headers=request.headers,
        )
        assert prepared.method is not None and prepared.url is not None
        incoming = from_wire(prepared.method, prepared.url, dict(prepared.headers), prepared.body)
        status, ctype, out = exchange.handle(incoming)
        response = DaraResponse()
        response.status_code, response.status_message = status, "X"
        response.headers = {"content-type": ctype}
        response.body = io.BytesIO(out)
        return response

    with mock.patch.object(DaraCore, "do_action", new=do_action):
        yield


@contextmanager
def core_wire(exchange: _Exchange) -> Iterator[None]:
    def get_response_object(self: HttpResponse) -> tuple[int, dict[str, str], bytes]:
        url = "http://" + self.get_host() + self.get_url()
        prepared = CoreRequest(
            method=self.get_method(), url=url, data=self.get_body(), headers=self.get_headers()
        ).prepare()
        incoming = from_wire(prepared.method, prepared.url, dict(prepared.headers), prepared.body)
        status, ctype, out = exchange.handle(incoming)
        return status, {"Content-Type": ctype}, out

    with mock.patch.object(HttpResponse, "get_response_object", new=get_response_object):
        yield


def tea_client(*, v1: bool, secret: str = SECRET) -> RdsClient:
    return RdsClient(
        Config(
            access_key_id=AK,
            access_key_secret=secret,
            endpoint=ENDPOINT,
            protocol="http",
            region_id="cn-hangzhou",
            signature_algorithm="v2" if v1 else None,
        )
    )


def core_client(secret: str = SECRET) -> AcsClient:
    return AcsClient(AK, secret, "cn-hangzhou")


def core_request(values: dict[str, str], method: str = "POST") -> CreateCloudMigrationPrecheckTaskRequest:
    req = CreateCloudMigrationPrecheckTaskRequest()
    req.set_endpoint(ENDPOINT)
    req.set_method(method)
    req.set_DBInstanceName(values["DBInstanceName"])
    req.set_SourceIpAddress(values["SourceIpAddress"])
    req.set_SourcePort(values["SourcePort"])
    req.set_SourceAccount(values["SourceAccount"])
    req.set_SourcePassword(values["SourcePassword"])
    req.set_SourceCategory(values["SourceCategory"])
    req.set_TaskName(values["TaskName"])
    return req


def tea_request(values: dict[str, str]) -> rds.CreateCloudMigrationPrecheckTaskRequest:
    return rds.CreateCloudMigrationPrecheckTaskRequest(
        dbinstance_name=values["DBInstanceName"],
        source_ip_address=values["SourceIpAddress"],
        source_port=values["SourcePort"],
        source_account=values["SourceAccount"],
        source_password=values["SourcePassword"],
        source_category=values["SourceCategory"],
        task_name=values["TaskName"],
    )


BUSINESS = (
    "DBInstanceName",
    "SourceIpAddress",
    "SourcePort",
    "SourceAccount",
    "SourcePassword",
    "SourceCategory",
    "TaskName",
)
_value = st.text(st.characters(blacklist_categories=("Cs",)), max_size=24)
_special = st.sampled_from(
    ["", " ", "+", "%", "%20", "*", "~", "a b+c", "=&?#/", "中文 пароль", "\x00\n\t", "\U0001f600"]
)
_values = st.fixed_dictionaries({name: st.one_of(_value, _special) for name in BUSINESS})
TEA_ERRORS = (tea_exceptions.ClientException, tea_exceptions.ServerException)

SAMPLE = {
    "DBInstanceName": "pgm-bp1xxxx",
    "SourceIpAddress": "172.16.0.1",
    "SourcePort": "5432",
    "SourceAccount": "migratetest",
    "SourcePassword": "Pass word+1*~",
    "SourceCategory": "ecsOnVpc",
    "TaskName": "task 1",
}


@settings(max_examples=60, deadline=None)
@given(values=_values, v1=st.booleans())
def test_tea_sdk_round_trip(values: dict[str, str], v1: bool) -> None:
    exchange = _Exchange()
    with tea_wire(exchange):
        response = tea_client(v1=v1).create_cloud_migration_precheck_task(tea_request(values))
    assert exchange.errors == []
    assert response.status_code == 200
    assert response.body is not None and response.body.request_id == REQUEST_ID
    (seen,) = exchange.seen
    assert seen.signature_version == ("V1" if v1 else "V3")
    assert seen.action == "CreateCloudMigrationPrecheckTask"
    assert {k: v for k, v in seen.params.items()} == values


@settings(max_examples=60, deadline=None)
@given(values=_values, method=st.sampled_from(["POST", "GET"]))
def test_aliyunsdkcore_round_trip(values: dict[str, str], method: str) -> None:
    exchange = _Exchange()
    with core_wire(exchange):
        body = core_client().do_action_with_exception(core_request(values, method))
    assert exchange.errors == []
    assert b'"RequestId"' in body
    (seen,) = exchange.seen
    assert seen.signature_version == "V1"
    assert seen.params == {**values, "RegionId": "cn-hangzhou"}


@pytest.mark.parametrize("v1", [True, False])
def test_tea_sdk_tampered_param(v1: bool) -> None:
    exchange = _Exchange()
    exchange.mutate = lambda r: dataclasses.replace(
        r, query=[(k, "pgm-evil" if k == "DBInstanceName" else v) for k, v in r.query]
    )
    with tea_wire(exchange), pytest.raises(TEA_ERRORS) as info:
        tea_client(v1=v1).create_cloud_migration_precheck_task(tea_request(SAMPLE))
    assert info.value.code == "SignatureDoesNotMatch"
    assert info.value.status_code == 400
    assert info.value.request_id == REQUEST_ID
    assert exchange.book.seen == {}


def test_tea_sdk_v3_tampered_header() -> None:
    exchange = _Exchange()
    exchange.mutate = lambda r: with_header(r, "x-acs-action", "ActivateMigrationTargetInstance")
    with tea_wire(exchange), pytest.raises(TEA_ERRORS) as info:
        tea_client(v1=False).create_cloud_migration_precheck_task(tea_request(SAMPLE))
    assert info.value.code == "SignatureDoesNotMatch"


@pytest.mark.parametrize("v1", [True, False])
def test_tea_sdk_wrong_secret(v1: bool) -> None:
    with tea_wire(_Exchange()), pytest.raises(TEA_ERRORS) as info:
        tea_client(v1=v1, secret="wrong").create_cloud_migration_precheck_task(tea_request(SAMPLE))
    assert info.value.code == "SignatureDoesNotMatch"


def test_aliyunsdkcore_wrong_secret_is_recognised_as_invalid_secret() -> None:
    # aliyunsdkcore compares Message.split(':')[1] with its own string to sign.
    req = core_request(SAMPLE)
    req.get_query_params().pop("SourcePassword")
    with core_wire(_Exchange()), pytest.raises(CoreServerException) as info:
        core_client("wrong").do_action_with_exception(req)
    assert info.value.get_error_code() == "InvalidAccessKeySecret"
    assert info.value.get_http_status() == 400
    assert info.value.get_request_id() == REQUEST_ID


def test_aliyunsdkcore_wrong_secret_with_a_password_never_echoes_the_password() -> None:
    # aliyunsdkcore logs every ServerException at ERROR level: an echoed password would land in the
    # caller's logs. It is masked, so the SDK cannot match its string to sign and keeps the code.
    with core_wire(_Exchange()), pytest.raises(CoreServerException) as info:
        core_client("wrong").do_action_with_exception(core_request(SAMPLE))
    assert info.value.get_error_code() == "SignatureDoesNotMatch"
    assert "server string to sign is:" in info.value.get_error_msg()
    assert "Pass%2520word" not in info.value.get_error_msg()


def test_aliyunsdkcore_tampered_param_stays_signature_does_not_match() -> None:
    exchange = _Exchange()
    exchange.mutate = lambda r: dataclasses.replace(
        r, query=[(k, "pgm-evil" if k == "DBInstanceName" else v) for k, v in r.query]
    )
    with core_wire(exchange), pytest.raises(CoreServerException) as info:
        core_client().do_action_with_exception(core_request(SAMPLE))
    assert info.value.get_error_code() == "SignatureDoesNotMatch"


@pytest.mark.parametrize("v1", [True, False])
def test_tea_sdk_expired_timestamp(v1: bool) -> None:
    exchange = _Exchange(now=datetime.now(UTC) + timedelta(minutes=16))
    with tea_wire(exchange), pytest.raises(TEA_ERRORS) as info:
        tea_client(v1=v1).create_cloud_migration_precheck_task(tea_request(SAMPLE))
    assert info.value.code == "InvalidTimeStamp.Expired"


def test_aliyunsdkcore_expired_timestamp() -> None:
    exchange = _Exchange(now=datetime.now(UTC) - timedelta(minutes=16))
    with core_wire(exchange), pytest.raises(CoreServerException) as info:
        core_client().do_action_with_exception(core_request(SAMPLE))
    assert info.value.get_error_code() == "InvalidTimeStamp.Expired"


@pytest.mark.parametrize("v1", [True, False])
def test_tea_sdk_replayed_request(v1: bool) -> None:
    exchange = _Exchange()
    captured: list[IncomingRequest] = []

    def keep(r: IncomingRequest) -> IncomingRequest:
        captured.append(r)
        return r

    exchange.mutate = keep
    with tea_wire(exchange):
        tea_client(v1=v1).create_cloud_migration_precheck_task(tea_request(SAMPLE))
    status, _, body = exchange.handle(captured[0])
    assert status == 400 and b'"Code":"SignatureNonceUsed"' in body


@pytest.mark.parametrize(
    ("keys", "code", "status"),
    [
        ({}, "InvalidAccessKeyId.NotFound", 404),
        ({AK: KeyRecord(SECRET, False)}, "InvalidAccessKeyId.Inactive", 400),
    ],
)
@pytest.mark.parametrize("v1", [True, False])
def test_tea_sdk_unknown_and_inactive_key(
    keys: dict[str, KeyRecord], code: str, status: int, v1: bool
) -> None:
    with tea_wire(_Exchange(keys=keys)), pytest.raises(TEA_ERRORS) as info:
        tea_client(v1=v1).create_cloud_migration_precheck_task(tea_request(SAMPLE))
    assert (info.value.code, info.value.status_code) == (code, status)


def test_aliyunsdkcore_unknown_key() -> None:
    with core_wire(_Exchange(keys={})), pytest.raises(CoreServerException) as info:
        core_client().do_action_with_exception(core_request(SAMPLE))
    assert (info.value.get_error_code(), info.value.get_http_status()) == ("InvalidAccessKeyId.NotFound", 404)


@pytest.mark.parametrize("v1", [True, False])
def test_tea_generic_call_with_form_body(v1: bool) -> None:
    """call_api with a formData body: V1 signs body params, V3 hashes the body and signs content-type."""
    exchange = _Exchange()
    client = tea_client(v1=v1)
    params = utils_models.Params(
        action="DescribeCloudMigrationResult",
        version="2014-08-15",
        protocol="HTTP",
        pathname="/",
        method="POST",
        auth_type="AK",
        style="RPC",
        req_body_type="formData",
        body_type="json",
    )
    request = utils_models.OpenApiRequest(
        query={"DBInstanceName": "pgm-x"}, body={"TaskName": "in the body +*~", "PageSize": "30"}
    )
    with tea_wire(exchange):
        client.call_api(params, request, RuntimeOptions())
    assert exchange.errors == []
    (seen,) = exchange.seen
    assert seen.params == {"DBInstanceName": "pgm-x", "TaskName": "in the body +*~", "PageSize": "30"}

    exchange.mutate = lambda r: dataclasses.replace(r, body=r.body.replace(b"PageSize=30", b"PageSize=99"))
    with tea_wire(exchange), pytest.raises(TEA_ERRORS) as info:
        client.call_api(params, request, RuntimeOptions())
    assert info.value.code == "SignatureDoesNotMatch"
