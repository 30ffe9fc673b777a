"""The store on PostgreSQL (CLOUDMIG_STORE_URL), with the same checks as the SQLite unit tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from tests.support.pgcluster import SourceCluster, make_base_dir
from tests.unit import test_store as store_checks

from cloudmig.store.db import open_store

CHECKS: list[Callable[[Engine], None]] = [
    store_checks.test_nonces_single_use_and_expire,
    store_checks.test_timestamps_come_back_aware_utc,
    store_checks.test_one_migration_per_instance,
    store_checks.test_leases,
    store_checks.test_events_and_filters,
    store_checks.test_migrations_build_exactly_the_declared_schema,
]


@pytest.fixture(scope="module")
def store_server(pg_base_dir: Path) -> Iterator[SourceCluster]:
    d = make_base_dir("store-", parent=pg_base_dir)
    cluster = SourceCluster.create(d)
    cluster.create_migration_account(
        "cloudmig_store", "store pw", replication=False, createrole=False, monitor=False
    )
    yield cluster
    cluster.destroy()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_store_on_postgresql(store_server: SourceCluster, check: Callable[[Engine], None]) -> None:
    name = f"store_{check.__name__[5:40]}"
    store_server.sql(f'CREATE DATABASE "{name}" OWNER cloudmig_store')
    url = f"postgresql+psycopg://cloudmig_store:store%20pw@127.0.0.1:{store_server.port}/{name}"
    engine = open_store(url)
    try:
        open_store(url)  # upgrading an up-to-date schema is a no-op
        check(engine)
    finally:
        engine.dispose()
