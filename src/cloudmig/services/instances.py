"""Managed instances: create (engine does the initdb), describe, delete, accounts."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from cloudmig import errors
from cloudmig.domain import classes
from cloudmig.domain.enums import InstanceStatus, TaskKind, TaskStatus
from cloudmig.domain.ids import new_instance_id
from cloudmig.domain.reserved import RESERVED_ROLES
from cloudmig.instances.ports import allocate_port
from cloudmig.pg import compat, probes, roles
from cloudmig.pg.binaries import PgBinariesNotFound, find_bin_dir
from cloudmig.runtime import AppContext
from cloudmig.store import instances as instance_store
from cloudmig.store import tasks as task_store
from cloudmig.store.records import InstanceRecord

SUPPORTED_ENGINE = "PostgreSQL"


@dataclass(frozen=True)
class InstanceRequest:
    engine: str
    engine_version: str
    instance_class: str
    storage_gb: int
    description: str = ""
    client_token: str | None = None


def _major_of(version: str) -> int:
    head = version.strip().split(".")[0]
    if not head.isdigit():
        raise errors.InvalidEngineVersion()
    return int(head)


def create_instance(ctx: AppContext, req: InstanceRequest) -> InstanceRecord:
    if req.client_token:
        existing = instance_store.get_by_client_token(ctx.db, req.client_token)
        if existing is not None:
            return existing
    if req.engine.lower() != SUPPORTED_ENGINE.lower():
        raise errors.InvalidEngine(f"Specified engine {req.engine!r} is not supported; use PostgreSQL.")
    major = _major_of(req.engine_version)
    if major not in compat.SUPPORTED_MAJORS:
        raise errors.InvalidEngineVersion(
            f"PostgreSQL {major} is not supported; EngineVersion {compat.MIN_MAJOR} to {compat.MAX_MAJOR}."
        )
    try:
        find_bin_dir(major, ctx.settings.pg_bin_dirs)
    except PgBinariesNotFound as exc:
        raise errors.InvalidEngineVersion(
            f"PostgreSQL {major} binaries are not installed on this cloudmig host."
        ) from exc
    if classes.lookup(req.instance_class) is None:
        known = ", ".join(sorted(classes.CATALOGUE))
        raise errors.InvalidInstanceClass(
            f"Specified DB instance class {req.instance_class!r} is not found; known classes: {known}."
        )
    s = ctx.settings
    for _ in range(5):  # a concurrent create may take the same port; the unique index tells us
        now = ctx.now()
        instance_id = new_instance_id()
        port = allocate_port(instance_store.used_ports(ctx.db), s.instance_port_min, s.instance_port_max)
        try:
            instance_store.insert_instance(
                ctx.db,
                {
                    "id": instance_id,
                    "status": InstanceStatus.CREATING.value,
                    "engine": SUPPORTED_ENGINE,
                    "engine_version": str(major),
                    "instance_class": req.instance_class,
                    "storage_gb": req.storage_gb,
                    "port": port,
                    "description": req.description,
                    "client_token": req.client_token,
                    "created_at": now,
                    "modified_at": now,
                },
            )
        except IntegrityError:
            if req.client_token:
                again = instance_store.get_by_client_token(ctx.db, req.client_token)
                if again is not None:
                    return again
            continue
        ctx.notifier.wake_engine()
        rec = instance_store.get_instance(ctx.db, instance_id)
        assert rec is not None
        return rec
    raise errors.QuotaExceeded()


def get_instance(ctx: AppContext, instance_id: str) -> InstanceRecord:
    rec = instance_store.get_instance(ctx.db, instance_id)
    if rec is None:
        raise errors.InstanceNotFound()
    return rec


def list_instances(
    ctx: AppContext,
    *,
    instance_id: str | None,
    page_number: int,
    page_size: int,
    engine: str | None = None,
) -> tuple[int, list[InstanceRecord]]:
    return instance_store.list_instances(
        ctx.db,
        instance_id=instance_id,
        db_engine=engine,
        offset=(page_number - 1) * page_size,
        limit=page_size,
    )


def delete_instance(ctx: AppContext, instance_id: str) -> InstanceRecord:
    """Mark for deletion; running tasks are cancelled and the engine drops their slots, then the files."""
    rec = get_instance(ctx, instance_id)
    if rec.status is InstanceStatus.DELETING:
        return rec
    now = ctx.now()
    for t in task_store.tasks_of_instance(ctx.db, instance_id, TaskKind.MIGRATION):
        if t.status is TaskStatus.RUNNING:
            task_store.update_task(ctx.db, t.id, now, status=TaskStatus.CANCELLED, reason="instance deleted")
    for t in task_store.tasks_of_instance(ctx.db, instance_id, TaskKind.PRECHECK):
        if t.status is TaskStatus.RUNNING:
            task_store.update_task(ctx.db, t.id, now, status=TaskStatus.CANCELLED, reason="instance deleted")
    instance_store.set_status(ctx.db, instance_id, InstanceStatus.DELETING, now)
    ctx.notifier.wake_engine()
    return get_instance(ctx, instance_id)


def _accounts_instance(ctx: AppContext, instance_id: str, name: str) -> InstanceRecord:
    rec = get_instance(ctx, instance_id)
    if rec.status is not InstanceStatus.RUNNING or rec.migration_task_id is not None:
        raise errors.IncorrectInstanceState(
            "Accounts can be managed on a Running instance that no migration task is using."
        )
    if name in RESERVED_ROLES:
        raise errors.InvalidParameter("AccountName", f"{name} is reserved by cloudmig.")
    return rec


def create_account(
    ctx: AppContext, instance_id: str, name: str, password: str, *, superuser: bool, description: str
) -> None:
    rec = _accounts_instance(ctx, instance_id, name)
    with ctx.provider.connect_admin(rec.id, rec.port) as conn:
        if probes.role_exists(conn, name):
            raise errors.AccountAlreadyExists()
        roles.create_login_role(conn, name, password, superuser=superuser, comment=description)


def reset_account_password(ctx: AppContext, instance_id: str, name: str, password: str) -> None:
    """A new password for a role of the instance, e.g. one that came along from the source without a
    password (the Debian `postgres` owner logs in by peer authentication there)."""
    rec = _accounts_instance(ctx, instance_id, name)
    with ctx.provider.connect_admin(rec.id, rec.port) as conn:
        if not probes.role_exists(conn, name):
            raise errors.AccountNotFound()
        roles.set_password(conn, name, password)
