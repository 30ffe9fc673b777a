"""The task state machine: which stage a task may move to, by which named transition.

Both the services (a switchover request) and the engine (a stage done, a switchover given up, a
copy started again) move a task's stage only through `Transition`s; a move that is not in the
table raises. Stage values are the stable strings of `MigrateStage`.
"""

from __future__ import annotations

from enum import StrEnum

from cloudmig.domain.enums import MigrateStage, TaskStatus

_S = MigrateStage


class Transition(StrEnum):
    PRECHECK_PASSED = "precheck_passed"
    COPIED = "copied"
    STANDBY_STARTED = "standby_started"
    SWITCH_REQUESTED = "switch_requested"
    # A switchover given up before the point of no return: replication goes on.
    SWITCH_ABORTED = "switch_aborted"
    SWITCHED = "switched"
    # The standby cannot go on (its slot was invalidated): copy again from scratch.
    RECOPY = "recopy"


# transition -> (stages it may start from, stage it leads to)
TRANSITIONS: dict[Transition, tuple[frozenset[MigrateStage], MigrateStage]] = {
    Transition.PRECHECK_PASSED: (frozenset({_S.PRECHECK}), _S.BASEBACKUP),
    Transition.COPIED: (frozenset({_S.BASEBACKUP}), _S.STARTUP),
    Transition.STANDBY_STARTED: (frozenset({_S.STARTUP}), _S.INCREMENT),
    Transition.SWITCH_REQUESTED: (frozenset({_S.INCREMENT}), _S.SWITCH),
    Transition.SWITCH_ABORTED: (frozenset({_S.SWITCH}), _S.INCREMENT),
    Transition.SWITCHED: (frozenset({_S.SWITCH}), _S.SUCCESS),
    Transition.RECOPY: (frozenset({_S.STARTUP, _S.INCREMENT}), _S.BASEBACKUP),
}

# A task's status only leaves `running`, and only once.
TERMINAL_STATUSES = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.SUCCEEDED})


class IllegalTransition(RuntimeError):
    """A stage change the state machine does not allow (a bug, or a concurrent change)."""


def target_stage(current: MigrateStage, transition: Transition) -> MigrateStage:
    """The stage `transition` leads to from `current`; IllegalTransition when it may not start there."""
    sources, target = TRANSITIONS[transition]
    if current not in sources:
        raise IllegalTransition(f"{transition.value} cannot start from stage {current.value}")
    return target


def sources_of(transition: Transition) -> frozenset[MigrateStage]:
    return TRANSITIONS[transition][0]


def check_status_change(current: TaskStatus, new: TaskStatus) -> None:
    if current is new:
        return
    if current is not TaskStatus.RUNNING:
        raise IllegalTransition(f"a {current.value} task cannot become {new.value}")
