"""The later cloudmig sections against real PostgreSQL: a standby as the source, UNLOGGED tables,
the switchover fence on PostgreSQL 15 and 16, and the binaries of the source's major."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.assessment import (
    ACCOUNT,
    FENCE_GRANTS_15,
    HEALTHY_SETTINGS,
    Target,
    assert_fails,
    assert_warns,
    assess,
    line_of,
    make_source,
    make_target,
    spec_of,
)
from tests.support.pgcluster import SourceCluster, free_port, runnable_bin_dir, wait_for

from cloudmig.domain.fence import FenceMethod, choose_fence
from cloudmig.pg import binaries
from cloudmig.pg.conf import conf_quote
from cloudmig.pg.files import atomic_write, make_dir
from cloudmig.pg.privileges import fence_privileges
from cloudmig.pg.runner import run

pytestmark = pytest.mark.func

NO_FENCE_15 = (
    "Check source can be fenced: warning(warning:cloudmig cannot fence the source at switchover; grant:"
    f" GRANT ALTER SYSTEM ON PARAMETER default_transaction_read_only TO {ACCOUNT};"
    f" GRANT EXECUTE ON FUNCTION pg_reload_conf() TO {ACCOUNT};"
    f" GRANT pg_signal_backend TO {ACCOUNT}; (or make the account a superuser); without a fence,"
    " stop the application's writes before the switchover)"
)


@pytest.fixture(scope="module")
def target(pg_base_dir: Path) -> Iterator[Target]:
    with make_target(pg_base_dir, "pgmsources15") as tgt:
        yield tgt


# ---- Check source role ---------------------------------------------------------------------------------


@pytest.fixture
def standby(pg_base_dir: Path) -> Iterator[SourceCluster]:
    """A streaming standby of a test source (pg_basebackup -R), with the migration account on it."""
    with make_source(pg_base_dir, HEALTHY_SETTINGS) as primary:
        copy = dataclasses.replace(primary, root=primary.root.with_name(primary.root.name + "-standby"))
        copy.port = free_port()
        make_dir(copy.root, user=copy.user)
        make_dir(copy.socket_dir, user=copy.user)
        run(
            [
                primary.bin_dir / "pg_basebackup",
                "-D",
                copy.pgdata,
                "-R",
                "-X",
                "stream",
                "-h",
                primary.socket_dir,
                "-p",
                str(primary.port),
                "-U",
                primary.superuser,
            ],
            user=primary.user,
            timeout=120,
        )
        conf = copy.pgdata / "postgresql.conf"
        extra = f"port = {copy.port}\nunix_socket_directories = {conf_quote(str(copy.socket_dir))}\n"
        atomic_write(conf, conf.read_text() + extra, user=copy.user)
        try:
            copy.start()
            wait_for(lambda: copy.scalar("SELECT pg_is_in_recovery()"), what="the standby in recovery")
            wait_for(
                lambda: primary.scalar("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"),
                what="the standby streaming",
            )
            yield copy
        finally:
            copy.destroy()


def test_a_standby_is_refused(standby: SourceCluster, target: Target) -> None:
    _, report = assess(spec_of(standby), target.spec())
    assert_fails(
        report,
        "Check source is a primary: error(error:source is in recovery (a standby); migrate from its primary)",
    )
    # It is a standby, not a broken source: the rest is judged as usual.
    assert line_of(report, "Check database connectable") == "Check database connectable: success"


# ---- Check unlogged tables -----------------------------------------------------------------------------


def test_unlogged_tables_are_listed_per_database(pg_base_dir: Path, target: Target) -> None:
    with make_source(pg_base_dir, HEALTHY_SETTINGS) as cluster:
        cluster.sql("CREATE UNLOGGED TABLE public.cache (k text PRIMARY KEY, v text)")
        cluster.sql("CREATE DATABASE app")
        cluster.sql("CREATE SCHEMA queue", dbname="app")
        cluster.sql("CREATE UNLOGGED TABLE queue.jobs (id bigint)", dbname="app")
        cluster.sql("CREATE TABLE public.logged (id bigint)", dbname="app")
        _, report = assess(spec_of(cluster), target.spec())
    assert_warns(
        report,
        "Check unlogged tables: warning(warning:unlogged table queue.jobs in database app will arrive empty;"
        " unlogged table public.cache in database postgres will arrive empty)",
    )


# ---- Check switchover fence ------------------------------------------------------------------------------


def test_fence_on_15_without_and_with_the_grants(pg_base_dir: Path, target: Target) -> None:
    runnable_bin_dir(15)
    with make_source(pg_base_dir, HEALTHY_SETTINGS, major=15) as cluster:
        source = spec_of(cluster)
        _, report = assess(source, target.spec())  # a target of DEFAULT_MAJOR: only the fence line matters
        assert line_of(report, "Check source can be fenced") == NO_FENCE_15
        with source.connect() as conn:
            assert choose_fence(fence_privileges(conn)) is FenceMethod.NONE
        # Before 16, CREATEROLE (the account has it) and pg_signal_backend fence per role.
        cluster.sql(f"GRANT pg_signal_backend TO {ACCOUNT}")
        with source.connect() as conn:
            assert choose_fence(fence_privileges(conn)) is FenceMethod.ROLE_SETTINGS
        _, report = assess(source, target.spec())
        assert line_of(report, "Check source can be fenced") == "Check source can be fenced: success"
        # The grants the message gives make the server-wide fence available, CREATEROLE or not.
        cluster.create_migration_account(ACCOUNT, createrole=False)
        for grant in FENCE_GRANTS_15:
            cluster.sql(grant)
        with source.connect() as conn:
            assert choose_fence(fence_privileges(conn)) is FenceMethod.ALTER_SYSTEM
        _, report = assess(source, target.spec())
    assert line_of(report, "Check source can be fenced") == "Check source can be fenced: success"


def test_fence_on_16_without_and_with_the_grants(pg_base_dir: Path, target: Target) -> None:
    runnable_bin_dir(16)
    with make_source(pg_base_dir, HEALTHY_SETTINGS, major=16) as cluster:
        source = spec_of(cluster)
        # CREATEROLE no longer covers other roles on 16: per-role fencing is not offered.
        cluster.sql(f"GRANT pg_signal_backend TO {ACCOUNT}")
        with source.connect() as conn:
            privileges = fence_privileges(conn)
        assert (privileges.major, privileges.createrole, privileges.signal_backend) == (16, True, True)
        assert choose_fence(privileges) is FenceMethod.NONE
        _, report = assess(source, target.spec())  # only the fence line matters here
        assert line_of(report, "Check source can be fenced") == NO_FENCE_15
        for grant in FENCE_GRANTS_15:
            cluster.sql(grant)
        with source.connect() as conn:
            assert choose_fence(fence_privileges(conn)) is FenceMethod.ALTER_SYSTEM
        _, report = assess(source, target.spec())
    assert line_of(report, "Check source can be fenced") == "Check source can be fenced: success"


# ---- Check server binaries -------------------------------------------------------------------------------


def test_binaries_of_the_source_major_missing(
    pg_base_dir: Path, target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin16 = runnable_bin_dir(16)
    with make_source(pg_base_dir, HEALTHY_SETTINGS, major=16) as cluster:
        # This host as if it had no PostgreSQL 16 packages: the lookup sees only settings.pg_bin_dirs.
        monkeypatch.setattr(binaries, "candidate_dirs", lambda major, extra_dirs=(): iter(extra_dirs))
        monkeypatch.setattr(binaries, "_cache", {})
        _, report = assess(spec_of(cluster), target.spec())
        assert_fails(
            report,
            "Check server binaries: error(error:PostgreSQL 16 binaries are not installed on this host)",
        )
        # Where pg_bin_dirs names them, they are found.
        spec = dataclasses.replace(target.spec(), pg_bin_dirs=(bin16,))
        _, report = assess(spec_of(cluster), spec)
    assert line_of(report, "Check server binaries") == "Check server binaries: success"


def test_the_assessment_leaves_no_session_behind(pg_base_dir: Path, target: Target) -> None:
    with make_source(pg_base_dir, HEALTHY_SETTINGS) as cluster:
        cluster.sql("CREATE DATABASE app")
        assess(spec_of(cluster), target.spec())
        wait_for(
            lambda: cluster.scalar(
                "SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = 'cloudmig-assessment'"
            ),
            timeout=10,
            what="the assessment's sessions to end",
        )
