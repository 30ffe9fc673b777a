"""/metrics during a real migration, parsed with prometheus-client's own parser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alibabacloud_rds20140815 import models as rds

from tests.support.flows import create_instance, create_migration, migration_item, wait_for, wait_running
from tests.support.pgcluster import make_base_dir
from tests.support.scrape import Samples, scrape, value
from tests.support.service import Service

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def metrics_service(e2e_base: Path) -> Iterator[Service]:
    d = make_base_dir("metrics-svc-", parent=e2e_base)
    svc = Service(
        d, extra_env={"CLOUDMIG_BASEBACKUP_MAX_RATE_KB": "3072", "CLOUDMIG_COPY_COMPRESSION": "none"}
    ).start()
    yield svc
    svc.destroy()


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(lbl) for (n, lbl) in samples if n == name]


def test_metrics_follow_a_migration(metrics_service: Service, make_source: Any) -> None:
    svc = metrics_service
    client = svc.tea()
    source = make_source(scale=1)
    instance_id = create_instance(client)
    wait_running(client, instance_id)
    samples, types = scrape(svc)
    assert value(samples, "cloudmig_store_up") == 1
    assert value(samples, "cloudmig_instances", status="Running") == 1
    assert types["cloudmig_task_stage"] == "gauge"

    task_id = create_migration(client, instance_id, source).task_id

    # During the (throttled) full copy: the stage, and bytes done below bytes total.
    def copying() -> Samples | None:
        s, _ = scrape(svc)
        done = value(s, "cloudmig_basebackup_bytes_done", instance=instance_id)
        total = value(s, "cloudmig_basebackup_bytes_total", instance=instance_id)
        if value(s, "cloudmig_task_stage", instance=instance_id, stage="basebackup") == 1 and done and total:
            return s if 0 < done < total else None
        return None

    s = wait_for(copying, 90, interval=0.3, what="a scrape during the full copy")
    assert value(s, "cloudmig_task_stage", instance=instance_id, stage="increment") == 0
    assert value(s, "cloudmig_task_status", instance=instance_id, status="running") == 1
    assert value(s, "cloudmig_task_id", instance=instance_id) == task_id
    assert value(s, "cloudmig_wal_receiver_up", instance=instance_id) == 0

    # Streaming: lag in bytes and seconds, the WAL receiver up, the copy complete.
    def streaming() -> Samples | None:
        s, _ = scrape(svc)
        ok = value(s, "cloudmig_replication_state", instance=instance_id, state="streaming") == 1
        return (
            s
            if ok and value(s, "cloudmig_replication_lag_seconds", instance=instance_id) is not None
            else None
        )

    s = wait_for(streaming, 180, interval=0.5, what="streaming in /metrics")
    assert value(s, "cloudmig_task_stage", instance=instance_id, stage="increment") == 1
    assert value(s, "cloudmig_wal_receiver_up", instance=instance_id) == 1
    lag = value(s, "cloudmig_replication_lag_bytes", instance=instance_id)
    assert lag is not None and lag >= 0
    done = value(s, "cloudmig_basebackup_bytes_done", instance=instance_id)
    assert (
        done is not None and done == value(s, "cloudmig_basebackup_bytes_total", instance=instance_id) > 1e6
    )

    # Switch over: the duration is exported, the receiver is gone, the stage is success.
    client.activate_migration_target_instance(
        rds.ActivateMigrationTargetInstanceRequest(dbinstance_name=instance_id, switch_time_mode="0")
    )
    wait_for(
        lambda: migration_item(client, instance_id, task_id).migrate_stage == "success", 120, what="success"
    )
    s, _ = scrape(svc)
    assert value(s, "cloudmig_task_stage", instance=instance_id, stage="success") == 1
    assert value(s, "cloudmig_task_status", instance=instance_id, status="succeeded") == 1
    assert value(s, "cloudmig_replication_state", instance=instance_id, state="finish") == 1
    assert value(s, "cloudmig_wal_receiver_up", instance=instance_id) == 0
    assert value(s, "cloudmig_replication_lag_bytes", instance=instance_id) is None
    seconds = value(s, "cloudmig_switchover_duration_seconds", instance=instance_id)
    assert seconds is not None and 0 < seconds < 120

    # Labels stay bounded: instances, the fixed stage/status/state names, nothing per task or request.
    for name in ("cloudmig_task_stage", "cloudmig_replication_lag_bytes", "cloudmig_task_id"):
        for labels in series(s, name):
            assert set(labels) <= {"instance", "stage", "status", "state"}


def test_api_requests_are_counted_by_action_and_code(metrics_service: Service) -> None:
    svc = metrics_service
    client = svc.tea()
    before, _ = scrape(svc)
    client.describe_dbinstances(rds.DescribeDBInstancesRequest(region_id="cn-hangzhou"))
    client.describe_dbinstances(rds.DescribeDBInstancesRequest(region_id="cn-hangzhou"))
    with pytest.raises(Exception, match=r"InvalidDBInstanceName\.NotFound"):
        client.describe_dbinstance_attribute(
            rds.DescribeDBInstanceAttributeRequest(dbinstance_id="pgm-aaaaaaaaaaaaaaaa")
        )
    with pytest.raises(Exception, match=r"InvalidAccessKeyId\.NotFound"):
        svc.tea(key_id="LTAI-not-a-key").describe_dbinstances(
            rds.DescribeDBInstancesRequest(region_id="cn-hangzhou")
        )
    after, types = scrape(svc)
    assert types["cloudmig_api_requests"] == "counter"
    assert types["cloudmig_api_request_duration_seconds"] == "histogram"

    def delta(**labels: str) -> float:
        name = "cloudmig_api_requests_total"
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    assert delta(action="DescribeDBInstances", code="Success") == 2
    assert delta(action="DescribeDBInstanceAttribute", code="InvalidDBInstanceName.NotFound") == 1
    # Before the signature is checked the action is not trusted: it is counted as unknown.
    assert delta(action="unknown", code="InvalidAccessKeyId.NotFound") == 1
    count = value(
        after, "cloudmig_api_request_duration_seconds_count", action="DescribeDBInstances", code="Success"
    )
    assert count is not None and count >= 2
    actions = {lbl["action"] for lbl in series(after, "cloudmig_api_requests_total")}
    import cloudmig.api.app  # noqa: F401  (registers every action)
    from cloudmig.api.actions import REGISTRY

    assert actions <= set(REGISTRY) | {"unknown"}


def test_metrics_and_console_can_be_turned_off(e2e_base: Path) -> None:
    d = make_base_dir("metrics-off-", parent=e2e_base)
    svc = Service(
        d, extra_env={"CLOUDMIG_METRICS_ENABLED": "false", "CLOUDMIG_CONSOLE_ENABLED": "false"}
    ).start()
    try:
        assert httpx.get(f"http://{svc.endpoint}/metrics").status_code == 404
        assert httpx.get(f"http://{svc.endpoint}/console/login").status_code == 404
        assert httpx.get(f"http://{svc.endpoint}/healthz").status_code == 200
    finally:
        svc.destroy()
