"""Restart safety (SIGKILL during basebackup and during increment) and secrets kept out of sight."""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.flows import (
    MIGRATION_PASSWORD,
    create_instance,
    create_migration,
    raw_items,
    start_throttled_migration,
    wait_for,
    wait_running,
    wait_streaming,
)

pytestmark = pytest.mark.e2e


def _count_on_target(attr: Any, table: str) -> int | None:
    try:
        with psycopg.connect(
            host=attr.connection_string,
            port=int(attr.port),
            user="migratetest",
            password=MIGRATION_PASSWORD,
            dbname="postgres",
            connect_timeout=3,
        ) as conn:
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (None,):
                return None
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            return int(row[0]) if row else None
    except psycopg.OperationalError:
        return None


def _cmdlines() -> list[bytes]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):
                out.append(Path(f"/proc/{pid}/cmdline").read_bytes())
    return out


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    hits = []
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            try:
                if needle in p.read_bytes():
                    hits.append(p)
            except OSError:
                pass
    return hits


def test_sigkill_during_basebackup_and_increment(fresh_service, make_source) -> None:
    svc = fresh_service
    # Throttle the copy so the kill lands in the middle of it.
    source = make_source(scale=2)
    client, instance_id, attr, task_id = start_throttled_migration(svc, source, rate_kb=2048)

    def copying() -> bool:
        it = raw_items(svc, instance_id, task_id=task_id)[0]
        assert not any(MIGRATION_PASSWORD.encode() in c for c in _cmdlines()), "password in an argument list"
        done = it["Progress"].get("BaseBackup", {}).get("BytesDone", 0)
        return bool(it["MigrateStage"] == "basebackup" and done > 0)

    wait_for(copying, 90, interval=0.2, what="basebackup to copy some bytes")
    assert not any(MIGRATION_PASSWORD.encode() in c for c in _cmdlines()), (
        "password in a process argument list"
    )
    svc.kill()

    svc.extra_env.pop("CLOUDMIG_BASEBACKUP_MAX_RATE_KB")
    svc.start()
    client = svc.tea()
    item = wait_streaming(client, instance_id, task_id)
    assert "Restart full backup" in item.detail
    # Nothing of the killed copy lives on (pg_basebackup's forked WAL streamer included).
    wait_for(
        lambda: not [c for c in _cmdlines() if b"pg_basebackup" in c and instance_id.encode() in c],
        30,
        what="no pg_basebackup left for the instance",
    )
    assert _count_on_target(attr, "pgbench_accounts") == 200000

    # Killed while streaming: rows written meanwhile arrive once the service is back.
    svc.kill()
    source.sql("CREATE TABLE while_down AS SELECT g AS id FROM generate_series(1, 1000) g")
    svc.start()
    client = svc.tea()
    wait_streaming(client, instance_id, task_id)
    wait_for(lambda: _count_on_target(attr, "while_down") == 1000, 60, what="rows written while down")
    # Exactly one slot on the source, the task's (cloudmig_<installation id>_<task id>).
    slots = source.sql("SELECT slot_name FROM pg_replication_slots")
    assert len(slots) == 1 and re.fullmatch(rf"cloudmig_[0-9a-f]{{8}}_{task_id}", slots[0][0]), slots


def test_secrets_never_leak(service, make_source) -> None:
    client = service.tea()
    source = make_source(scale=1)
    instance_id = create_instance(client)
    wait_running(client, instance_id)
    task_id = create_migration(client, instance_id, source).task_id
    item = wait_streaming(client, instance_id, task_id)
    needle_pw = MIGRATION_PASSWORD.encode()
    needle_secret = service.key_secret.encode()

    # No API response carries them.
    raw = json.dumps(raw_items(service, instance_id), ensure_ascii=False)
    assert MIGRATION_PASSWORD not in raw and service.key_secret not in raw
    assert json.dumps(MIGRATION_PASSWORD)[1:-1] not in raw
    assert item.source_password == "********"

    # Nothing under the data dir holds them in clear (the store keeps them sealed), nor the logs,
    # the service's own output, or any process's argument list.
    assert _files_containing(service.data_dir, needle_pw) == []
    assert _files_containing(service.data_dir, needle_secret) == []
    assert needle_pw.decode() not in service.output() and service.key_secret not in service.output()
    assert not any(needle_pw in c for c in _cmdlines())
    access = (service.data_dir / "logs" / "access.log").read_text()
    assert "CreateCloudMigrationTask" in access or "DescribeCloudMigrationResult" in access
    assert "SourcePassword" not in access and "?" not in access
    # The source sees the migration through the slot, with the password only in the runtime passfile.
    passfiles = list((service.runtime_dir / "pgpass").glob("*/pgpass"))
    assert passfiles and all(oct(p.stat().st_mode & 0o777) == "0o600" for p in passfiles)
