"""Stage precheck: the assessment against source and target; an error stops the task."""

from __future__ import annotations

from cloudmig.checks import assess as run_checks
from cloudmig.domain.checks import CheckResult, passed, render_report
from cloudmig.domain.enums import CheckLevel, MigrateStage, TaskKind, TaskStatus
from cloudmig.engine.taskctx import TaskContext


def assess(tc: TaskContext) -> list[CheckResult]:
    assessment = run_checks(tc.source(), tc.target_spec())
    results = assessment.results
    tc.update(report=render_report(results), check_results=[r.as_dict() for r in results])
    # The source's configuration settings the startup stage carries over (issue 12, part 1).
    if assessment.settings_carry is not None:
        tc.update(progress={**tc.task.progress, "SettingsCarry": assessment.settings_carry})
    return results


def step(tc: TaskContext) -> float | None:
    results = assess(tc)
    if tc.task.kind is TaskKind.PRECHECK:
        # An assessment task is done once the report exists, whatever it says.
        tc.update(status=TaskStatus.SUCCEEDED)
        return None
    if not passed(results):
        errors_ = sum(1 for r in results if r.level is CheckLevel.ERROR)
        raise PrecheckFailed(f"precheck failed with {errors_} error(s); see the report in Detail")
    tc.advance(MigrateStage.BASEBACKUP)
    return None


class PrecheckFailed(Exception):
    """The assessment found errors: the task fails before anything is created anywhere."""
