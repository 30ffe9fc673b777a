"""One task's worker: runs its stage again and again, and does what each outcome asks.

Failures that may pass (the source down, a copy broken off) are retried with back-off for
`retry_seconds` (the replication link state says `disconnect` meanwhile); then the stage decides
(most fail, increment keeps waiting, a switchover is given up or, past the point of no return,
keeps finishing). A failed task's stage reverts what it left behind; a revert cut short (the
service killed, a step that failed) is run again by the engine loop (`finish_revert`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from cloudmig.domain.detail import SECTION_FAILURE, SECTION_RETRY
from cloudmig.domain.enums import MigrateStage, ReplicationState, TaskStatus
from cloudmig.engine.basebackup import BasebackupStage
from cloudmig.engine.increment import IncrementStage
from cloudmig.engine.outcome import Fail, Next, Outcome, Retry, Wait
from cloudmig.engine.precheck import PrecheckStage
from cloudmig.engine.stage import Stage
from cloudmig.engine.startup import StartupStage
from cloudmig.engine.switch import SwitchStage
from cloudmig.engine.taskctx import TaskChanged, TaskContext
from cloudmig.errors import TaskFailure

log = logging.getLogger(__name__)

STAGES: dict[MigrateStage, Stage] = {
    s.stage: s for s in (PrecheckStage(), BasebackupStage(), StartupStage(), IncrementStage(), SwitchStage())
}

MAX_BACKOFF_SECONDS = 30.0


class Streak:
    """Consecutive failures of one stage: since when, how many, and the last reason shown."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.count = 0
        self.last_reason = ""

    def reset(self) -> None:
        self.since, self.count, self.last_reason = None, 0, ""

    def backoff(self) -> float:
        return float(min(2.0**self.count, MAX_BACKOFF_SECONDS))


def run_task(
    tc: TaskContext, stopping: threading.Event, stages: Mapping[MigrateStage, Stage] = STAGES
) -> None:
    """Work on the task until it ends, the worker is told to stop, or the lease is lost."""
    streak = Streak()
    clock, notifier = tc.ctx.clock, tc.ctx.notifier
    while not tc.stop.is_set() and not stopping.is_set():
        try:
            task = tc.refresh()
        except TaskChanged:
            return
        if task.status is not TaskStatus.RUNNING:
            return
        stage = stages.get(task.stage)
        if stage is None:
            return
        started = clock.monotonic()
        outcome = _run_stage(tc, stage)
        log.debug(
            "task %s stage %s: %s after %.3f s",
            task.id,
            task.stage.value,
            type(outcome).__name__,
            clock.monotonic() - started,
        )
        if tc.stop.is_set() or stopping.is_set():
            return  # told to stop (lease lost, task cancelled): not a failure of the step
        delay = 0.0
        if isinstance(outcome, Retry):
            now = clock.monotonic()
            streak.since = streak.since if streak.since is not None else now
            streak.count += 1
            _record_retry(tc, task.stage, outcome, streak)
            if now - streak.since >= tc.ctx.settings.retry_seconds:
                outcome = stage.on_retries_exhausted(tc, outcome.reason)
                streak.since = now  # a stage that keeps waiting gets a fresh budget
            delay = streak.backoff()
        else:
            streak.reset()
        if isinstance(outcome, Fail):
            fail(tc, stage, outcome.error)
            return
        if isinstance(outcome, Wait):
            delay = outcome.seconds
        if delay:
            notifier.sleep(task.id, delay, tc.stop)


def _run_stage(tc: TaskContext, stage: Stage) -> Outcome:
    try:
        return stage.run(tc)
    except TaskFailure as exc:
        return Fail(exc)
    except TaskChanged:
        return Next()
    except Exception as exc:
        return Retry(f"{type(exc).__name__}: {' '.join(str(exc).split())[:1000]}")


def _record_retry(tc: TaskContext, stage: MigrateStage, retry: Retry, streak: Streak) -> None:
    log.warning(
        "task %s stage %s failed (attempt %d): %s", tc.task.id, stage.value, streak.count, retry.reason
    )
    if retry.reason != streak.last_reason:
        tc.event(SECTION_RETRY, f"Stage {stage.value} failed, will retry: {retry.reason}")
        streak.last_reason = retry.reason
    if retry.disconnect and tc.task.replication_state is not ReplicationState.DISCONNECT:
        tc.update(replication_state=ReplicationState.DISCONNECT)


def fail(tc: TaskContext, stage: Stage, error: TaskFailure) -> None:
    """The task fails with `error` (Reason, ReasonCode), then its stage reverts what it left."""
    tc.event(SECTION_FAILURE, error.message)
    tc.update(status=TaskStatus.FAILED, reason=error.message, reason_code=error.code)
    revert(tc, stage)


def revert(tc: TaskContext, stage: Stage, *, quiet: bool = False) -> bool:
    """Run the failed task's revert; False when a step of it failed (it is run again later, see
    finish_revert). `quiet`: a repeated failure writes no Detail line again."""
    try:
        stage.revert(tc)
        return True
    except TaskChanged:
        return True  # the task or its instance is gone (deleted): nothing left to revert
    except Exception as exc:
        log.exception("reverting failed task %s (stage %s) failed", tc.task.id, stage.stage.value)
        if not quiet:
            tc.event(
                SECTION_FAILURE,
                "Cleaning up after the failure did not complete "
                f"({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); cloudmig tries again",
            )
        return False


def finish_revert(
    tc: TaskContext, stages: Mapping[MigrateStage, Stage] = STAGES, *, quiet: bool = False
) -> bool:
    """Run again the revert of a failed task that was cut short (the service stopped half-way, or
    one of its steps failed): every stage's revert is idempotent and ends by releasing the
    instance (store.tasks.unreverted_ids). False when it failed again."""
    try:
        task = tc.refresh()
    except TaskChanged:
        return True  # deleted meanwhile: the deletion drops its slot
    stage = stages.get(task.stage)
    if task.status is not TaskStatus.FAILED or stage is None:
        return True
    if not quiet:
        tc.event(SECTION_FAILURE, "Cleaning up after the failure, which had not completed")
    return revert(tc, stage, quiet=quiet)
