"""The pg layer against real PostgreSQL: binaries, runner, ctl, conf, passfile, sql, probes."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest
from tests.support.pgcluster import (
    DEFAULT_MAJOR,
    TRICKY_PASSWORD,
    SourceCluster,
    free_port,
    os_user_for_tests,
    runnable_bin_dir,
)

from cloudmig.pg import ctl, probes
from cloudmig.pg.binaries import PgBinariesNotFound, find_bin_dir, server_major
from cloudmig.pg.conf import ManagedConf, apply_managed_conf
from cloudmig.pg.files import make_dir
from cloudmig.pg.passfile import write_passfile
from cloudmig.pg.runner import PgCommandError, run, spawn
from cloudmig.pg.sql import connect_replication, connect_socket, connect_source

pytestmark = pytest.mark.func


def test_find_bin_dir_of_the_default_major() -> None:
    bin_dir = find_bin_dir(DEFAULT_MAJOR)
    assert (bin_dir / "postgres").is_file()
    assert server_major(bin_dir) == DEFAULT_MAJOR
    assert find_bin_dir(DEFAULT_MAJOR, [Path("/nonexistent/bin")]) == bin_dir


def test_find_bin_dir_unknown_major() -> None:
    with pytest.raises(PgBinariesNotFound, match="PostgreSQL 99"):
        find_bin_dir(99)


def test_run_raises_with_command_and_stderr() -> None:
    bin_dir = find_bin_dir(DEFAULT_MAJOR)
    with pytest.raises(PgCommandError) as info:
        run([bin_dir / "pg_ctl", "status", "-D", "/nonexistent/pgdata"], user=os_user_for_tests())
    assert info.value.command == "pg_ctl"
    assert info.value.returncode == 4
    assert "nonexistent" in info.value.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_run_as_pg_user_with_minimal_env(monkeypatch: pytest.MonkeyPatch) -> None:
    user = os_user_for_tests()
    assert user is not None
    monkeypatch.setenv("PGPASSWORD", "leak")
    out = run(["/usr/bin/env"], user=user).stdout
    assert "PGPASSWORD" not in out
    assert f"HOME={user.home}" in out
    assert run(["/usr/bin/id", "-u"], user=user).stdout.strip() == str(user.uid)
    assert run(["/usr/bin/id", "-G"], user=user).stdout.strip() == str(user.gid)  # no extra groups


def test_spawned_child_dies_with_its_thread() -> None:
    holder: dict[str, object] = {}

    def worker() -> None:
        proc = spawn(["/bin/sleep", "60"], user=os_user_for_tests())
        holder["proc"] = proc

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    proc = holder["proc"]
    assert isinstance(proc, subprocess.Popen)
    assert proc.wait(timeout=10) == -9  # SIGKILL from PR_SET_PDEATHSIG


def _managed(tmp: Path, port: int, **kw: object) -> ManagedConf:
    return ManagedConf(
        port=port,
        listen_addresses="127.0.0.1",
        socket_dir=tmp / "sock",
        hba_file=tmp / "conf" / "pg_hba.conf",
        spec_params={"max_connections": 30},
        shared_buffers=str(kw.get("shared_buffers", "16MB")),
    )


def test_ctl_lifecycle_is_idempotent(pg_base_dir: Path) -> None:
    user = os_user_for_tests()
    bin_dir = find_bin_dir(DEFAULT_MAJOR)
    tmp = Path(tempfile.mkdtemp(prefix="ctl-", dir=pg_base_dir))
    make_dir(tmp, user=user)
    pgdata, sock = tmp / "pgdata", tmp / "sock"
    make_dir(pgdata, user=user)
    make_dir(sock, user=user)
    port = free_port()
    try:
        assert not ctl.is_running(bin_dir, pgdata, user=user)  # empty dir
        ctl.initdb(bin_dir, pgdata, user=user, superuser="cloudmig_admin")
        apply_managed_conf(pgdata, _managed(tmp, port), user=user)
        logfile = tmp / "postgres.log"
        ctl.stop(bin_dir, pgdata, user=user)  # not running: no error
        ctl.start(bin_dir, pgdata, user=user, logfile=logfile)
        ctl.start(bin_dir, pgdata, user=user, logfile=logfile)  # already running: no error
        assert ctl.is_running(bin_dir, pgdata, user=user)
        with connect_socket(sock, port, "cloudmig_admin") as conn:
            assert conn.execute("SHOW max_connections").fetchone() == ("30",)
            assert conn.execute("SHOW port").fetchone() == (str(port),)
            assert not probes.is_in_recovery(conn)
            assert probes.timeline_id(conn) == 1
        ctl.stop(bin_dir, pgdata, user=user)
        assert not ctl.is_running(bin_dir, pgdata, user=user)
        ctl.stop(bin_dir, pgdata, user=user)
        # A broken setting: the error carries the server log's complaint.
        apply_managed_conf(pgdata, _managed(tmp, port, shared_buffers="lots"), user=user)
        with pytest.raises(PgCommandError) as info:
            ctl.start(bin_dir, pgdata, user=user, logfile=logfile, timeout=20)
        assert "shared_buffers" in info.value.stderr
        assert not ctl.is_running(bin_dir, pgdata, user=user)
    finally:
        ctl.stop(bin_dir, pgdata, user=user, mode="immediate")
        shutil.rmtree(tmp, ignore_errors=True)


def test_tricky_password_over_tcp_and_through_a_passfile(
    source_cluster: SourceCluster, pg_base_dir: Path
) -> None:
    src = source_cluster
    src.create_migration_account("mig user", password=TRICKY_PASSWORD)
    with src.connect_tcp("mig user", TRICKY_PASSWORD) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("mig user",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        src.connect_tcp("mig user", TRICKY_PASSWORD + "x")
    # libpq itself reads the passfile cloudmig writes.
    passfile = Path(tempfile.mkdtemp(prefix="pf-", dir=pg_base_dir)) / "pass" / "pgpass"
    write_passfile(
        passfile, host=src.host, port=src.port, user="mig user", password=TRICKY_PASSWORD, owner=None
    )
    assert (passfile.stat().st_mode & 0o777) == 0o600
    assert (passfile.parent.stat().st_mode & 0o777) == 0o700
    with psycopg.connect(
        host=src.host, port=src.port, user="mig user", dbname="postgres", passfile=str(passfile)
    ) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_replication_connection_and_identify_system(source_cluster: SourceCluster) -> None:
    src = source_cluster
    src.create_migration_account("migratetest", password="pw1")
    src.create_migration_account("norepl", password="pw2", replication=False)
    with connect_replication(src.host, src.port, "migratetest", "pw1") as conn:
        ident = probes.identify_system(conn)
    assert ident["timeline"] == "1"
    assert ident["systemid"] == src.scalar("SELECT system_identifier::text FROM pg_control_system()")
    # "must be superuser or replication role" up to 15, "Only roles with the REPLICATION attribute" from 16.
    with pytest.raises(psycopg.OperationalError, match=r"(?i)replication"):
        connect_replication(src.host, src.port, "norepl", "pw2")
    src.set_hba(["local all all trust", "host all all 127.0.0.1/32 scram-sha-256"])
    with pytest.raises(psycopg.OperationalError, match=r"pg_hba\.conf"):
        connect_replication(src.host, src.port, "migratetest", "pw1")


def test_probes_on_a_source(source_cluster: SourceCluster) -> None:
    src = source_cluster
    src.create_migration_account("migratetest", password="pw")
    with connect_source(src.host, src.port, "migratetest", "pw") as conn:
        assert probes.server_version_num(conn) // 10000 == DEFAULT_MAJOR == probes.server_major(conn)
        assert not probes.is_in_recovery(conn)
        assert probes.replay_lsn(conn) is None
        assert probes.wal_receiver(conn) is None
        assert probes.timeline_id(conn) == 1
        assert probes.role_exists(conn, "migratetest")
        assert not probes.role_exists(conn, "cloudmig_admin")
        assert probes.total_database_size(conn) > 1_000_000
        assert probes.settings(conn, ["wal_level", "max_wal_senders", "nope"]) == {
            "wal_level": "replica",
            "max_wal_senders": "10",
        }
        before = probes.current_wal_lsn(conn)
        src.sql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS i")
        assert probes.current_wal_lsn(conn) > before
        # Slots: created by the migration account (REPLICATION), idempotent both ways.
        assert not probes.slot_exists(conn, "cloudmig_task_1")
        probes.create_physical_slot(conn, "cloudmig_task_1")
        probes.create_physical_slot(conn, "cloudmig_task_1")
        assert probes.slot_exists(conn, "cloudmig_task_1")
        info = probes.slot_info(conn, "cloudmig_task_1")
        assert info is not None and info["slot_type"] == "physical" and info["restart_lsn"]
        probes.drop_slot(conn, "cloudmig_task_1")
        probes.drop_slot(conn, "cloudmig_task_1")
        assert not probes.slot_exists(conn, "cloudmig_task_1")
        assert probes.tablespace_locations(conn) == {}
        assert probes.bootstrap_superuser(conn) == "postgres"


def test_a_copys_sender_is_seen_by_its_name_with_what_it_sent_and_is_ended(
    source_cluster: SourceCluster, pg_base_dir: Path
) -> None:
    """The copy's look at the source (engine/copy_stall.py) and the end of an earlier copy's sender
    (engine/basebackup.py), with a real, slow pg_basebackup of the migration account: its base
    backup sender is found by name with the bytes it has sent, which move; another name, or a
    session that is not a walsender, is not; ending the copy's senders spares its WAL stream,
    which holds a (temporary) slot, and another account's walsender of the same name."""
    src = source_cluster
    src.create_migration_account("migratetest", password="pw")
    src.create_migration_account("othermig", password="pw2")
    prefix = "cloudmig_basebackup:cloudmig_abc_1:"
    name = prefix + "00aa11"
    work = Path(tempfile.mkdtemp(prefix="copy-", dir=pg_base_dir))
    os.chmod(work, 0o777)
    passfile = work / "pass" / "pgpass"
    user = os_user_for_tests()
    write_passfile(passfile, host=src.host, port=src.port, user="migratetest", password="pw", owner=user)
    argv = [src.bin_dir / "pg_basebackup", "-D", work / "data", "-X", "stream", "--max-rate=64k"]
    argv += ["-h", src.host, "-p", str(src.port), "-U", "migratetest", "-w"]
    with connect_source(src.host, src.port, "migratetest", "pw") as conn:
        assert probes.copy_sender(conn, name) == (False, None)
        proc = spawn(argv, user=user, env={"PGPASSFILE": str(passfile), "PGAPPNAME": name})
        try:
            deadline = time.monotonic() + 30
            while (seen := probes.copy_sender(conn, name))[1] is None and time.monotonic() < deadline:
                time.sleep(0.1)
            running, sent = seen
            assert running and sent is not None, seen
            time.sleep(1.5)
            assert (probes.copy_sender(conn, name)[1] or 0) > sent  # at 64 kB/s, it moves
            assert probes.copy_sender(conn, prefix + "00aa12") == (False, None)
            with (
                connect_source(src.host, src.port, "migratetest", "pw", application_name=name),
                connect_replication(src.host, src.port, "othermig", "pw2", application_name=name) as other,
            ):
                assert probes.terminate_walsenders(conn, "cloudmig_basebackup:cloudmig_abc_2:") == 0
                assert probes.terminate_walsenders(conn, prefix) == 1  # the sender, not the WAL stream
                assert proc.wait(timeout=30) != 0
                deadline = time.monotonic() + 10  # a backend ends shortly after its client
                while probes.copy_sender(conn, name)[0] and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert probes.copy_sender(conn, name) == (False, None)  # nor the plain session
                assert not other.closed and other.execute("IDENTIFY_SYSTEM").fetchone()
        finally:
            proc.kill()
            proc.wait()
            shutil.rmtree(work, ignore_errors=True)


@pytest.mark.parametrize("major", [10, 12])
def test_probes_on_majors_before_13(pg_base_dir: Path, major: int) -> None:
    # The queries whose columns or functions are newer than the server (see pg/compat.py).
    runnable_bin_dir(major)
    src = SourceCluster.create(pg_base_dir, major=major)
    try:
        src.create_migration_account("migratetest", password="pw")
        with connect_source(src.host, src.port, "migratetest", "pw") as conn:
            assert probes.server_major(conn) == major
            assert probes.wal_receiver(conn) is None
            probes.create_physical_slot(conn, "cloudmig_task_2")
            info = probes.slot_info(conn, "cloudmig_task_2")
            assert info is not None and info["restart_lsn"] and info["wal_status"] == ""
            probes.drop_slot(conn, "cloudmig_task_2")
            assert probes.copy_sender(conn, "cloudmig_basebackup:cloudmig_task_2:00aa11") == (False, None)
            if major < 12:
                with pytest.raises(probes.PromoteUnsupported):
                    probes.promote(conn)
    finally:
        src.destroy()


def test_source_cluster_restart_keeps_data(source_cluster: SourceCluster) -> None:
    src = source_cluster
    src.sql("CREATE TABLE keep (v text)")
    src.sql("INSERT INTO keep VALUES (%s)", ("x",))
    started = time.monotonic()
    src.restart()
    assert time.monotonic() - started < 30
    assert src.sql("SELECT v FROM keep") == [("x",)]
