"""Stage precheck: the assessment against source and target; an error stops the task."""

from __future__ import annotations

from cloudmig.checks import assess as run_checks
from cloudmig.domain.checks import CheckResult, passed, render_report
from cloudmig.domain.enums import CheckLevel, MigrateStage, TaskKind, TaskStatus
from cloudmig.domain.transitions import Transition
from cloudmig.engine import copy_run
from cloudmig.engine.outcome import Fail, Next, Outcome
from cloudmig.engine.revert import release_instance
from cloudmig.engine.taskctx import TaskContext
from cloudmig.errors import PrecheckFailed, RetriesExhausted
from cloudmig.runtime.targets import target_spec


def assess(tc: TaskContext) -> list[CheckResult]:
    assessment = run_checks(tc.source(), target_spec(tc.ctx, tc.instance_record()))
    results = assessment.results
    tc.update(report=render_report(results), check_results=[r.as_dict() for r in results])
    # The source's configuration settings the startup stage carries over (issue 12, part 1).
    if assessment.settings_carry is not None:
        tc.update(progress={**tc.task.progress, "SettingsCarry": assessment.settings_carry})
    return results


class PrecheckStage:
    stage = MigrateStage.PRECHECK

    def run(self, tc: TaskContext) -> Outcome:
        if tc.task.kind is TaskKind.MIGRATION:
            copy_run.start_measuring(tc)  # the copy's link probe, while the assessment runs
        results = assess(tc)
        if tc.task.kind is TaskKind.PRECHECK:
            # An assessment task is done once the report exists, whatever it says.
            tc.update(status=TaskStatus.SUCCEEDED)
            return Next()
        if not passed(results):
            failing = [r for r in results if r.level is CheckLevel.ERROR]
            names = "; ".join(f"{r.name}: {r.message}" for r in failing[:3])
            more = f" and {len(failing) - 3} more" if len(failing) > 3 else ""
            return Fail(PrecheckFailed(f"precheck failed with {len(failing)} error(s): {names}{more}"))
        tc.move(Transition.PRECHECK_PASSED)
        return Next()

    def revert(self, tc: TaskContext) -> None:
        release_instance(tc)  # nothing was created anywhere

    def on_retries_exhausted(self, tc: TaskContext, reason: str) -> Outcome:
        return Fail(RetriesExhausted(f"stage precheck kept failing: {reason}"))
