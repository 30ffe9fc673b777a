"""The engine: a loop that keeps leases, hands claimed tasks to worker threads, and runs the
periodic jobs (instance steps, slot drops and the orphan-slot sweep, the post-switch watch)."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

from cloudmig.domain.enums import InstanceStatus
from cloudmig.engine import instances, postswitch, slots
from cloudmig.engine.taskctx import TaskContext
from cloudmig.engine.worker import run_task
from cloudmig.runtime import AppContext
from cloudmig.store import instances as instance_store
from cloudmig.store import tasks as task_store
from cloudmig.store.db import is_disk_full

log = logging.getLogger(__name__)

# How often Running instances no task works on are looked at (and started again when down).
FREE_INSTANCE_CHECK_SECONDS = 10.0


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
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.owner = f"{uuid.uuid4()}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._workers: dict[int, tuple[threading.Thread, threading.Event]] = {}
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
            monotonic = self.ctx.clock.monotonic()
            if monotonic - self._free_instances_checked >= FREE_INSTANCE_CHECK_SECONDS:
                self._free_instances_checked = monotonic
                self._keep_free_instances_up()
        for job in self._periodic:
            job.tick(monotonic)

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

    def _run_task(self, task_id: int, stop: threading.Event) -> None:
        rec = task_store.get_task(self.ctx.db, task_id)
        if rec is None:
            return
        tc = TaskContext(self.ctx, rec, stop)
        try:
            run_task(tc, self._stop)
        finally:
            tc.close_connections()
            self.ctx.notifier.forget(task_id)
            task_store.release_lease(self.ctx.db, task_id, self.owner)
