"""ActivateMigrationTargetInstance: the gate (stage, state, quiet source) and the recorded request.

The API thread only decides whether a switchover may start and records the cut; the engine's
switch stage does the catch-up, the promotion and the cleanup (engine/switch.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from cloudmig import errors
from cloudmig.domain.detail import SECTION_SWITCH
from cloudmig.domain.enums import MigrateStage, ReplicationState, TaskKind, TaskStatus
from cloudmig.domain.lsn import format_lsn
from cloudmig.pg import probes
from cloudmig.runtime import AppContext, task_source
from cloudmig.services.instances import get_instance
from cloudmig.store import tasks as task_store
from cloudmig.store.records import TaskRecord


@dataclass(frozen=True)
class Quiescence:
    cut_lsn: int
    quiet: bool
    moved_from: int
    seconds: float


def current_migration(ctx: AppContext, instance_id: str) -> TaskRecord:
    inst = get_instance(ctx, instance_id)
    tasks = task_store.tasks_of_instance(ctx.db, inst.id, TaskKind.MIGRATION)
    if not tasks:
        raise errors.IncorrectInstanceState("The instance has no cloud migration task to switch over.")
    return max(tasks, key=lambda t: t.id)


def wait_for_quiet_source(ctx: AppContext, task: TaskRecord) -> Quiescence:
    """The source is quiet when its WAL position does not move over one whole window."""
    s = ctx.settings
    started = time.monotonic()
    try:
        with task_source(ctx, task).connect() as conn:
            first = before = probes.current_wal_lsn(conn)
            for _ in range(s.switch_quiet_attempts):
                time.sleep(s.switch_quiet_seconds)
                after = probes.current_wal_lsn(conn)
                if after == before:
                    return Quiescence(after, True, first, time.monotonic() - started)
                before = after
    except Exception as exc:
        raise errors.IncorrectInstanceState(
            f"The source cannot be reached to check that writes have stopped ({type(exc).__name__}); "
            "use ForceSwitch=1 to switch over without it."
        ) from None
    return Quiescence(before, False, first, time.monotonic() - started)


def request_switchover(ctx: AppContext, instance_id: str, *, force: bool) -> TaskRecord:
    task = current_migration(ctx, instance_id)
    if task.status is not TaskStatus.RUNNING or task.stage is not MigrateStage.INCREMENT:
        raise errors.IncorrectInstanceState(
            f"The migration task {task.id} is in stage {task.stage.value} ({task.status.value}); "
            "a switchover needs stage increment."
        )
    if task.replication_state is not ReplicationState.STREAMING:
        raise errors.IncorrectInstanceState(
            f"Replication is {task.replication_state.value}; a switchover needs it streaming."
        )
    request: dict[str, object] = {"RequestedAt": time.time(), "Force": force}
    if not force:
        q = wait_for_quiet_source(ctx, task)
        if not q.quiet:
            raise errors.IncorrectInstanceState(
                "Writes are still arriving on the source: its WAL position moved from "
                f"{format_lsn(q.moved_from)} to {format_lsn(q.cut_lsn)} in {q.seconds:.1f} s. Stop the "
                "application's writes and call again, or set ForceSwitch=1 to switch now and lose them."
            )
        request.update(CutLsn=q.cut_lsn, GateSeconds=round(q.seconds, 3))
    now = ctx.now()
    changed = task_store.compare_and_set_stage(
        ctx.db,
        task.id,
        {"stage": MigrateStage.INCREMENT, "status": TaskStatus.RUNNING},
        now,
        stage=MigrateStage.SWITCH,
        request={**task.request, "Switch": request},
    )
    if not changed:  # a concurrent Activate won, or the task changed meanwhile
        raise errors.IncorrectInstanceState("The migration task is no longer in stage increment.")
    mode = "forced switchover (writes not yet replayed are lost)" if force else "switchover"
    task_store.add_event(ctx.db, task.id, now, SECTION_SWITCH, f"Switchover requested: {mode}")
    ctx.notifier.wake(task.id)
    rec = task_store.get_task(ctx.db, task.id)
    assert rec is not None
    return rec
