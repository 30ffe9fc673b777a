"""Precheck and migration tasks: creation (the engine does the work) and reading them back."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError

from cloudmig import errors
from cloudmig.checks import gather_target_contents
from cloudmig.checks.rules import target_not_empty
from cloudmig.domain.detail import Event
from cloudmig.domain.enums import (
    InstanceStatus,
    MigrateStage,
    ReplicationState,
    TaskKind,
    TaskStatus,
)
from cloudmig.domain.ids import new_task_name
from cloudmig.domain.tls import SourceTlsRequest
from cloudmig.runtime import AppContext
from cloudmig.runtime.targets import target_spec
from cloudmig.services.instances import get_instance
from cloudmig.store import tasks as task_store
from cloudmig.store.records import InstanceRecord, TaskRecord
from cloudmig.store.tasks import TaskFilter


@dataclass(frozen=True)
class SourceRequest:
    instance_id: str
    source_ip: str
    source_port: int
    source_account: str
    source_password: str = field(repr=False)
    source_category: str
    task_name: str | None = None
    tls: SourceTlsRequest = field(default_factory=SourceTlsRequest)
    # Extension request values kept with the task (e.g. CopyCompression).
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskPage:
    total: int
    tasks: list[TaskRecord]
    events: dict[int, list[Event]]


def _check_tls(ctx: AppContext, req: SourceRequest) -> None:
    # Without a CA of cloudmig's own, libpq would look in ~/.postgresql of whoever runs it.
    verifying = req.tls.sslmode in ("verify-ca", "verify-full")
    if verifying and req.tls.root_cert_pem is None and ctx.settings.source_sslrootcert is None:
        raise errors.InvalidParameter(
            "SourceSslRootCert", f"SourceSslMode {req.tls.sslmode} needs the CA certificate(s) of the source."
        )


def _task_values(ctx: AppContext, req: SourceRequest, kind: TaskKind, name: str) -> dict[str, object]:
    _check_tls(ctx, req)
    now = ctx.now()
    return {
        "kind": kind,
        "name": name,
        "instance_id": req.instance_id,
        "source_ip": req.source_ip,
        "source_port": req.source_port,
        "source_account": req.source_account,
        "source_password_enc": ctx.box.seal(req.source_password),
        "source_category": req.source_category,
        "request": {"SourceTls": req.tls.to_json(), **req.extra},
        "stage": MigrateStage.PRECHECK,
        "replication_state": ReplicationState.UNSTARTED,
        "status": TaskStatus.RUNNING,
        "created_at": now,
        "modified_at": now,
    }


def _task_name(ctx: AppContext, req: SourceRequest, kind: TaskKind) -> str:
    if req.task_name is None:
        return new_task_name()
    if task_store.name_taken(ctx.db, req.instance_id, kind, req.task_name):
        raise errors.TaskNameConflict()
    return req.task_name


def _non_empty_reason(ctx: AppContext, inst: InstanceRecord) -> str | None:
    """Why the instance cannot receive a migration (a database or a table exists), or None."""
    facts = gather_target_contents(target_spec(ctx, inst))
    if not facts.connected:
        # The admin role only exists on an instance cloudmig initialised and never migrated into.
        return f"cloudmig cannot inspect it ({facts.connect_error})"
    problems = target_not_empty(facts)
    return "; ".join(problems) if problems else None


def _in_use(ctx: AppContext, task_id: int) -> str:
    task = task_store.get_task(ctx.db, task_id)
    if task is not None and task.status is TaskStatus.FAILED:
        return (
            f"Migration task {task_id} failed and cloudmig is still cleaning up after it (its "
            "replication slot, the instance's reset); try again once its Detail says the migration "
            "can be retried."
        )
    return f"A migration task ({task_id}) is already using this instance."


def create_migration_task(ctx: AppContext, req: SourceRequest) -> TaskRecord:
    inst = get_instance(ctx, req.instance_id)
    if inst.status is not InstanceStatus.RUNNING:
        raise errors.IncorrectInstanceState(
            f"The current instance state ({inst.status.value}) does not support this operation."
        )
    if inst.migration_task_id is not None:
        raise errors.IncorrectInstanceState(_in_use(ctx, inst.migration_task_id))
    emptiness = _non_empty_reason(ctx, inst)
    if emptiness:
        raise errors.IncorrectInstanceState(f"The instance is not empty: {emptiness}.")
    name = _task_name(ctx, req, TaskKind.MIGRATION)
    values = _task_values(ctx, req, TaskKind.MIGRATION, name)
    try:
        task_id = task_store.insert_task_claiming_instance(ctx.db, values, ctx.now())
    except IntegrityError:  # the same TaskName created concurrently
        raise errors.TaskNameConflict() from None
    if task_id is None:
        raise errors.IncorrectInstanceState("Another migration task started on this instance meanwhile.")
    ctx.notifier.wake_engine()
    rec = task_store.get_task(ctx.db, task_id)
    assert rec is not None
    return rec


def create_precheck_task(ctx: AppContext, req: SourceRequest) -> TaskRecord:
    inst = get_instance(ctx, req.instance_id)
    if inst.status is not InstanceStatus.RUNNING:
        raise errors.IncorrectInstanceState(
            f"The current instance state ({inst.status.value}) does not support this operation."
        )
    name = _task_name(ctx, req, TaskKind.PRECHECK)
    try:
        task_id = task_store.insert_task(ctx.db, _task_values(ctx, req, TaskKind.PRECHECK, name))
    except IntegrityError:  # the same TaskName created concurrently
        raise errors.TaskNameConflict() from None
    ctx.notifier.wake_engine()
    rec = task_store.get_task(ctx.db, task_id)
    assert rec is not None
    return rec


def describe_tasks(ctx: AppContext, f: TaskFilter, *, page_number: int, page_size: int) -> TaskPage:
    get_instance(ctx, f.instance_id)
    total, recs = task_store.find_tasks(ctx.db, f, offset=(page_number - 1) * page_size, limit=page_size)
    return TaskPage(total, recs, task_store.events_for(ctx.db, [r.id for r in recs]))


def running_migrations(ctx: AppContext) -> list[TaskRecord]:
    """Migration tasks still running, across all instances (one query, for samplers)."""
    return task_store.running_migrations(ctx.db)
