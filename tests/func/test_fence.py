"""The switchover fence and the quiet proof against a real PostgreSQL 15 source, as the migration
account (not a superuser) with the fence privileges of issue 11."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql
from tests.support.cutover import grant_fence
from tests.support.pgcluster import SourceCluster
from tests.support.writers import APP_PASSWORD, APP_ROLE, prepare_source

from cloudmig.engine.gate import prove_quiet
from cloudmig.pg import activity
from cloudmig.pg import fence as pg_fence

pytestmark = pytest.mark.func

ACCOUNT_PASSWORD = "Fence_Account_1"


@pytest.fixture
def source(source_cluster: SourceCluster) -> SourceCluster:
    source_cluster.create_migration_account("migratetest", ACCOUNT_PASSWORD)
    grant_fence(source_cluster)
    prepare_source(source_cluster)
    return source_cluster


def _account(source: SourceCluster) -> psycopg.Connection[Any]:
    return source.connect_tcp("migratetest", ACCOUNT_PASSWORD)


def _app(source: SourceCluster) -> psycopg.Connection[Any]:
    return source.connect_tcp(APP_ROLE, APP_PASSWORD)


def test_previous_value_is_read_without_pg_file_settings(source: SourceCluster) -> None:
    # pg_file_settings is for superusers; the account reads what postgresql.auto.conf gives.
    source.sql("ALTER SYSTEM SET default_transaction_read_only = off")
    source.sql("SELECT pg_reload_conf()")
    time.sleep(0.3)
    with _account(source) as conn:
        assert pg_fence.auto_conf_value(conn) == "off"
    source.sql("ALTER SYSTEM RESET default_transaction_read_only")
    source.sql("SELECT pg_reload_conf()")
    time.sleep(0.3)
    with _account(source) as conn:
        assert pg_fence.auto_conf_value(conn) is None


def test_fence_up_and_lifted_by_the_account_and_what_beats_it(source: SourceCluster) -> None:
    with _account(source) as conn:
        pg_fence.raise_by_alter_system(conn, lambda: _account(source))
        with _app(source) as app, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            app.execute("INSERT INTO ledger (writer, n, side) VALUES (1, 1, 'x')")
        assert pg_fence.overriding_settings(conn, method_role_settings=False) == []
        # A role's own setting beats ALTER SYSTEM: the fence reports it.
        with source.connect() as su:
            su.execute("SET default_transaction_read_only = off")
            app_role = pgsql.Identifier(APP_ROLE)
            su.execute(pgsql.SQL("ALTER ROLE {} SET default_transaction_read_only = off").format(app_role))
            su.execute("ALTER DATABASE postgres SET default_transaction_read_only = off")
            found = pg_fence.overriding_settings(conn, method_role_settings=False)
            assert f"role {APP_ROLE} sets default_transaction_read_only=off" in found
            assert "database postgres sets default_transaction_read_only=off" in found
            # Against a role-wide fence only the role's own value counts (a database's loses to it).
            assert pg_fence.overriding_settings(conn, method_role_settings=True) == [
                f"role {APP_ROLE} sets default_transaction_read_only=off"
            ]
            su.execute("ALTER DATABASE postgres RESET default_transaction_read_only")
            su.execute(pgsql.SQL("ALTER ROLE {} RESET default_transaction_read_only").format(app_role))
        pg_fence.lift_by_alter_system(conn, lambda: _account(source), None)
    time.sleep(0.3)
    with _app(source) as app:
        app.execute("INSERT INTO ledger (writer, n, side) VALUES (1, 2, 'x')")


def test_ending_sessions_waits_until_they_are_gone(source: SourceCluster) -> None:
    apps = [_app(source) for _ in range(3)]
    with source.connect() as superuser, _account(source) as conn:
        pids = [a.info.backend_pid for a in apps]
        ended, kept = activity.terminate_client_sessions(
            conn, may_end_superusers=False, account="migratetest"
        )
        assert sorted(s.pid for s in ended) == sorted(pids)
        assert [s.pid for s in kept] == [superuser.info.backend_pid]
        left = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone()
        assert left == (0,)
    for a in apps:
        a.close()


def test_sessions_born_read_only_are_not_named_as_writers(source: SourceCluster) -> None:
    """Under a fence, applications reconnect and their INSERTs fail: when something else moves the
    transaction counter in the window, those sessions must not be named as writers."""
    with _account(source) as conn:
        pg_fence.raise_by_alter_system(conn, lambda: _account(source))
        fenced_at = activity.server_epoch(conn)
        halt = threading.Event()

        def failing_writer() -> None:
            with _app(source) as app:
                while not halt.is_set():
                    with contextlib.suppress(psycopg.errors.ReadOnlySqlTransaction):
                        app.execute("INSERT INTO ledger (writer, n, side) VALUES (1, 1, 'x')")
                    time.sleep(0.01)

        def counter_mover() -> None:
            # Takes transaction ids without a writing statement (as a maintenance job may).
            with source.connect() as su:
                while not halt.is_set():
                    su.execute("SELECT pg_current_xact_id()")
                    time.sleep(0.05)

        threads = [threading.Thread(target=failing_writer), threading.Thread(target=counter_mover)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.2)
            named = prove_quiet(conn, window=0.3, attempts=1, read_only_since=fenced_at)
            unexempt = prove_quiet(conn, window=0.3, attempts=1, read_only_since=None)
        finally:
            halt.set()
            for t in threads:
                t.join(10)
        pg_fence.lift_by_alter_system(conn, lambda: _account(source), None)
    assert not named.quiet and not unexempt.quiet
    # (The session moving the counter may be caught holding its id: it is named, rightly.)
    assert APP_ROLE not in {s.user for s in named.writers}, named.why
    # Unless the proof stopped at that session, the application is named as a suspect.
    assert named.writers or f"user {APP_ROLE} on database postgres" in named.why, named.why
    assert APP_ROLE in {s.user for s in unexempt.writers}, unexempt.why


def test_a_session_that_makes_itself_read_write_is_named(source: SourceCluster) -> None:
    """A session started after the fence whose INSERTs succeed (it set its transactions read-write)
    moves the transaction counter with nothing else around that could: it is named."""
    with _account(source) as conn:
        pg_fence.raise_by_alter_system(conn, lambda: _account(source))
        fenced_at = activity.server_epoch(conn)
        halt = threading.Event()

        def read_write_writer() -> None:
            with psycopg.connect(
                host=source.host,
                port=source.port,
                user=APP_ROLE,
                password=APP_PASSWORD,
                dbname="postgres",
                autocommit=True,
                options="-c default_transaction_read_only=off",
            ) as app:
                n = 1000
                while not halt.is_set():
                    n += 1
                    app.execute("INSERT INTO ledger (writer, n, side) VALUES (2, %s, 'x')", (n,))
                    time.sleep(0.02)

        thread = threading.Thread(target=read_write_writer)
        thread.start()
        try:
            time.sleep(0.2)
            proof = prove_quiet(
                conn,
                window=0.3,
                attempts=3,
                read_only_since=fenced_at,
                own=lambda s: activity.is_own(s, "migratetest"),
            )
        finally:
            halt.set()
            thread.join(10)
        pg_fence.lift_by_alter_system(conn, lambda: _account(source), None)
    assert not proof.quiet and proof.windows == 1
    assert {s.user for s in proof.writers} == {APP_ROLE}, proof.why
