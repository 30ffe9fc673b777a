"""Signature primitives: spec §5 vectors, and agreement with the installed SDKs' own signing code."""

from __future__ import annotations

import base64

import pytest
from alibabacloud_tea_openapi.utils import Utils
from aliyunsdkcore.auth.composer import rpc_signature_composer
from darabonba.request import DaraRequest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudmig import errors
from cloudmig.api import signing
from cloudmig.api.signing import (
    EMPTY_BODY_SHA256,
    V3Authorization,
    percent_encode,
    signatures_equal,
    v1_sign,
    v1_string_to_sign,
    v3_canonical_request,
    v3_parse_authorization,
    v3_sign,
    v3_string_to_sign,
)

SECRET = "testsecret"
NONCE = "0123456789abcdef0123456789abcdef"

# ---- spec §5.1 -----------------------------------------------------------------------------------

V1_A = {
    "Action": "CreateCloudMigrationPrecheckTask",
    "Format": "json",
    "Version": "2014-08-15",
    "Timestamp": "2024-01-01T00:00:00Z",
    "SignatureNonce": NONCE,
    "DBInstanceName": "pgm-bp1xxxx",
    "SourceAccount": "migratetest",
    "SourceCategory": "ecsOnVpc",
    "SourceIpAddress": "172.16.0.1",
    "SourcePassword": "Pass word+1*~",
    "SourcePort": "5432",
    "TaskName": "task 1",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureVersion": "1.0",
    "AccessKeyId": "testid",
}
V1_A_STRING_TO_SIGN = (
    "POST&%2F&AccessKeyId%3Dtestid%26Action%3DCreateCloudMigrationPrecheckTask%26DBInstanceName%3Dpgm-bp1xxxx"
    "%26Format%3Djson%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D0123456789abcdef0123456789abcdef"
    "%26SignatureVersion%3D1.0%26SourceAccount%3Dmigratetest%26SourceCategory%3DecsOnVpc"
    "%26SourceIpAddress%3D172.16.0.1%26SourcePassword%3DPass%2520word%252B1%252A~%26SourcePort%3D5432"
    "%26TaskName%3Dtask%25201%26Timestamp%3D2024-01-01T00%253A00%253A00Z%26Version%3D2014-08-15"
)
V1_B = {**V1_A, "Format": "JSON", "RegionId": "cn-hangzhou", "SignatureType": ""}
V1_C = {
    "Action": "ActivateMigrationTargetInstance",
    "Format": "json",
    "Version": "2014-08-15",
    "Timestamp": "2024-01-01T00:00:00Z",
    "SignatureNonce": NONCE,
    "DBInstanceName": "pgm-bp1xxxx",
    "SwitchTimeMode": "0",
    "ForceSwitch": "1",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureVersion": "1.0",
    "AccessKeyId": "testid",
}


def test_v1_a_string_to_sign_and_signature() -> None:
    sts = v1_string_to_sign("POST", V1_A)
    assert sts == V1_A_STRING_TO_SIGN
    assert v1_sign(SECRET, sts) == "S4tDiLARX6YJQq0j9FqwJOmEBMo="


def test_v1_b_core_style_keeps_empty_signature_type() -> None:
    sts = v1_string_to_sign("POST", V1_B)
    assert "%26SignatureType%3D%26" in sts
    assert v1_sign(SECRET, sts) == "tKDJx4oyHyIZ/fcViU/hzCrKWE4="


@pytest.mark.parametrize(
    ("method", "expected"),
    [("POST", "4Gd3Xn6ffiMJ5JDJF/Wi81epI2U="), ("GET", "Z9acxbfjFaID/KM/Te40RsHiL0c=")],
)
def test_v1_c(method: str, expected: str) -> None:
    assert v1_sign(SECRET, v1_string_to_sign(method, V1_C)) == expected


def test_v1_string_to_sign_ignores_signature_param() -> None:
    assert v1_string_to_sign("POST", {**V1_A, "Signature": "whatever"}) == V1_A_STRING_TO_SIGN


def test_v1_string_to_sign_has_no_colon() -> None:
    # aliyunsdkcore splits the SignatureDoesNotMatch message on ':'; the V1 string must carry none.
    assert ":" not in v1_string_to_sign("POST", {**V1_A, "SourcePassword": "a:b::c"})


def test_v1_sign_is_base64_sha1() -> None:
    assert len(base64.b64decode(v1_sign("k", "s"))) == 20


# ---- spec §5.2 -----------------------------------------------------------------------------------

V3_QUERY = [
    ("DBInstanceName", "pgm-bp1xxxx"),
    ("SourceAccount", "migratetest"),
    ("SourceCategory", "ecsOnVpc"),
    ("SourceIpAddress", "172.16.0.1"),
    ("SourcePassword", "Pass word+1*~"),
    ("SourcePort", "5432"),
    ("TaskName", "task 1"),
]
V3_HEADERS = {
    "host": "127.0.0.1:8080",
    "x-acs-version": "2014-08-15",
    "x-acs-action": "CreateCloudMigrationPrecheckTask",
    "user-agent": "AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2",
    "x-acs-date": "2024-01-01T00:00:00Z",
    "x-acs-signature-nonce": NONCE,
    "accept": "application/json",
    "x-acs-content-sha256": EMPTY_BODY_SHA256,
}
V3_A_CANONICAL = (
    "POST\n"
    "/\n"
    "DBInstanceName=pgm-bp1xxxx&SourceAccount=migratetest&SourceCategory=ecsOnVpc&SourceIpAddress=172.16.0.1"
    "&SourcePassword=Pass%20word%2B1%2A~&SourcePort=5432&TaskName=task%201\n"
    "accept:application/json\n"
    "host:127.0.0.1:8080\n"
    "user-agent:AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2\n"
    "x-acs-action:CreateCloudMigrationPrecheckTask\n"
    "x-acs-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
    "x-acs-date:2024-01-01T00:00:00Z\n"
    "x-acs-signature-nonce:0123456789abcdef0123456789abcdef\n"
    "x-acs-version:2014-08-15\n"
    "\n"
    "accept;host;user-agent;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version\n"
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)


def test_empty_body_hash() -> None:
    assert EMPTY_BODY_SHA256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_v3_a_all_headers() -> None:
    canonical = v3_canonical_request("POST", "/", V3_QUERY, V3_HEADERS, list(V3_HEADERS), EMPTY_BODY_SHA256)
    assert canonical == V3_A_CANONICAL
    sts = v3_string_to_sign(canonical)
    assert sts == "ACS3-HMAC-SHA256\nb9cae5e749d21f94d662a008b43e3484d1487c0c800b26f6ce9e2ae563b7e936"
    assert v3_sign(SECRET, sts) == "fece10f3cf4f69963e21073991b81e63276c222905ddab4f14d4fc132cf21f3f"


def test_v3_a_only_host_and_acs_headers() -> None:
    names = [h for h in V3_HEADERS if h == "host" or h.startswith("x-acs-")]
    canonical = v3_canonical_request("POST", "/", V3_QUERY, V3_HEADERS, names, EMPTY_BODY_SHA256)
    assert "user-agent" not in canonical and "accept" not in canonical
    signature = v3_sign(SECRET, v3_string_to_sign(canonical))
    assert signature == "81149aea6a7d1df98b8945bd2a3728dc25f382e0d42e627c6e6a099a085905de"


def test_v3_b_with_credentials_provider() -> None:
    headers = {
        **V3_HEADERS,
        "x-acs-action": "DescribeCloudMigrationPrecheckResult",
        "x-acs-credentials-provider": "static_ak",
    }
    query = [("DBInstanceName", "pgm-bp1xxxx"), ("PageNumber", "1"), ("PageSize", "30")]
    canonical = v3_canonical_request("POST", "/", query, headers, list(headers), EMPTY_BODY_SHA256)
    assert canonical.split("\n")[-2] == (
        "accept;host;user-agent;x-acs-action;x-acs-content-sha256;x-acs-credentials-provider;"
        "x-acs-date;x-acs-signature-nonce;x-acs-version"
    )
    signature = v3_sign(SECRET, v3_string_to_sign(canonical))
    assert signature == "bf99d8bd22084924cc3b97833f242f545404ffc4007692e1048daa794c6ec175"


def test_v3_canonical_request_sorts_and_lowercases_signed_headers_and_trims_values() -> None:
    headers = {"Host": " 127.0.0.1:8080 ", "X-Acs-Action": "A"}
    canonical = v3_canonical_request(
        "POST", "", [("b", ""), ("a", "x y")], headers, ["X-ACS-ACTION", "host"], "h"
    )
    assert canonical == "POST\n/\na=x%20y&b=\nhost:127.0.0.1:8080\nx-acs-action:A\n\nhost;x-acs-action\nh"


def test_v3_canonical_query_encode_keys_variant() -> None:
    query = [("a b", "1"), ("B", "2")]
    plain = v3_canonical_request("GET", "/", query, {}, [], "h").split("\n")[2]
    encoded = v3_canonical_request("GET", "/", query, {}, [], "h", encode_keys=True).split("\n")[2]
    assert plain == "B=2&a b=1"
    assert encoded == "B=2&a%20b=1"


def test_v3_string_to_sign_rejects_other_hashes() -> None:
    with pytest.raises(ValueError, match="SM3"):
        v3_string_to_sign("x", "ACS3-HMAC-SM3")


# ---- percent encoding ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("AZaz09-_.~", "AZaz09-_.~"),
        (" ", "%20"),
        ("*", "%2A"),
        ("+", "%2B"),
        ("/", "%2F"),
        ("=&", "%3D%26"),
        ("é", "%C3%A9"),
        ("中", "%E4%B8%AD"),
        ("\U0001f600", "%F0%9F%98%80"),
        ("", ""),
    ],
)
def test_percent_encode(raw: str, encoded: str) -> None:
    assert percent_encode(raw) == encoded


def test_percent_encode_is_total_even_for_lone_surrogates() -> None:
    assert percent_encode("\ud800") == "%ED%A0%80"


def test_signatures_equal_handles_any_text() -> None:
    assert signatures_equal("abc", "abc")
    assert not signatures_equal("abc", "abd")
    assert not signatures_equal("é", "abc")  # str compare_digest would raise TypeError here
    assert not signatures_equal("", "abc")


# ---- agreement with SDK code (hypothesis) --------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=16)
_keys = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8).filter(
    lambda k: k != "Signature"
)
_params = st.dictionaries(_keys, _text, max_size=8)
_methods = st.sampled_from(["POST", "GET"])


@settings(max_examples=200, deadline=None)
@given(params=_params, method=_methods, secret=_text)
def test_v1_matches_tea_get_rpcsignature(params: dict[str, str], method: str, secret: str) -> None:
    expected = Utils.get_rpcsignature(params, method, secret)
    assert v1_sign(secret, v1_string_to_sign(method, params)) == expected


@settings(max_examples=200, deadline=None)
@given(query=_params, body=_params, method=_methods)
def test_v1_matches_aliyunsdkcore_composer(query: dict[str, str], body: dict[str, str], method: str) -> None:
    url_params = dict(query)
    _, core_sts = rpc_signature_composer.get_signed_url(url_params, "ak", SECRET, "JSON", method, body)
    # get_signed_url added Timestamp, SignatureMethod, ... to url_params; it signs url + body params.
    signed = {**url_params, **body}
    signed.pop("Signature")
    assert v1_string_to_sign(method, signed) == core_sts


_header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)


@settings(max_examples=200, deadline=None)
@given(
    query=_params,
    extra_headers=st.dictionaries(
        st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=10).map(lambda s: "x-acs-" + s),
        _header_values,
        max_size=4,
    ),
    method=_methods,
    body=st.binary(max_size=64),
    secret=_text,
)
def test_v3_matches_tea_get_authorization(
    query: dict[str, str], extra_headers: dict[str, str], method: str, body: bytes, secret: str
) -> None:
    request = DaraRequest()
    request.method = method
    request.pathname = "/"
    request.query = dict(query)
    request.headers = {**V3_HEADERS, **extra_headers}
    payload = signing.sha256_hex(body)
    authorization = Utils.get_authorization(request, "ACS3-HMAC-SHA256", payload, "ak", secret)

    parsed = v3_parse_authorization(authorization)
    headers = {**V3_HEADERS, **extra_headers}
    canonical = v3_canonical_request(
        method, "/", list(query.items()), headers, parsed.signed_headers, payload
    )
    assert parsed.signature == v3_sign(secret, v3_string_to_sign(canonical))
    assert parsed.access_key_id == "ak"
    assert set(parsed.signed_headers) == {h.lower() for h in headers}


# ---- Authorization parsing -----------------------------------------------------------------------


def test_parse_authorization() -> None:
    value = "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host;x-acs-date,Signature=abc123"
    assert v3_parse_authorization(value) == V3Authorization(
        algorithm="ACS3-HMAC-SHA256",
        access_key_id="testid",
        signed_headers=("host", "x-acs-date"),
        signature="abc123",
    )


def test_parse_authorization_tolerates_spaces_and_case_of_header_names() -> None:
    value = "ACS3-HMAC-SHA256  Credential=testid, SignedHeaders=Host;X-Acs-Date , Signature=abc"
    parsed = v3_parse_authorization(value)
    assert parsed.signed_headers == ("host", "x-acs-date")
    assert parsed.signature == "abc"


def test_parse_authorization_accepts_other_acs3_algorithms() -> None:
    parsed = v3_parse_authorization("ACS3-HMAC-SM3 Credential=a,SignedHeaders=host,Signature=b")
    assert parsed.algorithm == "ACS3-HMAC-SM3"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "ACS3-HMAC-SHA256",
        "ACS3-HMAC-SHA256 ",
        "HMAC-SHA256 Credential=a,SignedHeaders=host,Signature=b",
        "acs3-hmac-sha256 Credential=a,SignedHeaders=host,Signature=b",
        "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host",
        "ACS3-HMAC-SHA256 Credential=a,Signature=b",
        "ACS3-HMAC-SHA256 SignedHeaders=host,Signature=b",
        "ACS3-HMAC-SHA256 Credential=,SignedHeaders=host,Signature=b",
        "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=,Signature=b",
        "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature=",
        "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host;;date,Signature=b",
        "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host;host,Signature=b",
        "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=ho st,Signature=b",
        "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature=b,Signature=c",
        "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature=b,Extra=1",
        "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature",
        "ACS3-HMAC-SHA256 Credential=a b,SignedHeaders=host,Signature=b",
        "ACS3-HMAC-SHA256 Credential=a;SignedHeaders=host;Signature=b",
    ],
)
def test_parse_authorization_malformed(value: str) -> None:
    with pytest.raises(errors.IncompleteSignature) as info:
        v3_parse_authorization(value)
    assert info.value.code == "IncompleteSignature"
    assert info.value.status == 400
    assert info.value.message.startswith("The request signature does not conform to Aliyun standards.")
