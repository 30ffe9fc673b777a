"""Fault injection for the e2e fault tests: signals to a cluster's processes (SIGSTOP a
walreceiver, SIGKILL a postmaster and its children as a host crash would), a small tmpfs as an
instance's disk, and the readings the tests check (cloudmig's slots on a source, a Describe item)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from tests.support.flows import (
    create_instance,
    create_migration,
    raw_items,
    wait_for,
    wait_running,
    wait_streaming,
)
from tests.support.pgcluster import SourceCluster

# ---- processes of a cluster ----------------------------------------------------------------------


def postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().splitlines()[0])


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command (field 2) is in parentheses and may hold spaces: parse after its closing one.
    return int(stat.rsplit(")", 1)[1].split()[1])


def children(pid: int) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _ppid(int(p)) == pid]


def title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def cluster_child(pgdata: Path, role: str, timeout: float = 30) -> int:
    """The pid of the cluster's process whose title names `role` (walreceiver, startup, ...)."""

    def find() -> int | None:
        pm = postmaster_pid(pgdata)
        return next((c for c in children(pm) if f" {role}" in title(c)), None)

    return wait_for(find, timeout, interval=0.1, what=f"the {role} process of {pgdata}")


def is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def crash_cluster(pgdata: Path) -> None:
    """SIGKILL the postmaster and every child, as a host crash would (no shutdown checkpoint)."""
    pm = postmaster_pid(pgdata)
    pids = [pm, *children(pm)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(is_alive(p) for p in pids), 30, interval=0.05, what="the cluster to die")


@contextlib.contextmanager
def stopped(*pids: int) -> Iterator[None]:
    """SIGSTOP the processes for the block (SIGCONT after it, also on failure)."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


# ---- a service's instances -------------------------------------------------------------------------


def instance_pgdata(service: Any, instance_id: str) -> Path:
    return Path(service.data_dir) / "instances" / instance_id / "pgdata"


def target_socket(service: Any, instance_id: str) -> Path:
    return Path(service.runtime_dir) / "sockets" / instance_id


def connect_target(
    service: Any, instance_id: str, port: int, user: str = "postgres"
) -> psycopg.Connection[Any]:
    """A connection to an instance over its socket (trust), as the source's superuser by default
    (before promotion the copy only has the source's roles)."""
    return psycopg.connect(
        host=str(target_socket(service, instance_id)),
        port=port,
        user=user,
        dbname="postgres",
        autocommit=True,
        connect_timeout=5,
    )


def timeline(conn: psycopg.Connection[Any]) -> int:
    """The timeline a primary writes on."""
    row = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
    assert row is not None
    return int(str(row[0])[:8], 16)


def in_recovery(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    assert row is not None
    return bool(row[0])


# ---- a migration ---------------------------------------------------------------------------------


def migrate_to_streaming(
    service: Any, source: SourceCluster, *, storage: int = 20
) -> tuple[Any, str, Any, int]:
    """A new instance of `service` streaming from `source`: (client, instance id, attribute, task id)."""
    client = service.tea()
    instance_id = create_instance(client, storage=storage)
    attr = wait_running(client, instance_id)
    task_id = create_migration(client, instance_id, source).task_id
    wait_streaming(client, instance_id, task_id)
    return client, instance_id, attr, task_id


def ledger(source: SourceCluster, rows: int = 0) -> None:
    """A table the migration account may write, with `rows` rows numbered from 1."""
    source.sql("CREATE TABLE ledger (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
    source.sql("GRANT INSERT, SELECT ON ledger TO migratetest")
    if rows:
        source.sql("INSERT INTO ledger (id) SELECT generate_series(1, %s::int)", (rows,))


# ---- readings ---------------------------------------------------------------------------------------


def item(service: Any, instance_id: str, task_id: int) -> dict[str, Any]:
    """The Describe item with cloudmig's extension fields (Status, Reason, ReasonCode, ...)."""
    items = raw_items(service, instance_id, task_id=task_id)
    assert len(items) == 1, items
    return items[0]


def cloudmig_slots(source: SourceCluster) -> list[tuple[str, bool, str | None]]:
    """(name, active, wal_status) of every slot of any cloudmig installation on the source."""
    rows = source.sql(
        "SELECT slot_name, active, wal_status FROM pg_replication_slots"
        " WHERE slot_name LIKE 'cloudmig\\_%' ORDER BY 1"
    )
    return [(str(r[0]), bool(r[1]), None if r[2] is None else str(r[2])) for r in rows]


def walsender_of(source: SourceCluster, slot: str) -> int | None:
    """The pid of the walsender streaming from `slot`, if one does."""
    return source.scalar("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,))


def make_wal(source: SourceCluster, segments: int) -> None:
    """Move the source's WAL on by `segments` segments (16 MB each) with almost no data written."""
    with source.connect() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS wal_filler (n int)")
        for n in range(segments):
            conn.execute("INSERT INTO wal_filler VALUES (%s)", (n,))
            conn.execute("SELECT pg_switch_wal()")


# ---- a small disk ---------------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size_mb: int) -> Iterator[Path]:
    """Mount a tmpfs of `size_mb` at `path` (0711, as cloudmig's own directories) for the block."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0711", "tmpfs", str(path)],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        for _ in range(50):
            if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
                break
            time.sleep(0.2)  # a server of the instance may still be exiting


def can_mount_tmpfs(base: Path) -> bool:
    probe = base / "tmpfs-probe"
    try:
        with tmpfs(probe, 1):
            return True
    except (subprocess.CalledProcessError, OSError):
        return False
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()


# ---- the switchover --------------------------------------------------------------------------------


def activate(client: Any, instance_id: str, *, force: bool = False) -> Any:
    from alibabacloud_rds20140815 import models as rds

    return client.activate_migration_target_instance(
        rds.ActivateMigrationTargetInstanceRequest(
            dbinstance_name=instance_id, switch_time_mode="0", force_switch="1" if force else None
        )
    ).body


def phase(service: Any, instance_id: str, task_id: int) -> str | None:
    return item(service, instance_id, task_id)["Evidence"].get("Phase")


def wait_success(service: Any, instance_id: str, task_id: int, timeout: float = 120) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        it = item(service, instance_id, task_id)
        assert it["Status"] != "failed", it["Detail"]
        return it if it["MigrateStage"] == "success" else None

    return wait_for(done, timeout, interval=0.2, what="the switchover to succeed")
