"""The engine: a loop that keeps leases, hands claimed tasks to worker threads, and runs instance steps."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

from cloudmig.domain.detail import SECTION_FAILURE
from cloudmig.domain.enums import InstanceStatus, MigrateStage, TaskStatus
from cloudmig.engine import basebackup, increment, instances, postswitch, precheck, startup, switch
from cloudmig.engine.cleanup import undo
from cloudmig.engine.taskctx import TaskContext
from cloudmig.errors import StepFailed
from cloudmig.runtime import AppContext
from cloudmig.store import instances as instance_store
from cloudmig.store import tasks as task_store
from cloudmig.store.db import is_disk_full

log = logging.getLogger(__name__)

Step = Callable[[TaskContext], "float | None"]

STEPS: dict[MigrateStage, Step] = {
    MigrateStage.PRECHECK: precheck.step,
    MigrateStage.BASEBACKUP: basebackup.step,
    MigrateStage.STARTUP: startup.step,
    MigrateStage.INCREMENT: increment.step,
    MigrateStage.SWITCH: switch.step,
}

# Consecutive unexpected failures of one stage before the task is failed (increment never gives up).
MAX_ATTEMPTS = 5


class Engine:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.owner = f"{uuid.uuid4()}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._workers: dict[int, tuple[threading.Thread, threading.Event]] = {}
        self._instance_workers: dict[str, threading.Thread] = {}
        self._watcher: threading.Thread | None = None
        self._last_watch = 0.0
        self._lock = threading.Lock()

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        # The data dir lock is ours, so any other lease belongs to a process that died.
        released = task_store.release_foreign_leases(self.ctx.db, self.owner)
        if released:
            log.info("took over %d task(s) from a previous run", released)
        self._recover_instances()
        self._thread = threading.Thread(target=self._loop, name="cloudmig-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        with self._lock:
            workers = list(self._workers.values())
        for _, ev in workers:
            ev.set()
        if self._thread:
            self._thread.join(timeout)
        for th, _ in workers:
            th.join(timeout)

    def _recover_instances(self) -> None:
        for inst in instance_store.in_status(self.ctx.db, InstanceStatus.RUNNING):
            try:
                instances.ensure_running(self.ctx, inst)
            except Exception:
                log.exception("could not start instance %s", inst.id)

    # ---- the loop --------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:
                if not is_disk_full(exc):  # a full store disk is logged by the store, once a minute
                    log.exception("engine tick failed")
            self.ctx.notifier.engine_sleep(self.ctx.settings.engine_tick_seconds, self._stop)

    def tick(self) -> None:
        s = self.ctx.settings
        now = self.ctx.now()
        with self._lock:
            for tid in [t for t, (th, _) in self._workers.items() if not th.is_alive()]:
                del self._workers[tid]
            held = task_store.renew_leases(self.ctx.db, self.owner, list(self._workers), now, s.lease_seconds)
            running = task_store.running_among(self.ctx.db, list(self._workers))
            for tid, (_, ev) in self._workers.items():
                if tid not in held or tid not in running:
                    # Someone else owns it now, or it was cancelled (instance deleted): stop touching it,
                    # killing a copy in progress.
                    ev.set()
            for tid in task_store.claimable_ids(self.ctx.db, now):
                if tid in self._workers or not task_store.try_claim(
                    self.ctx.db, tid, self.owner, now, s.lease_seconds
                ):
                    continue
                ev = threading.Event()
                th = threading.Thread(target=self._run_task, args=(tid, ev), name=f"task-{tid}", daemon=True)
                self._workers[tid] = (th, ev)
                th.start()
            self._tick_instances()
            self._tick_post_switch()

    def _tick_post_switch(self) -> None:
        due = time.monotonic() - self._last_watch >= self.ctx.settings.post_switch_check_seconds
        if not due or (self._watcher is not None and self._watcher.is_alive()):
            return
        self._last_watch = time.monotonic()
        self._watcher = threading.Thread(
            target=self._guarded,
            args=(postswitch.check_all,),
            name="post-switch",
            daemon=True,
        )
        self._watcher.start()

    def _tick_instances(self) -> None:
        for name in [n for n, th in self._instance_workers.items() if not th.is_alive()]:
            del self._instance_workers[name]
        for inst in instance_store.in_status(self.ctx.db, InstanceStatus.CREATING, InstanceStatus.DELETING):
            if inst.id in self._instance_workers:
                continue
            fn = instances.create if inst.status is InstanceStatus.CREATING else instances.delete
            th = threading.Thread(target=self._guarded, args=(fn, inst), name=f"inst-{inst.id}", daemon=True)
            self._instance_workers[inst.id] = th
            th.start()

    def _guarded(self, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(self.ctx, *args)
        except Exception:
            log.exception("instance step %s failed", getattr(fn, "__name__", fn))

    # ---- one task --------------------------------------------------------------------------------

    def _run_task(self, task_id: int, stop: threading.Event) -> None:
        rec = task_store.get_task(self.ctx.db, task_id)
        if rec is None:
            return
        tc = TaskContext(self.ctx, rec, stop)
        failures = 0
        last_error = ""
        try:
            while not stop.is_set() and not self._stop.is_set():
                task = tc.refresh()
                if task.status is not TaskStatus.RUNNING:
                    return
                step = STEPS.get(task.stage)
                if step is None:
                    return
                try:
                    delay = step(tc)
                    failures, last_error = 0, ""
                except (StepFailed, precheck.PrecheckFailed) as exc:
                    self._fail(tc, str(exc))
                    return
                except Exception as exc:
                    if stop.is_set():
                        return  # told to stop (lease lost or task cancelled): not a failure of the step
                    failures += 1
                    text = f"{type(exc).__name__}: {exc}"
                    log.warning(
                        "task %s stage %s failed (attempt %d): %s", task_id, task.stage, failures, text
                    )
                    if text != last_error:
                        tc.event(SECTION_FAILURE, f"Stage {task.stage.value} failed, will retry: {text}")
                        last_error = text
                    if failures >= MAX_ATTEMPTS and task.stage is not MigrateStage.INCREMENT:
                        self._fail(tc, f"stage {task.stage.value} failed {failures} times: {text}")
                        return
                    delay = min(2.0**failures, 30.0)
                if delay:
                    self.ctx.notifier.sleep(task_id, delay, stop)
        finally:
            tc.close_connections()
            self.ctx.notifier.forget(task_id)
            task_store.release_lease(self.ctx.db, task_id, self.owner)

    def _fail(self, tc: TaskContext, reason: str) -> None:
        tc.event(SECTION_FAILURE, reason)
        tc.fail(reason)
        try:
            undo(tc)
        except Exception:
            log.exception("cleanup after failed task %s failed", tc.task.id)
