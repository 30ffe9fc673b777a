"""The store against a real SQLite file: keys, nonces, leases, events, atomic claims."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from cloudmig.domain.enums import InstanceStatus, MigrateStage, ReplicationState, TaskKind, TaskStatus
from cloudmig.store import instances as inst_store
from cloudmig.store import keys as key_store
from cloudmig.store import tasks as task_store
from cloudmig.store.db import open_store

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Engine:
    return open_store(f"sqlite:///{tmp_path / 'store.db'}")


def _instance(db: Engine, iid: str = "pgm-aaaaaaaaaaaaaaaa", port: int = 15432) -> str:
    inst_store.insert_instance(
        db,
        dict(
            id=iid,
            status=InstanceStatus.RUNNING.value,
            engine="PostgreSQL",
            engine_version="15",
            instance_class="pg.n2.medium.2c",
            storage_gb=20,
            port=port,
            created_at=NOW,
            modified_at=NOW,
        ),
    )
    return iid


def _task_values(iid: str, name: str = "t") -> dict[str, Any]:
    return dict(
        kind=TaskKind.MIGRATION,
        name=name,
        instance_id=iid,
        source_ip="127.0.0.1",
        source_port=5432,
        source_account="a",
        source_password_enc="sealed",
        source_category="ecsOnVpc",
        stage=MigrateStage.PRECHECK,
        replication_state=ReplicationState.UNSTARTED,
        status=TaskStatus.RUNNING,
        created_at=NOW,
        modified_at=NOW,
    )


def test_schema_upgrade_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    open_store(url)
    open_store(url)


def test_nonces_single_use_and_expire(db: Engine) -> None:
    assert key_store.record_nonce(db, "k", "n1", NOW + timedelta(minutes=15), NOW)
    assert not key_store.record_nonce(db, "k", "n1", NOW + timedelta(minutes=15), NOW)
    assert key_store.record_nonce(db, "other", "n1", NOW + timedelta(minutes=15), NOW)
    later = NOW + timedelta(minutes=16)
    assert key_store.record_nonce(db, "k", "n1", later + timedelta(minutes=15), later)


def test_timestamps_come_back_aware_utc(db: Engine) -> None:
    iid = _instance(db)
    rec = inst_store.get_instance(db, iid)
    assert rec is not None and rec.created_at == NOW and rec.created_at.tzinfo is not None


def test_one_migration_per_instance(db: Engine) -> None:
    iid = _instance(db)
    first = task_store.insert_task_claiming_instance(db, _task_values(iid, "a"), NOW)
    assert first is not None
    assert task_store.insert_task_claiming_instance(db, _task_values(iid, "b"), NOW) is None
    # The refused insert left no row behind.
    total, _ = task_store.find_tasks(db, task_store.TaskFilter(iid, TaskKind.MIGRATION), offset=0, limit=10)
    assert total == 1
    inst_store.release_migration(db, iid, first, NOW)
    assert task_store.insert_task_claiming_instance(db, _task_values(iid, "c"), NOW) is not None


def test_leases(db: Engine) -> None:
    iid = _instance(db)
    tid = task_store.insert_task(db, _task_values(iid))
    assert task_store.claimable_ids(db, NOW) == [tid]
    assert task_store.try_claim(db, tid, "me", NOW, 10)
    assert not task_store.try_claim(db, tid, "you", NOW + timedelta(seconds=5), 10)
    assert task_store.renew_leases(db, "me", [tid], NOW + timedelta(seconds=5), 10) == {tid}
    assert task_store.claimable_ids(db, NOW + timedelta(seconds=14)) == []
    assert task_store.try_claim(db, tid, "you", NOW + timedelta(seconds=16), 10)
    assert task_store.renew_leases(db, "me", [tid], NOW + timedelta(seconds=17), 10) == set()
    assert task_store.release_foreign_leases(db, "me") == 1
    assert task_store.claimable_ids(db, NOW) == [tid]


def test_events_and_filters(db: Engine) -> None:
    iid = _instance(db)
    t1 = task_store.insert_task(db, _task_values(iid, "one"))
    t2 = task_store.insert_task(db, {**_task_values(iid, "two"), "source_port": 6000})
    task_store.add_event(db, t1, NOW, "S", "x")
    task_store.add_event(db, t1, NOW, "S", "y")
    ev = task_store.events_for(db, [t1, t2])
    assert [e.text for e in ev[t1]] == ["x", "y"] and ev[t2] == []
    f = task_store.TaskFilter(iid, TaskKind.MIGRATION, source_port=6000)
    total, recs = task_store.find_tasks(db, f, offset=0, limit=10)
    assert total == 1 and recs[0].id == t2
    total, recs = task_store.find_tasks(
        db, task_store.TaskFilter(iid, TaskKind.MIGRATION), offset=5, limit=10
    )
    assert total == 2 and recs == []
    assert task_store.name_taken(db, iid, TaskKind.MIGRATION, "one")
    assert not task_store.name_taken(db, iid, TaskKind.PRECHECK, "one")


def test_migrations_build_exactly_the_declared_schema(db: Engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from cloudmig.store.tables import metadata

    with db.connect() as c:
        assert compare_metadata(MigrationContext.configure(c), metadata) == []
