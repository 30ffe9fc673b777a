"""Connecting to the source, against real PostgreSQL: each cause of a failed connection gets its own
message with the server's reason (wrong password, closed port and a missing replication line are in
test_assessment.py), and Check connection encrypted reads the assessment's own session."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.assessment import (
    ACCOUNT,
    HEALTHY_SETTINGS,
    Pki,
    Target,
    assert_fails,
    assert_warns,
    assess,
    line_of,
    make_pki,
    make_source,
    make_target,
    spec_of,
    ssl_settings,
)
from tests.support.pgcluster import SourceCluster, make_base_dir, os_user_for_tests, runnable_bin_dir

from cloudmig.pg.source import Source, SourceTls

pytestmark = pytest.mark.func

COLLAPSED_AFTER_LOGIN = (
    "Dependent checks: error(error:skipped, cannot connect to source database"
    " (22 sub-checks not run, they need Check database connectable))"
)


@pytest.fixture(scope="module")
def target(pg_base_dir: Path) -> Iterator[Target]:
    with make_target(pg_base_dir, "pgmconnect15") as tgt:
        yield tgt


@pytest.fixture(scope="module")
def pki(pg_base_dir: Path) -> Pki:
    return make_pki(make_base_dir("pki-", parent=pg_base_dir), owner=os_user_for_tests())


@pytest.fixture(scope="module")
def tls_source(pg_base_dir: Path, pki: Pki) -> Iterator[SourceCluster]:
    """A source with ssl=on (a certificate for 127.0.0.1 signed by the test CA)."""
    with make_source(pg_base_dir, {**HEALTHY_SETTINGS, **ssl_settings(pki)}) as cluster:
        yield cluster


def login_line(report: str) -> str:
    assert COLLAPSED_AFTER_LOGIN in report, report
    return line_of(report, "Check database connectable")


def test_no_pg_hba_entry_for_the_database(pg_base_dir: Path, target: Target) -> None:
    with make_source(pg_base_dir, HEALTHY_SETTINGS) as cluster:
        cluster.set_hba(["local all all trust", "host replication all 127.0.0.1/32 scram-sha-256"])
        _, report = assess(spec_of(cluster), target.spec())
    assert_fails(
        report,
        f"Check database connectable: error(error:cannot connect to source database by {ACCOUNT}:"
        f' no pg_hba.conf entry for host "127.0.0.1", user "{ACCOUNT}", database "postgres", no encryption)',
    )
    assert COLLAPSED_AFTER_LOGIN in report


def test_database_does_not_exist(pg_base_dir: Path, target: Target) -> None:
    with make_source(pg_base_dir, HEALTHY_SETTINGS) as cluster:
        cluster.sql("DROP DATABASE postgres", dbname="template1")
        # Without postgres the login falls back to template1 ...
        _, report = assess(spec_of(cluster), target.spec())
        assert line_of(report, "Check database connectable") == "Check database connectable: success"
        # ... and when that is closed too, both reasons are given.
        cluster.sql("REVOKE CONNECT ON DATABASE template1 FROM PUBLIC", dbname="template1")
        _, report = assess(spec_of(cluster), target.spec())
    assert_fails(
        report,
        f"Check database connectable: error(error:cannot connect to source database by {ACCOUNT}:"
        ' database "postgres" does not exist;'
        ' in template1: permission denied for database "template1")',
    )


def test_an_account_with_a_connection_limit(pg_base_dir: Path, target: Target) -> None:
    """The assessment enters the other databases (and tries the replication connection) beside its
    login session; under a CONNECTION LIMIT some sessions are refused, and each is made again alone
    (as it was made before they ran side by side)."""
    refusal = f'too many connections for role "{ACCOUNT}"'
    with make_source(pg_base_dir, HEALTHY_SETTINGS) as cluster:
        for name in ("app1", "app2", "app3"):
            cluster.sql(f"CREATE DATABASE {name}")
        cluster.sql(f"ALTER ROLE {ACCOUNT} CONNECTION LIMIT 2")
        _, two = assess(spec_of(cluster), target.spec())
        refused_at_two = cluster.log_text().count(refusal)
        # One: the login session holds it, and only the replication connection gets in beside it.
        cluster.sql(f"ALTER ROLE {ACCOUNT} CONNECTION LIMIT 1")
        _, one = assess(spec_of(cluster), target.spec())
        refused_at_one = cluster.log_text().count(refusal) - refused_at_two
    assert refused_at_two > 0 and refused_at_one > 0  # attempts beside the login were refused
    # With two, every database was entered: nothing is left unchecked for want of a connection.
    assert "cannot connect" not in two, two
    assert line_of(two, "Check extensions supported") == "Check extensions supported: success"
    assert line_of(two, "Check unlogged tables") == "Check unlogged tables: success"
    assert line_of(two, "Check database connectable") == "Check database connectable: success"
    assert line_of(one, "Check database connectable") == "Check database connectable: success"
    assert line_of(one, "Check extensions supported").startswith(
        f"Check extensions supported: warning(warning:cannot connect to database app1 by {ACCOUNT}"
    ), one


def test_an_account_limited_to_one_connection_on_postgresql_11(pg_base_dir: Path) -> None:
    """Before PostgreSQL 12 the replication connection counts against the account's CONNECTION
    LIMIT: refused beside the login session, it is tried again once the session has closed."""
    runnable_bin_dir(11)
    refusal = f'too many connections for role "{ACCOUNT}"'
    with (
        make_target(pg_base_dir, "pgmconnect11", major=11) as target11,
        make_source(pg_base_dir, {"max_connections": 100}, major=11) as cluster,
    ):
        cluster.sql(f"ALTER ROLE {ACCOUNT} CONNECTION LIMIT 1")
        _, report = assess(spec_of(cluster), target11.spec())
        refused = cluster.log_text().count(refusal)
    assert refused > 0  # something beside the login session was refused
    assert line_of(report, "Check database connectable") == "Check database connectable: success"


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (a hung server or a black hole
    behind a proxy): the TCP checks pass and the login times out."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def test_login_timed_out(target: Target) -> None:
    with silent_listener() as port:
        source = Source.with_password("127.0.0.1", port, ACCOUNT, "Unused_Password_1", connect_timeout=2)
        _, report = assess(source, target.spec())
    assert line_of(report, "Check port connectable") == "Check port connectable: success"
    assert_fails(
        report,
        f"Check database connectable: error(error:cannot connect to source database by {ACCOUNT}:"
        f" connection timed out on 127.0.0.1:{port})",
    )
    assert COLLAPSED_AFTER_LOGIN in report


def test_source_requires_ssl(pg_base_dir: Path, pki: Pki, target: Target) -> None:
    with make_source(pg_base_dir, {**HEALTHY_SETTINGS, **ssl_settings(pki)}) as cluster:
        cluster.set_hba(
            [
                "local all all trust",
                "hostssl all all 127.0.0.1/32 scram-sha-256",
                "hostssl replication all 127.0.0.1/32 scram-sha-256",
            ]
        )
        _, report = assess(spec_of(cluster, tls=SourceTls("disable")), target.spec())
    assert_fails(
        report,
        f"Check database connectable: error(error:cannot connect to source database by {ACCOUNT}:"
        f' no pg_hba.conf entry for host "127.0.0.1", user "{ACCOUNT}", database "postgres", no encryption'
        " (the source may accept SSL connections only; sslmode is disable))",
    )


def test_ssl_required_but_the_source_has_none(pg_base_dir: Path, target: Target) -> None:
    with make_source(pg_base_dir, HEALTHY_SETTINGS) as cluster:
        _, report = assess(spec_of(cluster, tls=SourceTls("require")), target.spec())
    assert_fails(
        report,
        f"Check database connectable: error(error:cannot connect to source database by {ACCOUNT}:"
        " server does not support SSL, but SSL was required)",
    )


def test_certificate_verify_failed(pg_base_dir: Path, tls_source: SourceCluster, target: Target) -> None:
    other_ca = make_pki(make_base_dir("pki-", parent=pg_base_dir)).ca_cert
    tls = SourceTls("verify-full", root_cert=other_ca)
    _, report = assess(spec_of(tls_source, tls=tls, category="internet"), target.spec())
    line = login_line(report)
    assert line.startswith(
        f"Check database connectable: error(error:cannot connect to source database by {ACCOUNT}:"
    )
    assert "certificate verify failed" in line, line


# ---- Check connection encrypted ------------------------------------------------------------------------


def test_connection_not_encrypted(pg_base_dir: Path, target: Target) -> None:
    with make_source(pg_base_dir, HEALTHY_SETTINGS) as cluster:
        _, report = assess(spec_of(cluster), target.spec())
    assert_warns(
        report, "Check connection encrypted: warning(warning:connection to the source is not encrypted)"
    )


def test_encrypted_connection(tls_source: SourceCluster, target: Target) -> None:
    _, report = assess(spec_of(tls_source), target.spec())  # sslmode prefer
    assert line_of(report, "Check connection encrypted") == "Check connection encrypted: success"


def test_encrypted_but_unverified_over_the_internet(tls_source: SourceCluster, target: Target) -> None:
    _, report = assess(spec_of(tls_source, tls=SourceTls("require"), category="internet"), target.spec())
    assert_warns(report, "Check connection encrypted: warning(warning:source certificate is not verified)")


def test_verified_over_the_internet(tls_source: SourceCluster, pki: Pki, target: Target) -> None:
    tls = SourceTls("verify-full", root_cert=pki.ca_cert)
    _, report = assess(spec_of(tls_source, tls=tls, category="internet"), target.spec())
    assert line_of(report, "Check database connectable") == "Check database connectable: success"
    assert line_of(report, "Check connection encrypted") == "Check connection encrypted: success"
