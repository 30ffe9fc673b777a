"""TLS to the source: a source that only accepts TLS (hostssl), verified with the right CA, refused
with a wrong one, encrypted but unverified without one; the standby streams over TLS too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from aliyunsdkrds.request.v20140815.CreateCloudMigrationPrecheckTaskRequest import (
    CreateCloudMigrationPrecheckTaskRequest,
)
from aliyunsdkrds.request.v20140815.CreateCloudMigrationTaskRequest import CreateCloudMigrationTaskRequest

from cloudmig.pg.files import atomic_write
from tests.support.flows import (
    MIGRATION_PASSWORD,
    create_instance,
    migration_item,
    raw_items,
    wait_for,
    wait_running,
    wait_streaming,
)
from tests.support.pgcluster import SourceCluster, make_base_dir
from tests.support.tls import Pki, make_pki

pytestmark = pytest.mark.e2e

HOSTSSL_ONLY = (
    "local all all trust",
    "local replication all trust",
    "hostssl all all 127.0.0.1/32 scram-sha-256",
    "hostssl replication all 127.0.0.1/32 scram-sha-256",
)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.fixture
def tls_source(e2e_base: Any, pki: Pki) -> Iterator[SourceCluster]:
    src = SourceCluster.create(make_base_dir("src-", parent=e2e_base), start=False)
    try:
        for name, text in (("server.crt", pki.server_cert_pem), ("server.key", pki.server_key_pem)):
            atomic_write(src.pgdata / name, text, user=src.user, mode=0o600)
        with (src.pgdata / "postgresql.conf").open("a") as conf:
            conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        src.set_hba(HOSTSSL_ONLY, reload=False)
        src.start()
        src.pgbench_init(scale=1)
        src.create_migration_account("migratetest", MIGRATION_PASSWORD)
        src.sql("GRANT pg_read_all_data TO migratetest")
        yield src
    finally:
        src.destroy()


def _source_params(req: Any, instance_id: str, port: int, category: str, **tls: str) -> Any:
    req.set_DBInstanceName(instance_id)
    req.set_SourceIpAddress("127.0.0.1")
    req.set_SourcePort(port)
    req.set_SourceAccount("migratetest")
    req.set_SourcePassword(MIGRATION_PASSWORD)
    req.set_SourceCategory(category)
    for key, value in tls.items():  # extension parameters: the SDK models do not know them
        req.add_query_param(key, value)
    return req


def _precheck_detail(service: Any, instance_id: str, port: int, category: str, **tls: str) -> str:
    from aliyunsdkrds.request.v20140815.DescribeCloudMigrationPrecheckResultRequest import (
        DescribeCloudMigrationPrecheckResultRequest,
    )

    task_id = service.core_call(
        _source_params(CreateCloudMigrationPrecheckTaskRequest(), instance_id, port, category, **tls)
    )["TaskId"]

    def report() -> str | None:
        req = DescribeCloudMigrationPrecheckResultRequest()
        req.set_DBInstanceName(instance_id)
        req.set_PageNumber(1)
        req.set_PageSize(30)
        req.set_TaskId(task_id)
        detail = str(service.core_call(req)["Items"][0]["Detail"])
        return detail if "*Migrate check" in detail else None

    return wait_for(report, 90, interval=0.3, what="precheck report")


def test_verify_full_with_the_right_ca_migrates_over_tls(service, tls_source, pki) -> None:
    client = service.tea()
    instance_id = create_instance(client)
    wait_running(client, instance_id)
    tls = {"SourceSslMode": "verify-full", "SourceSslRootCert": pki.ca_pem}
    detail = _precheck_detail(service, instance_id, tls_source.port, "internet", **tls)
    assert detail.endswith("*Migrate check success*\n"), detail
    assert "Check connection encrypted: success" in detail

    req = _source_params(CreateCloudMigrationTaskRequest(), instance_id, tls_source.port, "internet", **tls)
    task_id = service.core_call(req)["TaskId"]
    wait_streaming(client, instance_id, task_id)
    # The standby's walreceiver streams over TLS with the CA cloudmig wrote for it.
    assert (
        tls_source.scalar(
            "SELECT bool_and(s.ssl) FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)"
            " WHERE r.application_name = 'rds_db_instance'"
        )
        is True
    )
    info = json.loads(migration_item(client, instance_id, task_id).replication_info)
    assert "sslmode=verify-full" in info["Conninfo"] and pki.ca_pem not in info["Conninfo"]
    # The CA travels with the task into the runtime dir, never into a data directory (the source's
    # own server.crt comes along with the physical copy; cloudmig's CA file does not).
    in_data = [p for p in (service.data_dir / "instances").rglob("*.crt") if p.read_text() == pki.ca_pem]
    assert in_data == []
    written = [p.read_text() for p in service.runtime_dir.rglob("root-*.crt")]
    assert written and set(written) == {pki.ca_pem}


def test_wrong_ca_fails_the_assessment_with_the_reason(service, tls_source) -> None:
    client = service.tea()
    instance_id = create_instance(client)
    wait_running(client, instance_id)
    other = make_pki(ca_name="someone else's CA")
    tls = {"SourceSslMode": "verify-full", "SourceSslRootCert": other.ca_pem}
    detail = _precheck_detail(service, instance_id, tls_source.port, "internet", **tls)
    assert detail.endswith("*Migrate check failed*\n"), detail
    assert "certificate verify failed" in detail


def test_require_without_a_ca_migrates_and_warns(service, tls_source) -> None:
    client = service.tea()
    instance_id = create_instance(client)
    wait_running(client, instance_id)
    # internet without a CA: require by default (encrypted, not verified).
    detail = _precheck_detail(service, instance_id, tls_source.port, "internet")
    assert detail.endswith("*Migrate check success*\n"), detail
    assert "Check connection encrypted: warning(warning:source certificate is not verified)" in detail
    req = _source_params(CreateCloudMigrationTaskRequest(), instance_id, tls_source.port, "internet")
    task_id = service.core_call(req)["TaskId"]
    wait_streaming(client, instance_id, task_id)
    item = raw_items(service, instance_id, task_id=task_id)[0]
    assert "sslmode=require" in json.loads(item["ReplicationInfo"])["Conninfo"]


def test_bad_tls_parameters_are_refused(service) -> None:
    client = service.tea()
    instance_id = create_instance(client)
    wait_running(client, instance_id)
    from aliyunsdkcore.acs_exception.exceptions import ServerException

    for tls in (
        {"SourceSslMode": "sometimes"},
        {"SourceSslRootCert": "not a certificate"},
        {"SourceSslMode": "verify-ca"},
    ):
        with pytest.raises(ServerException) as info:
            service.core_call(
                _source_params(
                    CreateCloudMigrationPrecheckTaskRequest(), instance_id, 5432, "internet", **tls
                )
            )
        assert info.value.get_error_code() == "InvalidParameter"
