"""What a stage sees: the task, its instance and source, and ways to record what happened."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import psycopg

from cloudmig.domain.enums import ReplicationState
from cloudmig.domain.switchover import SwitchEvidence, SwitchRequest, load_request
from cloudmig.domain.transitions import Transition
from cloudmig.engine.copy_plan import SourceMeasurement
from cloudmig.instances.managed import ManagedInstance
from cloudmig.pg.source import Source
from cloudmig.runtime import AppContext, task_source
from cloudmig.store import instances as instance_store
from cloudmig.store import tasks as task_store
from cloudmig.store.records import InstanceRecord, TaskRecord


class TaskChanged(RuntimeError):
    """The task moved on meanwhile (cancelled, or a concurrent request won): stop this step."""


@dataclass
class TaskContext:
    ctx: AppContext
    task: TaskRecord
    stop: threading.Event = field(default_factory=threading.Event)
    # Connections a stage keeps open between its steps (observation every few seconds would
    # otherwise authenticate to the source each time); closed when the worker lets the task go.
    connections: dict[str, psycopg.Connection] = field(default_factory=dict)
    _source: Source | None = field(default=None, repr=False)
    # The source's compression support and link rate, measured while the assessment runs
    # (engine/copy_run.py start_measuring); the copy's plan takes it.
    source_measurement: Future[SourceMeasurement] | None = field(default=None, repr=False)

    def connection(self, key: str, connect: Callable[[], psycopg.Connection]) -> psycopg.Connection:
        conn = self.connections.get(key)
        if conn is None or conn.closed or conn.broken:
            conn = connect()
            self.connections[key] = conn
        return conn

    def drop_connection(self, key: str) -> None:
        conn = self.connections.pop(key, None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close_connections(self) -> None:
        for key in list(self.connections):
            self.drop_connection(key)

    # ---- reading ---------------------------------------------------------------------------------

    def refresh(self) -> TaskRecord:
        rec = task_store.get_task(self.ctx.db, self.task.id)
        if rec is None:
            raise TaskChanged(f"task {self.task.id} no longer exists")
        self.task = rec
        return rec

    def instance_record(self) -> InstanceRecord:
        rec = instance_store.get_instance(self.ctx.db, self.task.instance_id)
        if rec is None:
            raise TaskChanged(f"instance {self.task.instance_id} no longer exists")
        return rec

    def instance(self) -> ManagedInstance:
        return ManagedInstance.of(self.ctx.provider, self.instance_record())

    def source(self) -> Source:
        """The task's source; its password is opened once per worker, when first needed."""
        if self._source is None:
            self._source = task_source(self.ctx, self.task)
        return self._source

    @property
    def slot_name(self) -> str:
        if not self.task.slot_name:
            raise RuntimeError(f"task {self.task.id} has no slot yet")
        return self.task.slot_name

    def switch_request(self) -> SwitchRequest | None:
        return load_request(self.task.request)

    def evidence(self) -> SwitchEvidence:
        return SwitchEvidence.load(self.task.evidence)

    # ---- the source's password, for the binaries -------------------------------------------------

    def write_passfile(self) -> None:
        """(Re)create the 0600 passfile outside every data dir; the runtime dir may be wiped by a reboot."""
        src = self.source()
        self.instance().write_source_passfile(src.endpoint, src.password)

    def remove_passfile(self) -> None:
        self.ctx.provider.passfile_path(self.task.instance_id).unlink(missing_ok=True)

    # ---- writing ---------------------------------------------------------------------------------

    def event(self, section: str, text: str) -> None:
        task_store.add_event(self.ctx.db, self.task.id, self.ctx.now(), section, text)

    def update(self, **values: Any) -> None:
        task_store.update_task(self.ctx.db, self.task.id, self.ctx.now(), **values)
        self.refresh()

    def observe(self, **values: Any) -> None:
        """Refresh observed values without touching GmtModified."""
        task_store.update_task_quietly(self.ctx.db, self.task.id, **values)
        self.refresh()

    def save_evidence(self, evidence: SwitchEvidence) -> None:
        """Persisted before it is acted on: the switchover resumes from it after a crash."""
        self.update(evidence=evidence.to_json())

    def move(
        self, transition: Transition, replication_state: ReplicationState | None = None, **values: Any
    ) -> None:
        """Move the task's stage by a named transition (domain.transitions); TaskChanged when the
        task is no longer where this step thought it was."""
        if replication_state is not None:
            values["replication_state"] = replication_state
        if not task_store.transition(
            self.ctx.db, self.task.id, transition, self.ctx.now(), current=self.task.stage, **values
        ):
            self.refresh()
            raise TaskChanged(f"task {self.task.id} is no longer in stage {self.task.stage.value}")
        self.refresh()
