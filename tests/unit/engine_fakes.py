"""Fakes for driving the engine without servers: a clock that only moves when told, a notifier whose
sleeps move that clock, and an app context on a real SQLite store file."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cloudmig.domain.enums import InstanceStatus, MigrateStage, ReplicationState, TaskKind, TaskStatus
from cloudmig.instances.provider import LocalInstanceProvider
from cloudmig.runtime import AppContext
from cloudmig.runtime.notifier import Notifier
from cloudmig.secretbox import SecretBox
from cloudmig.settings import Settings
from cloudmig.store import instances as inst_store
from cloudmig.store import tasks as task_store
from cloudmig.store.db import open_store

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
INSTANCE = "pgm-aaaaaaaaaaaaaaaa"


@dataclass
class FakeClock:
    offset: float = 0.0

    def now(self) -> datetime:
        return START + timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class FakeNotifier(Notifier):
    clock: FakeClock = field(default_factory=FakeClock)
    sleeps: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def sleep(self, task_id: int, seconds: float, stop: threading.Event) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(seconds)


def make_context(tmp_path: Path, **settings: object) -> AppContext:
    s = Settings(data_dir=tmp_path / "data", runtime_dir=tmp_path / "run", **settings)  # type: ignore[arg-type]
    clock = FakeClock()
    return AppContext(
        settings=s,
        db=open_store(f"sqlite:///{tmp_path / 'store.db'}"),
        box=SecretBox.from_settings("", tmp_path / "secret.key"),
        provider=LocalInstanceProvider(s),
        clock=clock,
        notifier=FakeNotifier(clock=clock),
    )


def add_migration(ctx: AppContext, stage: MigrateStage = MigrateStage.BASEBACKUP) -> int:
    if inst_store.get_instance(ctx.db, INSTANCE) is None:
        inst_store.insert_instance(
            ctx.db,
            dict(
                id=INSTANCE,
                status=InstanceStatus.RUNNING.value,
                engine="PostgreSQL",
                engine_version="15",
                instance_class="pg.n2.medium.2c",
                storage_gb=20,
                port=15432,
                created_at=START,
                modified_at=START,
            ),
        )
    task_id = task_store.insert_task_claiming_instance(
        ctx.db,
        {
            "kind": TaskKind.MIGRATION,
            "name": f"t-{stage.value}",
            "instance_id": INSTANCE,
            "source_ip": "127.0.0.1",
            "source_port": 5432,
            "source_account": "migratetest",
            "source_password_enc": ctx.box.seal("secret"),
            "source_category": "ecsOnVpc",
            "stage": stage,
            "replication_state": ReplicationState.UNSTARTED,
            "status": TaskStatus.RUNNING,
            "created_at": START,
            "modified_at": START,
        },
        START,
    )
    assert task_id is not None
    return task_id
