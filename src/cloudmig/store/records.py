"""Typed rows returned by the store's queries."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping

from cloudmig.domain.enums import (
    InstanceStatus,
    KeyStatus,
    MigrateStage,
    ReplicationState,
    TaskKind,
    TaskStatus,
)


@dataclass(frozen=True)
class AccessKeyRecord:
    id: str
    secret_enc: str
    status: KeyStatus
    description: str
    created_at: datetime


@dataclass(frozen=True)
class InstanceRecord:
    id: str
    status: InstanceStatus
    engine: str
    engine_version: str
    instance_class: str
    storage_gb: int
    port: int
    description: str
    client_token: str | None
    migration_task_id: int | None
    status_reason: str
    created_at: datetime
    modified_at: datetime

    @property
    def major(self) -> int:
        return int(self.engine_version.split(".")[0])

    @classmethod
    def from_row(cls, m: RowMapping) -> InstanceRecord:
        d = dict(m)
        d["status"] = InstanceStatus(d["status"])
        return cls(**d)


@dataclass(frozen=True)
class TaskRecord:
    id: int
    kind: TaskKind
    name: str
    instance_id: str
    source_ip: str
    source_port: int
    source_account: str
    source_password_enc: str
    source_category: str
    stage: MigrateStage
    replication_state: ReplicationState
    status: TaskStatus
    reason: str
    report: str
    check_results: list[dict[str, str]]
    replication_info: str
    progress: dict[str, Any]
    evidence: dict[str, Any]
    request: dict[str, Any]
    switch_time: datetime | None
    slot_name: str | None
    reason_code: str
    lease_owner: str | None
    lease_expires: datetime | None
    created_at: datetime
    modified_at: datetime

    @classmethod
    def from_row(cls, m: RowMapping) -> TaskRecord:
        d = dict(m)
        d["kind"] = TaskKind(d["kind"])
        d["stage"] = MigrateStage(d["stage"])
        d["replication_state"] = ReplicationState(d["replication_state"])
        d["status"] = TaskStatus(d["status"])
        for key in ("check_results", "progress", "evidence", "request"):
            d[key] = json.loads(d[key] or ("[]" if key == "check_results" else "{}"))
        return cls(**d)


@dataclass(frozen=True)
class SlotDropRecord:
    id: int
    slot_name: str
    source_ip: str
    source_port: int
    source_account: str
    source_password_enc: str
    source_tls: dict[str, Any]
    task_id: int | None
    reason: str
    attempts: int
    last_error: str
    created_at: datetime
    next_attempt_at: datetime

    @classmethod
    def from_row(cls, m: RowMapping) -> SlotDropRecord:
        d = dict(m)
        d["source_tls"] = json.loads(d["source_tls"] or "{}")
        return cls(**d)
