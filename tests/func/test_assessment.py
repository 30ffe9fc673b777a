"""The assessment catalogue against real PostgreSQL: one healthy source that passes everything, and
for each sub-check a source or target that makes it fail, asserting the exact report line. The
connection failures (one per cause) are in test_assessment_connect.py, the later cloudmig sections
in test_assessment_sources.py and test_assessment_settings.py."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.assessment import (
    ACCOUNT,
    FENCE_GRANTS_15,
    HEALTHY_SETTINGS,
    MB,
    Target,
    assert_fails,
    assert_warns,
    assess,
    line_of,
    make_source,
    make_target,
    spec_of,
)
from tests.support.pgcluster import (
    DEFAULT_HBA,
    DEFAULT_MAJOR,
    SourceCluster,
    free_port,
    runnable_bin_dir,
)

from cloudmig.pg.compat import MAX_MAJOR
from cloudmig.pg.files import make_dir
from cloudmig.pg.runner import run
from cloudmig.pg.source import Source

pytestmark = pytest.mark.func

HEALTHY_REPORT = """\
[Check rds empty]
Check rds databases: success
[Check source connectivity]
Check ip connectable: success
Check port connectable: success
Check database connectable: success
Check account replication privilege: success
Check account createrole privilege: success
Check account monitor privilege: success
[Check source version]
Check major version consistent: success
[Check source replication config]
Check wal level: success
Check wal senders: success
Check replication slots: success
[Check source glibc version]
Check source glibc version compatible: success
[Check disk size]
Check disk size enough: success
[Check wal keep size]
Check wal keep size large enough: success
[Check spec params]
Check if spec params too large: success
[Check rds user]
Check reserved accounts: success
[Check extensions]
Check extensions supported: success
[Check tablespaces]
Check tablespaces: success
[Check logical replication slots]
Check logical replication slot: success
[Check storage format]
Check block and segment size: success
[Check source role]
Check source is a primary: success
[Check unlogged tables]
Check unlogged tables: success
[Check source settings]
Check settings carried: success
[Check switchover fence]
Check source can be fenced: success
[Check source encryption]
Check connection encrypted: warning(warning:connection to the source is not encrypted)
[Check binaries]
Check server binaries: success
*Migrate check success*
"""


@pytest.fixture(scope="module")
def target(pg_base_dir: Path) -> Iterator[Target]:
    """An empty instance of DEFAULT_MAJOR created by the local provider (never changed by a test)."""
    with make_target(pg_base_dir, "pgmassess") as tgt:
        yield tgt


@pytest.fixture(scope="module")
def healthy(pg_base_dir: Path) -> Iterator[SourceCluster]:
    """A healthy source (the account may fence) with a second database using an extension, plus three
    accounts that each lack one privilege (tests only read it). It has no TLS (a warning): with TLS,
    the settings check would warn that ssl changes from on to off (instances run without TLS)."""
    with make_source(pg_base_dir, HEALTHY_SETTINGS) as cluster:
        for grant in FENCE_GRANTS_15:
            cluster.sql(grant)
        cluster.sql("CREATE DATABASE app")
        cluster.sql("CREATE EXTENSION hstore", dbname="app")
        cluster.sql("CREATE TABLE t (id int PRIMARY KEY, h hstore)", dbname="app")
        cluster.create_migration_account("norepl", replication=False)
        cluster.create_migration_account("nocreaterole", createrole=False)
        cluster.create_migration_account("nomonitor", monitor=False)
        yield cluster


# ---- the healthy source --------------------------------------------------------------------------------


def test_healthy_source_passes_every_check(healthy: SourceCluster, target: Target) -> None:
    _, report = assess(spec_of(healthy), target.spec())
    assert report == HEALTHY_REPORT


def test_assessment_changes_neither_side(healthy: SourceCluster, target: Target) -> None:
    slots_before = healthy.sql("SELECT slot_name FROM pg_replication_slots")
    roles_before = healthy.sql("SELECT rolname FROM pg_roles ORDER BY 1")
    with target.provider.connect_admin(target.instance_id, target.port) as conn:
        target_dbs_before = conn.execute("SELECT datname FROM pg_database ORDER BY 1").fetchall()
    assess(spec_of(healthy), target.spec())
    assert healthy.sql("SELECT slot_name FROM pg_replication_slots") == slots_before == []
    assert healthy.sql("SELECT rolname FROM pg_roles ORDER BY 1") == roles_before
    with target.provider.connect_admin(target.instance_id, target.port) as conn:
        assert conn.execute("SELECT datname FROM pg_database ORDER BY 1").fetchall() == target_dbs_before


# ---- Check rds empty -----------------------------------------------------------------------------------


def test_rds_with_a_database_is_not_empty(pg_base_dir: Path, healthy: SourceCluster) -> None:
    with make_target(pg_base_dir, "pgmassessdb") as tgt:
        tgt.sql("CREATE DATABASE leftover")
        _, report = assess(spec_of(healthy), tgt.spec())
    assert_fails(report, "Check rds databases: error(error:rds not empty, database leftover exists)")


def test_rds_with_a_table_in_postgres_is_not_empty(pg_base_dir: Path, healthy: SourceCluster) -> None:
    with make_target(pg_base_dir, "pgmassesstab") as tgt:
        tgt.sql("CREATE TABLE public.leftover (id int)")
        _, report = assess(spec_of(healthy), tgt.spec())
    assert_fails(report, "Check rds databases: error(error:postgres not empty, check if any table exists)")


# ---- Check source connectivity -------------------------------------------------------------------------


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


def _routed_subnets() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-j", "route", "show"], check=True, capture_output=True, text=True).stdout
    nets = []
    for route in json.loads(out or "[]"):
        dst = route.get("dst", "default")
        if dst != "default":
            nets.append(ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False))
    return [n for n in nets if isinstance(n, ipaddress.IPv4Network)]


@pytest.fixture
def dead_end_address() -> Iterator[str]:
    """An address whose only route is a veth whose peer (in a namespace of our own) is down: a
    connect fails with EHOSTUNREACH and no packet leaves the host. Cleaned up afterwards."""
    if os.geteuid() != 0:
        pytest.skip("creating a network namespace and a veth pair needs root")
    tag = f"{os.getpid() % 100000}"
    netns, host_if, peer_if = f"cmchk{tag}", f"cmh{tag}", f"cmp{tag}"
    used = _routed_subnets()
    subnet = next(
        (
            net
            for third in range(os.getpid() % 200, 256)
            for net in [ipaddress.IPv4Network(f"10.213.{third}.0/24")]
            if not any(net.overlaps(u) for u in used)
        ),
        None,
    )
    if subnet is None:
        pytest.skip("no free 10.213.x.0/24 subnet for the test veth")
    hosts = list(subnet.hosts())
    try:
        try:
            _ip("netns", "add", netns)
            _ip("link", "add", host_if, "type", "veth", "peer", "name", peer_if)
            _ip("link", "set", peer_if, "netns", netns)  # the peer stays down in its namespace
            _ip("addr", "add", f"{hosts[0]}/{subnet.prefixlen}", "dev", host_if)
            _ip("link", "set", host_if, "up")
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = exc.stderr if isinstance(exc, subprocess.CalledProcessError) else exc
            pytest.skip(f"ip netns / veth not permitted here: {detail}")
        dead = str(hosts[1])
        route = subprocess.run(
            ["ip", "route", "get", dead], check=True, capture_output=True, text=True
        ).stdout
        assert f"dev {host_if}" in route, route  # never send anything anywhere else
        yield dead
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)


def test_unreachable_ip(dead_end_address: str, target: Target) -> None:
    source = Source.with_password(dead_end_address, 5432, ACCOUNT, "Unused_Password_1", connect_timeout=5)
    results, report = assess(source, target.spec())
    line = line_of(report, "Check ip connectable")
    # The veth peer is down: no route (or, if the kernel waits for an ARP answer, a timeout).
    assert re.fullmatch(
        rf"Check ip connectable: error\(error:{re.escape(dead_end_address)} is unapproachable:"
        rf" (no route to host|connection timed out) on {re.escape(dead_end_address)}:5432.*\)",
        line,
    ), line
    # Everything that needs the source is one line naming the failure; the list keeps each of them.
    assert line_of(report, "Dependent checks") == (
        "Dependent checks: error(error:skipped, source host is unapproachable"
        " (24 sub-checks not run, they need Check ip connectable))"
    )
    assert "Check port connectable" not in report
    port = next(r for r in results if r.name == "Check port connectable")
    assert (port.message, port.depends_on) == (
        "skipped, source host is unapproachable",
        "Check ip connectable",
    )
    assert report.endswith("*Migrate check failed*\n")


def test_nothing_listening_on_the_port(target: Target) -> None:
    port = free_port()
    source = Source.with_password("127.0.0.1", port, ACCOUNT, "Unused_Password_1")
    _, report = assess(source, target.spec())
    assert line_of(report, "Check ip connectable") == "Check ip connectable: success"
    assert_fails(
        report,
        f"Check port connectable: error(error:{port} is unapproachable: connection refused on 127.0.0.1:{port})",
    )
    assert line_of(report, "Dependent checks") == (
        "Dependent checks: error(error:skipped, source port is unapproachable"
        " (23 sub-checks not run, they need Check port connectable))"
    )


def test_wrong_password(healthy: SourceCluster, target: Target) -> None:
    wrong = "Not_The_Password_42"
    _, report = assess(spec_of(healthy, password=wrong), target.spec())
    assert_fails(
        report,
        f"Check database connectable: error(error:cannot connect to source database by {ACCOUNT}:"
        f' password authentication failed for user "{ACCOUNT}")',
    )
    # Instead of 22 `skipped` lines, one that names the failure they depend on.
    assert report.endswith(
        "Dependent checks: error(error:skipped, cannot connect to source database"
        " (22 sub-checks not run, they need Check database connectable))\n*Migrate check failed*\n"
    )
    assert "Check wal level" not in report
    assert wrong not in report


def test_pg_hba_without_replication_line(pg_base_dir: Path, target: Target) -> None:
    with make_source(pg_base_dir, HEALTHY_SETTINGS) as cluster:
        cluster.set_hba([line for line in DEFAULT_HBA if "replication" not in line])
        _, report = assess(spec_of(cluster), target.spec())
    # The server's reason says it was the replication line.
    assert_fails(
        report,
        f"Check database connectable: error(error:replication connection rejected for {ACCOUNT},"
        f' check pg_hba.conf: no pg_hba.conf entry for replication connection from host "127.0.0.1",'
        f' user "{ACCOUNT}", no encryption)',
    )
    assert (
        line_of(report, "Check account replication privilege")
        == "Check account replication privilege: success"
    )


def test_account_without_replication(healthy: SourceCluster, target: Target) -> None:
    _, report = assess(spec_of(healthy, "norepl"), target.spec())
    assert_fails(
        report, "Check account replication privilege: error(error:norepl has no replication privilege)"
    )
    # Its refused replication connection is not blamed on pg_hba.conf.
    assert line_of(report, "Check database connectable") == (
        "Check database connectable: error(error:skipped, norepl has no replication privilege)"
    )


def test_account_without_createrole(healthy: SourceCluster, target: Target) -> None:
    _, report = assess(spec_of(healthy, "nocreaterole"), target.spec())
    assert_fails(
        report, "Check account createrole privilege: error(error:nocreaterole has no createrole privilege)"
    )


def test_account_not_in_pg_monitor(healthy: SourceCluster, target: Target) -> None:
    _, report = assess(spec_of(healthy, "nomonitor"), target.spec())
    assert_fails(
        report, "Check account monitor privilege: error(error:nomonitor is not a member of pg_monitor)"
    )


# ---- Check source version ------------------------------------------------------------------------------


def test_major_version_differs(pg_base_dir: Path, target: Target) -> None:
    other = DEFAULT_MAJOR + 1 if DEFAULT_MAJOR < MAX_MAJOR else DEFAULT_MAJOR - 1
    runnable_bin_dir(other)
    with make_source(pg_base_dir, HEALTHY_SETTINGS, major=other) as cluster:
        _, report = assess(spec_of(cluster), target.spec())
    assert_fails(
        report,
        f"Check major version consistent: error(error:source major version {other} is not consistent with"
        f" rds major version {DEFAULT_MAJOR})",
    )
    # Everything else about this source is fine: it was gathered from the other server all the same.
    assert line_of(report, "Check wal level") == "Check wal level: success"
    assert line_of(report, "Check extensions supported") == "Check extensions supported: success"


# ---- Check source replication config -------------------------------------------------------------------


def test_wal_level_minimal(pg_base_dir: Path, target: Target) -> None:
    settings = {**HEALTHY_SETTINGS, "wal_level": "minimal", "max_wal_senders": 0}
    with make_source(pg_base_dir, settings) as cluster:
        _, report = assess(spec_of(cluster), target.spec())
    assert_fails(report, "Check wal level: error(error:wal_level is minimal, it must be replica or logical)")
    assert line_of(report, "Check wal senders") == (
        "Check wal senders: error(error:only 0 free wal senders on source, need 2)"
    )


def test_too_few_wal_senders(pg_base_dir: Path, target: Target) -> None:
    with make_source(pg_base_dir, {**HEALTHY_SETTINGS, "max_wal_senders": 1}) as cluster:
        _, report = assess(spec_of(cluster), target.spec())
    assert_fails(report, "Check wal senders: error(error:only 1 free wal senders on source, need 2)")


def test_no_replication_slots(pg_base_dir: Path, target: Target) -> None:
    with make_source(pg_base_dir, {**HEALTHY_SETTINGS, "max_replication_slots": 0}) as cluster:
        _, report = assess(spec_of(cluster), target.spec())
    assert_fails(
        report,
        "Check replication slots: error(error:no free replication slot on source (max_replication_slots=0))",
    )


# ---- Check source glibc version ------------------------------------------------------------------------


def test_glibc_collation_version_differs(pg_base_dir: Path, target: Target) -> None:
    with make_source(pg_base_dir, HEALTHY_SETTINGS) as cluster:
        cluster.sql("UPDATE pg_database SET datcollversion = '0.0' WHERE datname = 'postgres'")
        _, report = assess(spec_of(cluster), target.spec())
    assert_warns(
        report,
        "Check source glibc version compatible: warning(warning:source glibc version is not compatible with rds pg)",
    )


# ---- Check disk size -----------------------------------------------------------------------------------


def _source_mb(cluster: SourceCluster) -> int:
    total = int(cluster.scalar("SELECT sum(pg_database_size(oid)) FROM pg_database"))
    return -(-total // MB)


def test_disk_size_not_enough(healthy: SourceCluster, target: Target) -> None:
    before = _source_mb(healthy)
    _, report = assess(spec_of(healthy), target.spec(storage_gb=0))
    after = _source_mb(healthy)
    line = line_of(report, "Check disk size enough")
    match = re.fullmatch(
        r"Check disk size enough: error\(error:disk size of rds is not enough, source (\d+) MB, rds 0 MB\)",
        line,
    )
    assert match is not None, line
    assert min(before, after) <= int(match.group(1)) <= max(before, after)
    assert report.endswith("*Migrate check failed*\n")


# ---- Check wal keep size -------------------------------------------------------------------------------


def test_wal_keep_size_too_small(pg_base_dir: Path, target: Target) -> None:
    with make_source(pg_base_dir, {"max_slot_wal_keep_size": "64MB"}) as cluster:
        _, report = assess(spec_of(cluster), target.spec())
    assert_fails(
        report,
        "Check wal keep size large enough: error(error:max_slot_wal_keep_size 64 MB is too small, need 1024 MB:"
        " the source would remove WAL the copy still needs and invalidate the migration's slot)",
    )


def test_wal_keep_size_unlimited_is_a_warning(pg_base_dir: Path, target: Target) -> None:
    # max_wal_size 1GB (the default): cloudmig's own watermarks are 4 and 8 times that.
    with make_source(pg_base_dir, {"max_slot_wal_keep_size": -1, "max_wal_size": "1GB"}) as cluster:
        _, report = assess(spec_of(cluster), target.spec())
    assert_warns(
        report,
        "Check wal keep size large enough: warning(warning:max_slot_wal_keep_size is unlimited,"
        " a stalled migration can fill the source disk; cloudmig reports its slot above 4096 MB of"
        " retained WAL and stops the migration and drops the slot above 8192 MB"
        " (settings slot_wal_warning_mb, slot_wal_limit_mb))",
    )


# ---- Check spec params ---------------------------------------------------------------------------------


def test_spec_params_larger_than_the_class(pg_base_dir: Path, target: Target) -> None:
    with make_source(pg_base_dir, {**HEALTHY_SETTINGS, "max_connections": 500}) as cluster:
        _, report = assess(spec_of(cluster), target.spec())
    assert_fails(
        report,
        "Check if spec params too large: error(error:max_connections of source (500) is larger than rds (400))",
    )


# ---- Check rds user ------------------------------------------------------------------------------------


def test_reserved_account_on_source(pg_base_dir: Path, target: Target) -> None:
    with make_source(pg_base_dir, HEALTHY_SETTINGS) as cluster:
        cluster.sql("CREATE ROLE cloudmig_admin NOLOGIN")
        _, report = assess(spec_of(cluster), target.spec())
    assert_fails(
        report, "Check reserved accounts: error(error:reserved account cloudmig_admin exists on source)"
    )


# ---- Check extensions ----------------------------------------------------------------------------------


def test_extension_not_in_the_allow_list(pg_base_dir: Path, target: Target) -> None:
    with make_source(pg_base_dir, HEALTHY_SETTINGS) as cluster:
        cluster.sql("CREATE EXTENSION hstore")
        _, report = assess(spec_of(cluster), target.spec(allow=frozenset()))
    assert_fails(
        report,
        "Check extensions supported: error(error:extension hstore in database postgres is not supported by rds)",
    )


def test_database_the_account_cannot_connect_to_is_a_warning(pg_base_dir: Path, target: Target) -> None:
    with make_source(pg_base_dir, HEALTHY_SETTINGS) as cluster:
        cluster.sql("CREATE DATABASE private")
        cluster.sql("REVOKE CONNECT ON DATABASE private FROM PUBLIC")
        _, report = assess(spec_of(cluster), target.spec())
    assert_warns(
        report,
        f"Check extensions supported: warning(warning:cannot connect to database private by {ACCOUNT},"
        " its extensions are not checked)",
    )


# ---- Check tablespaces, logical slots, storage format --------------------------------------------------


def test_tablespace_on_source(pg_base_dir: Path, target: Target) -> None:
    with make_source(pg_base_dir, HEALTHY_SETTINGS) as cluster:
        location = cluster.root / "ts_fast"
        make_dir(location, user=cluster.user)
        cluster.sql(f"CREATE TABLESPACE fast LOCATION '{location}'")
        _, report = assess(spec_of(cluster), target.spec())
    assert_fails(report, "Check tablespaces: error(error:tablespace fast is not supported)")


def test_logical_replication_slot_is_a_warning(pg_base_dir: Path, target: Target) -> None:
    with make_source(pg_base_dir, {**HEALTHY_SETTINGS, "wal_level": "logical"}) as cluster:
        cluster.sql("SELECT pg_create_logical_replication_slot('sub1', 'test_decoding')")
        _, report = assess(spec_of(cluster), target.spec())
    assert_warns(
        report,
        "Check logical replication slot: warning(warning:logical replication slot sub1 will not be migrated)",
    )


def test_wal_segment_size_differs(pg_base_dir: Path, target: Target) -> None:
    def resize_wal_segments(cluster: SourceCluster) -> None:
        run([cluster.bin_dir / "pg_resetwal", "--wal-segsize=32", "-D", cluster.pgdata], user=cluster.user)

    with make_source(pg_base_dir, HEALTHY_SETTINGS, prepare=resize_wal_segments) as cluster:
        _, report = assess(spec_of(cluster), target.spec())
    assert_fails(
        report,
        "Check block and segment size: error(error:wal_segment_size of source (33554432) differs from rds"
        " (16777216))",
    )
