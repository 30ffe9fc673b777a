"""The task worker driven precisely: fake stages, a fake clock, a real SQLite store."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.unit.engine_fakes import FakeNotifier, add_migration, make_context

from cloudmig.domain.enums import MigrateStage, ReplicationState, TaskStatus
from cloudmig.domain.transitions import Transition
from cloudmig.engine.outcome import Fail, Next, Outcome, Retry, Wait
from cloudmig.engine.taskctx import TaskChanged, TaskContext
from cloudmig.engine.worker import run_task
from cloudmig.errors import RetriesExhausted, SlotInvalidated
from cloudmig.runtime import AppContext
from cloudmig.store import tasks as task_store

Step = Callable[[TaskContext, int], Outcome]


@dataclass
class FakeStage:
    """A stage whose n-th run does what `step(tc, n)` says."""

    stage: MigrateStage
    step: Step
    runs: int = 0
    reverted: int = 0
    exhausted: list[str] = field(default_factory=list)
    on_exhausted: Callable[[TaskContext, str], Outcome] | None = None

    def run(self, tc: TaskContext) -> Outcome:
        self.runs += 1
        return self.step(tc, self.runs)

    def revert(self, tc: TaskContext) -> None:
        self.reverted += 1

    def on_retries_exhausted(self, tc: TaskContext, reason: str) -> Outcome:
        self.exhausted.append(reason)
        if self.on_exhausted is not None:
            return self.on_exhausted(tc, reason)
        return Fail(RetriesExhausted(f"kept failing: {reason}"))


def succeed(tc: TaskContext, n: int) -> Outcome:
    tc.update(status=TaskStatus.SUCCEEDED)
    return Next()


@pytest.fixture
def ctx(tmp_path: Path) -> AppContext:
    return make_context(tmp_path, retry_seconds=60)


def _work(ctx: AppContext, task_id: int, *stages: FakeStage) -> TaskContext:
    rec = task_store.get_task(ctx.db, task_id)
    assert rec is not None
    tc = TaskContext(ctx, rec)
    run_task(tc, threading.Event(), {s.stage: s for s in stages})
    return tc


def _events(ctx: AppContext, task_id: int) -> list[str]:
    return [e.text for e in task_store.events_for(ctx.db, [task_id])[task_id]]


def _sleeps(ctx: AppContext) -> list[float]:
    assert isinstance(ctx.notifier, FakeNotifier)
    return ctx.notifier.sleeps


def test_retry_backs_off_marks_disconnect_and_recovers(ctx: AppContext) -> None:
    task_id = add_migration(ctx)
    states: list[ReplicationState] = []

    def copy(tc: TaskContext, n: int) -> Outcome:
        states.append(tc.task.replication_state)
        if n <= 3:
            return Retry("cannot reach the source", disconnect=True)
        tc.move(Transition.COPIED, ReplicationState.UNSTARTED)
        return Next()

    copy_stage = FakeStage(MigrateStage.BASEBACKUP, copy)
    _work(ctx, task_id, copy_stage, FakeStage(MigrateStage.STARTUP, succeed))
    assert _sleeps(ctx) == [2.0, 4.0, 8.0]
    # disconnect from the first failure on, back to unstarted once the copy went through
    assert states == [ReplicationState.UNSTARTED] + [ReplicationState.DISCONNECT] * 3
    # The same reason is written to Detail once, not at every attempt.
    assert _events(ctx, task_id) == ["Stage basebackup failed, will retry: cannot reach the source"]
    task = task_store.get_task(ctx.db, task_id)
    assert task is not None and task.status is TaskStatus.SUCCEEDED and copy_stage.reverted == 0


def test_back_off_is_capped(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, retry_seconds=3600)
    task_id = add_migration(ctx)
    stage = FakeStage(MigrateStage.BASEBACKUP, lambda tc, n: Retry("down") if n <= 8 else succeed(tc, n))
    _work(ctx, task_id, stage)
    assert _sleeps(ctx) == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]


def test_retries_run_out_in_time_then_the_task_fails_and_reverts_once(ctx: AppContext) -> None:
    task_id = add_migration(ctx)
    stage = FakeStage(
        MigrateStage.BASEBACKUP, lambda tc, n: Retry("pg_basebackup failed: connection refused")
    )
    _work(ctx, task_id, stage)
    task = task_store.get_task(ctx.db, task_id)
    assert task is not None
    assert task.status is TaskStatus.FAILED and task.reason_code == "RetriesExhausted"
    assert "connection refused" in task.reason
    # Budget of 60 s: 2 + 4 + 8 + 16 + 30 = 60 s of back-off before the budget is spent.
    assert sum(_sleeps(ctx)[:-1]) < 60 <= sum(_sleeps(ctx))
    assert stage.reverted == 1 and len(stage.exhausted) == 1


def test_a_stage_that_waits_out_an_outage_keeps_a_fresh_budget(ctx: AppContext) -> None:
    task_id = add_migration(ctx, MigrateStage.INCREMENT)

    def observe(tc: TaskContext, n: int) -> Outcome:
        return Retry("the standby does not answer", disconnect=True) if n <= 12 else succeed(tc, n)

    stage = FakeStage(MigrateStage.INCREMENT, observe, on_exhausted=lambda tc, reason: Wait(1.0))
    _work(ctx, task_id, stage)
    task = task_store.get_task(ctx.db, task_id)
    assert task is not None and task.status is TaskStatus.SUCCEEDED and stage.reverted == 0
    assert stage.exhausted  # the budget ran out at least once, and the stage chose to keep going


def test_fail_outcome_records_the_typed_reason_and_reverts(ctx: AppContext) -> None:
    task_id = add_migration(ctx, MigrateStage.INCREMENT)
    stage = FakeStage(MigrateStage.INCREMENT, lambda tc, n: Fail(SlotInvalidated("slot x was invalidated")))
    _work(ctx, task_id, stage)
    task = task_store.get_task(ctx.db, task_id)
    assert task is not None
    assert (task.status, task.reason_code, task.reason) == (
        TaskStatus.FAILED,
        "SlotInvalidated",
        "slot x was invalidated",
    )
    assert stage.reverted == 1
    assert _events(ctx, task_id) == ["slot x was invalidated"]


def test_an_unexpected_exception_is_retried_with_its_text(ctx: AppContext) -> None:
    task_id = add_migration(ctx)

    def flaky(tc: TaskContext, n: int) -> Outcome:
        if n == 1:
            raise OSError("No space left on device")
        return succeed(tc, n)

    _work(ctx, task_id, FakeStage(MigrateStage.BASEBACKUP, flaky))
    assert _events(ctx, task_id) == ["Stage basebackup failed, will retry: OSError: No space left on device"]


def test_told_to_stop_mid_step_is_not_a_failure(ctx: AppContext) -> None:
    task_id = add_migration(ctx)

    def lose_lease(tc: TaskContext, n: int) -> Outcome:
        tc.stop.set()  # the engine's tick found the lease gone / the task cancelled
        return Retry("pg_basebackup was killed")

    stage = FakeStage(MigrateStage.BASEBACKUP, lose_lease)
    _work(ctx, task_id, stage)
    task = task_store.get_task(ctx.db, task_id)
    assert task is not None and task.status is TaskStatus.RUNNING
    assert stage.runs == 1 and stage.reverted == 0 and _events(ctx, task_id) == []


def test_a_cancelled_task_is_left_alone(ctx: AppContext) -> None:
    task_id = add_migration(ctx)

    def cancelled_meanwhile(tc: TaskContext, n: int) -> Outcome:
        task_store.update_task(ctx.db, task_id, ctx.now(), status=TaskStatus.CANCELLED)
        return Wait(1.0)

    stage = FakeStage(MigrateStage.BASEBACKUP, cancelled_meanwhile)
    _work(ctx, task_id, stage)
    assert stage.runs == 1 and stage.reverted == 0


def test_a_stage_move_that_lost_a_race_stops_the_step(ctx: AppContext) -> None:
    task_id = add_migration(ctx, MigrateStage.INCREMENT)
    rec = task_store.get_task(ctx.db, task_id)
    assert rec is not None
    tc = TaskContext(ctx, rec)
    # A concurrent Activate moved the task to switch; this worker still thinks it is in increment.
    assert task_store.transition(ctx.db, task_id, Transition.SWITCH_REQUESTED, ctx.now())
    with pytest.raises(TaskChanged):
        tc.move(Transition.RECOPY)
    again = task_store.get_task(ctx.db, task_id)
    assert again is not None and again.stage is MigrateStage.SWITCH
