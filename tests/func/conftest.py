"""Fixtures for func tests: real PostgreSQL clusters in a /tmp base directory the PostgreSQL OS user
can traverse. Import helpers from tests.support.pgcluster."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # make `tests.support` importable whatever pytest's rootdir/pythonpath
    sys.path.insert(0, str(_ROOT))

from tests.support.pgcluster import DEFAULT_MAJOR, SourceCluster, make_base_dir, make_settings  # noqa: E402

from cloudmig.instances.provider import LocalInstanceProvider  # noqa: E402
from cloudmig.settings import Settings  # noqa: E402


@pytest.fixture(scope="session")
def pg_base_dir() -> Iterator[Path]:
    """A 0711 directory in /tmp for every cluster of the session (removed at the end)."""
    base = make_base_dir()
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def source_cluster(pg_base_dir: Path) -> Iterator[SourceCluster]:
    """A running PostgreSQL source of DEFAULT_MAJOR on 127.0.0.1:<free port>; destroyed at teardown."""
    cluster = SourceCluster.create(pg_base_dir)
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def cloudmig_settings(pg_base_dir: Path) -> Settings:
    """Settings with fresh data and runtime dirs under the base dir and tiny instances."""
    return make_settings(pg_base_dir)


@pytest.fixture
def provider(cloudmig_settings: Settings) -> Iterator[LocalInstanceProvider]:
    """A LocalInstanceProvider; every instance left under its data dir is destroyed at teardown."""
    prov = LocalInstanceProvider(cloudmig_settings)
    try:
        yield prov
    finally:
        instances = cloudmig_settings.instances_dir
        if instances.is_dir():
            for entry in instances.iterdir():
                version = entry / "pgdata" / "PG_VERSION"
                major = int(version.read_text().strip()) if version.is_file() else DEFAULT_MAJOR
                prov.destroy(entry.name, major)
