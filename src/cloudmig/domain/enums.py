"""Stable strings stored in the database and returned over the API. Never rename a value."""

from __future__ import annotations

from enum import StrEnum


class MigrateStage(StrEnum):
    PRECHECK = "precheck"
    BASEBACKUP = "basebackup"
    STARTUP = "startup"
    INCREMENT = "increment"
    SWITCH = "switch"
    SUCCESS = "success"


class ReplicationState(StrEnum):
    UNSTARTED = "unstarted"
    CATCHUP = "catchup"
    STREAMING = "streaming"
    DISCONNECT = "disconnect"
    FINISH = "finish"


class TaskStatus(StrEnum):
    RUNNING = "running"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUCCEEDED = "succeeded"


class TaskKind(StrEnum):
    PRECHECK = "precheck"
    MIGRATION = "migration"


class InstanceStatus(StrEnum):
    CREATING = "Creating"
    RUNNING = "Running"
    DELETING = "Deleting"
    FAILED = "Failed"


class KeyStatus(StrEnum):
    ACTIVE = "Active"
    INACTIVE = "Inactive"


class CheckLevel(StrEnum):
    SUCCESS = "success"
    WARNING = "warning"
    ERROR = "error"


# The order a migration goes through on its way to success (domain.transitions has the moves,
# including the two that go back: a switchover given up, and a copy started again).
STAGE_ORDER: tuple[MigrateStage, ...] = tuple(MigrateStage)
