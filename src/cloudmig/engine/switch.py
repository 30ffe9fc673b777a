"""Stage switch: fence the source (or prove it quiet), take the cut, wait for the target to replay
it, promote exactly once, then make the instance a plain primary.

Every decision is persisted in the task's evidence before it is acted on: the fence before it is
raised, the point of no return (`promoting`) before the promotion is issued. A crash at any point
resumes from there; before the point of no return a failure lifts the fence and gives the
switchover up (replication goes on), after it nothing resets the target.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import psycopg

from cloudmig.domain.detail import SECTION_SWITCH
from cloudmig.domain.enums import MigrateStage, ReplicationState
from cloudmig.domain.fence import FenceMethod
from cloudmig.domain.lsn import format_lsn
from cloudmig.domain.switchover import SwitchEvidence, SwitchPhase, SwitchRequest
from cloudmig.domain.transitions import Transition
from cloudmig.engine import fence, postswitch
from cloudmig.engine.finish import finish
from cloudmig.engine.gate import Comeback, prove_quiet
from cloudmig.engine.outcome import Next, Outcome, Retry, Wait
from cloudmig.engine.revert import release_instance, undo_copy
from cloudmig.engine.taskctx import TaskContext
from cloudmig.instances.managed import OBSERVE_CONNECT_TIMEOUT, ManagedInstance
from cloudmig.pg import activity, probes, roles
from cloudmig.pg.conf import StandbyConf

# How often the catch-up wait looks at the target's replay position.
CATCHUP_POLL_SECONDS = 0.05
# Once fenced (and every session the fence does not hold ended), only a session that makes its
# own transactions read-write could write: a short window, and the same proof again just before
# the promotion (no transaction ended after the cut), suffice. The first window also lasts until
# the sessions the fence ended came back and ran a statement (up to COMEBACK_GRACE_SECONDS): an
# application that reconnects read-write writes at once, and must do so inside the window.
FENCED_QUIET_WINDOW = 0.1
COMEBACK_GRACE_SECONDS = 0.5
# pg_promote() is asked not to wait; the end of recovery is looked for this often.
PROMOTE_POLL_SECONDS = 0.01
PROMOTE_TIMEOUT_SECONDS = 60.0
SOURCE_CONNECTION = "switch-source"


def _source_connection(tc: TaskContext) -> psycopg.Connection:
    """One session on the source for the whole switch (the gate, the last look before promoting):
    every new one is a TCP and SCRAM handshake while the application waits. Reopened once if a
    restart of the source broke it."""
    conn = tc.connection(SOURCE_CONNECTION, tc.source().connect)
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        tc.drop_connection(SOURCE_CONNECTION)
        conn = tc.connection(SOURCE_CONNECTION, tc.source().connect)
    return conn


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


class SwitchStage:
    stage = MigrateStage.SWITCH

    def run(self, tc: TaskContext) -> Outcome:
        req = tc.switch_request()
        ev = tc.evidence()
        if req is None:  # cannot happen through the API; never leave a task stuck in switch
            return self._abort(tc, ev, "no switchover request is recorded")
        if ev.past_no_return:
            return self._promote_and_finish(tc, req, ev)
        if ev.phase is SwitchPhase.ABORTED:
            return self._abort(tc, ev, ev.aborted_reason or "given up")
        # The target is started again where it is found down (the catch-up, the promotion): the
        # request was accepted with it running, and a pg_ctl status here costs the application.
        if req.force:
            return self._promote_and_finish(tc, req, ev)
        deadline = req.requested_at + timedelta(seconds=req.timeout_seconds)
        if ev.phase in (SwitchPhase.REQUESTED, SwitchPhase.FENCING):
            if tc.ctx.now() > deadline:
                return self._abort(
                    tc, ev, f"the switchover did not pass its gate within {req.timeout_seconds:g} s"
                )
            gated = self._gate(tc, req, ev, deadline)
            if gated is not None:
                return gated
        return self._catch_up(tc, req, ev, deadline)

    # ---- before the point of no return ----------------------------------------------------------

    def _gate(
        self, tc: TaskContext, req: SwitchRequest, ev: SwitchEvidence, deadline: datetime
    ) -> Outcome | None:
        s = tc.ctx.settings
        started = time.monotonic()
        try:
            conn = _source_connection(tc)
            if ev.phase is SwitchPhase.REQUESTED:
                # Persisted with the fence's first state (before it is raised) or with the cut:
                # before either, a restart may just as well choose again.
                ev.phase, ev.fence = SwitchPhase.FENCING, fence.method_for(tc, conn, req.fence).value
            method = FenceMethod(ev.fence or FenceMethod.NONE.value)
            comeback = None
            if method is not FenceMethod.NONE:
                # Also when a retry or a restart comes back here: raising picks up where it was.
                ended = fence.raise_fence(tc, conn, ev, method)
                # Those that were busy a moment ago are the ones likely to come back at once.
                recent = activity.server_epoch(conn) - COMEBACK_GRACE_SECONDS
                busy = sum(1 for x in ended if x.state_change is not None and x.state_change >= recent)
                if busy and ev.fence_up_at is not None:
                    comeback = Comeback(busy, ev.fence_up_at.timestamp(), COMEBACK_GRACE_SECONDS)
            fenced = ev.fence not in (None, FenceMethod.NONE.value)
            window, read_only_since = s.switch_quiet_seconds, None
            if fenced:
                window, read_only_since = self._fenced_window(tc, conn, ev)
            # Fenced, windows are tried for as long as `switch_quiet_attempts` full windows last
            # without a fence, never past the deadline: while the fence is up nobody can write.
            left = (deadline - tc.ctx.now()).total_seconds()
            budget = min(left, s.switch_quiet_seconds * s.switch_quiet_attempts) if fenced else None
            proof = prove_quiet(
                conn,
                window=window,
                attempts=10**6 if fenced else s.switch_quiet_attempts,
                stop=tc.stop.is_set,
                read_only_since=read_only_since,
                budget_seconds=budget,
                comeback=comeback,
                own=lambda session: activity.is_own(session, tc.task.source_account),
            )
            if tc.stop.is_set():
                return Wait(0)
            if not proof.quiet:
                what = "the fenced source" if fenced else "the source"
                return self._abort(
                    tc,
                    ev,
                    f"Writes are still arriving on {what}: {proof.why}. Stop the application's writes "
                    "and call again, or set ForceSwitch=1 to switch now and lose them",
                )
            baseline = postswitch.take_baseline(tc.source(), conn, proof.cut_xid)
        except psycopg.OperationalError as exc:
            return self._abort(
                tc,
                ev,
                f"The source cannot be reached to check that writes have stopped ({_short(exc)}); "
                "use ForceSwitch=1 to switch over without it",
            )
        except (psycopg.Error, RuntimeError) as exc:
            # Not retried: while the fence is up the application cannot write.
            return self._abort(tc, ev, f"Fencing the source or checking it failed ({_short(exc)})")
        ev.phase, ev.cut_lsn, ev.cut_xid = SwitchPhase.CATCHUP, proof.cut_lsn, proof.cut_xid
        ev.gate_seconds = round(time.monotonic() - started, 3)
        tc.update(evidence=ev.to_json(), progress={**tc.task.progress, "_Watch": baseline})
        tc.event(SECTION_SWITCH, f"Writes stopped on the source; cut at {format_lsn(proof.cut_lsn or 0)}")
        return None

    def _fenced_window(
        self, tc: TaskContext, conn: psycopg.Connection, ev: SwitchEvidence
    ) -> tuple[float, float | None]:
        """The quiet window once fenced, and since when new sessions are read-only. When the fence
        holds every session, a short window suffices; what it does not hold (a superuser session,
        a setting that beats it) may write now and then, so it gets the full-length window."""
        found = fence.holes(conn, ev, tc.task.source_account)
        ev.unfenced = found.describe() or None
        read_only_since = None if found.settings or ev.fence_up_at is None else ev.fence_up_at.timestamp()
        if not ev.unfenced:
            return FENCED_QUIET_WINDOW, read_only_since
        tc.save_evidence(ev)
        window = tc.ctx.settings.switch_quiet_seconds
        tc.event(
            SECTION_SWITCH,
            f"The fence does not hold everything ({'; '.join(ev.unfenced)}): watching for writes over "
            f"{window:g} s windows",
        )
        return window, read_only_since

    def _catch_up(
        self, tc: TaskContext, req: SwitchRequest, ev: SwitchEvidence, deadline: datetime
    ) -> Outcome:
        assert ev.cut_lsn is not None
        inst = tc.instance()
        try:
            target = inst.connect(tc.task.source_account, connect_timeout=OBSERVE_CONNECT_TIMEOUT)
        except psycopg.OperationalError:
            if inst.ensure_running():
                tc.event(SECTION_SWITCH, "The target was not running; started it again")
            target = inst.connect(tc.task.source_account, connect_timeout=OBSERVE_CONNECT_TIMEOUT)
        with target:
            replay = probes.replay_lsn(target) or 0
            if replay >= ev.cut_lsn:
                return self._promote_and_finish(tc, req, ev, target)
        if tc.ctx.now() > deadline:
            waited = (tc.ctx.now() - req.requested_at).total_seconds()
            return self._abort(
                tc,
                ev,
                f"the target replayed up to {format_lsn(replay)} of {format_lsn(ev.cut_lsn)} in {waited:.0f} s "
                f"(SwitchoverTimeout {req.timeout_seconds:g} s)",
            )
        return Wait(CATCHUP_POLL_SECONDS)

    def _abort(self, tc: TaskContext, ev: SwitchEvidence, why: str) -> Outcome:
        """Give this switchover up: lift the fence, then back to increment with the reason, in one
        step, so that whoever reads `aborted` (the Activate call waiting for its verdict) finds the
        task where Activate can be called again and the source writable. The fence's own states
        are persisted as it is lifted; a crash before the move comes back here."""
        try:
            fence.lift_fence(tc, ev)
        except psycopg.Error as exc:
            # The increment stage keeps trying until the fence is lifted.
            tc.event(SECTION_SWITCH, f"The fence could not be lifted yet ({_short(exc)}); cloudmig retries")
        ev.phase, ev.aborted_reason = SwitchPhase.ABORTED, why
        # The watch's baseline belongs to this attempt's cut; the next attempt takes its own.
        progress = {k: v for k, v in tc.task.progress.items() if k != "_Watch"}
        tc.event(SECTION_SWITCH, f"Switchover aborted, replication goes on: {why}")
        tc.move(Transition.SWITCH_ABORTED, evidence=ev.to_json(), progress=progress)
        tc.drop_connection(SOURCE_CONNECTION)
        return Next()

    # ---- the point of no return and after -------------------------------------------------------

    def _promote_and_finish(
        self,
        tc: TaskContext,
        req: SwitchRequest,
        ev: SwitchEvidence,
        target: psycopg.Connection | None = None,
    ) -> Outcome:
        inst = tc.instance()
        if target is None:
            if ev.past_no_return and not inst.is_running() and inst.configured_as_standby():
                # Past the point of no return the target must not stream from the source again
                # (PostgreSQL forgets an unfinished promotion at start): it comes back as a standby
                # without a primary, replays what it has, and is promoted from there.
                inst.apply_conf(standby=StandbyConf(primary_conninfo="", primary_slot_name=""))
            if inst.ensure_running():
                tc.event(SECTION_SWITCH, "The target was not running; started it again")
            with inst.connect(tc.task.source_account, connect_timeout=OBSERVE_CONNECT_TIMEOUT) as conn:
                return self._promote_and_finish(tc, req, ev, conn)
        in_recovery = probes.is_in_recovery(target)
        if in_recovery and not ev.past_no_return:
            refusal = self._cross_no_return(tc, req, ev, target)
            if refusal is not None:
                return self._abort(tc, ev, refusal)
        if in_recovery:
            started = time.monotonic()
            self._promote(inst, target)
            ev.promote_seconds = round(time.monotonic() - started, 3)  # saved by finish
        finish(tc, ev, target)
        tc.drop_connection(SOURCE_CONNECTION)
        return Next()

    def _promote(self, inst: ManagedInstance, target: psycopg.Connection) -> None:
        """End the target's recovery: pg_promote() over the admin socket, then look every
        PROMOTE_POLL_SECONDS until it accepts writes (pg_ctl -w and pg_promote(true) look every 100 ms,
        and the application waits meanwhile). pg_ctl where there is no superuser to ask."""
        superuser = roles.any_superuser(target)
        if superuser is None or inst.major < 12:
            inst.promote()
            return
        with inst.connect(superuser) as conn:
            # A paused replay (pg_wal_replay_pause) would hold the promotion: it already replayed
            # the cut, so let it go on.
            conn.execute("SELECT pg_wal_replay_resume() WHERE pg_is_wal_replay_paused()")
            conn.execute("SELECT pg_promote(false)")
            deadline = time.monotonic() + PROMOTE_TIMEOUT_SECONDS
            while probes.is_in_recovery(conn):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the target was still in recovery {PROMOTE_TIMEOUT_SECONDS:g} s after pg_promote()"
                    )
                time.sleep(PROMOTE_POLL_SECONDS)

    def _cross_no_return(
        self, tc: TaskContext, req: SwitchRequest, ev: SwitchEvidence, target: psycopg.Connection
    ) -> str | None:
        """Record everything about the moment of promotion, then `promoting`: persisted before the
        promotion is issued, so that nothing resets the target from here on. A reason to give the
        switchover up instead when a write reached the source after the cut."""
        replay = probes.replay_lsn(target) or 0
        now = tc.ctx.now()
        ev.forced = req.force
        ev.timeline_before = probes.timeline_id(target)
        ev.replay_lsn_at_promote = replay
        ev.catchup_seconds = round((now - req.requested_at).total_seconds(), 3)
        ev.promote_issued_at = now
        refusal = self._read_source_at_promote(tc, ev, replay)
        if refusal is not None:
            return refusal
        ev.phase = SwitchPhase.PROMOTING
        tc.save_evidence(ev)
        return None

    def _read_source_at_promote(self, tc: TaskContext, ev: SwitchEvidence, replay: int) -> str | None:
        source_lsn: int | None = None
        after_cut = 0
        try:
            conn = _source_connection(tc)
            source_lsn = probes.current_wal_lsn(conn)
            if ev.cut_lsn is None:  # forced: the cut is where the source is now
                baseline = postswitch.take_baseline(tc.source(), conn, None)
                tc.update(progress={**tc.task.progress, "_Watch": baseline})
            elif tc.task.progress.get("_Watch"):
                # The proof that nothing writes goes on until here: a transaction that ended
                # after the cut, and that ANALYZE does not explain, may be an application's.
                after_cut = postswitch.unexplained_transactions(tc.source(), conn, tc.task.progress["_Watch"])
        except psycopg.Error:
            source_lsn = None
        if after_cut:
            return (
                f"Writes are still arriving on the source: {after_cut} transaction(s) ended on it after the cut "
                f"at {format_lsn(ev.cut_lsn or 0)}; stop the application's writes and call again, or set "
                "ForceSwitch=1 to switch now and lose them"
            )
        if source_lsn is None and ev.cut_lsn is not None and not ev.forced:
            # Proven quiet at the cut and replayed up to it: nothing was lost, whatever the source says now.
            ev.bytes_not_replayed = max(ev.cut_lsn - replay, 0)
            ev.source_reachable_at_promote = False
            tc.event(
                SECTION_SWITCH,
                "The source cannot be read at the promotion; the watch of the old source tries again later",
            )
            return None
        if source_lsn is not None:
            ev.source_reachable_at_promote = True
            ev.source_lsn_at_promote = source_lsn
            if ev.cut_lsn is None:
                ev.cut_lsn = source_lsn
            # Against the cut: what the source wrote after it is the post-switch watch's business.
            ev.bytes_not_replayed = max(ev.cut_lsn - replay, 0)
            return None
        # The source is gone: promote with what was replayed; what was not is unknown.
        ev.source_reachable_at_promote = False
        ev.bytes_not_replayed = None
        repl = tc.task.progress.get("Replication") or {}
        if repl.get("SourceLsn"):
            ev.last_known_source_lsn = repl["SourceLsn"]
            observed = repl.get("SourceLsnAt") or repl.get("ObservedAt")
            if isinstance(observed, int | float):
                ev.last_known_source_at = datetime.fromtimestamp(observed, UTC)
        tc.event(
            SECTION_SWITCH,
            "The source cannot be read: promoting with what was replayed "
            f"({format_lsn(replay)}); the source was last seen at {repl.get('SourceLsn') or 'an unknown position'}",
        )
        return None

    def revert(self, tc: TaskContext) -> None:
        ev = tc.evidence()
        if ev.past_no_return:
            release_instance(tc)  # never reset: the promoted target is the data
            return
        fence.lift_fence(tc, ev)
        tc.instance().stop()
        undo_copy(tc)

    def on_retries_exhausted(self, tc: TaskContext, reason: str) -> Outcome:
        ev = tc.evidence()
        if ev.past_no_return:
            # The target is (being) promoted: keep trying to finish, and say so.
            tc.update(
                replication_state=ReplicationState.FINISH,
                reason=f"the target was promoted; finishing the switchover keeps failing ({reason}); "
                "the new primary is left as it is, running",
            )
            return Retry(reason)
        return self._abort(tc, ev, f"the switchover kept failing: {reason}")
