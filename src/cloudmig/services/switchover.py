"""ActivateMigrationTargetInstance: the gate the request can decide at once (stage, state, a live
target), the recorded request, and the wait for the engine's verdict.

The engine's switch stage (engine/switch.py) fences the source or proves it quiet, takes the cut,
waits for the target and promotes. The call waits up to `switch_verdict_seconds` for that gate: a
refusal before the call returns is an error of the call; after, it is in the task's Detail.
"""

from __future__ import annotations

import time

import psycopg

from cloudmig import errors
from cloudmig.domain.detail import SECTION_SWITCH
from cloudmig.domain.enums import MigrateStage, ReplicationState, TaskKind, TaskStatus
from cloudmig.domain.switchover import FenceChoice, SwitchEvidence, SwitchPhase, SwitchRequest
from cloudmig.domain.transitions import Transition
from cloudmig.instances.managed import OBSERVE_CONNECT_TIMEOUT, ManagedInstance
from cloudmig.pg import probes
from cloudmig.runtime import AppContext
from cloudmig.services.instances import get_instance
from cloudmig.store import tasks as task_store
from cloudmig.store.records import TaskRecord

VERDICT_POLL_SECONDS = 0.05
# Phases that mean the gate was passed: the point of no return, whose last check (no transaction
# ended on the source after the cut) is part of the gate.
_PASSED = frozenset({SwitchPhase.PROMOTING, SwitchPhase.DONE})


def current_migration(ctx: AppContext, instance_id: str) -> TaskRecord:
    inst = get_instance(ctx, instance_id)
    tasks = task_store.tasks_of_instance(ctx.db, inst.id, TaskKind.MIGRATION)
    if not tasks:
        raise errors.IncorrectInstanceState("The instance has no cloud migration task to switch over.")
    return max(tasks, key=lambda t: t.id)


def _check_target_live(ctx: AppContext, task: TaskRecord, *, force: bool) -> None:
    """The target must be a running standby right now (and receiving, unless forced)."""
    inst = ManagedInstance.of(ctx.provider, get_instance(ctx, task.instance_id))
    try:
        with inst.connect(task.source_account, connect_timeout=OBSERVE_CONNECT_TIMEOUT) as conn:
            in_recovery = probes.is_in_recovery(conn)
            receiver = probes.wal_receiver(conn)
    except psycopg.Error as exc:
        raise errors.IncorrectInstanceState(
            f"The target instance does not answer ({' '.join(str(exc).split())[:200]}); it must be running "
            "to be switched over."
        ) from None
    if not in_recovery:
        raise errors.IncorrectInstanceState("The target instance is not a standby any more.")
    if not force and (receiver is None or receiver.get("status") != "streaming"):
        raise errors.IncorrectInstanceState(
            "The target instance is not receiving from the source right now; a switchover needs it "
            "streaming (use ForceSwitch=1 if the source is gone)."
        )


def request_switchover(
    ctx: AppContext,
    instance_id: str,
    *,
    force: bool,
    timeout_seconds: float | None = None,
    fence: FenceChoice | None = None,
) -> TaskRecord:
    task = current_migration(ctx, instance_id)
    if task.status is not TaskStatus.RUNNING or task.stage is not MigrateStage.INCREMENT:
        raise errors.IncorrectInstanceState(
            f"The migration task {task.id} is in stage {task.stage.value} ({task.status.value}); "
            "a switchover needs stage increment."
        )
    if not force and task.replication_state is not ReplicationState.STREAMING:
        raise errors.IncorrectInstanceState(
            f"Replication is {task.replication_state.value}; a switchover needs it streaming "
            "(use ForceSwitch=1 to promote the target with what it has replayed)."
        )
    _check_target_live(ctx, task, force=force)
    now = ctx.now()
    request = SwitchRequest(
        requested_at=now,
        force=force,
        timeout_seconds=timeout_seconds or ctx.settings.switch_catchup_timeout,
        fence=fence or FenceChoice(ctx.settings.switch_fence),
    )
    changed = task_store.transition(
        ctx.db,
        task.id,
        Transition.SWITCH_REQUESTED,
        now,
        current=MigrateStage.INCREMENT,
        request={**task.request, "Switch": request.to_json()},
        evidence=SwitchEvidence(forced=force).to_json(),
    )
    if not changed:  # a concurrent Activate won, or the task changed meanwhile
        raise errors.IncorrectInstanceState("The migration task is no longer in stage increment.")
    mode = "forced switchover (writes not yet replayed are lost)" if force else "switchover"
    task_store.add_event(ctx.db, task.id, now, SECTION_SWITCH, f"Switchover requested: {mode}")
    ctx.notifier.wake(task.id)
    return _await_verdict(ctx, task.id, ctx.settings.switch_verdict_seconds)


def _await_verdict(ctx: AppContext, task_id: int, seconds: float) -> TaskRecord:
    """The task once the engine passed the gate (or `seconds` went by); a refusal raises."""
    deadline = time.monotonic() + seconds
    while True:
        rec = task_store.get_task(ctx.db, task_id)
        assert rec is not None
        ev = SwitchEvidence.load(rec.evidence)
        if ev.phase is SwitchPhase.ABORTED:
            raise errors.IncorrectInstanceState(f"{ev.aborted_reason or 'The switchover was given up'}.")
        if ev.phase in _PASSED or rec.stage is not MigrateStage.SWITCH or time.monotonic() >= deadline:
            return rec
        time.sleep(VERDICT_POLL_SECONDS)
