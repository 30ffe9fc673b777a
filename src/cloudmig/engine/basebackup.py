"""Stage basebackup: wipe the target, pg_basebackup -X stream through the task's slot, with progress."""

from __future__ import annotations

import time
from dataclasses import replace

from cloudmig.domain.detail import SECTION_BACKUP
from cloudmig.domain.enums import MigrateStage, ReplicationState
from cloudmig.engine.taskctx import TaskContext
from cloudmig.instances.osuser import pg_os_user
from cloudmig.pg import probes
from cloudmig.pg.basebackup import run_basebackup
from cloudmig.pg.sql import connect_source

# Progress is written at most this often; pg_basebackup reports many times a second.
PROGRESS_INTERVAL = 1.0


class ProgressRecorder:
    """Turns pg_basebackup's byte counts into the task's progress fields (bytes, rate, ETA)."""

    def __init__(self, tc: TaskContext) -> None:
        self.tc = tc
        self.started = time.monotonic()
        self.last_write = 0.0
        self.done = 0
        self.total = 0

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
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
        }

    def flush(self, now: float, phase: str = "copy") -> None:
        self.last_write = now
        progress = dict(self.tc.task.progress)
        progress["BaseBackup"] = self.snapshot(now, phase)
        self.tc.observe(progress=progress)
        self.tc.task = replace(self.tc.task, progress=progress)


def step(tc: TaskContext) -> float | None:
    inst = tc.instance()
    provider = tc.ctx.provider
    src = tc.source_spec()
    attempt = "Start" if not tc.task.progress.get("BaseBackup") else "Restart"
    tc.event(
        SECTION_BACKUP, f"{attempt} full backup of source data by pg_basebackup through slot {tc.slot_name}"
    )
    with connect_source(
        src.host, src.port, src.account, src.password, connect_timeout=src.connect_timeout
    ) as conn:
        # The slot holds the source's WAL from the copy's start until the standby streams from it.
        probes.create_physical_slot(conn, tc.slot_name)
        # A copy cut short (service killed) may have left its WAL streamer attached to the slot.
        if probes.terminate_slot_holder(conn, tc.slot_name):
            tc.event(SECTION_BACKUP, "Ended a WAL stream of an earlier, interrupted copy")
    tc.write_passfile()
    target = provider.wipe_pgdata(inst.id, inst.major)
    recorder = ProgressRecorder(tc)
    run_basebackup(
        provider.basebackup_dir(inst.major),
        target,
        tc.source_endpoint(),
        tc.slot_name,
        passfile=tc.passfile,
        user=pg_os_user(tc.ctx.settings),
        on_progress=recorder,
        should_stop=tc.stop.is_set,
        max_rate_kb=tc.ctx.settings.basebackup_max_rate_kb,
    )
    recorder.done = max(recorder.done, recorder.total)
    recorder.flush(time.monotonic(), phase="done")
    mb = recorder.total / (1024 * 1024)
    tc.event(
        SECTION_BACKUP, f"Full backup finished: {mb:.1f} MB in {time.monotonic() - recorder.started:.1f} s"
    )
    tc.advance(MigrateStage.STARTUP, ReplicationState.UNSTARTED)
    return None
