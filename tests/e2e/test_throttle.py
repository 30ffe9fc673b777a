"""Throttling: a per-access-key request rate, answered so that the SDKs understand it.

The service runs with a small rate (CLOUDMIG_THROTTLE_RATE_PER_SECOND=2, burst 3); the default is
generous enough that no other test meets it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alibabacloud_rds20140815 import models as rds
from alibabacloud_tea_openapi import exceptions as tea_exceptions
from darabonba.policy.retry import RetryOptions

from tests.support.pgcluster import make_base_dir
from tests.support.sdk import FLAVOURS, RecordingProxy, Tea, flavour, store_snapshot
from tests.support.service import Service

pytestmark = pytest.mark.e2e

RATE, BURST = 2, 3


@pytest.fixture(scope="module")
def slow_service(e2e_base: Path) -> Iterator[Service]:
    d = make_base_dir("svc-", parent=e2e_base)
    svc = Service(
        d,
        extra_env={
            "CLOUDMIG_THROTTLE_RATE_PER_SECOND": str(RATE),
            "CLOUDMIG_THROTTLE_BURST": str(BURST),
        },
    ).start()
    yield svc
    svc.stop()


def refill() -> None:
    """Wait until every bucket is full again."""
    time.sleep(BURST / RATE + 0.2)


@pytest.mark.parametrize("name", FLAVOURS)
def test_over_the_rate_is_throttling_with_retry_after(slow_service: Service, name: str) -> None:
    svc = slow_service
    f = flavour(name, svc.endpoint, svc.key_id, svc.key_secret)
    refill()
    for _ in range(BURST):
        f.call("DescribeDBInstances", {"PageSize": 10})
    before = store_snapshot(svc.data_dir)
    err = f.error("DescribeDBInstances", {"PageSize": 10})
    assert (err.code, err.status) == ("Throttling", 400)
    assert "Request was denied due to request throttling." in err.message
    assert store_snapshot(svc.data_dir) == before
    if name != "core":
        # The tea SDK raises its ThrottlingException, with the wait the service asked for (ms).
        assert isinstance(err.exc, tea_exceptions.ThrottlingException)
        retry_after = err.exc.retry_after  # type: ignore[attr-defined]
        assert 0 < retry_after <= 1000 / RATE
        time.sleep(retry_after / 1000)
    else:
        time.sleep(1 / RATE)
    # Once the wait is over, the key may call again.
    assert f.call("DescribeDBInstances", {"PageSize": 10}).body["RequestId"]


def test_each_key_has_its_own_rate(slow_service: Service) -> None:
    svc = slow_service
    other = json.loads(svc.cli("keys", "create", "--json").stdout)
    mine = flavour("tea_v3", svc.endpoint, svc.key_id, svc.key_secret)
    theirs = flavour("core", svc.endpoint, other["AccessKeyId"], other["AccessKeySecret"])
    refill()
    for _ in range(BURST):
        mine.call("DescribeDBInstances", {})
    assert mine.error("DescribeDBInstances", {}).code == "Throttling"
    for _ in range(BURST):
        assert theirs.call("DescribeDBInstances", {}).body["RequestId"]
    # Requests that fail authentication spend no one's budget (a forged one naming my key).
    forged = flavour("tea_v3", svc.endpoint, svc.key_id, "not-the-secret")
    refill()
    for _ in range(BURST + 2):
        assert forged.error("DescribeDBInstances", {}).code == "SignatureDoesNotMatch"
    for _ in range(BURST):
        assert mine.call("DescribeDBInstances", {}).body["RequestId"]


def test_tea_sdk_retry_policy_waits_as_told_and_succeeds(slow_service: Service) -> None:
    svc = slow_service
    proxy = RecordingProxy(svc.endpoint).start()
    try:
        f = flavour("tea_v3", proxy.endpoint, svc.key_id, svc.key_secret)
        assert isinstance(f, Tea)
        # A retry policy on ThrottlingException: the SDK sleeps `retry_after` before each retry.
        client = f.client(
            RetryOptions(
                {
                    "retryable": True,
                    "retryCondition": [{"maxAttempts": 10, "exception": ["ThrottlingException"]}],
                }
            )
        )
        refill()
        started = time.monotonic()
        calls = BURST + 4
        for _ in range(calls):
            assert client.describe_dbinstances(rds.DescribeDBInstancesRequest()).body.request_id
        elapsed = time.monotonic() - started
    finally:
        proxy.stop()
    throttled = [e for e in proxy.all() if e.status == 400]
    assert throttled, "the rate was never reached"
    assert all(json.loads(e.response_body)["Code"] == "Throttling" for e in throttled)
    assert all(int(dict(e.response_headers)["x-acs-retry-after"]) > 0 for e in throttled)
    assert sum(1 for e in proxy.all() if e.status == 200) == calls
    assert elapsed >= (calls - BURST) / RATE * 0.8
