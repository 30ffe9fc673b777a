"""What a stage step sees: the task, the service context, and ways to record what happened."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from cloudmig.checks import TargetSpec
from cloudmig.domain.enums import MigrateStage, ReplicationState, TaskStatus, can_advance
from cloudmig.domain.ids import slot_name_for_task
from cloudmig.engine.targets import target_spec
from cloudmig.pg.source import Source
from cloudmig.runtime import AppContext, task_source
from cloudmig.store import instances as instance_store
from cloudmig.store import tasks as task_store
from cloudmig.store.records import InstanceRecord, TaskRecord


@dataclass
class TaskContext:
    ctx: AppContext
    task: TaskRecord
    stop: threading.Event = field(default_factory=threading.Event)
    # Connections a stage keeps open between its steps (observation every few seconds would
    # otherwise authenticate to the source each time); closed when the worker lets the task go.
    connections: dict[str, psycopg.Connection] = field(default_factory=dict)
    _source: Source | None = field(default=None, repr=False)

    def connection(self, key: str, connect: Callable[[], psycopg.Connection]) -> psycopg.Connection:
        conn = self.connections.get(key)
        if conn is None or conn.closed or conn.broken:
            conn = connect()
            self.connections[key] = conn
        return conn

    def close_connections(self) -> None:
        for conn in self.connections.values():
            with contextlib.suppress(Exception):
                conn.close()
        self.connections.clear()

    # ---- reading ---------------------------------------------------------------------------------

    def refresh(self) -> TaskRecord:
        rec = task_store.get_task(self.ctx.db, self.task.id)
        assert rec is not None
        self.task = rec
        return rec

    def instance(self) -> InstanceRecord:
        rec = instance_store.get_instance(self.ctx.db, self.task.instance_id)
        assert rec is not None
        return rec

    @property
    def slot_name(self) -> str:
        return slot_name_for_task(self.task.id)

    def source(self) -> Source:
        """The task's source; its password is opened once per worker, when first needed."""
        if self._source is None:
            self._source = task_source(self.ctx, self.task)
        return self._source

    def target_spec(self) -> TargetSpec:
        return target_spec(self.ctx.provider, self.instance())

    @property
    def passfile(self) -> Path:
        return self.ctx.provider.passfile_path(self.task.instance_id)

    def write_passfile(self) -> None:
        """(Re)create the 0600 passfile outside every data dir; the runtime dir may be wiped by a reboot."""
        self.ctx.provider.write_source_passfile(
            self.task.instance_id, self.source().endpoint, self.source().password
        )

    def remove_passfile(self) -> None:
        self.passfile.unlink(missing_ok=True)

    # ---- writing ---------------------------------------------------------------------------------

    def event(self, section: str, text: str) -> None:
        task_store.add_event(self.ctx.db, self.task.id, self.ctx.now(), section, text)

    def update(self, **values: Any) -> None:
        task_store.update_task(self.ctx.db, self.task.id, self.ctx.now(), **values)
        self.refresh()

    def observe(self, **values: Any) -> None:
        """Refresh observed values without touching GmtModified."""
        task_store.update_task_quietly(self.ctx.db, self.task.id, **values)

    def advance(self, stage: MigrateStage, replication_state: ReplicationState | None = None) -> None:
        if not can_advance(self.task.stage, stage):
            raise RuntimeError(f"a task cannot move from stage {self.task.stage.value} to {stage.value}")
        values: dict[str, Any] = {"stage": stage}
        if replication_state is not None:
            values["replication_state"] = replication_state
        self.update(**values)

    def fail(self, reason: str) -> None:
        self.update(status=TaskStatus.FAILED, reason=reason)
