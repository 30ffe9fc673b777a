"""A copy that hears nothing from its source (engine/copy_stall.py): what the task shows and when
the copy is given up, driven with a scripted view of the source and a real SQLite store. The copy
against a frozen source is tests/e2e/test_faults_copy_stall.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from tests.unit.engine_fakes import add_migration, make_context

from cloudmig.domain.enums import ReplicationState
from cloudmig.engine.copy_stall import CopyStallWatch, SourceLook, SourceView
from cloudmig.engine.taskctx import TaskContext
from cloudmig.pg.basebackup import CopyStalled
from cloudmig.settings import Settings
from cloudmig.store import tasks as task_store


class Source:
    """What each look at the source finds (`sent`: the sender's byte count, None where it cannot
    be seen), and how many looks there were."""

    def __init__(self, view: SourceView, sent: int | None = None) -> None:
        self.view = view
        self.sent = sent
        self.looks = 0

    def __call__(self) -> SourceLook:
        self.looks += 1
        return SourceLook(self.view, self.sent)


def _watch(
    tmp_path: Path, view: SourceView, sent: int | None = None, copied: int = 0, **settings: object
) -> tuple[CopyStallWatch, Source, TaskContext]:
    """`copied`: the bytes the copy has received (none: it waits for its checkpoint)."""
    ctx = make_context(tmp_path, copy_stall_seconds=60, copy_stall_limit_seconds=600, **settings)
    rec = task_store.get_task(ctx.db, add_migration(ctx))
    assert rec is not None
    tc = TaskContext(ctx, rec)
    tc.update(replication_state=ReplicationState.UNSTARTED)
    source = Source(view, sent)
    now = [1000.0]
    watch = CopyStallWatch(
        tc, "cloudmig_basebackup:slot", copied=lambda: copied, look=source, clock=lambda: now[0]
    )
    return watch, source, tc


def _state(tc: TaskContext) -> ReplicationState:
    tc.refresh()
    return tc.task.replication_state


def _events(tc: TaskContext) -> list[str]:
    return [e.text for e in task_store.events_for(tc.ctx.db, [tc.task.id])[tc.task.id]]


def test_a_short_silence_does_not_ask_the_source(tmp_path: Path) -> None:
    watch, source, tc = _watch(tmp_path, SourceView.NO_ANSWER)
    for seconds in (0.2, 10, 59.9):
        watch.silent(seconds)
    assert source.looks == 0
    assert _state(tc) is ReplicationState.UNSTARTED


def test_a_busy_source_is_waited_for_and_said_once(tmp_path: Path) -> None:
    watch, source, tc = _watch(tmp_path, SourceView.SENDING)
    for seconds in (60, 61, 89, 90, 3600):  # past the limit too: the source works, the copy waits
        watch.silent(seconds)
    assert source.looks == 3  # at 60, 90 (every 30 s at most) and 3600
    assert _state(tc) is ReplicationState.UNSTARTED
    said = [e for e in _events(tc) if "its sender runs on the source" in e]
    assert said == [
        "The copy has received nothing for 60 s; its sender runs on the source (the copy's checkpoint, or a slow disk on either side): waiting"
    ]


def test_a_sender_without_a_count_past_the_copys_first_data_is_given_up_at_the_limit(
    tmp_path: Path,
) -> None:
    """Before 13 (or with only the copy's WAL stream left) the source shows no count: once the copy
    has had data, its checkpoint is over, and a silence as long as the limit is a stall."""
    watch, source, tc = _watch(tmp_path, SourceView.SENDING, copied=8 << 20)
    for seconds in (60, 90, 570):
        watch.silent(seconds)
    said = [e for e in _events(tc) if "does not show what it sends" in e]
    assert said == [
        "The copy has received nothing for 60 s and its sender runs on the source, which does not"
        " show what it sends (a connection dropped on the way, or a frozen sender): waiting up to"
        " 600 s of silence, then the copy starts again"
    ]
    assert not any("the copy's checkpoint" in e for e in _events(tc))
    assert _state(tc) is ReplicationState.UNSTARTED
    with pytest.raises(CopyStalled, match="received nothing for 600 s and its sender runs on the source"):
        watch.silent(600)
    assert source.looks == 4


def test_a_sender_that_sends_is_waited_for_without_limit(tmp_path: Path) -> None:
    watch, source, tc = _watch(tmp_path, SourceView.SENDING, sent=1 << 20)
    for seconds in range(60, 3601, 30):  # the bytes it has sent move at every look
        watch.silent(seconds)
        source.sent = (source.sent or 0) + 8192
    assert _state(tc) is ReplicationState.UNSTARTED
    assert not any("has sent nothing" in e for e in _events(tc))


def test_a_sender_that_sends_nothing_is_said_and_given_up_at_the_limit(tmp_path: Path) -> None:
    watch, source, tc = _watch(tmp_path, SourceView.SENDING, sent=1 << 20)
    watch.silent(60)  # a first count: nothing to compare it with
    assert not any("has sent nothing" in e for e in _events(tc))
    for seconds in (90, 120, 570):
        watch.silent(seconds)
    said = [e for e in _events(tc) if "has sent nothing" in e]
    assert said == [
        "The copy has received nothing for 90 s and its sender on the source has sent nothing for 30 s"
        " (a connection dropped on the way, or a frozen sender): waiting up to 600 s of silence,"
        " then the copy starts again"
    ]
    assert _state(tc) is ReplicationState.UNSTARTED  # the source answers: no disconnect
    with pytest.raises(
        CopyStalled,
        match="received nothing for 600 s and its sender on the source has sent nothing for 540 s",
    ):
        watch.silent(600)
    assert source.looks == 5


def test_a_sender_that_sends_again_before_the_limit_is_not_given_up(tmp_path: Path) -> None:
    watch, source, _ = _watch(tmp_path, SourceView.SENDING, sent=1 << 20)
    for seconds in (60, 90, 570):
        watch.silent(seconds)
    source.sent = (1 << 20) + 1
    watch.silent(600)  # it moved since the last look: its count starts again
    watch.silent(629)
    with pytest.raises(CopyStalled, match="has sent nothing for 30 s"):
        watch.silent(630)


def test_a_source_that_does_not_answer_is_disconnect_until_the_limit(tmp_path: Path) -> None:
    watch, _, tc = _watch(tmp_path, SourceView.NO_ANSWER)
    watch.silent(60)
    assert _state(tc) is ReplicationState.DISCONNECT
    assert any("the source does not answer: waiting for it, up to 600 s" in e for e in _events(tc))
    watch.silent(599)
    with pytest.raises(CopyStalled, match="received nothing for 600 s and the source does not answer"):
        watch.silent(600)


def test_data_again_ends_the_disconnect(tmp_path: Path) -> None:
    watch, source, tc = _watch(tmp_path, SourceView.NO_ANSWER)
    watch.silent(60)
    watch.heard()
    assert _state(tc) is ReplicationState.UNSTARTED
    assert any("receives data from the source again" in e for e in _events(tc))
    watch.silent(30)
    assert source.looks == 1  # a new silence starts its count again
    watch.silent(60)
    assert source.looks == 2


def test_a_source_that_answers_again_ends_the_disconnect(tmp_path: Path) -> None:
    watch, source, tc = _watch(tmp_path, SourceView.NO_ANSWER)
    watch.silent(60)
    source.view = SourceView.SENDING
    watch.silent(90)
    assert _state(tc) is ReplicationState.UNSTARTED
    events = _events(tc)
    assert any("The source answers again" in e for e in events)
    assert not any("a slow disk on either side" in e for e in events)
    watch.silent(3600)  # the source works: no limit
    watch.heard()
    assert _events(tc) == events


def test_a_sender_gone_from_the_source_ends_the_copy_at_once(tmp_path: Path) -> None:
    watch, _, _ = _watch(tmp_path, SourceView.SENDER_GONE)
    with pytest.raises(CopyStalled, match="its sender on the source has ended"):
        watch.silent(60)


def test_heard_is_quiet_while_nothing_was_wrong(tmp_path: Path) -> None:
    watch, _, tc = _watch(tmp_path, SourceView.SENDING)
    before = _events(tc)
    watch.heard()
    assert _events(tc) == before


def test_the_limit_may_not_be_below_the_stall(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="copy_stall_limit_seconds"):
        Settings(data_dir=tmp_path, copy_stall_seconds=120, copy_stall_limit_seconds=60)
