"""Stage increment: keep the standby running and observe both sides every `observe_seconds`.

The state tells the truth: `disconnect` as soon as the target is down or not receiving; a slot the
source invalidated is copied again (or the task fails saying why); the WAL the slot keeps on the
source and the target's size have watermarks with warnings, and limits that stop the migration
before either disk is at risk.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg

from cloudmig.domain.detail import SECTION_HEALTH, SECTION_SYNC
from cloudmig.domain.enums import MigrateStage, ReplicationState
from cloudmig.domain.switchover import FenceState
from cloudmig.domain.transitions import Transition
from cloudmig.engine import fence, slots
from cloudmig.engine.health import read_storage, read_wal
from cloudmig.engine.observe import Observation, next_state, observe, progress_fields, receiver_connecting
from cloudmig.engine.outcome import Fail, Next, Outcome, Retry, Wait
from cloudmig.engine.revert import undo_copy
from cloudmig.engine.taskctx import TaskContext
from cloudmig.errors import SlotInvalidated, SourceWalLimit, StorageQuotaExceeded
from cloudmig.instances.managed import OBSERVE_CONNECT_TIMEOUT
from cloudmig.pg import slots as pg_slots
from cloudmig.pg.deadline import query_deadline
from cloudmig.pg.slots import SlotHealth

log = logging.getLogger(__name__)

# The queries of one observation (a few small ones on each side) may take this long.
OBSERVATION_SECONDS = 10.0
# How often a standby that is catching up is observed; and one whose WAL receiver is connecting.
CATCHUP_OBSERVE_SECONDS = 0.25
RECEIVER_CONNECT_OBSERVE_SECONDS = 0.05
# Received WAL that stands still this many observations while the source is ahead: not receiving.
STALLED_OBSERVATIONS = 2


def _target_connection(tc: TaskContext) -> psycopg.Connection:
    # Before promotion the copy only knows the source's roles; the migration account is a
    # pg_monitor member and the instance's socket trusts local connections.
    return tc.instance().connect(tc.task.source_account, connect_timeout=OBSERVE_CONNECT_TIMEOUT)


def _source_connection(tc: TaskContext) -> psycopg.Connection | None:
    try:
        return tc.connection("source", tc.source().connect)
    except psycopg.OperationalError:
        return None  # the standby's own receiver status tells whether the link is down


def _observe(tc: TaskContext) -> tuple[Observation, SlotHealth | None, tuple[int, int | None] | None]:
    source = _source_connection(tc)
    # A new connection to the target each time (a local socket: cheap): a postmaster that accepts
    # no connection any more is down, even while an old session and its walreceiver still work.
    with _target_connection(tc) as target, query_deadline(OBSERVATION_SECONDS, target, source):
        obs = observe(target, source)
        slot = sizes = None
        if source is not None:
            slot = pg_slots.slot_health(source, tc.slot_name)
            sizes = pg_slots.wal_size_settings_mb(source)
    return obs, slot, sizes


def _observe_once_more(
    tc: TaskContext,
) -> tuple[Observation, SlotHealth | None, tuple[int, int | None] | None]:
    try:
        return _observe(tc)
    except psycopg.OperationalError:
        # A restarted server breaks the connections kept from the last step: reconnect once.
        tc.close_connections()
        return _observe(tc)


def _observe_or_start(
    tc: TaskContext,
) -> tuple[Observation, SlotHealth | None, tuple[int, int | None] | None]:
    """An observation; when the standby does not answer because its server is not running (it
    crashed, the host restarted), the server is started and looked at again. Asking the server
    first spares a `pg_ctl status` at every observation of a standby that runs."""
    try:
        return _observe_once_more(tc)
    except psycopg.OperationalError:
        if not tc.instance().ensure_running():
            raise
    tc.event(SECTION_SYNC, "Standby was not running; started it again")
    _set_state(tc, ReplicationState.DISCONNECT, "the standby was not running")
    tc.close_connections()
    return _observe(tc)


def _set_state(tc: TaskContext, state: ReplicationState, why: str = "") -> None:
    if state is tc.task.replication_state:
        return
    tc.update(replication_state=state)
    if state is ReplicationState.STREAMING:
        tc.event(SECTION_SYNC, "Standby caught up with the source; replication is streaming")
    elif state is ReplicationState.DISCONNECT:
        tc.event(SECTION_SYNC, f"Replication is down: {why or 'the standby is not receiving'}")


def _receiving(tc: TaskContext, obs: Observation, health: dict[str, Any]) -> bool:
    """False when the standby's received position stood still while the source was ahead (a
    frozen walreceiver or a broken link the receiver has not noticed yet)."""
    received, source = obs.received_lsn, obs.source_lsn
    now = tc.ctx.now().timestamp()
    if received is None or source is None or source <= received or health.get("_received") != received:
        health["_stalled"], health["_stalled_since"], health["_received"] = 0, now, received
        return True
    stalled = int(health.get("_stalled") or 0) + 1
    health["_stalled"] = stalled
    # At least two observations and two regular intervals: catch-up is observed faster.
    since = float(health.get("_stalled_since") or now)
    return (
        stalled < STALLED_OBSERVATIONS or now - since < STALLED_OBSERVATIONS * tc.ctx.settings.observe_seconds
    )


def _replication_progress(obs: Observation, previous: dict[str, Any], now: float) -> dict[str, Any]:
    """Progress.Replication; while the source cannot be read it keeps the last source position
    read and when it was read (SourceLsnAt): a forced switchover records them as last known."""
    out = progress_fields(obs, previous, now)
    out["SourceReachable"] = obs.source_lsn is not None
    if obs.source_lsn is not None:
        out["SourceLsnAt"] = now
    elif previous.get("SourceLsn"):
        out["SourceLsn"] = previous["SourceLsn"]
        out["SourceLsnAt"] = previous.get("SourceLsnAt") or previous.get("ObservedAt")
    return out


def _warn(tc: TaskContext, health: dict[str, Any], key: str, text: str) -> None:
    """A warning shown on Describe (Warning) and written to Detail once per level."""
    if health.get(f"_warned_{key}") != text.split(":")[0]:
        tc.event(SECTION_HEALTH, text)
        health[f"_warned_{key}"] = text.split(":")[0]
    health.setdefault("_warnings", []).append(text)


class IncrementStage:
    stage = MigrateStage.INCREMENT

    def run(self, tc: TaskContext) -> Outcome:
        started = time.monotonic()
        inst = tc.instance()
        if not inst.passfile.exists():
            tc.write_passfile()  # e.g. the runtime dir was cleared by a reboot
        _lift_leftover_fence(tc)
        try:
            obs, slot, sizes = _observe_or_start(tc)
        except psycopg.OperationalError as exc:
            tc.close_connections()
            _set_state(tc, ReplicationState.DISCONNECT, f"the standby does not answer ({_short(exc)})")
            return Retry(f"the standby does not answer: {_short(exc)}", disconnect=True)
        progress = dict(tc.task.progress)
        health: dict[str, Any] = dict(progress.get("Health") or {})
        health["_warnings"] = []

        lost = self._lost_slot(tc, slot, source_read=sizes is not None)
        if lost is not None:
            return lost
        failure = self._watermarks(tc, inst, slot, sizes, health)
        if failure is not None:
            return failure

        state = next_state(tc.task.replication_state, obs, tc.ctx.settings.streaming_lag_bytes)
        connecting = state is ReplicationState.DISCONNECT and receiver_connecting(
            tc.task.replication_state, obs, tc.ctx.now().timestamp(), tc.ctx.settings.observe_seconds
        )
        if connecting:
            state = ReplicationState.CATCHUP  # looked again soon, below
        why = ""
        if state is not ReplicationState.DISCONNECT and not _receiving(tc, obs, health):
            state, why = ReplicationState.DISCONNECT, "the standby stopped receiving while the source writes"
        progress["Replication"] = _replication_progress(
            obs, progress.get("Replication", {}), tc.ctx.now().timestamp()
        )
        warnings = health.pop("_warnings")
        health["Warning"] = "; ".join(warnings) if warnings else None
        progress["Health"] = health
        tc.observe(replication_info=obs.replication_info(), progress=progress)
        _set_state(tc, state, why)
        # A fixed rate: observations are `observe_seconds` apart however long one takes; while the
        # standby catches up they are closer, so that streaming is seen (and shown) when it starts.
        pace = tc.ctx.settings.observe_seconds
        if state is ReplicationState.CATCHUP:
            pace = min(pace, RECEIVER_CONNECT_OBSERVE_SECONDS if connecting else CATCHUP_OBSERVE_SECONDS)
        return Wait(max(pace - (time.monotonic() - started), 0.05))

    def _lost_slot(self, tc: TaskContext, slot: SlotHealth | None, *, source_read: bool) -> Outcome | None:
        if not source_read:
            return None  # the source cannot be read now: nothing is known about the slot
        if slot is not None and not slot.lost:
            return None
        what = (
            "was invalidated by the source (max_slot_wal_keep_size)"
            if slot
            else "no longer exists on the source"
        )
        s = tc.ctx.settings
        done = int(tc.task.progress.get("Recopies") or 0)
        if s.recopy_on_slot_loss and done < s.recopy_max_attempts:
            tc.event(
                SECTION_SYNC,
                f"Replication slot {tc.slot_name} {what}: the standby cannot catch up; copying the source "
                f"again (attempt {done + 1} of {s.recopy_max_attempts})",
            )
            tc.instance().halt()
            tc.close_connections()
            if slot is not None:
                slots.drop_on_source(tc.source(), tc.slot_name)
            progress = {**tc.task.progress, "Recopies": done + 1}
            progress.pop("BaseBackup", None)
            tc.move(Transition.RECOPY, ReplicationState.UNSTARTED, progress=progress)
            return Next()
        return Fail(
            SlotInvalidated(
                f"replication slot {tc.slot_name} {what}, so the source removed WAL the standby still "
                f"needed; {'re-copying is off' if not s.recopy_on_slot_loss else f'{done} re-copies were made'}"
            )
        )

    def _watermarks(
        self,
        tc: TaskContext,
        inst: Any,
        slot: SlotHealth | None,
        sizes: tuple[int, int | None] | None,
        health: dict[str, Any],
    ) -> Outcome | None:
        s = tc.ctx.settings
        if slot is not None and sizes is not None:
            wal = read_wal(s, slot, *sizes)
            health["SlotRetainedBytes"] = wal.retained
            health["SlotWalLimitBytes"] = wal.limit
            if wal.over_limit:
                return Fail(
                    SourceWalLimit(
                        f"{wal.describe()}: replication stopped and the slot dropped to protect the source's disk"
                    )
                )
            if wal.over_warning:
                _warn(tc, health, "wal", f"WAL kept on the source is high: {wal.describe()}")
        now = time.monotonic()
        last = float(health.get("_storage_checked") or 0)
        if now - last >= s.storage_check_seconds or now < last:
            reading = read_storage(inst, s.storage_reserve_mb)
            health.update(
                _storage_checked=now,
                StorageUsedBytes=reading.used,
                StorageQuotaBytes=reading.quota,
                StorageCapacityBytes=reading.capacity,
                _storage_level=reading.level,
                _storage_message=reading.message,
            )
            if reading.level >= 1.0:
                return Fail(
                    StorageQuotaExceeded(f"{reading.message}: replication stopped before the disk is full")
                )
        level = float(health.get("_storage_level") or 0)
        if level > 0:
            _warn(
                tc, health, f"storage{level}", f"Storage above {level:.0%}: {health.get('_storage_message')}"
            )
        return None

    def revert(self, tc: TaskContext) -> None:
        # A fence a given-up switchover left up is lifted first: while the source does not answer,
        # the revert stops here, the instance still held, and is run again (engine/loop.py).
        fence.lift_fence(tc, tc.evidence())
        # Then the standby (its walsender would hold the slot), and the slot goes whatever
        # happens to the standby: it protects the source.
        try:
            tc.instance().halt()
        finally:
            undo_copy(tc)

    def on_retries_exhausted(self, tc: TaskContext, reason: str) -> Outcome:
        # The standby retries its link for as long as it takes; the watermarks end it when needed.
        return Wait(tc.ctx.settings.observe_seconds)


def _lift_leftover_fence(tc: TaskContext) -> None:
    """A switchover given up while the source was unreachable may have left its fence up: lift it
    as soon as the source answers (the evidence says what was raised)."""
    ev = tc.evidence()
    if ev.fence_state not in (FenceState.RAISING, FenceState.UP, FenceState.LIFTING):
        return
    try:
        fence.lift_fence(tc, ev)
    except psycopg.Error as exc:
        tc.event(
            SECTION_SYNC, f"The switchover's fence could not be lifted yet ({_short(exc)}); cloudmig retries"
        )


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
