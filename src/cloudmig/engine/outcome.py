"""What one run of a stage asks the worker to do next."""

from __future__ import annotations

from dataclasses import dataclass

from cloudmig.errors import TaskFailure


@dataclass(frozen=True)
class Next:
    """The stage moved the task on (or finished it): run again at once."""


@dataclass(frozen=True)
class Wait:
    """All is well; look again after `seconds`."""

    seconds: float


@dataclass(frozen=True)
class Retry:
    """Something that may pass failed (the source is down, a copy broke off): try again with
    back-off, within the retry budget. `disconnect` marks the replication link as down."""

    reason: str
    disconnect: bool = False


@dataclass(frozen=True)
class Fail:
    """The migration cannot go on: the task fails with this error and its stage is reverted."""

    error: TaskFailure


Outcome = Next | Wait | Retry | Fail
