"""The full copy over a network: measure the link, decide the compression (engine/copy_plan.py), run
pg_basebackup through a counting, paced relay when the copy is compressed or budgeted, record the
bytes on the wire beside the bytes on disk, and revise an automatic choice once after the first
seconds of the copy.

Called by the basebackup stage (engine/basebackup.py) in place of a bare run_basebackup.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import psycopg

from cloudmig.domain.compression import CompressionMode, InvalidCompressionMode, parse_mode
from cloudmig.domain.detail import SECTION_BACKUP
from cloudmig.engine import bandwidth, copy_plan
from cloudmig.engine.copy_plan import CopyPlan, SourceMeasurement, Window
from cloudmig.engine.copy_ratio import RatioWatch
from cloudmig.engine.copy_stall import CopyStallWatch
from cloudmig.engine.taskctx import TaskContext
from cloudmig.pg import probes
from cloudmig.pg.basebackup import run_basebackup, session_name
from cloudmig.pg.compression import client_algorithms, server_support
from cloudmig.pg.linkprobe import local_address, measure_link
from cloudmig.pg.relay import CopyRelay, RelayUnavailable

REQUEST_KEY = "CopyCompression"  # in the task's request JSON (CreateCloudMigrationTask parameter)


class Recorder(Protocol):
    """The stage's progress recorder (engine/basebackup.py ProgressRecorder)."""

    started: float
    done: int
    total: int
    extra: Callable[[], dict[str, object]]

    def __call__(self, done: int, total: int) -> None: ...


class _Revised(Exception):
    def __init__(self, plan: CopyPlan) -> None:
        super().__init__(plan.reason)
        self.plan = plan


_active_lock = threading.Lock()
_active_copies = 0


@contextmanager
def _active() -> Iterator[None]:
    global _active_copies
    with _active_lock:
        _active_copies += 1
    try:
        yield
    finally:
        with _active_lock:
            _active_copies -= 1


def requested_mode(tc: TaskContext) -> CompressionMode:
    """The task's CopyCompression, else the setting's (both validated when they were given)."""
    value = tc.task.request.get(REQUEST_KEY) or tc.ctx.settings.copy_compression
    try:
        return parse_mode(str(value))
    except InvalidCompressionMode:
        return parse_mode(tc.ctx.settings.copy_compression)


def _measure(
    tc: TaskContext, requested: CompressionMode, client: frozenset[str], local: str | None
) -> SourceMeasurement:
    made_for = (str(requested), local)
    with tc.source().connect() as conn:
        server = server_support(conn)
        if local or not (requested.auto and server.server_compression and server.algorithms & client):
            return SourceMeasurement(server, None, made_for)
        try:
            return SourceMeasurement(server, measure_link(conn).bytes_per_second, made_for)
        except psycopg.Error as exc:
            tc.event(SECTION_BACKUP, f"Could not measure the link to the source: {str(exc).strip()[:200]}")
            return SourceMeasurement(server, None, made_for)


def _caps(tc: TaskContext, bucket: bandwidth.TokenBucket | None) -> dict[str, float]:
    caps: dict[str, float] = {}
    if tc.ctx.settings.basebackup_max_rate_kb > 0:
        caps["per-task max rate"] = tc.ctx.settings.basebackup_max_rate_kb * 1024.0
    if bucket is not None and tc.ctx.settings.copy_budget_counts == "wire":
        with _active_lock:
            running = max(_active_copies, 1)
        caps["host budget share"] = bucket.rate / running
    return caps


_measuring = ThreadPoolExecutor(max_workers=4, thread_name_prefix="source-measure")


def _inputs(
    tc: TaskContext, bin_dir: Path, bucket: bandwidth.TokenBucket | None
) -> tuple[CompressionMode, frozenset[str], str | None, dict[str, float]]:
    requested = requested_mode(tc)
    src = tc.source()
    local = local_address(src.host, src.port) if requested.auto else None
    return requested, client_algorithms(bin_dir), local, _caps(tc, bucket)


def start_measuring(tc: TaskContext) -> None:
    """Measure the source in the background while the assessment runs: the link probe takes about 0.1 s
    that the copy would otherwise wait for. Only read from the source (at most 8.5 MB); its result
    is used by plan_copy, or dropped when the assessment fails."""
    if tc.source_measurement is not None:
        return
    try:
        bin_dir = tc.ctx.provider.basebackup_dir(tc.instance().major)
        requested, client, local, caps = _inputs(
            tc, bin_dir, bandwidth.host_bucket(tc.ctx.settings.copy_budget_kb)
        )
    except Exception:
        return  # the copy's own planning reports what is wrong
    if not copy_plan.needs_measurement(requested, local, caps):
        return  # no session on the source for a decision that does not depend on it
    tc.source_measurement = _measuring.submit(_measure, tc, requested, client, local if not caps else None)


def _take_measurement(tc: TaskContext) -> Future[SourceMeasurement] | None:
    pending, tc.source_measurement = tc.source_measurement, None
    return pending


def plan_copy(tc: TaskContext, bin_dir: Path, bucket: bandwidth.TokenBucket | None) -> CopyPlan:
    requested, client, local, caps = _inputs(tc, bin_dir, bucket)
    pending = _take_measurement(tc)
    if local and not copy_plan.needs_measurement(requested, local, caps):
        return copy_plan.on_this_machine(requested, local)
    wanted = local if not caps else None
    measured: SourceMeasurement | None = None
    if pending is not None:
        try:
            measured = pending.result(timeout=60)
        except Exception:
            measured = None  # measured again below, where a failure is the copy's
    if measured is None or measured.made_for != (str(requested), wanted):
        measured = _measure(tc, requested, client, wanted)
    s = tc.ctx.settings
    bounds = copy_plan.AutoBounds.from_mb(s.copy_auto_none_from_mb, s.copy_auto_lz4_from_mb)
    return copy_plan.decide(
        requested, measured.server, client, measured.link, caps, local=local, bounds=bounds
    )


def run_copy(
    tc: TaskContext, prepare: Callable[[], Path], recorder: Recorder, *, create_slot: bool = False
) -> None:
    """The copy into the empty directory `prepare` returns (called again when the copy restarts).
    `create_slot`: the slot does not exist yet and the first pg_basebackup creates it."""
    inst = tc.instance()
    bin_dir = tc.ctx.provider.basebackup_dir(inst.major)
    bucket = bandwidth.host_bucket(tc.ctx.settings.copy_budget_kb)
    with _active():
        target = prepare()
        plan = plan_copy(tc, bin_dir, bucket)
        tc.event(SECTION_BACKUP, plan.detail())
        recorder.started = time.monotonic()
        try:
            _run_once(tc, target, recorder, plan, bin_dir, bucket, may_revise=True, create_slot=create_slot)
        except _Revised as revised:
            tc.event(SECTION_BACKUP, revised.plan.detail())
            _end_earlier_stream(tc)
            target = prepare()
            recorder.started, recorder.done, recorder.total = time.monotonic(), 0, 0
            _run_once(tc, target, recorder, revised.plan, bin_dir, bucket, may_revise=False)


def _end_earlier_stream(tc: TaskContext) -> None:
    # The killed copy's WAL streamer may still hold the slot on the source for a moment.
    with tc.source().connect() as conn:
        deadline = time.monotonic() + 10
        while probes.terminate_slot_holder(conn, tc.slot_name) and time.monotonic() < deadline:
            time.sleep(0.2)


def _run_once(
    tc: TaskContext,
    target: Path,
    recorder: Recorder,
    plan: CopyPlan,
    bin_dir: Path,
    bucket: bandwidth.TokenBucket | None,
    *,
    may_revise: bool,
    create_slot: bool = False,
) -> None:
    settings = tc.ctx.settings
    pacer = bandwidth.CopyPacer(bucket, settings.copy_budget_counts) if bucket is not None else None
    relay: CopyRelay | None = None
    if plan.mode.compressed or pacer is not None:
        src = tc.source().endpoint
        # With a budget, a small receive buffer keeps the burst before flow control bites short
        # (a compressed copy's buffered wire bytes are worth ratio x as many source bytes).
        rcvbuf = None
        if bucket is not None and pacer is not None:
            per_byte = bandwidth.ASSUMED_RATIO if pacer.counts == "source" and plan.mode.compressed else 1.0
            rcvbuf = max(int(bucket.rate * 0.25 / per_byte), 256 * 1024)
        try:
            relay = CopyRelay(src.host, src.port, pacer=pacer, receive_buffer=rcvbuf).start()
        except RelayUnavailable as exc:
            tc.event(SECTION_BACKUP, f"Bytes on the wire are not measured and no budget applies: {exc}")
    meter = _Meter(plan, relay, settings.copy_budget_kb, settings.copy_budget_counts)
    recorder.extra = lambda: meter.fields(recorder.done)
    if pacer is not None and plan.mode.compressed:
        pacer.ratio = bandwidth.ASSUMED_RATIO

    def on_ratio(ratio: float) -> None:
        if pacer is not None:
            pacer.ratio = ratio

    def on_progress(done: int, total: int) -> None:
        recorder(done, total)
        if may_revise and not meter.checked and meter.first_report is not None and relay is not None:
            window = Window(
                time.monotonic() - meter.first_report,
                meter.arrived(done),
                meter.data_wire(),
                total,
                *meter.first_counts,
            )
            if copy_plan.window_complete(window):
                meter.checked = True
                revised = copy_plan.revise(plan, window)
                if revised is not None:
                    raise _Revised(revised)
        if meter.first_report is None:
            meter.first_report = time.monotonic()
            meter.first_counts = (meter.opened(done), meter.data_wire())

    watch = RatioWatch(tc.instance().copied_data_bytes, meter.data_wire, on_ratio)
    name = session_name(tc.slot_name)
    try:
        if relay is not None and plan.mode.compressed:
            meter.watch = watch
            watch.start()
        run_basebackup(
            bin_dir,
            target,
            tc.source().endpoint,
            tc.slot_name,
            passfile=tc.instance().passfile,
            user=tc.ctx.provider.user,
            runner=tc.ctx.provider.runner,
            on_progress=on_progress,
            should_stop=tc.stop.is_set,
            max_rate_kb=settings.basebackup_max_rate_kb,
            compression=plan.mode,
            relay_host=relay.listen_host if relay is not None else None,
            libpq_env=tc.source().tls.libpq_env(),
            write_behind=settings.copy_write_behind_seconds,
            create_slot=create_slot,
            silence=CopyStallWatch(tc, name, copied=lambda: recorder.done),
            name=name,
        )
    finally:
        watch.stop()
        meter.finish()
        if relay is not None:
            relay.close()


class _Meter:
    """The copy's compression and wire fields for Progress.BaseBackup."""

    def __init__(self, plan: CopyPlan, relay: CopyRelay | None, budget_kb: int, counts: str) -> None:
        self.plan = plan
        self.relay = relay
        self.budget_kb = budget_kb
        self.counts = counts
        self.started = time.monotonic()
        self.first_report: float | None = None
        self.first_counts = (0, 0)  # uncompressed and wire bytes at the first report
        self.checked = False
        self.ended: float | None = None
        self.watch: RatioWatch | None = None  # the ratio of what reached the disk (compressed copies)

    def data_wire(self) -> int:
        """Wire bytes of the base backup's own connection (the first; the WAL stream comes later)."""
        if self.relay is None:
            return 0
        per = self.relay.connection_bytes()
        return per[0] if per else 0

    def arrived(self, done: int) -> int:
        """Uncompressed bytes that have reached this side: what the watch saw written, else
        pg_basebackup's count (which includes what the socket buffers still hold)."""
        return self.watch.written if self.watch is not None and self.watch.written else done

    def opened(self, done: int) -> int:
        """`arrived` when the first-seconds window opens, counted as `arrived` will be counted at
        its end (a watch that has seen nothing yet counts 0, never the -P count that runs ahead)."""
        if self.watch is not None:
            return self.watch.written
        return done

    def ratio(self, done: int) -> float:
        """While the copy runs, the watched ratio (the -P count runs ahead of the wire by the socket
        buffers); once it has ended, the source's whole count over the wire's."""
        if self.ended is None and self.watch is not None and self.watch.ratio is not None:
            return self.watch.ratio
        wire = self.data_wire()
        return done / wire if wire > 0 and done > 0 else 1.0

    def finish(self) -> None:
        self.ended = time.monotonic()

    def fields(self, done: int) -> dict[str, object]:
        out: dict[str, Any] = {
            "Compression": str(self.plan.mode),
            "CompressionRequested": str(self.plan.requested),
            "CompressionReason": self.plan.reason,
        }
        if self.plan.link_bytes_per_second:
            out["LinkBytesPerSecond"] = round(self.plan.link_bytes_per_second)
        if self.relay is not None:
            wire = self.relay.wire_bytes
            elapsed = max((self.ended or time.monotonic()) - self.started, 1e-6)
            out["WireBytes"] = wire
            out["WireRateBytesPerSecond"] = round(wire / elapsed)
            out["CompressionRatio"] = round(self.ratio(done), 2)
        if self.budget_kb > 0:
            out["BudgetKBPerSecond"] = self.budget_kb
            out["BudgetCounts"] = self.counts
        return out
