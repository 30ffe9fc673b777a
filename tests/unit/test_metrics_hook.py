"""The API's metrics hook keeps labels bounded: known actions and error codes only."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cloudmig.api import metrics


def _counts() -> dict[tuple[str, str], float]:
    reg = CollectorRegistry()
    reg.register(metrics.API_REQUESTS)
    out = {}
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            if s.name == "cloudmig_api_requests_total":
                out[(s.labels["action"], s.labels["code"])] = s.value
    return out


def test_labels_are_bounded() -> None:
    before = _counts()
    metrics.observe_api_request("DescribeDBInstances", "Success", 0.01)
    metrics.observe_api_request("DescribeDBInstances", "InvalidDBInstanceName.NotFound", 0.01)
    metrics.observe_api_request("DropAllTables", "Success", 0.01)
    metrics.observe_api_request("-", "SignatureDoesNotMatch", 0.01)
    metrics.observe_api_request("DescribeDBInstances", "Made.Up.Code", 0.01)
    metrics.observe_api_outcome("CreateDBInstance", 0.01)
    metrics.observe_api_outcome("CreateDBInstance:InvalidDBInstanceClass.NotFound", 0.01)
    metrics.observe_api_outcome("-:Throttling", 0.01)
    after = _counts()

    def delta(action: str, code: str) -> float:
        return after.get((action, code), 0) - before.get((action, code), 0)

    assert delta("DescribeDBInstances", "Success") == 1
    assert delta("DescribeDBInstances", "InvalidDBInstanceName.NotFound") == 1
    assert delta("unknown", "Success") == 1
    assert delta("unknown", "SignatureDoesNotMatch") == 1
    assert delta("DescribeDBInstances", "unknown") == 1
    assert delta("CreateDBInstance", "Success") == 1
    assert delta("CreateDBInstance", "InvalidDBInstanceClass.NotFound") == 1
    assert delta("unknown", "Throttling") == 1
    assert ("DropAllTables", "Success") not in after
