"""A stage of a migration: `run` takes the next idempotent step, `revert` undoes what the task left
behind when it fails in that stage."""

from __future__ import annotations

from typing import Protocol

from cloudmig.domain.enums import MigrateStage
from cloudmig.engine.outcome import Outcome
from cloudmig.engine.taskctx import TaskContext


class Stage(Protocol):
    stage: MigrateStage

    def run(self, tc: TaskContext) -> Outcome:
        """One step; safe to run again after a crash at any point."""

    def revert(self, tc: TaskContext) -> None:
        """Undo what a failed task leaves behind in this stage (never past the point of no return)."""

    def on_retries_exhausted(self, tc: TaskContext, reason: str) -> Outcome:
        """What happens when retries ran out: usually a failure, not always (increment, switch)."""
