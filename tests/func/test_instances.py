"""Managed instances against real PostgreSQL: provider lifecycle, ports, OS user, and a full base
backup from a source into an instance that then streams as a hot standby."""

from __future__ import annotations

import os
import socket
import stat
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest
from tests.support.faults import postmaster_pid, stopped
from tests.support.pgcluster import (
    DEFAULT_MAJOR,
    TRICKY_PASSWORD,
    SourceCluster,
    free_port,
    os_user_for_tests,
    wait_for,
)

from cloudmig.domain.classes import CATALOGUE
from cloudmig.domain.enums import ReplicationState
from cloudmig.domain.ids import new_instance_id
from cloudmig.domain.reserved import ADMIN_ROLE, RESERVED_ROLES
from cloudmig.engine.observe import next_state, observe, receiver_connecting
from cloudmig.errors import QuotaExceeded
from cloudmig.instances.osuser import ensure_reachable, pg_os_user
from cloudmig.instances.ports import allocate_port, port_is_free
from cloudmig.instances.provider import COPY_MARKER, LocalInstanceProvider
from cloudmig.pg import fssync, probes
from cloudmig.pg.basebackup import BasebackupStopped, run_basebackup
from cloudmig.pg.conf import MANAGED_CONF, StandbyConf, primary_conninfo
from cloudmig.pg.passfile import escape_field
from cloudmig.pg.runner import PgCommandError
from cloudmig.pg.sql import connect_source
from cloudmig.settings import Settings

pytestmark = pytest.mark.func

SMALL = CATALOGUE["pg.n2.small.2c"]
MEDIUM = CATALOGUE["pg.n2.medium.2c"]


def _owner(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, stat.S_IMODE(st.st_mode)


# ---- ports and OS user ------------------------------------------------------------------------------


def _free_run(length: int) -> int:
    """A port p such that p .. p+length-1 are all free right now."""
    for _ in range(50):
        base = free_port()
        if base + length < 65536 and all(port_is_free(p) for p in range(base, base + length)):
            return base
    raise AssertionError("no run of free ports found")


def test_allocate_port_skips_used_and_busy_ports() -> None:
    base = _free_run(4)
    busy = socket.socket()
    try:
        busy.bind(("127.0.0.1", base + 1))
        busy.listen()
        assert allocate_port({base}, base, base + 3) == base + 2
        with pytest.raises(QuotaExceeded):
            allocate_port({base, base + 2, base + 3}, base, base + 3)
    finally:
        busy.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="the pg OS user only matters as root")
def test_pg_os_user_and_reachability(pg_base_dir: Path) -> None:
    user = pg_os_user(Settings())
    assert user is not None and user.name == "postgres" and user.uid != 0
    with pytest.raises(RuntimeError, match="no-such-user-xyz"):
        pg_os_user(Settings(pg_os_user="no-such-user-xyz"))

    root = Path(tempfile.mkdtemp(prefix="reach-", dir=pg_base_dir))
    root.chmod(0o711)
    closed = root / "closed"
    closed.mkdir(mode=0o700)
    target = closed / "inner" / "pgdata"
    with pytest.raises(RuntimeError, match=f"{closed} is not reachable by OS user postgres"):
        ensure_reachable(target, user)
    assert _owner(closed)[1] == 0o700  # not ours: left alone
    ensure_reachable(target, user, fixable_roots=[closed])
    assert _owner(closed)[1] & 0o001
    with pytest.raises(RuntimeError, match="/root is not reachable"):
        ensure_reachable(Path("/root/cloudmig/instances"), user)


# ---- provider lifecycle ---------------------------------------------------------------------------


def test_create_connect_reconfigure_destroy(provider: LocalInstanceProvider) -> None:
    iid = new_instance_id()
    port = allocate_port(set(), free_port(), 65000)
    provider.create(iid, port=port, cls=SMALL, major=DEFAULT_MAJOR)
    assert provider.is_running(iid, DEFAULT_MAJOR)

    user = os_user_for_tests()
    uid = user.uid if user else os.geteuid()
    assert _owner(provider.instance_dir(iid)) == (uid, 0o700)
    assert _owner(provider.pgdata(iid)) == (uid, 0o700)
    assert _owner(provider.socket_dir(iid)) == (uid, 0o700)
    assert (provider.pgdata(iid) / MANAGED_CONF).is_file()
    assert provider.logfile(iid).is_file()
    assert provider.free_bytes(iid) > 0
    assert ADMIN_ROLE in RESERVED_ROLES

    # TCP needs a password: an unknown user is refused the SCRAM way.
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect_source("127.0.0.1", port, "nobody", "x")
    with provider.connect_admin(iid, port) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (ADMIN_ROLE,)
        for name, value in SMALL.spec_params().items():
            assert conn.execute(f"SHOW {name}").fetchone() == (str(value),), name
        assert conn.execute("SHOW shared_buffers").fetchone() == ("16MB",)
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        assert probes.role_exists(conn, ADMIN_ROLE)
        conn.execute(
            psycopg.sql.SQL("CREATE ROLE app LOGIN PASSWORD {}").format(psycopg.sql.Literal(TRICKY_PASSWORD))
        )
    with connect_source("127.0.0.1", port, "app", TRICKY_PASSWORD) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("app",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect_source("127.0.0.1", port, "app", "wrong")

    # create() again is harmless; stop/start are idempotent; a new class takes effect on restart.
    provider.create(iid, port=port, cls=SMALL, major=DEFAULT_MAJOR)
    provider.stop(iid, DEFAULT_MAJOR)
    provider.stop(iid, DEFAULT_MAJOR)
    assert not provider.is_running(iid, DEFAULT_MAJOR)
    provider.apply_conf(iid, port, MEDIUM)
    provider.start(iid, DEFAULT_MAJOR)
    provider.start(iid, DEFAULT_MAJOR)
    with provider.connect_admin(iid, port) as conn:
        assert conn.execute("SHOW max_connections").fetchone() == (str(MEDIUM.max_connections),)
    # Two starts, and the server never complained about its configuration's external PID file.
    log = provider.logfile(iid).read_text()
    assert log.count("database system is ready to accept connections") >= 2, log
    assert "external PID file" not in log, log

    provider.destroy(iid, DEFAULT_MAJOR)
    assert not provider.instance_dir(iid).exists()
    assert not provider.socket_dir(iid).exists()
    provider.destroy(iid, DEFAULT_MAJOR)  # idempotent
    with pytest.raises(psycopg.OperationalError):
        connect_source("127.0.0.1", port, "app", TRICKY_PASSWORD, connect_timeout=2)


def test_create_recovers_from_a_half_done_initdb(provider: LocalInstanceProvider) -> None:
    iid = new_instance_id()
    pgdata = provider.pgdata(iid)
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text(f"{DEFAULT_MAJOR}\n")  # what a killed initdb leaves behind
    (pgdata / "junk").write_text("x")
    port = free_port()
    provider.create(iid, port=port, cls=SMALL, major=DEFAULT_MAJOR)
    with provider.connect_admin(iid, port) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert not (pgdata / "junk").exists()


# ---- base backup → hot standby --------------------------------------------------------------------


class _ProcWatcher(threading.Thread):
    """Scans /proc while a base backup runs: the password must be in no command line, and in the
    environment of no pg_basebackup process."""

    def __init__(self, secret: bytes) -> None:
        super().__init__(daemon=True)
        self.secret = secret
        self.stop_event = threading.Event()
        self.leaks: list[str] = []
        self.basebackup_pids: set[int] = set()

    def run(self) -> None:
        while not self.stop_event.is_set():
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                    if self.secret in cmdline:
                        self.leaks.append(f"cmdline of {entry}: {cmdline!r}")
                    if b"pg_basebackup" in cmdline.split(b"\0", 1)[0]:
                        self.basebackup_pids.add(int(entry))
                        environ = Path(f"/proc/{entry}/environ").read_bytes()
                        if self.secret in environ or b"PGPASSWORD" in environ:
                            self.leaks.append(f"environ of pg_basebackup {entry}")
                except OSError:
                    continue
            self.stop_event.wait(0.01)


def _files_containing(root: Path, secret: bytes) -> list[Path]:
    hits = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            try:
                if secret in path.read_bytes():
                    hits.append(path)
            except OSError:
                continue
    return hits


def test_basebackup_then_stream_as_standby(
    source_cluster: SourceCluster, provider: LocalInstanceProvider
) -> None:
    src = source_cluster
    password = TRICKY_PASSWORD
    src.create_migration_account("migratetest", password=password)
    src.pgbench_init(scale=1)
    # ALTER SYSTEM on the source: copied into the target's postgresql.auto.conf, which is read last.
    src.sql(f"ALTER SYSTEM SET port = {src.port}")
    src.sql("ALTER SYSTEM SET work_mem = '7MB'")
    src.sql("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
    slot = "cloudmig_task_1"
    with connect_source(src.host, src.port, "migratetest", password) as conn:
        probes.create_physical_slot(conn, slot)

    iid = new_instance_id()
    port = free_port()
    provider.create(iid, port=port, cls=SMALL, major=DEFAULT_MAJOR)
    endpoint = src.endpoint("migratetest")
    passfile = provider.write_source_passfile(iid, endpoint, password)
    assert not passfile.is_relative_to(provider.instance_dir(iid))

    # The copy goes beside pgdata while the empty cluster still runs; it is stopped before the swap.
    target = provider.prepare_copy_dir(iid)
    assert target.is_dir() and not any(target.iterdir()) and target != provider.pgdata(iid)
    assert provider.is_running(iid, DEFAULT_MAJOR)

    progress: list[tuple[int, int]] = []
    watcher = _ProcWatcher(password.encode())
    watcher.start()
    try:
        run_basebackup(
            provider.bin_dir(DEFAULT_MAJOR),
            target,
            endpoint,
            slot,
            passfile=passfile,
            user=provider.user,
            on_progress=lambda done, total: progress.append((done, total)),
        )
    finally:
        watcher.stop_event.set()
        watcher.join()
    assert watcher.basebackup_pids, "the /proc watcher never saw pg_basebackup: the leak check proved nothing"
    assert watcher.leaks == []
    assert progress, "no progress reported"
    assert progress[-1][0] == progress[-1][1] > 10 * 1024 * 1024  # pgbench scale 1 is ~16 MB
    assert all(done <= total for done, total in progress)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)

    # What a plain base backup brings and leaves out.
    assert (target / "backup_label").is_file()
    assert (target / "postgresql.conf").is_file() and (target / "postgresql.auto.conf").is_file()
    assert not (target / "postmaster.pid").exists()
    assert not (target / "postmaster.opts").exists()
    assert not (target / "standby.signal").exists()
    assert not any((target / "pg_replslot").iterdir())
    provider.stop(iid, DEFAULT_MAJOR)
    provider.install_copy(iid)
    target = provider.pgdata(iid)
    assert (target / "backup_label").is_file() and (target / COPY_MARKER).is_file()
    assert not provider.incoming(iid).exists()

    standby = StandbyConf(
        primary_conninfo=primary_conninfo(src.host, src.port, "migratetest", passfile, application_name=iid),
        primary_slot_name=slot,
    )
    removed = provider.apply_conf(iid, port, SMALL, standby)
    assert f"port = '{src.port}'" in removed
    assert "synchronous_standby_names = 'nobody'" in removed
    assert not any("work_mem" in line for line in removed)
    assert (target / "standby.signal").is_file()
    provider.start(iid, DEFAULT_MAJOR)

    src.sql("CREATE TABLE after_backup (id int PRIMARY KEY, note text)")
    src.sql("INSERT INTO after_backup SELECT g, 'row ' || g FROM generate_series(1, 100) g")
    with provider.connect_admin(iid, port, user=src.superuser) as conn:
        assert probes.is_in_recovery(conn)
        assert conn.execute("SHOW port").fetchone() == (str(port),)
        assert conn.execute("SHOW work_mem").fetchone() == ("7MB",)  # the source's tuning survives
        # The copy was synced by one syncfs (pg/fssync.py); its start syncs the same way, not per file.
        if DEFAULT_MAJOR >= 14:
            method = "syncfs" if fssync.syncfs_usable() else "fsync"
            assert conn.execute("SHOW recovery_init_sync_method").fetchone() == (method,)
        receiver = wait_for(
            lambda: (r := probes.wal_receiver(conn)) and r["status"] == "streaming" and r,
            what="the WAL receiver to stream",
        )
        assert receiver["slot_name"] == slot
        assert receiver["sender_port"] == str(src.port)
        assert "password" not in receiver["conninfo"]
        wait_for(
            lambda: (
                conn.execute("SELECT count(*) FROM pg_class WHERE relname = 'after_backup'").fetchone()
                == (1,)
            ),
            what="the new table to be replayed",
        )
        wait_for(
            lambda: conn.execute("SELECT count(*) FROM after_backup").fetchone() == (100,),
            what="the rows inserted on the source to be replayed",
        )
        assert conn.execute("SELECT count(*) FROM pgbench_accounts").fetchone() == (100000,)
        replayed = probes.replay_lsn(conn)
        assert replayed is not None and replayed > 0
        assert probes.timeline_id(conn) == 1
    with connect_source(src.host, src.port, "migratetest", password) as conn:
        info = probes.slot_info(conn, slot)
        assert info is not None and info["active"] == "true"
        rows = conn.execute("SELECT application_name, state FROM pg_stat_replication").fetchall()
        assert (iid, "streaming") in rows

    # The password is in the runtime passfile only: never under the instance directory.
    escaped = escape_field(password).encode()
    assert escaped in passfile.read_bytes()
    assert _files_containing(provider.instance_dir(iid), password.encode()) == []
    assert _files_containing(provider.instance_dir(iid), escaped) == []

    # The standby starts again while its source takes no new connection: until the WAL receiver has
    # connected, pg_stat_wal_receiver shows nothing. That is a receiver connecting, not a link down
    # (engine/increment.py looks again in 0.05 s instead of saying `disconnect` for 2 s).
    provider.stop(iid, DEFAULT_MAJOR)
    with stopped(postmaster_pid(src.pgdata)):
        provider.start(iid, DEFAULT_MAJOR)
        with provider.connect_admin(iid, port, user=src.superuser) as conn:
            obs = observe(conn, None)
        now = time.time()
        assert obs.receiver is None and obs.started_at is not None and obs.started_at <= now
        assert next_state(ReplicationState.CATCHUP, obs, 0) is ReplicationState.DISCONNECT
        assert receiver_connecting(ReplicationState.CATCHUP, obs, now, grace=30)
        assert not receiver_connecting(ReplicationState.CATCHUP, obs, obs.started_at + 31, grace=30)
        assert not receiver_connecting(ReplicationState.STREAMING, obs, now, grace=30)
    with provider.connect_admin(iid, port, user=src.superuser) as conn:
        wait_for(
            lambda: (r := probes.wal_receiver(conn)) and r["status"] == "streaming",
            what="the WAL receiver to connect once the source answers",
        )

    # Promotion moves the timeline, and timeline_id() sees it right away.
    with provider.connect_admin(iid, port, user=src.superuser) as conn:
        assert probes.promote(conn, wait_seconds=60)
        assert not probes.is_in_recovery(conn)
        assert probes.timeline_id(conn) == 2
        conn.execute("INSERT INTO after_backup VALUES (101, 'written on the target')")


def test_basebackup_failure_and_stop(source_cluster: SourceCluster, provider: LocalInstanceProvider) -> None:
    src = source_cluster
    src.create_migration_account("migratetest", password="right")
    iid = new_instance_id()
    endpoint = src.endpoint("migratetest")
    target = provider.prepare_copy_dir(iid)
    bin_dir = provider.bin_dir(DEFAULT_MAJOR)

    # A wrong password: the error carries pg_basebackup's own message.
    passfile = provider.write_source_passfile(iid, endpoint, "wrong")
    with pytest.raises(PgCommandError, match="password authentication failed") as info:
        run_basebackup(
            bin_dir,
            target,
            endpoint,
            "cloudmig_task_9",
            passfile=passfile,
            user=provider.user,
            on_progress=lambda d, t: None,
        )
    assert info.value.command == "pg_basebackup"

    # A missing slot.
    passfile = provider.write_source_passfile(iid, endpoint, "right")
    target = provider.prepare_copy_dir(iid)
    with pytest.raises(PgCommandError, match="cloudmig_task_9"):
        run_basebackup(
            bin_dir,
            target,
            endpoint,
            "cloudmig_task_9",
            passfile=passfile,
            user=provider.user,
            on_progress=lambda d, t: None,
        )

    # should_stop() kills the child.
    with connect_source(src.host, src.port, "migratetest", "right") as conn:
        probes.create_physical_slot(conn, "cloudmig_task_9")
    target = provider.prepare_copy_dir(iid)
    with pytest.raises(BasebackupStopped):
        run_basebackup(
            bin_dir,
            target,
            endpoint,
            "cloudmig_task_9",
            passfile=passfile,
            user=provider.user,
            on_progress=lambda d, t: None,
            should_stop=lambda: True,
        )
    with connect_source(src.host, src.port, "migratetest", "right") as conn:
        wait_for(
            lambda: (i := probes.slot_info(conn, "cloudmig_task_9")) and i["active"] == "false",
            what="the slot to be released by the killed pg_basebackup",
        )


def test_copy_dir_lifecycle_never_loses_a_complete_copy(provider: LocalInstanceProvider) -> None:
    """Where copies live: a partial copy is thrown away, a complete one is set aside (pgdata.kept)
    until the next copy is installed, and the data directory a copy replaces goes only then."""
    iid = new_instance_id()
    provider.create(iid, port=free_port(), cls=SMALL, major=DEFAULT_MAJOR)
    pgdata, kept = provider.pgdata(iid), provider.instance_dir(iid) / "pgdata.kept"

    def fake_copy(tag: str) -> Path:
        target = provider.prepare_copy_dir(iid)
        (target / "PG_VERSION").write_text(f"{DEFAULT_MAJOR}\n")
        (target / "tag").write_text(tag)
        return target

    def settled(path: Path) -> str:
        # Set-aside trees are removed in the background: wait until only the named ones remain.
        wait_for(
            lambda: not [p for p in provider.instance_dir(iid).iterdir() if ".old-" in p.name],
            what="the background removal of set-aside directories",
        )
        return (path / "tag").read_text()

    # A partial copy of an interrupted attempt is thrown away by the next attempt.
    fake_copy("partial")
    target = fake_copy("first")
    assert settled(target) == "first"
    assert provider.is_running(iid, DEFAULT_MAJOR), "the empty cluster runs until it is stopped"
    provider.stop(iid, DEFAULT_MAJOR)
    provider.install_copy(iid)
    assert settled(pgdata) == "first" and (pgdata / COPY_MARKER).is_file()
    assert not provider.incoming(iid).exists() and not kept.exists()

    # A complete copy that a crash left uninstalled (marked, still beside pgdata) is kept aside.
    target = fake_copy("second")
    (target / COPY_MARKER).write_text("")
    fake_copy("third")
    assert settled(kept) == "second" and settled(pgdata) == "first"
    # Installing the next copy replaces pgdata and ends the kept one.
    provider.install_copy(iid)
    assert settled(pgdata) == "third" and not kept.exists()

    # A reset keeps the complete copy in pgdata aside and throws a partial one away.
    fake_copy("partial again")
    provider.reset(iid, port=free_port(), cls=SMALL, major=DEFAULT_MAJOR)
    assert settled(kept) == "third" and not provider.incoming(iid).exists()
    assert provider.is_running(iid, DEFAULT_MAJOR) and not (pgdata / "tag").exists()
    provider.destroy(iid, DEFAULT_MAJOR)
