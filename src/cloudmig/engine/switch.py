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
from cloudmig.engine.gate import prove_quiet
from cloudmig.engine.outcome import Next, Outcome, Retry, Wait
from cloudmig.engine.revert import undo_copy
from cloudmig.engine.taskctx import TaskContext
from cloudmig.instances.managed import OBSERVE_CONNECT_TIMEOUT
from cloudmig.pg import probes

# How often the catch-up wait looks at the target's replay position.
CATCHUP_POLL_SECONDS = 0.05
# Once fenced, only sessions cloudmig could not end may still write: a short window suffices.
FENCED_QUIET_WINDOW = 0.5


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
        if tc.instance().ensure_running():
            tc.event(SECTION_SWITCH, "The target was not running; started it again")
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
            with tc.source().connect() as conn:
                if ev.phase is SwitchPhase.REQUESTED:
                    method = fence.method_for(tc, conn, req.fence)
                    ev.phase, ev.fence = SwitchPhase.FENCING, method.value
                    tc.save_evidence(ev)
                    if method is not FenceMethod.NONE:
                        fence.raise_fence(tc, conn, ev, method)
                fenced = ev.fence not in (None, FenceMethod.NONE.value)
                window = FENCED_QUIET_WINDOW if fenced else s.switch_quiet_seconds
                left = (deadline - tc.ctx.now()).total_seconds()
                attempts = max(1, int(left / window)) if fenced else s.switch_quiet_attempts
                proof = prove_quiet(conn, window=window, attempts=attempts, stop=tc.stop.is_set)
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
        ev.phase, ev.cut_lsn, ev.cut_xid = SwitchPhase.CATCHUP, proof.cut_lsn, proof.cut_xid
        ev.gate_seconds = round(time.monotonic() - started, 3)
        tc.update(evidence=ev.to_json(), progress={**tc.task.progress, "_Watch": baseline})
        tc.event(SECTION_SWITCH, f"Writes stopped on the source; cut at {format_lsn(proof.cut_lsn or 0)}")
        return None

    def _catch_up(
        self, tc: TaskContext, req: SwitchRequest, ev: SwitchEvidence, deadline: datetime
    ) -> Outcome:
        assert ev.cut_lsn is not None
        with tc.instance().connect(tc.task.source_account, connect_timeout=OBSERVE_CONNECT_TIMEOUT) as target:
            replay = probes.replay_lsn(target) or 0
        if replay >= ev.cut_lsn:
            return self._promote_and_finish(tc, req, ev)
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
        """Give this switchover up: lift the fence, back to increment; Activate can be called again."""
        ev.phase, ev.aborted_reason = SwitchPhase.ABORTED, why
        tc.save_evidence(ev)
        try:
            fence.lift_fence(tc, ev)
        except psycopg.Error as exc:
            # The increment stage keeps trying until the fence is lifted.
            tc.event(SECTION_SWITCH, f"The fence could not be lifted yet ({_short(exc)}); cloudmig retries")
        tc.move(Transition.SWITCH_ABORTED)
        tc.event(SECTION_SWITCH, f"Switchover aborted, replication goes on: {why}")
        return Next()

    # ---- the point of no return and after -------------------------------------------------------

    def _promote_and_finish(self, tc: TaskContext, req: SwitchRequest, ev: SwitchEvidence) -> Outcome:
        inst = tc.instance()
        if inst.ensure_running():
            tc.event(SECTION_SWITCH, "The target was not running; started it again")
        with inst.connect(tc.task.source_account, connect_timeout=OBSERVE_CONNECT_TIMEOUT) as target:
            in_recovery = probes.is_in_recovery(target)
            if in_recovery and not ev.past_no_return:
                self._cross_no_return(tc, req, ev, target)
        if in_recovery:
            started = time.monotonic()
            inst.promote()
            ev.promote_seconds = round(time.monotonic() - started, 3)
            tc.save_evidence(ev)
        finish(tc, ev)
        return Next()

    def _cross_no_return(
        self, tc: TaskContext, req: SwitchRequest, ev: SwitchEvidence, target: psycopg.Connection
    ) -> None:
        """Record everything about the moment of promotion, then `promoting`: persisted before the
        promotion is issued, so that nothing resets the target from here on."""
        replay = probes.replay_lsn(target) or 0
        now = tc.ctx.now()
        ev.forced = req.force
        ev.timeline_before = probes.timeline_id(target)
        ev.replay_lsn_at_promote = replay
        ev.catchup_seconds = round((now - req.requested_at).total_seconds(), 3)
        ev.promote_issued_at = now
        self._read_source_at_promote(tc, ev, replay)
        ev.phase = SwitchPhase.PROMOTING
        tc.save_evidence(ev)

    def _read_source_at_promote(self, tc: TaskContext, ev: SwitchEvidence, replay: int) -> None:
        source_lsn: int | None = None
        try:
            with tc.source().connect() as conn:
                source_lsn = probes.current_wal_lsn(conn)
                if ev.cut_lsn is None:  # forced: the cut is where the source is now
                    baseline = postswitch.take_baseline(tc.source(), conn, None)
                    tc.update(progress={**tc.task.progress, "_Watch": baseline})
        except psycopg.Error:
            source_lsn = None
        if source_lsn is not None:
            ev.source_reachable_at_promote = True
            ev.source_lsn_at_promote = source_lsn
            if ev.cut_lsn is None:
                ev.cut_lsn = source_lsn
            # Against the cut: what the source wrote after it is the post-switch watch's business.
            ev.bytes_not_replayed = max(ev.cut_lsn - replay, 0)
            return
        # The source is gone: promote with what was replayed; what was not is unknown.
        ev.source_reachable_at_promote = False
        ev.bytes_not_replayed = None
        repl = tc.task.progress.get("Replication") or {}
        if repl.get("SourceLsn"):
            ev.last_known_source_lsn = repl["SourceLsn"]
            observed = repl.get("ObservedAt")
            if isinstance(observed, int | float):
                ev.last_known_source_at = datetime.fromtimestamp(observed, UTC)
        tc.event(
            SECTION_SWITCH,
            "The source cannot be read: promoting with what was replayed "
            f"({format_lsn(replay)}); the source was last seen at {repl.get('SourceLsn') or 'an unknown position'}",
        )

    def revert(self, tc: TaskContext) -> None:
        ev = tc.evidence()
        if ev.past_no_return:
            return  # never: the promoted target is the data
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
