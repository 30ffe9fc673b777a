"""Stage switch: catch up to the cut, promote exactly once, then make the instance a plain primary.

Every decision is persisted in the task's evidence before it is acted on, and the target's own
state (in recovery or not) says whether the promotion already happened, so a crash at any point
resumes without promoting twice.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from cloudmig.domain import classes
from cloudmig.domain.detail import SECTION_SWITCH
from cloudmig.domain.enums import MigrateStage, ReplicationState, TaskStatus
from cloudmig.domain.lsn import format_lsn
from cloudmig.engine.cleanup import drop_source_slot
from cloudmig.engine.taskctx import TaskContext
from cloudmig.instances.osuser import pg_os_user
from cloudmig.instances.provider import ADMIN_ROLE
from cloudmig.pg import ctl, probes, roles
from cloudmig.pg.sql import connect_socket
from cloudmig.store import instances as instance_store
from cloudmig.store import tasks as task_store

# How often the catch-up wait looks at the target's replay position.
CATCHUP_POLL_SECONDS = 0.05

ROW_CHANGES_SQL = (
    "SELECT coalesce(sum(tup_inserted + tup_updated + tup_deleted), 0)::bigint FROM pg_stat_database"
)


def _target(tc: TaskContext, user: str | None = None) -> psycopg.Connection:
    inst = tc.instance()
    return connect_socket(tc.ctx.provider.socket_dir(inst.id), inst.port, user or tc.task.source_account)


def _source_position(tc: TaskContext) -> tuple[int, int] | None:
    """(current WAL LSN, rows changed so far) on the source, or None when it cannot be reached."""
    try:
        with tc.source().connect() as c:
            row = c.execute(ROW_CHANGES_SQL).fetchone()
            return probes.current_wal_lsn(c), int(row[0]) if row else 0
    except psycopg.Error:
        return None


def _persist(tc: TaskContext, evidence: dict[str, Any]) -> None:
    tc.update(evidence=evidence)


def _abort(tc: TaskContext, why: str) -> None:
    """Give up this switchover attempt; the standby keeps streaming and Activate can be called again."""
    task_store.compare_and_set_stage(
        tc.ctx.db, tc.task.id, {"stage": MigrateStage.SWITCH}, tc.ctx.now(), stage=MigrateStage.INCREMENT
    )
    tc.event(SECTION_SWITCH, f"Switchover aborted, replication goes on: {why}")
    tc.refresh()


def step(tc: TaskContext) -> float | None:
    request = dict(tc.task.request.get("Switch", {}))
    evidence = dict(tc.task.evidence)
    forced = bool(request.get("Force"))
    with _target(tc) as target:
        in_recovery = probes.is_in_recovery(target)
        if in_recovery:
            if "TimelineBefore" not in evidence:
                evidence.update(TimelineBefore=probes.timeline_id(target), Forced=forced)
                if "CutLsn" in request:
                    evidence["CutLsn"] = format_lsn(int(request["CutLsn"]))
                _persist(tc, evidence)
            replay = probes.replay_lsn(target) or 0
            if not forced:
                cut = int(request["CutLsn"])
                if replay < cut:
                    waited = time.time() - float(request["RequestedAt"])
                    if waited > tc.ctx.settings.switch_catchup_timeout:
                        _abort(
                            tc,
                            f"the target replayed up to {format_lsn(replay)} of {format_lsn(cut)} "
                            f"in {waited:.0f} s",
                        )
                        return None
                    return CATCHUP_POLL_SECONDS
            source = _source_position(tc)
            evidence.update(
                Phase="promoting",
                ReplayLsnAtPromote=format_lsn(replay),
                CatchupSeconds=round(time.time() - float(request["RequestedAt"]), 3),
                PromoteIssuedAt=time.time(),
            )
            if source is not None:
                source_lsn, row_changes = source
                evidence.update(SourceLsnAtPromote=format_lsn(source_lsn), SourceRowChangesAtCut=row_changes)
                evidence.setdefault("CutLsn", format_lsn(source_lsn))
                evidence["BytesNotReplayed"] = max(source_lsn - replay, 0)
            else:
                evidence["BytesNotReplayed"] = None  # the source is gone: unknown, reported as such
            _persist(tc, evidence)  # the point of no return is on disk before it is crossed
    if in_recovery:
        inst = tc.instance()
        started = time.monotonic()
        tc.ctx.provider.promote(inst.id, inst.major)
        evidence["PromoteSeconds"] = round(time.monotonic() - started, 3)
        _persist(tc, evidence)
    finish(tc, evidence)
    return None


def _ensure_admin_role(tc: TaskContext) -> None:
    with _target(tc) as conn:
        superuser = roles.any_superuser(conn)
    if superuser is None:
        tc.event(SECTION_SWITCH, f"No superuser on the new primary; {ADMIN_ROLE} was not created")
        return
    with _target(tc, superuser) as conn:
        if roles.ensure_superuser(conn, ADMIN_ROLE):
            tc.event(SECTION_SWITCH, f"Created cloudmig's reserved role {ADMIN_ROLE} on the new primary")


def finish(tc: TaskContext, evidence: dict[str, Any]) -> None:
    inst = tc.instance()
    cls = classes.lookup(inst.instance_class)
    assert cls is not None
    with _target(tc) as conn:
        if probes.is_in_recovery(conn):
            raise RuntimeError("the target is still in recovery after promotion")
        timeline = probes.timeline_id(conn)
    evidence["TimelineAfter"] = timeline
    before = evidence.get("TimelineBefore")
    if isinstance(before, int) and timeline != before + 1:
        tc.event(SECTION_SWITCH, f"Unexpected timeline change: {before} -> {timeline}")
    # No standby settings left behind: a restart must never turn the primary back into a standby.
    tc.ctx.provider.apply_conf(inst.id, inst.port, cls, standby=None)
    ctl.reload(
        tc.ctx.provider.bin_dir(inst.major), tc.ctx.provider.pgdata(inst.id), user=pg_os_user(tc.ctx.settings)
    )
    _ensure_admin_role(tc)
    problem = drop_source_slot(tc)
    evidence["SlotDropped"] = problem is None
    if problem:
        tc.event(SECTION_SWITCH, problem + "; drop it by hand so the source stops keeping WAL")
    else:
        tc.event(SECTION_SWITCH, f"Dropped replication slot {tc.slot_name} on the source")
    tc.remove_passfile()
    issued = evidence.get("PromoteIssuedAt")
    requested = float(tc.task.request.get("Switch", {}).get("RequestedAt", time.time()))
    evidence.update(
        Phase="done",
        TotalSeconds=round(time.time() - requested, 3),
        WatchUntil=time.time() + tc.ctx.settings.post_switch_watch_hours * 3600,
    )
    if issued is None:
        evidence["PromoteIssuedAt"] = None
    lost = evidence.get("BytesNotReplayed")
    tc.event(
        SECTION_SWITCH,
        f"RDS instance promoted to primary on timeline {timeline}; "
        + (
            "bytes of source WAL not replayed: unknown (source unreachable)"
            if lost is None
            else f"bytes of source WAL not replayed: {lost}"
        ),
    )
    now = tc.ctx.now()
    tc.update(
        stage=MigrateStage.SUCCESS,
        replication_state=ReplicationState.FINISH,
        status=TaskStatus.SUCCEEDED,
        switch_time=now,
        evidence=evidence,
    )
    instance_store.release_migration(tc.ctx.db, inst.id, tc.task.id, now)
