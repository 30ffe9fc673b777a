"""Fixtures for the e2e tier: a real service process, real source clusters."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.faults import can_mount_tmpfs, tmpfs
from tests.support.flows import MIGRATION_PASSWORD
from tests.support.pgcluster import SourceCluster, make_base_dir
from tests.support.service import Service


@pytest.fixture(scope="session")
def e2e_base() -> Iterator[Path]:
    # The postgres OS user must traverse it (pytest's own tmp base is 0700 root).
    base = make_base_dir("cloudmig-e2e-")
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def service(e2e_base: Path) -> Iterator[Service]:
    svc = Service(make_base_dir("svc-", parent=e2e_base)).start()
    yield svc
    svc.destroy()


@pytest.fixture
def fresh_service(e2e_base: Path) -> Iterator[Service]:
    svc = Service(make_base_dir("svc-", parent=e2e_base), extra_env={"CLOUDMIG_LEASE_SECONDS": "5"})
    yield svc
    svc.destroy()


@pytest.fixture
def make_source(e2e_base: Path) -> Iterator[Callable[..., SourceCluster]]:
    made: list[SourceCluster] = []

    def make(scale: int = 1, password: str = MIGRATION_PASSWORD, **settings: str) -> SourceCluster:
        src = SourceCluster.create(make_base_dir("src-", parent=e2e_base), settings=settings)
        made.append(src)
        src.pgbench_init(scale=scale)
        src.create_migration_account("migratetest", password)
        # Lets the tests read the copied tables on the target with the source's own account.
        src.sql("GRANT pg_read_all_data TO migratetest")
        return src

    yield make
    for s in made:
        s.destroy()


@pytest.fixture
def small_disk_service(e2e_base: Path, request: pytest.FixtureRequest) -> Iterator[Service]:
    """A service whose instances dir is a small tmpfs: `request.param` is (its size, the storage
    reserve), in MB."""
    if not can_mount_tmpfs(e2e_base):
        pytest.skip("mounting a tmpfs is not permitted here")
    size_mb, reserve_mb = request.param
    svc = Service(
        make_base_dir("svc-", parent=e2e_base),
        extra_env={
            "CLOUDMIG_STORAGE_RESERVE_MB": str(reserve_mb),
            "CLOUDMIG_STORAGE_CHECK_SECONDS": "1",
            "CLOUDMIG_LEASE_SECONDS": "5",
        },
    )
    svc.data_dir.mkdir(parents=True)
    os.chmod(svc.data_dir, 0o711)
    with tmpfs(svc.data_dir / "instances", size_mb):
        try:
            yield svc
        finally:
            svc.destroy()
