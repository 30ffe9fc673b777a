"""A failed task's revert that was cut short (the service killed half-way, a step that failed) is
found from the store and run again until it has released the instance; a new migration asked for
meanwhile is told why it must wait; an instance a succeeded task still holds is released. Fake
stages, a fake clock, a real SQLite store."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from tests.unit.engine_fakes import INSTANCE, FakeClock, add_migration, make_context

from cloudmig import errors
from cloudmig.domain.enums import InstanceStatus, MigrateStage, TaskStatus
from cloudmig.domain.switchover import FenceState, SwitchEvidence
from cloudmig.engine.increment import IncrementStage
from cloudmig.engine.loop import Engine
from cloudmig.engine.outcome import Fail, Outcome
from cloudmig.engine.revert import release_instance
from cloudmig.engine.taskctx import TaskContext
from cloudmig.engine.worker import fail, finish_revert, run_task
from cloudmig.errors import StorageQuotaExceeded
from cloudmig.runtime import AppContext
from cloudmig.services import migrations
from cloudmig.store import instances as inst_store
from cloudmig.store import tasks as task_store


@dataclass
class RevertingStage:
    """A stage that fails at once; its revert fails while `broken` says so, else releases."""

    stage: MigrateStage = MigrateStage.INCREMENT
    broken: bool = False
    reverted: int = 0

    def run(self, tc: TaskContext) -> Outcome:
        return Fail(StorageQuotaExceeded("the disk is full"))

    def revert(self, tc: TaskContext) -> None:
        self.reverted += 1
        if self.broken:
            raise OSError("connection to the source timed out")
        release_instance(tc)

    def on_retries_exhausted(self, tc: TaskContext, reason: str) -> Outcome:
        raise AssertionError("not retried")


@pytest.fixture
def ctx(tmp_path: Path) -> AppContext:
    return make_context(tmp_path)


def _tc(ctx: AppContext, task_id: int) -> TaskContext:
    rec = task_store.get_task(ctx.db, task_id)
    assert rec is not None
    return TaskContext(ctx, rec)


def _events(ctx: AppContext, task_id: int) -> list[str]:
    return [e.text for e in task_store.events_for(ctx.db, [task_id])[task_id]]


def _holder(ctx: AppContext) -> int | None:
    inst = inst_store.get_instance(ctx.db, INSTANCE)
    assert inst is not None
    return inst.migration_task_id


def test_a_task_marked_failed_before_its_revert_ran_is_due_and_reverted_once_more(ctx: AppContext) -> None:
    task_id = add_migration(ctx, MigrateStage.INCREMENT)
    # What a SIGKILL right after the failure was written leaves: failed, the instance still held.
    task_store.update_task(ctx.db, task_id, ctx.now(), status=TaskStatus.FAILED, reason="the disk is full")
    assert task_store.unreverted_ids(ctx.db, ctx.now()) == [task_id]
    assert not task_store.try_claim(ctx.db, task_id, "engine-a", ctx.now(), 30)  # not a running task
    assert task_store.try_claim(ctx.db, task_id, "engine-a", ctx.now(), 30, TaskStatus.FAILED)
    assert task_store.unreverted_ids(ctx.db, ctx.now()) == []  # leased: nobody else starts it
    assert not task_store.try_claim(ctx.db, task_id, "engine-b", ctx.now(), 30, TaskStatus.FAILED)

    stage = RevertingStage()
    assert finish_revert(_tc(ctx, task_id), {stage.stage: stage})
    assert stage.reverted == 1 and _holder(ctx) is None
    assert _events(ctx, task_id) == ["Cleaning up after the failure, which had not completed"]
    task_store.release_lease(ctx.db, task_id, "engine-a")
    assert task_store.unreverted_ids(ctx.db, ctx.now()) == []


def test_a_revert_that_fails_says_so_and_stays_due(ctx: AppContext) -> None:
    task_id = add_migration(ctx, MigrateStage.INCREMENT)
    stage = RevertingStage(broken=True)
    run_task(_tc(ctx, task_id), threading.Event(), {stage.stage: stage})
    task = task_store.get_task(ctx.db, task_id)
    assert task is not None and task.status is TaskStatus.FAILED and stage.reverted == 1
    assert _events(ctx, task_id) == [
        "the disk is full",
        "Cleaning up after the failure did not complete (OSError: connection to the source timed out); "
        "cloudmig tries again",
    ]
    assert _holder(ctx) == task_id and task_store.unreverted_ids(ctx.db, ctx.now()) == [task_id]

    # A repeated failure is quiet; the try that works releases the instance.
    assert not finish_revert(_tc(ctx, task_id), {stage.stage: stage}, quiet=True)
    assert len(_events(ctx, task_id)) == 2
    stage.broken = False
    assert finish_revert(_tc(ctx, task_id), {stage.stage: stage}, quiet=True)
    assert stage.reverted == 3 and _holder(ctx) is None


def test_only_failed_tasks_of_running_instances_without_a_live_lease_are_due(ctx: AppContext) -> None:
    task_id = add_migration(ctx, MigrateStage.BASEBACKUP)
    assert task_store.unreverted_ids(ctx.db, ctx.now()) == []  # running: its worker owns it
    task_store.update_task(ctx.db, task_id, ctx.now(), status=TaskStatus.FAILED)
    assert task_store.try_claim(ctx.db, task_id, "engine-a", ctx.now(), 30, TaskStatus.FAILED)
    later = ctx.now() + timedelta(seconds=31)
    assert task_store.unreverted_ids(ctx.db, later) == [task_id]  # the lease ran out (engine-a died)
    inst_store.set_status(ctx.db, INSTANCE, InstanceStatus.DELETING, ctx.now())
    assert task_store.unreverted_ids(ctx.db, later) == []  # the deletion cleans up instead


def test_a_new_migration_on_an_instance_still_being_cleaned_up_is_told_why(ctx: AppContext) -> None:
    task_id = add_migration(ctx, MigrateStage.INCREMENT)
    request = migrations.SourceRequest(
        instance_id=INSTANCE,
        source_ip="127.0.0.1",
        source_port=5432,
        source_account="migratetest",
        source_password="s3cret",
        source_category="ecsOnVpc",
    )
    with pytest.raises(errors.IncorrectInstanceState, match=f"A migration task \\({task_id}\\) is already"):
        migrations.create_migration_task(ctx, request)
    task_store.update_task(ctx.db, task_id, ctx.now(), status=TaskStatus.FAILED)
    with pytest.raises(errors.IncorrectInstanceState) as caught:
        migrations.create_migration_task(ctx, request)
    assert f"Migration task {task_id} failed and cloudmig is still cleaning up" in caught.value.message


def _tick(engine: Engine) -> None:
    engine.tick()
    for th, _ in list(engine._workers.values()):
        th.join(10)


def test_the_engine_runs_a_cut_short_revert_again_with_back_off(ctx: AppContext) -> None:
    task_id = add_migration(ctx, MigrateStage.INCREMENT)
    task_store.update_task(ctx.db, task_id, ctx.now(), status=TaskStatus.FAILED, reason="the disk is full")
    stage = RevertingStage(broken=True)
    engine = Engine(ctx, {stage.stage: stage})
    clock = ctx.clock
    assert isinstance(clock, FakeClock)

    _tick(engine)  # at start: run again at once, and say so
    assert stage.reverted == 1 and _holder(ctx) == task_id
    assert _events(ctx, task_id) == [
        "Cleaning up after the failure, which had not completed",
        "Cleaning up after the failure did not complete (OSError: connection to the source timed out); "
        "cloudmig tries again",
    ]
    _tick(engine)
    assert stage.reverted == 1  # waits 5 s
    clock.advance(5)
    _tick(engine)
    assert stage.reverted == 2 and len(_events(ctx, task_id)) == 2  # quietly
    stage.broken = False
    clock.advance(5)
    _tick(engine)
    assert stage.reverted == 2  # now 10 s
    clock.advance(5)
    _tick(engine)
    assert stage.reverted == 3 and _holder(ctx) is None
    task = task_store.get_task(ctx.db, task_id)
    assert task is not None and task.lease_owner is None
    clock.advance(600)
    _tick(engine)
    assert stage.reverted == 3 and engine._reverts == {}


def test_a_fence_left_up_keeps_the_revert_pending_while_the_source_does_not_answer(ctx: AppContext) -> None:
    """A switchover given up while the source did not answer left its fence up; the task then
    fails. Its revert lifts the fence before anything else, and while the source does not answer
    the instance stays held, so that the revert is run again once it does."""
    with socket.socket() as s:  # a port nobody listens on: connections are refused
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    task_id = add_migration(ctx, MigrateStage.INCREMENT)
    left_up = SwitchEvidence(fence="alter_system", fence_state=FenceState.UP, fence_previous="off")
    task_store.update_task(ctx.db, task_id, ctx.now(), source_port=closed_port, evidence=left_up.to_json())

    fail(_tc(ctx, task_id), IncrementStage(), StorageQuotaExceeded("the disk is full"))
    task = task_store.get_task(ctx.db, task_id)
    assert task is not None and task.status is TaskStatus.FAILED
    assert SwitchEvidence.load(task.evidence).fence_state is FenceState.LIFTING
    assert _holder(ctx) == task_id and task_store.unreverted_ids(ctx.db, ctx.now()) == [task_id]
    assert _events(ctx, task_id)[-1].startswith(
        "Cleaning up after the failure did not complete (OperationalError"
    )


def test_an_instance_still_held_by_a_succeeded_task_is_released(ctx: AppContext) -> None:
    """The switchover's last steps mark the task succeeded, then release the instance: a service
    killed in between left a new primary that the engine would not start again."""
    task_id = add_migration(ctx, MigrateStage.SWITCH)
    assert inst_store.release_succeeded(ctx.db, ctx.now()) == []  # running: its own
    task_store.update_task(ctx.db, task_id, ctx.now(), status=TaskStatus.FAILED)
    assert inst_store.release_succeeded(ctx.db, ctx.now()) == []  # failed: its revert releases it
    task_store.update_task(ctx.db, task_id, ctx.now(), status=TaskStatus.SUCCEEDED)
    Engine(ctx)._keep_free_instances_up()
    assert _holder(ctx) is None
