"""The switch stage driven precisely: a fake target and source, a real SQLite store, and a crash
(the worker's process gone) at each persisted point. Whatever the crash point, the target is
promoted exactly once and the task ends in success; a give-up before the point of no return goes
back to increment and never promotes. tests/e2e/test_switchover.py and test_cutover_sigkill.py do
the same against real PostgreSQL with SIGKILL."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.unit.engine_fakes import add_migration, make_context

from cloudmig.domain.enums import MigrateStage, ReplicationState, TaskStatus
from cloudmig.domain.fence import FenceMethod
from cloudmig.domain.switchover import FenceChoice, SwitchEvidence, SwitchPhase, SwitchRequest
from cloudmig.domain.transitions import Transition
from cloudmig.engine import fence, finish, postswitch, slots, switch
from cloudmig.engine.gate import QuietProof
from cloudmig.engine.outcome import Next, Outcome, Wait
from cloudmig.engine.switch import SwitchStage
from cloudmig.engine.taskctx import TaskContext
from cloudmig.pg import probes, roles
from cloudmig.runtime import AppContext
from cloudmig.store import tasks as task_store

CUT = 0x3000148


class Crash(BaseException):
    """The process dies here (BaseException: nothing in the stage catches it)."""


@dataclass
class Cluster:
    """The target as the switch sees it, and the source's position."""

    in_recovery: bool = True
    timeline: int = 1
    replay: int = CUT
    running: bool = True
    promotions: int = 0
    crash_in_promote: str | None = None  # "before" or "after" the promotion takes effect
    events: list[str] = field(default_factory=list)

    def promote(self) -> None:
        if self.crash_in_promote == "before":
            self.crash_in_promote = None
            raise Crash("before the promotion")
        self.in_recovery, self.timeline = False, self.timeline + 1
        self.promotions += 1
        if self.crash_in_promote == "after":
            self.crash_in_promote = None
            raise Crash("after the promotion")


class Conn:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, *args: Any) -> None:
        return None


@dataclass
class Instance:
    cluster: Cluster
    id: str = "pgm-aaaaaaaaaaaaaaaa"
    major: int = 15

    def connect(self, *args: Any, **kw: Any) -> Conn:
        if not self.cluster.running:
            import psycopg

            raise psycopg.OperationalError("connection refused")
        return Conn(self.cluster)

    def is_running(self) -> bool:
        return self.cluster.running

    def ensure_running(self) -> bool:
        started = not self.cluster.running
        self.cluster.running = True
        return started

    def configured_as_standby(self) -> bool:
        return self.cluster.in_recovery

    def apply_conf(self, standby: Any = None) -> list[str]:
        return []

    def promote(self) -> None:
        self.cluster.promote()

    def reload(self) -> None:
        return None


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[AppContext, Cluster]:
    ctx = make_context(tmp_path)
    cluster = Cluster()
    monkeypatch.setattr(TaskContext, "instance", lambda tc: Instance(cluster))
    monkeypatch.setattr(TaskContext, "remove_passfile", lambda tc: None)
    monkeypatch.setattr(switch, "_source_connection", lambda tc: Conn(cluster))
    monkeypatch.setattr(probes, "is_in_recovery", lambda conn: conn.cluster.in_recovery)
    monkeypatch.setattr(probes, "replay_lsn", lambda conn: conn.cluster.replay)
    monkeypatch.setattr(probes, "timeline_id", lambda conn: conn.cluster.timeline)
    monkeypatch.setattr(probes, "current_wal_lsn", lambda conn: CUT)
    monkeypatch.setattr(roles, "any_superuser", lambda conn: None)  # promotion through the instance
    monkeypatch.setattr(fence, "method_for", lambda tc, conn, choice: FenceMethod.NONE)
    monkeypatch.setattr(
        switch, "prove_quiet", lambda conn, **kw: QuietProof(quiet=True, cut_lsn=CUT, cut_xid=7)
    )
    monkeypatch.setattr(postswitch, "take_baseline", lambda source, conn, xid: {"Xid": 7, "Databases": {}})
    monkeypatch.setattr(postswitch, "unexplained_transactions", lambda source, conn, watch: 0)
    monkeypatch.setattr(slots, "drop_task_slot", lambda ctx, task, reason: None)

    class _Obs:
        def replication_info(self) -> str:
            return json.dumps({"Status": "stopped"})

    monkeypatch.setattr(finish, "observe", lambda target, source: _Obs())
    return ctx, cluster


def _request_switch(ctx: AppContext, task_id: int, timeout: float = 60) -> None:
    req = SwitchRequest(requested_at=ctx.now(), timeout_seconds=timeout, fence=FenceChoice.AUTO)
    assert task_store.transition(
        ctx.db,
        task_id,
        Transition.SWITCH_REQUESTED,
        ctx.now(),
        request={"Switch": req.to_json()},
        evidence=SwitchEvidence().to_json(),
        replication_state=ReplicationState.STREAMING,
    )


def _fresh(ctx: AppContext, task_id: int) -> TaskContext:
    """A new worker after a restart: everything it knows comes from the store."""
    rec = task_store.get_task(ctx.db, task_id)
    assert rec is not None
    return TaskContext(ctx, rec)


def _run_until_done(ctx: AppContext, task_id: int, crash_after_phase: SwitchPhase | None = None) -> None:
    stage = SwitchStage()
    crashed = False
    for _ in range(50):
        tc = _fresh(ctx, task_id)
        if tc.task.stage is not MigrateStage.SWITCH or tc.task.status is not TaskStatus.RUNNING:
            return
        try:
            outcome: Outcome = stage.run(tc)
        except Crash:
            continue  # the next worker starts from the store
        if crash_after_phase is not None and not crashed and tc.evidence().phase is crash_after_phase:
            crashed = True
            continue  # the process died right after this phase was persisted
        assert isinstance(outcome, Next | Wait), outcome
    raise AssertionError("the switch never ended")


@pytest.mark.parametrize(
    "crash",
    [None, SwitchPhase.FENCING, SwitchPhase.CATCHUP, "before promote", "after promote"],
)
def test_a_crash_at_any_persisted_point_promotes_exactly_once(world: Any, crash: Any) -> None:
    ctx, cluster = world
    task_id = add_migration(ctx, MigrateStage.INCREMENT)
    _request_switch(ctx, task_id)
    if crash in ("before promote", "after promote"):
        cluster.crash_in_promote = crash.split()[0]
        _run_until_done(ctx, task_id)
    else:
        _run_until_done(ctx, task_id, crash_after_phase=crash)
    task = task_store.get_task(ctx.db, task_id)
    assert task is not None
    assert (task.stage, task.status, task.replication_state) == (
        MigrateStage.SUCCESS,
        TaskStatus.SUCCEEDED,
        ReplicationState.FINISH,
    )
    assert cluster.promotions == 1 and cluster.timeline == 2
    ev = SwitchEvidence.load(task.evidence)
    assert ev.phase is SwitchPhase.DONE and ev.timeline_before == 1 and ev.timeline_after == 2
    assert ev.cut_lsn == CUT and ev.bytes_not_replayed == 0 and ev.data_loss is None


def test_a_target_that_never_catches_up_gives_up_without_promoting(world: Any) -> None:
    ctx, cluster = world
    cluster.replay = CUT - 100  # the standby is stuck behind the cut
    task_id = add_migration(ctx, MigrateStage.INCREMENT)
    _request_switch(ctx, task_id, timeout=10)
    stage = SwitchStage()
    for _ in range(5):  # the gate passes, then the catch-up waits
        outcome = stage.run(_fresh(ctx, task_id))
        assert isinstance(outcome, Wait)
    ctx.clock.advance(11)  # type: ignore[attr-defined]  # past SwitchoverTimeout
    assert isinstance(stage.run(_fresh(ctx, task_id)), Next)
    task = task_store.get_task(ctx.db, task_id)
    assert task is not None and task.stage is MigrateStage.INCREMENT and task.status is TaskStatus.RUNNING
    ev = SwitchEvidence.load(task.evidence)
    assert ev.phase is SwitchPhase.ABORTED and "replayed up to" in (ev.aborted_reason or "")
    assert cluster.promotions == 0 and cluster.in_recovery
    # Aborted is a named transition back, and Activate may be called again.
    _request_switch(ctx, task_id)


def test_past_the_point_of_no_return_a_dead_target_is_started_not_reset(world: Any) -> None:
    ctx, cluster = world
    task_id = add_migration(ctx, MigrateStage.INCREMENT)
    _request_switch(ctx, task_id)
    cluster.crash_in_promote = "after"
    stage = SwitchStage()
    with pytest.raises(Crash):
        for _ in range(10):
            stage.run(_fresh(ctx, task_id))
    cluster.running = False  # the host went down with the service
    _run_until_done(ctx, task_id)
    task = task_store.get_task(ctx.db, task_id)
    assert task is not None and task.status is TaskStatus.SUCCEEDED
    assert cluster.promotions == 1 and cluster.running
    # Past the point of no return revert does nothing (the fake instance has no stop or reset to
    # call: trying would raise), and the promoted target keeps running.
    stage.revert(_fresh(ctx, task_id))
    assert cluster.running and not cluster.in_recovery
