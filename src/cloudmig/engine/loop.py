"""The engine: a loop that keeps leases, hands claimed tasks to worker threads (and failed tasks
whose revert was cut short, to run it again), and runs the periodic jobs (instance steps, slot
drops and the orphan-slot sweep, the post-switch watch)."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime

from cloudmig.domain.enums import InstanceStatus, MigrateStage, TaskStatus
from cloudmig.engine import instances, postswitch, slots
from cloudmig.engine.stage import Stage
from cloudmig.engine.taskctx import TaskContext
from cloudmig.engine.worker import STAGES, finish_revert, run_task
from cloudmig.runtime import AppContext
from cloudmig.store import instances as instance_store
from cloudmig.store import tasks as task_store
from cloudmig.store.db import is_disk_full

log = logging.getLogger(__name__)

# How often Running instances no task works on are looked at (and started again when down).
FREE_INSTANCE_CHECK_SECONDS = 10.0
# A revert that failed again waits this long, doubled each time up to the maximum (in this process).
REVERT_RETRY_SECONDS = 5.0
MAX_REVERT_RETRY_SECONDS = 300.0


class Periodic:
    """A job run in its own thread every `interval` seconds (never two at once); `due_now` makes
    the next tick run it."""

    def __init__(self, name: str, interval: Callable[[], float], job: Callable[[], None]) -> None:
        self.name, self.interval, self.job = name, interval, job
        self.last = float("-inf")
        self.thread: threading.Thread | None = None

    def tick(self, now: float) -> None:
        if now - self.last < self.interval() or (self.thread is not None and self.thread.is_alive()):
            return
        self.last = now
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.job()
        except Exception:
            log.exception("%s failed", self.name)


class Engine:
    def __init__(self, ctx: AppContext, stages: Mapping[MigrateStage, Stage] = STAGES) -> None:
        self.ctx = ctx
        self.stages = stages
        self.owner = f"{uuid.uuid4()}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._workers: dict[int, tuple[threading.Thread, threading.Event]] = {}
        # Failed tasks whose revert a worker here runs again: task id -> (attempts, not before).
        self._reverts: dict[int, tuple[int, float]] = {}
        self._reverting: set[int] = set()
        self._instance_workers: dict[str, threading.Thread] = {}
        self._free_instances_checked = float("-inf")
        self._lock = threading.Lock()
        s = ctx.settings
        self._periodic = [
            Periodic("post-switch", lambda: s.post_switch_check_seconds, lambda: postswitch.check_all(ctx)),
            # Due slot drops are retried every few ticks; the sweep for orphans less often.
            Periodic(
                "slot-drops", lambda: max(s.engine_tick_seconds * 5, 1.0), lambda: slots.process_due(ctx)
            ),
            Periodic(
                "slot-sweep", lambda: s.slot_sweep_seconds, lambda: slots.sweep(ctx, ctx.installation_id())
            ),
        ]

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
        """After a restart of the host, start every instance that should run, whatever task it
        belongs to (a promoted target of an unfinished switchover included)."""
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
        monotonic = self.ctx.clock.monotonic()
        with self._lock:
            for tid in [t for t, (th, _) in self._workers.items() if not th.is_alive()]:
                del self._workers[tid]
                if tid not in self._reverting:
                    # A revert that failed in the task's own worker has said so: the next try waits.
                    self._reverts[tid] = (1, monotonic + REVERT_RETRY_SECONDS)
                self._reverting.discard(tid)
            held = task_store.renew_leases(self.ctx.db, self.owner, list(self._workers), now, s.lease_seconds)
            running = task_store.running_among(self.ctx.db, list(self._workers))
            for tid, (_, ev) in self._workers.items():
                if tid not in held or (tid not in running and tid not in self._reverting):
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
            self._start_reverts(now, monotonic)
            self._tick_instances()
            if monotonic - self._free_instances_checked >= FREE_INSTANCE_CHECK_SECONDS:
                self._free_instances_checked = monotonic
                self._keep_free_instances_up()
        for job in self._periodic:
            job.tick(monotonic)

    def _start_reverts(self, now: datetime, monotonic: float) -> None:
        """Run again the reverts that were cut short (store.tasks.unreverted_ids), with back-off."""
        s = self.ctx.settings
        due = task_store.unreverted_ids(self.ctx.db, now)
        for tid in [t for t in self._reverts if t not in due and t not in self._workers]:
            del self._reverts[tid]  # done (or deleted)
        for tid in due:
            attempts, not_before = self._reverts.get(tid, (0, float("-inf")))
            if tid in self._workers or monotonic < not_before:
                continue
            if not task_store.try_claim(
                self.ctx.db, tid, self.owner, now, s.lease_seconds, TaskStatus.FAILED
            ):
                continue
            delay = min(REVERT_RETRY_SECONDS * 2**attempts, MAX_REVERT_RETRY_SECONDS)
            self._reverts[tid] = (attempts + 1, monotonic + delay)
            ev = threading.Event()
            th = threading.Thread(
                target=self._revert_task, args=(tid, ev, attempts > 0), name=f"revert-{tid}", daemon=True
            )
            self._workers[tid] = (th, ev)
            self._reverting.add(tid)
            th.start()

    def _tick_instances(self) -> None:
        for name in [n for n, th in self._instance_workers.items() if not th.is_alive()]:
            del self._instance_workers[name]
        for inst in instance_store.in_status(self.ctx.db, InstanceStatus.CREATING, InstanceStatus.DELETING):
            if inst.id in self._instance_workers:
                continue
            fn = instances.create if inst.status is InstanceStatus.CREATING else instances.delete
            th = threading.Thread(
                target=self._instance_step, args=(fn, inst), name=f"inst-{inst.id}", daemon=True
            )
            self._instance_workers[inst.id] = th
            th.start()

    def _keep_free_instances_up(self) -> None:
        """Start again Running instances no task works on whose server is down (e.g. a new primary
        whose server crashed after its switchover); a task's own stages keep its instance running.
        One thread for the batch, registered as each instance's worker: no deletion of these
        instances starts while it runs."""
        for inst_id in instance_store.release_succeeded(self.ctx.db, self.ctx.now()):
            log.warning("instance %s was still held by its finished migration; released it", inst_id)
        free = [
            inst
            for inst in instance_store.in_status(self.ctx.db, InstanceStatus.RUNNING)
            if inst.migration_task_id is None and inst.id not in self._instance_workers
        ]
        if not free:
            return

        def keep_up() -> None:
            for inst in free:
                now = instance_store.get_instance(self.ctx.db, inst.id)  # a migration may have begun
                if now is None or now.status is not InstanceStatus.RUNNING or now.migration_task_id:
                    continue
                try:
                    if instances.ensure_running(self.ctx, now):
                        log.warning("instance %s was not running; started it again", inst.id)
                except Exception:
                    log.exception("could not start instance %s", inst.id)

        th = threading.Thread(target=keep_up, name="instances-up", daemon=True)
        for inst in free:
            self._instance_workers[inst.id] = th
        th.start()

    def _instance_step(self, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(self.ctx, *args)
        except Exception:
            log.exception("instance step %s failed", getattr(fn, "__name__", fn))

    # ---- one task --------------------------------------------------------------------------------

    def _revert_task(self, task_id: int, stop: threading.Event, quiet: bool) -> None:
        rec = task_store.get_task(self.ctx.db, task_id)
        if rec is None:
            return
        tc = TaskContext(self.ctx, rec, stop)
        try:
            finish_revert(tc, self.stages, quiet=quiet)
        except Exception:
            log.exception("reverting failed task %s again failed", task_id)
        finally:
            tc.close_connections()
            task_store.release_lease(self.ctx.db, task_id, self.owner)

    def _run_task(self, task_id: int, stop: threading.Event) -> None:
        rec = task_store.get_task(self.ctx.db, task_id)
        if rec is None:
            return
        tc = TaskContext(self.ctx, rec, stop)
        try:
            run_task(tc, self._stop, self.stages)
        finally:
            tc.close_connections()
            self.ctx.notifier.forget(task_id)
            task_store.release_lease(self.ctx.db, task_id, self.owner)
