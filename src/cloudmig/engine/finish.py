"""After the promotion: the instance becomes a plain primary, the slot goes, the evidence is
complete. Every step is safe to repeat (a crash between them resumes here), and nothing here may
reset or wipe the target."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import psycopg

from cloudmig.domain.detail import SECTION_SWITCH
from cloudmig.domain.enums import ReplicationState, TaskStatus
from cloudmig.domain.reserved import ADMIN_ROLE
from cloudmig.domain.switchover import DataLoss, SwitchEvidence, SwitchPhase
from cloudmig.domain.transitions import Transition
from cloudmig.engine import slots
from cloudmig.engine.observe import observe
from cloudmig.engine.taskctx import TaskContext
from cloudmig.instances.managed import ManagedInstance
from cloudmig.pg import probes, roles
from cloudmig.store import instances as instance_store


def _reload_and_ensure_admin_role(tc: TaskContext, inst: ManagedInstance, superuser: str | None) -> None:
    """Reload the new configuration and create cloudmig's own role, over one superuser session
    (pg_ctl reload would be a process more while the application waits)."""
    if superuser is None:
        inst.reload()
        tc.event(SECTION_SWITCH, f"No superuser on the new primary; {ADMIN_ROLE} was not created")
        return
    with inst.connect(superuser) as conn:
        conn.execute("SELECT pg_reload_conf()")
        if roles.ensure_superuser(conn, ADMIN_ROLE):
            tc.event(SECTION_SWITCH, f"Created cloudmig's reserved role {ADMIN_ROLE} on the new primary")


def finish(tc: TaskContext, ev: SwitchEvidence, target: psycopg.Connection | None = None) -> None:
    """`target`: a connection to the instance as the migration account, if one is open."""
    inst = tc.instance()
    with contextlib.ExitStack() as stack:
        if target is None:
            target = stack.enter_context(inst.connect(tc.task.source_account))
        if probes.is_in_recovery(target):
            raise RuntimeError("the target is still in recovery after promotion")
        ev.timeline_after = probes.timeline_id(target)
        final_info = observe(target, None).replication_info()
        superuser = roles.any_superuser(target)
    if ev.timeline_before is not None and ev.timeline_after != ev.timeline_before + 1:
        tc.event(SECTION_SWITCH, f"Unexpected timeline change: {ev.timeline_before} -> {ev.timeline_after}")
    # No standby settings left behind: a restart must never turn the primary back into a standby.
    inst.apply_conf(standby=None)
    _reload_and_ensure_admin_role(tc, inst, superuser)
    problem = slots.drop_task_slot(tc.ctx, tc.task, reason="the switchover is done")
    ev.slot_dropped = problem is None
    tc.remove_passfile()
    now = tc.ctx.now()
    request = tc.switch_request()
    if request is not None:
        ev.total_seconds = round((now - request.requested_at).total_seconds(), 3)
    if tc.task.progress.get("_Watch"):  # what the watch compares with, taken at the cut
        ev.watch_until = now + timedelta(hours=tc.ctx.settings.post_switch_watch_hours)
    if ev.bytes_not_replayed:
        ev.data_loss = DataLoss(bytes_not_replayed=ev.bytes_not_replayed, detected_at=now)
    ev.phase = SwitchPhase.DONE
    lost = ev.bytes_not_replayed
    tc.event(
        SECTION_SWITCH,
        f"RDS instance promoted to primary on timeline {ev.timeline_after}; "
        + (
            "bytes of source WAL not replayed: unknown (source unreachable)"
            if lost is None
            else f"bytes of source WAL not replayed: {lost}"
        ),
    )
    if ev.fence_lift_hint and ev.fence_state.value == "up":
        tc.event(
            SECTION_SWITCH,
            "The old source stays fenced (read-only for new transactions) against a split brain; "
            f"to lift the fence run on it: {ev.fence_lift_hint}",
        )
    reason = ""
    if ev.data_loss is not None:
        reason = f"forced switchover: {lost} bytes of the source's WAL were not replayed on the new primary"
    tc.move(
        Transition.SWITCHED,
        ReplicationState.FINISH,
        status=TaskStatus.SUCCEEDED,
        switch_time=now,
        evidence=ev.to_json(),
        replication_info=final_info,
        reason=reason,
    )
    instance_store.release_migration(tc.ctx.db, inst.id, tc.task.id, now)
