"""Response rendering: JSON/XML shapes, the error envelope, and how the SDKs read it."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from alibabacloud_rds20140815 import models as rds
from alibabacloud_rds20140815.client import Client as RdsClient
from alibabacloud_tea_openapi import exceptions as tea_exceptions
from alibabacloud_tea_openapi.models import Config
from aliyunsdkcore.client import AcsClient
from darabonba.core import DaraCore
from darabonba.request import DaraRequest
from darabonba.response import DaraResponse
from darabonba.utils.xml import XML as DaraXML
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudmig import errors
from cloudmig.api.render import (
    JSON_CONTENT_TYPE,
    XML_CONTENT_TYPE,
    recommend_url,
    render_error,
    render_success,
)


def _xml(body: bytes) -> ET.Element:
    return ET.fromstring(body)  # noqa: S314 - parses our own renderer's output, not untrusted input


REQUEST_ID = "7E4A6E1B-789B-5F16-9736-39AA57FC7374"
HOST_ID = "rds.aliyuncs.com"


# ---- success -------------------------------------------------------------------------------------

DESCRIBE = {
    "RequestId": REQUEST_ID,
    "TotalSize": 2,
    "PageNumber": 1,
    "PageSize": 30,
    "Items": [
        {"TaskId": 439946016, "TaskName": "a", "Detail": "[Check rds empty]\nCheck rds databases: success"},
        {"TaskId": 439946017, "TaskName": "b & <c>", "TargetEip": None, "Synced": True},
    ],
}


def test_success_json_is_compact_utf8() -> None:
    body, ctype = render_success(
        "DescribeCloudMigrationResult", {"RequestId": "r", "TaskName": "中文", "N": 1}, "JSON"
    )
    assert ctype == "application/json;charset=utf-8" == JSON_CONTENT_TYPE
    assert body == '{"RequestId":"r","TaskName":"中文","N":1}'.encode()


def test_success_json_keeps_types_and_list_shape() -> None:
    body, _ = render_success("DescribeCloudMigrationResult", DESCRIBE, "json")
    decoded = json.loads(body)
    assert decoded == DESCRIBE
    assert isinstance(decoded["Items"], list)
    assert isinstance(decoded["TotalSize"], int)


def test_success_format_is_case_insensitive_and_defaults_to_json() -> None:
    assert render_success("X", {"A": 1}, "xml")[1] == XML_CONTENT_TYPE
    assert render_success("X", {"A": 1}, "")[1] == JSON_CONTENT_TYPE
    assert render_success("X", {"A": 1}, "yaml")[1] == JSON_CONTENT_TYPE


def test_success_json_with_lone_surrogate_still_encodes() -> None:
    body, _ = render_success("X", {"A": "\ud800"}, "JSON")
    assert json.loads(body) == {"A": "\ud800"}


def test_success_xml_shape() -> None:
    body, ctype = render_success("DescribeCloudMigrationResult", DESCRIBE, "XML")
    assert ctype == "text/xml;charset=utf-8" == XML_CONTENT_TYPE
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?><DescribeCloudMigrationResultResponse>')
    root = _xml(body)
    assert root.tag == "DescribeCloudMigrationResultResponse"
    assert [child.tag for child in root] == [
        "RequestId",
        "TotalSize",
        "PageNumber",
        "PageSize",
        "Items",
        "Items",
    ]
    first, second = root.findall("Items")
    assert first.findtext("TaskId") == "439946016"
    assert first.findtext("Detail") == "[Check rds empty]\nCheck rds databases: success"
    assert second.findtext("TaskName") == "b & <c>"
    assert second.findtext("TargetEip") == ""
    assert second.findtext("Synced") == "true"
    assert b"b &amp; &lt;c&gt;" in body


def test_success_xml_nested_dicts_and_scalar_lists() -> None:
    body, _ = render_success("X", {"Outer": {"Inner": {"Leaf": 1.5}}, "Tags": ["a", "b"], "Empty": []}, "XML")
    root = _xml(body)
    assert root.findtext("Outer/Inner/Leaf") == "1.5"
    assert [t.text for t in root.findall("Tags")] == ["a", "b"]
    assert root.find("Empty") is None


def test_success_xml_preserves_carriage_returns_and_replaces_unrepresentable_chars() -> None:
    body, _ = render_success("X", {"A": "l1\r\nl2\x00\x1b\ufffe"}, "XML")
    assert _xml(body).findtext("A") == "l1\r\nl2\ufffd\ufffd\ufffd"


def test_success_xml_rejects_bad_element_names_and_unknown_types() -> None:
    with pytest.raises(ValueError, match="element name"):
        render_success("X", {"bad name": 1}, "XML")
    with pytest.raises(TypeError):
        render_success("X", {"A": object()}, "XML")


_xml_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=200, deadline=None)
@given(value=_xml_text)
def test_success_xml_round_trips_any_representable_text(value: str) -> None:
    body, _ = render_success("X", {"V": value}, "XML")
    text = _xml(body).findtext("V")
    allowed = "".join(
        c
        if c in "\t\n\r" or ("\x20" <= c <= "\ud7ff") or ("\ue000" <= c <= "\ufffd") or c >= "\U00010000"
        else "\ufffd"
        for c in value
    )
    assert text == allowed


# ---- errors --------------------------------------------------------------------------------------


def test_error_json_envelope() -> None:
    err = errors.InstanceNotFound()
    body, ctype, status = render_error(err, request_id=REQUEST_ID, host_id=HOST_ID, fmt="JSON")
    assert (ctype, status) == (JSON_CONTENT_TYPE, 404)
    assert list(json.loads(body).items()) == [
        ("RequestId", REQUEST_ID),
        ("HostId", HOST_ID),
        ("Code", "InvalidDBInstanceName.NotFound"),
        ("Message", "The database instance does not exist."),
        (
            "Recommend",
            "https://api.aliyun.com/troubleshoot?q=InvalidDBInstanceName.NotFound&product=Rds"
            "&requestId=7E4A6E1B-789B-5F16-9736-39AA57FC7374",
        ),
    ]


def test_error_xml_envelope() -> None:
    err = errors.MissingParameter("DBInstanceName")
    body, ctype, status = render_error(err, request_id=REQUEST_ID, host_id=HOST_ID, fmt="XML")
    assert (ctype, status) == ("text/xml;charset=utf-8", 400)
    root = _xml(body)
    assert root.tag == "Error"
    assert [c.tag for c in root] == ["RequestId", "HostId", "Code", "Message", "Recommend"]
    assert root.findtext("Code") == "MissingParameter"
    assert root.findtext("Message") == err.message
    assert root.findtext("Recommend") == recommend_url("MissingParameter", REQUEST_ID)
    # The tea SDK's own XML parser finds the Error element (client.py do_request).
    assert DaraXML.parse_xml(body.decode(), None)["Error"]["Code"] == "MissingParameter"


def test_recommend_url_quotes_odd_codes() -> None:
    assert (
        recommend_url("A&B", "r 1")
        == "https://api.aliyun.com/troubleshoot?q=A%26B&product=Rds&requestId=r%201"
    )


@pytest.mark.parametrize("fmt", ["JSON", "XML"])
def test_internal_error_never_leaks_details(fmt: str) -> None:
    for err in (
        errors.InternalError("psycopg.OperationalError: password=hunter2 at /var/lib/cloudmig"),
        errors.CloudmigError("Traceback (most recent call last): secret"),
    ):
        body, _, status = render_error(err, request_id=REQUEST_ID, host_id=HOST_ID, fmt=fmt)
        assert status == 500
        assert b"hunter2" not in body and b"Traceback" not in body and b"secret" not in body
        assert b"The request processing has failed due to some unknown error." in body


def test_error_status_comes_from_the_error() -> None:
    for err, status in [
        (errors.SignatureDoesNotMatch("GET&%2F&x"), 400),
        (errors.AccessKeyNotFound(), 404),
        (errors.ActionNotFound(), 404),
        (errors.ExternalFailure(), 500),
    ]:
        assert render_error(err, request_id="r", host_id=HOST_ID, fmt="JSON")[2] == status


def test_error_message_with_xml_specials_is_escaped() -> None:
    err = errors.InvalidParameter("Task<Name>", "a & b")
    body, _, _ = render_error(err, request_id=REQUEST_ID, host_id=HOST_ID, fmt="XML")
    assert _xml(body).findtext("Message") == err.message


# ---- how the SDKs read our error bodies ----------------------------------------------------------


@contextmanager
def tea_answers(body: bytes, ctype: str, status: int) -> Iterator[None]:
    def do_action(request: DaraRequest, runtime_option: Any = None) -> DaraResponse:
        response = DaraResponse()
        response.status_code, response.status_message = status, "X"
        response.headers = {"content-type": ctype}
        response.body = io.BytesIO(body)
        return response

    with mock.patch.object(DaraCore, "do_action", new=do_action):
        yield


def _tea(v1: bool) -> RdsClient:
    return RdsClient(
        Config(
            access_key_id="testid",
            access_key_secret="testsecret",
            endpoint="127.0.0.1:8080",
            protocol="http",
            signature_algorithm="v2" if v1 else None,
        )
    )


@pytest.mark.parametrize(
    ("v1", "fmt"),
    [(True, "JSON"), (False, "JSON"), (False, "XML")],  # the V1 path can only read JSON (spec §6.1)
)
@pytest.mark.parametrize(
    ("err", "exc_type"),
    [
        (errors.IncorrectInstanceState(), tea_exceptions.ClientException),
        (errors.InternalError("boom"), tea_exceptions.ServerException),
    ],
)
def test_tea_sdk_reads_our_error(
    v1: bool, fmt: str, err: errors.CloudmigError, exc_type: type[Exception]
) -> None:
    body, ctype, status = render_error(err, request_id=REQUEST_ID, host_id=HOST_ID, fmt=fmt)
    with tea_answers(body, ctype, status), pytest.raises(exc_type) as info:
        _tea(v1).activate_migration_target_instance(
            rds.ActivateMigrationTargetInstanceRequest(dbinstance_name="pgm-x")
        )
    exc: Any = info.value
    assert exc.code == err.code
    assert exc.status_code == err.status
    assert exc.request_id == REQUEST_ID


def test_tea_sdk_reads_a_success_body() -> None:
    payload = {"RequestId": REQUEST_ID, "DBInstanceName": "pgm-x", "TaskId": 440913675, "SourcePort": 5432}
    body, ctype = render_success("ActivateMigrationTargetInstance", payload, "JSON")
    with tea_answers(body, ctype, 200):
        response = _tea(False).activate_migration_target_instance(
            rds.ActivateMigrationTargetInstanceRequest(dbinstance_name="pgm-x")
        )
    assert response.body is not None
    assert (response.body.task_id, response.body.source_port) == (440913675, 5432)


def test_aliyunsdkcore_reads_our_error_and_detects_a_wrong_secret() -> None:
    client = AcsClient("testid", "testsecret", "cn-hangzhou")
    sts = "POST&%2F&AccessKeyId%3Dtestid%26Timestamp%3D2024-01-01T00%253A00%253A00Z"
    body, _, status = render_error(
        errors.SignatureDoesNotMatch(sts), request_id=REQUEST_ID, host_id=HOST_ID, fmt="JSON"
    )
    exc = client._get_server_exception(status, body, "127.0.0.1", sts)
    assert exc.get_error_code() == "InvalidAccessKeySecret"
    assert exc.get_request_id() == REQUEST_ID
    other = client._get_server_exception(status, body, "127.0.0.1", "GET&%2F&different")
    assert other.get_error_code() == "SignatureDoesNotMatch"
    assert other.get_error_msg().endswith("server string to sign is:" + sts)

    body, _, status = render_error(errors.TaskNotFound(), request_id=REQUEST_ID, host_id=HOST_ID, fmt="JSON")
    exc = client._get_server_exception(status, body, "127.0.0.1", sts)
    assert (exc.get_error_code(), exc.get_http_status()) == ("InvalidTaskId.NotFound", 404)
    assert exc.get_error_msg() == "The specified task does not exist."
