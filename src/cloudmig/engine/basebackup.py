"""Stage basebackup: a slot on the source (created by pg_basebackup itself on a first copy), then
pg_basebackup -X stream through it into a directory beside the target's data directory while the
target's server stops, then the copy becomes the data directory."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import psycopg

from cloudmig.domain.detail import SECTION_BACKUP
from cloudmig.domain.enums import MigrateStage, ReplicationState
from cloudmig.domain.ids import slot_name_for_task
from cloudmig.domain.transitions import Transition
from cloudmig.domain.units import human_bytes
from cloudmig.engine import copy_run
from cloudmig.engine.health import copy_fits
from cloudmig.engine.outcome import Fail, Next, Outcome, Retry, Wait
from cloudmig.engine.revert import undo_copy
from cloudmig.engine.taskctx import TaskContext
from cloudmig.errors import RetriesExhausted, StorageQuotaExceeded
from cloudmig.instances.managed import ManagedInstance
from cloudmig.pg import compat, probes
from cloudmig.pg.basebackup import BasebackupStopped, CopyStalled, sessions_prefix
from cloudmig.pg.runner import PgCommandError

# Progress is written at most this often; pg_basebackup reports many times a second.
PROGRESS_INTERVAL = 1.0


class ProgressRecorder:
    """Turns pg_basebackup's byte counts into the task's progress fields (bytes, rate, ETA), and
    stops the copy when it cannot fit the target."""

    def __init__(self, tc: TaskContext) -> None:
        self.tc = tc
        self.started = time.monotonic()
        self.last_write = 0.0
        self.done = 0
        self.total = 0
        self.checked_total = 0
        # Fields the copy adds (compression, bytes on the wire: engine/copy_run.py).
        self.extra: Callable[[], dict[str, object]] = dict

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        if total > self.checked_total:
            self.checked_total = total
            problem = copy_fits(self.tc.instance(), total, self.tc.ctx.settings.storage_reserve_mb)
            if problem:
                raise StorageQuotaExceeded(problem)
        now = time.monotonic()
        if now - self.last_write >= PROGRESS_INTERVAL:
            self.flush(now)

    def snapshot(self, now: float, phase: str) -> dict[str, object]:
        elapsed = max(now - self.started, 1e-6)
        rate = self.done / elapsed
        remaining = max(self.total - self.done, 0)
        eta = remaining / rate if rate > 0 else None
        return {
            "Phase": phase,
            "BytesDone": self.done,
            "BytesTotal": self.total,
            "RateBytesPerSecond": round(rate),
            "EtaSeconds": None if eta is None else round(eta, 1),
            "ElapsedSeconds": round(elapsed, 1),
            **self.extra(),
        }

    def flush(self, now: float, phase: str = "copy") -> None:
        self.last_write = now
        progress = dict(self.tc.task.progress)
        progress["BaseBackup"] = self.snapshot(now, phase)
        self.tc.observe(progress=progress)
        self.tc.task = replace(self.tc.task, progress=progress)


def _prepare_slot(tc: TaskContext) -> bool:
    """Name the slot (persisted before it exists, so a sweep never mistakes it for an orphan).
    Returns True when pg_basebackup is to create it: named just now, it cannot exist yet, and the
    copy's own connection saves a session on the source. Otherwise create it here if it is missing,
    and end what an interrupted copy may have left on the source: its sender, and a WAL stream
    attached to the slot."""
    if not tc.task.slot_name:
        tc.update(slot_name=slot_name_for_task(tc.ctx.installation_id(), tc.task.id))
        if compat.basebackup_creates_slots(tc.instance().major):
            return True
    with tc.source().connect() as conn:
        # The slot holds the source's WAL from the copy's start until the standby streams from it.
        probes.create_physical_slot(conn, tc.slot_name)
        # A sender still waiting on an earlier copy's connection (dropped on the way, or frozen).
        if probes.terminate_walsenders(conn, sessions_prefix(tc.slot_name)):
            tc.event(SECTION_BACKUP, "Ended the sender of an earlier, interrupted copy")
        if probes.terminate_slot_holder(conn, tc.slot_name):
            tc.event(SECTION_BACKUP, "Ended a WAL stream of an earlier, interrupted copy")
    return False


def _copy_while_halting(
    tc: TaskContext, inst: ManagedInstance, recorder: ProgressRecorder, *, create_slot: bool
) -> None:
    """The server in the data directory (an empty cluster, or the standby of an earlier copy) stops
    while the copy goes into the directory beside it: the copy does not wait for the shutdown."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="halt-for-copy") as pool:
        halted = pool.submit(inst.stop_for_copy)
        # Compression, relay and budget (issue 13): engine/copy_run.py.
        copy_run.run_copy(tc, inst.prepare_copy_dir, recorder, create_slot=create_slot)
    halted.result()


class BasebackupStage:
    stage = MigrateStage.BASEBACKUP

    def run(self, tc: TaskContext) -> Outcome:
        inst = tc.instance()
        attempt = "Start" if not tc.task.progress.get("BaseBackup") else "Restart"
        try:
            create_slot = _prepare_slot(tc)
        except psycopg.OperationalError as exc:
            return Retry(f"cannot reach the source: {' '.join(str(exc).split())[:300]}", disconnect=True)
        if tc.task.replication_state is not ReplicationState.UNSTARTED:
            tc.update(replication_state=ReplicationState.UNSTARTED)
        tc.event(
            SECTION_BACKUP,
            f"{attempt} full backup of source data by pg_basebackup through slot {tc.slot_name}",
        )
        tc.write_passfile()
        recorder = ProgressRecorder(tc)
        try:
            _copy_while_halting(tc, inst, recorder, create_slot=create_slot)
        except BasebackupStopped:
            return Wait(0)
        except StorageQuotaExceeded as exc:
            return Fail(exc)
        except CopyStalled as exc:
            return Retry(f"the copy stalled: {exc.reason}", disconnect=True)
        except PgCommandError as exc:
            if exc.command != "pg_basebackup":
                return Retry(f"the instance's server did not stop for the copy: {exc}")
            return Retry(f"pg_basebackup failed: {exc}", disconnect=True)
        inst.install_copy()
        recorder.done = max(recorder.done, recorder.total)
        recorder.flush(time.monotonic(), phase="done")
        tc.event(
            SECTION_BACKUP,
            f"Full backup finished: {human_bytes(recorder.total)} in "
            f"{time.monotonic() - recorder.started:.1f} s",
        )
        tc.move(Transition.COPIED, ReplicationState.UNSTARTED)
        return Next()

    def revert(self, tc: TaskContext) -> None:
        undo_copy(tc)

    def on_retries_exhausted(self, tc: TaskContext, reason: str) -> Outcome:
        return Fail(RetriesExhausted(f"the full copy kept failing: {reason}"))
