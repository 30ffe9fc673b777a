"""Property-based fuzzing of the RPC endpoint of a real `cloudmig serve`.

Hypothesis builds requests: unsigned and malformed ones; V1- and V3-signed ones (signed with the tea
SDK's own functions) for every action with missing, duplicated, oversized, unicode, NUL-carrying and
injection-shaped parameters; and valid requests with one thing broken in the signature or headers.
Whatever arrives, the service must answer within the client timeout, never with a 5xx, always with
the RDS envelope (JSON, or XML when asked), never with a traceback or a secret in the body, and
without changing the store (no generated request can legitimately change it: destructive actions
only ever name an instance that does not exist, and CreateDBInstance never names the engine).
"""

from __future__ import annotations

import http.client
import json
import os
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.flows import create_instance, wait_for, wait_running
from tests.support.pgcluster import make_base_dir
from tests.support.sdk import Core, RawResponse, raw_request, store_snapshot, v1_query, v3_signed
from tests.support.service import Service

pytestmark = pytest.mark.e2e

FUZZ = settings(
    max_examples=int(os.environ.get("CLOUDMIG_FUZZ_EXAMPLES", "300")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
UNKNOWN = "pgm-0000000000000000"
STORED_PASSWORD = "fuzz-stored-pw-7Q!x"  # the password of the task in the store; never sent again

ACTIONS: dict[str, tuple[str, ...]] = {
    "CreateDBInstance": (
        "Engine",
        "EngineVersion",
        "DBInstanceClass",
        "DBInstanceStorage",
        "DBInstanceDescription",
        "ClientToken",
    ),
    "DescribeDBInstances": ("DBInstanceId", "Engine", "PageNumber", "PageSize"),
    "DescribeDBInstanceAttribute": ("DBInstanceId",),
    "DeleteDBInstance": ("DBInstanceId",),
    "CreateAccount": ("DBInstanceId", "AccountName", "AccountPassword", "AccountType", "AccountDescription"),
    "CreateCloudMigrationPrecheckTask": (
        "DBInstanceName",
        "SourceIpAddress",
        "SourcePort",
        "SourceAccount",
        "SourcePassword",
        "SourceCategory",
        "TaskName",
    ),
    "CreateCloudMigrationTask": (
        "DBInstanceName",
        "SourceIpAddress",
        "SourcePort",
        "SourceAccount",
        "SourcePassword",
        "SourceCategory",
        "TaskName",
    ),
    "DescribeCloudMigrationPrecheckResult": (
        "DBInstanceName",
        "PageNumber",
        "PageSize",
        "TaskId",
        "TaskName",
        "SourceIpAddress",
        "SourcePort",
    ),
    "DescribeCloudMigrationResult": (
        "DBInstanceName",
        "PageNumber",
        "PageSize",
        "TaskId",
        "TaskName",
        "SourceIpAddress",
        "SourcePort",
    ),
    "ActivateMigrationTargetInstance": ("DBInstanceName", "SwitchTimeMode", "ForceSwitch", "SwitchTime"),
}
READ_ONLY = frozenset(a for a in ACTIONS if a.startswith("Describe"))
PLUMBING = ("ResourceOwnerId", "OwnerId", "ResourceOwnerAccount", "OwnerAccount", "RegionId", "SecurityToken")
COMMON = (
    "Action",
    "Version",
    "Format",
    "AccessKeyId",
    "Signature",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "SignatureType",
    "Timestamp",
)
INJECTIONS = (
    "' OR '1'='1",
    "'; DROP TABLE tasks; --",
    '"; DROP ROLE postgres; --',
    "1; SELECT pg_sleep(30)",
    "$(touch /tmp/pwned)",
    "`id`",
    "../../../../etc/passwd",
    "<Error><Code>Fake</Code></Error>",
    "]]><!ENTITY x SYSTEM 'file:///etc/passwd'>",
    "{{7*7}}${7*7}",
    "${jndi:ldap://127.0.0.1/x}",
    "host=10.0.0.1 sslmode=disable password=x",
    "a\r\nX-Injected: 1",
    "%00%0d%0a",
    "\x00",
    "null",
    "-1",
    "99999999999999999999999",
    "1e3",
    "\uff15",
    "\u202e\u0663",
    "x" * 300,
)

hostile = st.one_of(
    st.sampled_from(INJECTIONS),
    st.text(max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=6).map(lambda s: s * 50),
)
param_name = st.one_of(
    st.sampled_from(sorted({n for names in ACTIONS.values() for n in names} | set(PLUMBING) | set(COMMON))),
    st.text(min_size=1, max_size=20),
)
# What http.client can put in a header value and h11 accepts (VCHAR, SP, obs-text).
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=80,
)
formats = st.sampled_from(["JSON", "json", "XML", "xml", "", "yaml", "XmL"])


@dataclass
class Fuzzed:
    service: Service
    instance_id: str
    precheck_task_id: int
    baseline: dict[str, list[tuple[Any, ...]]]
    secrets: tuple[str, ...]

    def __repr__(self) -> str:
        return f"Fuzzed({self.service.endpoint}, {self.instance_id})"


@pytest.fixture(scope="module")
def fuzzed(e2e_base: Path) -> Iterator[Fuzzed]:
    d = make_base_dir("svc-", parent=e2e_base)
    svc = Service(
        d,
        extra_env={"CLOUDMIG_THROTTLE_RATE_PER_SECOND": "100000", "CLOUDMIG_THROTTLE_BURST": "100000"},
    ).start()
    try:
        client = svc.tea()
        iid = create_instance(client)
        wait_running(client, iid)
        core = Core(svc.endpoint, svc.key_id, svc.key_secret)
        task_id = int(
            core.call(
                "CreateCloudMigrationPrecheckTask",
                {
                    "DBInstanceName": iid,
                    "SourceIpAddress": "127.0.0.1",
                    "SourcePort": 1,
                    "SourceAccount": "migratetest",
                    "SourcePassword": STORED_PASSWORD,
                    "SourceCategory": "ecsOnVpc",
                    "TaskName": "fuzz-target",
                },
            ).body["TaskId"]
        )

        def settled() -> bool:
            body = core.call(
                "DescribeCloudMigrationPrecheckResult", {"DBInstanceName": iid, "TaskId": task_id}
            ).body
            return bool(body["Items"][0]["Status"] != "running")

        wait_for(settled, 120, what="the precheck task to finish")
        time.sleep(1.5)  # let the engine drop the task's lease
        secret_key = (svc.data_dir / "secret.key").read_text().strip()
        baseline = store_snapshot(svc.data_dir)
        assert baseline["tasks"] and baseline["instances"] and baseline["access_keys"]
        yield Fuzzed(svc, iid, task_id, baseline, (svc.key_secret, STORED_PASSWORD, secret_key))
    finally:
        svc.stop()


def check(f: Fuzzed, r: RawResponse, *, fmt: str | None = None) -> dict[str, str]:
    """The invariants every answer keeps; returns the envelope's fields."""
    assert r.status < 500, (r.status, r.body[:500])
    assert r.status == 200 or 400 <= r.status < 500, r.status
    text = r.body.decode("utf-8")
    assert "Traceback" not in text and 'File "/' not in text, text[:500]
    for secret in f.secrets:
        assert secret not in text, "a secret in a response"
    ctype = r.headers.get("content-type", "")
    if ctype == "text/xml;charset=utf-8":
        root = ET.fromstring(r.body)  # noqa: S314 - the service's own output
        fields = {child.tag: child.text or "" for child in root}
        assert root.tag == "Error" if r.status >= 400 else root.tag.endswith("Response")
    else:
        assert ctype == "application/json;charset=utf-8", ctype
        body = json.loads(text)
        fields = {k: v for k, v in body.items() if isinstance(v, str)}
    assert fields.get("RequestId"), fields
    if r.status >= 400:
        assert fields.get("Code") and fields.get("Message") and fields.get("HostId"), fields
        assert fields["Code"] != "InternalError"
    if fmt is not None and fmt.strip().upper() == "XML":
        # Format=XML is honoured for errors too.
        assert ctype == "text/xml;charset=utf-8", fields
    assert store_snapshot(f.service.data_dir) == f.baseline, f"state changed by {fields}"
    return fields


def target_of(pairs: list[tuple[str, str]]) -> str:
    return "/?" + urlencode(pairs, quote_via=quote) if pairs else "/"


# ---- unsigned, malformed -------------------------------------------------------------------------


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST"]),
    query=st.lists(st.tuples(param_name, hostile), max_size=12),
    headers=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "Authorization",
                    "x-acs-action",
                    "x-acs-version",
                    "x-acs-date",
                    "x-acs-signature-nonce",
                    "x-acs-content-sha256",
                    "x-acs-accesskey-id",
                    "Content-Type",
                    "Accept",
                    "X-Forwarded-For",
                ]
            ),
            st.one_of(
                header_text,
                st.sampled_from(
                    [
                        "ACS3-HMAC-SHA256",
                        "ACS3-HMAC-SHA256 Credential=,SignedHeaders=,Signature=",
                        "ACS3-HMAC-SM3 Credential=a,SignedHeaders=host,Signature=00",
                        "ACS3-HMAC-SHA256 Credential=LTAI,SignedHeaders=host;host,Signature=ab",
                        "Bearer abc",
                        "application/x-www-form-urlencoded; charset=latin-1",
                        "2014-08-15",
                    ]
                ),
            ),
        ),
        max_size=6,
    ),
    body=st.one_of(
        st.just(b""),
        st.binary(max_size=200),
        st.lists(st.tuples(param_name, hostile), max_size=5).map(
            lambda pairs: urlencode(pairs, quote_via=quote).encode()
        ),
    ),
)
def test_unsigned_and_malformed_requests(
    fuzzed: Fuzzed, method: str, query: list[tuple[str, str]], headers: list[tuple[str, str]], body: bytes
) -> None:
    r = raw_request(fuzzed.service.endpoint, method, target_of(query), headers, body, timeout=15)
    fields = check(fuzzed, r)
    assert r.status >= 400 and fields["Code"] != "InternalError"


# ---- signed, hostile parameters ------------------------------------------------------------------


@st.composite
def business_params(draw: st.DrawFn, action: str) -> list[tuple[str, str]]:
    names = ACTIONS.get(action, ())
    chosen = draw(st.lists(st.sampled_from(names), unique=True)) if names else []
    params: dict[str, str] = {}
    for name in chosen:
        params[name] = draw(hostile)
    for name in draw(st.lists(st.sampled_from(PLUMBING), unique=True, max_size=3)):
        params[name] = draw(st.one_of(hostile, st.just("1234567890")))
    for name in draw(st.lists(param_name, max_size=3)):
        if name not in COMMON:
            params.setdefault(name, draw(hostile))
    # Never a request that may legitimately change the store: see the module docstring.
    if action not in READ_ONLY:
        for key in ("DBInstanceId", "DBInstanceName"):
            if key in params:
                params[key] = draw(st.sampled_from([UNKNOWN, params[key]]))
                if params[key].startswith("pgm-") and params[key] != UNKNOWN:
                    params[key] = UNKNOWN
    if action == "CreateDBInstance" and "postgres" in params.get("Engine", "postgres").lower():
        params["Engine"] = draw(st.sampled_from(["MySQL", "", "Postgres SQL", "PG"]))
    if action in READ_ONLY and draw(st.booleans()):
        key = "DBInstanceId" if action.startswith("DescribeDB") else "DBInstanceName"
        params[key] = "__REAL__"
    return list(params.items())


actions = st.sampled_from([*sorted(ACTIONS), "DescribeRegions", "", "Create\x00"])


@st.composite
def signed_requests(draw: st.DrawFn) -> dict[str, Any]:
    action = draw(actions)
    return {
        "action": action,
        "params": draw(business_params(action)),
        "method": draw(st.sampled_from(["GET", "POST"])),
        "fmt": draw(formats),
        "in_body": draw(st.booleans()),
        "duplicate": draw(st.sampled_from([False, False, False, True])),
        "version": draw(st.sampled_from(["2014-08-15"] * 12 + ["2013-05-28", "", "2014-08-15 "])),
    }


def _real(f: Fuzzed, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, f.instance_id if v == "__REAL__" else v) for k, v in pairs]


def _form(pairs: list[tuple[str, str]]) -> bytes:
    return urlencode(pairs, quote_via=quote).encode()


@FUZZ
@given(req=signed_requests())
def test_v1_signed_requests_with_hostile_parameters(fuzzed: Fuzzed, req: dict[str, Any]) -> None:
    f, svc = fuzzed, fuzzed.service
    params = _real(f, req["params"])
    if req["method"] == "GET":
        req["in_body"] = False
    q = v1_query(
        req["action"],
        dict(params),
        svc.key_id,
        svc.key_secret,
        method=req["method"],
        fmt=req["fmt"],
        version=req["version"] or "x",
    )
    body_names = {k for k, _ in params} if req["in_body"] else set()
    query = [(k, v) for k, v in q.items() if k not in body_names]
    body_pairs = [(k, v) for k, v in q.items() if k in body_names]
    if req["duplicate"] and params:
        query.append(params[0])
    headers = {"content-type": "application/x-www-form-urlencoded"} if body_pairs else {}
    r = raw_request(svc.endpoint, req["method"], target_of(query), headers, _form(body_pairs), timeout=15)
    fields = check(f, r, fmt=req["fmt"])
    if req["duplicate"] and params:
        assert fields["Code"] == "InvalidParameter"


@FUZZ
@given(req=signed_requests())
def test_v3_signed_requests_with_hostile_parameters(fuzzed: Fuzzed, req: dict[str, Any]) -> None:
    f, svc = fuzzed, fuzzed.service
    params = _real(f, req["params"])
    if req["fmt"]:
        params.append(("Format", req["fmt"]))
    body_pairs = params if req["in_body"] and req["method"] == "POST" else []
    query = [] if body_pairs else params
    body = _form(body_pairs)
    target, headers = v3_signed(
        svc.endpoint,
        req["action"].replace("\x00", ""),
        dict(query),
        svc.key_id,
        svc.key_secret,
        method=req["method"],
        body=body,
        content_type="application/x-www-form-urlencoded" if body else None,
        version=req["version"] or "x",
    )
    if req["duplicate"] and query:
        target += "&" + urlencode([query[0]], quote_via=quote)
    r = raw_request(svc.endpoint, req["method"], target, headers, body, timeout=15)
    fields = check(f, r)
    if req["duplicate"] and query:
        assert fields["Code"] == "InvalidParameter"


# ---- one thing broken in an otherwise valid request ----------------------------------------------

V1_BREAKS = (
    "drop",
    "empty",
    "garble",
    "nul",
    "long",
    "unicode",
)


@FUZZ
@given(
    common=st.sampled_from(COMMON),
    how=st.sampled_from(V1_BREAKS),
    junk=header_text,
)
def test_v1_one_broken_common_parameter(fuzzed: Fuzzed, common: str, how: str, junk: str) -> None:
    f, svc = fuzzed, fuzzed.service
    q = v1_query(
        "DescribeCloudMigrationPrecheckResult", {"DBInstanceName": f.instance_id}, svc.key_id, svc.key_secret
    )
    before = dict(q)
    original = q.get(common, "")
    if how == "drop":
        q.pop(common, None)
    elif how == "empty":
        q[common] = ""
    elif how == "garble":
        q[common] = junk if junk != original else junk + "x"
    elif how == "nul":
        q[common] = original[:3] + "\x00" + original[3:]
    elif how == "long":
        q[common] = original + "A" * 5000
    else:
        q[common] = original + "é\u2603"
    r = raw_request(svc.endpoint, "POST", target_of(list(q.items())), timeout=15)
    fields = check(f, r)
    if q != before:  # every common parameter is signed: any change is refused
        assert r.status >= 400 and fields["Code"] != "SignatureNonceUsed"
    else:
        assert r.status == 200


@FUZZ
@given(
    what=st.sampled_from(
        [
            "authorization",
            "x-acs-date",
            "x-acs-signature-nonce",
            "x-acs-content-sha256",
            "x-acs-action",
            "x-acs-version",
            "host",
            "signed-headers",
            "credential",
            "signature",
            "algorithm",
            "body",
            "sts-header",
        ]
    ),
    how=st.sampled_from(["drop", "garble", "long", "duplicate"]),
    junk=header_text,
)
def test_v3_one_broken_header(fuzzed: Fuzzed, what: str, how: str, junk: str) -> None:
    f, svc = fuzzed, fuzzed.service
    target, headers = v3_signed(
        svc.endpoint,
        "DescribeCloudMigrationPrecheckResult",
        {"DBInstanceName": f.instance_id},
        svc.key_id,
        svc.key_secret,
    )
    pairs = list(headers.items())
    body = b""
    auth = headers["Authorization"]
    algorithm, _, rest = auth.partition(" ")
    fields_ = dict(part.split("=", 1) for part in rest.split(","))
    if what in ("signed-headers", "credential", "signature", "algorithm"):
        key = {"signed-headers": "SignedHeaders", "credential": "Credential", "signature": "Signature"}.get(
            what
        )
        if what == "algorithm":
            algorithm = "" if how == "drop" else junk.replace(" ", "") or "ACS3-HMAC-MD5"
        elif how == "drop":
            fields_.pop(key or "", None)
        elif how == "long":
            fields_[key or ""] += "a" * 3000
        elif how == "duplicate":
            fields_[key or ""] += "," + f"{key}={fields_[key or '']}"
        else:
            fields_[key or ""] = junk.replace(",", ";")
        new_auth = f"{algorithm} " + ",".join(f"{k}={v}" for k, v in fields_.items())
        pairs = [(k, new_auth if k == "Authorization" else v) for k, v in pairs]
    elif what == "body":
        body = junk.encode("latin-1") or b"x=1"
    elif what == "sts-header":
        pairs.append(("x-acs-accesskey-id", junk or "other"))
    else:
        name = "Authorization" if what == "authorization" else what
        if how == "drop":
            pairs = [(k, v) for k, v in pairs if k != name]
        elif how == "duplicate":
            pairs.append((name, dict(pairs)[name]))
        elif how == "long":
            pairs = [(k, v + "9" * 3000 if k == name else v) for k, v in pairs]
        else:
            pairs = [(k, junk if k == name else v) for k, v in pairs]
    r = raw_request(svc.endpoint, "POST", target, pairs, body, timeout=15, add_host=what != "host")
    if what == "host" and how in ("drop", "duplicate"):
        # HTTP/1.1 needs exactly one Host: the HTTP parser refuses the request before the app.
        assert r.status == 400 and b"Traceback" not in r.body
        assert store_snapshot(svc.data_dir) == f.baseline
        return
    fields = check(f, r)
    assert r.status >= 400 and fields["Code"] != "SignatureNonceUsed"


# ---- size limits -----------------------------------------------------------------------------------


def test_oversized_url_header_and_body_are_refused_cleanly(fuzzed: Fuzzed) -> None:
    f, svc = fuzzed, fuzzed.service
    # A request line beyond what the HTTP parser takes: refused by it, never a 5xx or a hang.
    huge = "/?" + urlencode([("DBInstanceName", "x" * 70_000)])
    try:
        r = raw_request(svc.endpoint, "POST", huge, timeout=15)
        assert 400 <= r.status < 500 and b"Traceback" not in r.body
    except (ConnectionResetError, http.client.RemoteDisconnected):
        pass  # refused by closing the connection: acceptable for a request line this long
    assert store_snapshot(svc.data_dir) == f.baseline
    assert raw_request(svc.endpoint, "GET", "/healthz", timeout=15).status == 200
    # A body over the limit, signed or not: InvalidParameter (Body), before anything is parsed.
    q = v1_query("DescribeDBInstances", {}, svc.key_id, svc.key_secret)
    r = raw_request(
        svc.endpoint,
        "POST",
        target_of(list(q.items())),
        {"content-type": "application/x-www-form-urlencoded"},
        b"PageSize=" + b"1" * (2 << 20),
        timeout=30,
    )
    fields = check(f, r)
    assert (fields["Code"], r.status) == ("InvalidParameter", 400) and '"Body"' in fields["Message"]
    # Many parameters, each under the limits: an answer, not a crash.
    many = [(f"P{i}", "v") for i in range(3000)]
    q = v1_query("DescribeDBInstances", dict(many), svc.key_id, svc.key_secret)
    body = _form(list(q.items()))
    r = raw_request(
        svc.endpoint, "POST", "/", {"content-type": "application/x-www-form-urlencoded"}, body, timeout=30
    )
    assert check(f, r) and r.status == 200
    # A long but acceptable value in a signed body reaches the parameter checks.
    q = v1_query(
        "DescribeCloudMigrationResult",
        {"DBInstanceName": f.instance_id, "TaskName": "t" * 50_000},
        svc.key_id,
        svc.key_secret,
    )
    r = raw_request(
        svc.endpoint,
        "POST",
        "/",
        {"content-type": "application/x-www-form-urlencoded"},
        _form(list(q.items())),
        timeout=30,
    )
    fields = check(f, r)
    assert (fields["Code"], r.status) == ("InvalidParameter", 400) and '"TaskName"' in fields["Message"]
