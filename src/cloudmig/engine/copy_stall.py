"""A copy that hears nothing from its source: a frozen host or a network partition breaks no
connection, pg_basebackup just waits (for hours, until TCP keepalive, or for ever when the host's
kernel still acknowledges). The copy's silence is watched; past `copy_stall_seconds` the source is
asked, through a new session, whether the copy's sender still runs there:

- it runs and sends, or runs before the copy's first data (its checkpoint): something is slow (the
  checkpoint, a disk on either side); the copy waits, said once;
- it runs and has sent nothing since the last look (13+: pg_stat_progress_basebackup): a middlebox
  dropped the copy's connection (its sender waits on it until TCP gives up, about 15 min), or the
  sender is frozen; said once, and past `copy_stall_limit_seconds` of silence the copy is ended and
  retried (the next copy ends that sender first: engine/basebackup.py);
- it runs past the copy's first data and shows no count (a source before 13; or only the copy's
  WAL stream is left): what it sends cannot be seen, so the same as above;
- the source does not answer: the task shows `disconnect` and the copy waits for the source, until
  the silence reaches `copy_stall_limit_seconds`; then the copy is ended and retried;
- the source answers without the sender: the copy's connection is gone on the source's side (the
  source restarted, or ended it), the copy can never finish: it is ended and retried at once.

When the copy hears from the source again, the task's state and Detail say so.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from cloudmig.domain.detail import SECTION_BACKUP
from cloudmig.domain.enums import ReplicationState
from cloudmig.engine.taskctx import TaskContext
from cloudmig.pg import probes
from cloudmig.pg.basebackup import CopyStalled
from cloudmig.pg.deadline import query_deadline

# A look at the source takes at most its connect timeout plus this.
LOOK_QUERY_SECONDS = 10.0
# While the silence lasts, the source is looked at again this often (at most).
LOOK_AGAIN_SECONDS = 30.0


class SourceView(enum.Enum):
    SENDING = "sending"  # the copy's sender runs on the source
    SENDER_GONE = "sender gone"  # the source answers, the copy's sender does not run
    NO_ANSWER = "no answer"  # the source does not answer


@dataclass(frozen=True)
class SourceLook:
    view: SourceView
    sent: int | None = None  # the bytes the sender has sent, where that count moves while it works


def look_at_source(tc: TaskContext, application_name: str) -> SourceLook:
    try:
        with tc.source().connect() as conn, query_deadline(LOOK_QUERY_SECONDS, conn):
            running, sent = probes.copy_sender(conn, application_name)
    except psycopg.Error:
        return SourceLook(SourceView.NO_ANSWER)
    return SourceLook(SourceView.SENDING, sent) if running else SourceLook(SourceView.SENDER_GONE)


class CopyStallWatch:
    """pg/basebackup.py's SilenceWatch for one copy of a task."""

    def __init__(
        self,
        tc: TaskContext,
        application_name: str,
        *,
        copied: Callable[[], int],
        look: Callable[[], SourceLook] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tc = tc
        # The bytes the copy has received: none before its checkpoint ends.
        self.copied = copied
        self.stall = tc.ctx.settings.copy_stall_seconds
        self.limit = tc.ctx.settings.copy_stall_limit_seconds
        self.look = look or (lambda: look_at_source(tc, application_name))
        self.clock = clock
        self.next_look = self.stall
        self.said_busy = False
        self.said_stuck = False
        self.disconnected_at: float | None = None
        # The sender's count at the last look, and the silence when that count was first seen.
        self.sent: int | None = None
        self.sent_since = 0.0

    def heard(self) -> None:
        if self.disconnected_at is not None:
            self._reconnected("The copy receives data from the source again")
        self.next_look = self.stall
        self.said_busy = self.said_stuck = False
        self.sent = None

    def _reconnected(self, what: str, then: str = "") -> None:
        assert self.disconnected_at is not None
        waited, self.disconnected_at = self.clock() - self.disconnected_at, None
        # Detail first: a client that sees the state change finds the reason already there.
        self.tc.event(SECTION_BACKUP, f"{what}, {waited:.0f} s after the copy's last data{then}")
        self.tc.update(replication_state=ReplicationState.UNSTARTED)

    def silent(self, seconds: float) -> None:
        if seconds >= self.next_look:
            self.next_look = seconds + min(LOOK_AGAIN_SECONDS, self.stall)
            self._look(seconds)
        if self.disconnected_at is not None and seconds >= self.limit:
            raise CopyStalled(f"the copy received nothing for {seconds:.0f} s and the source does not answer")

    def _look(self, seconds: float) -> None:
        look = self.look()
        if look.view is SourceView.SENDER_GONE:
            raise CopyStalled(
                f"the copy received nothing for {seconds:.0f} s and its sender on the source has ended"
            )
        if look.view is SourceView.NO_ANSWER:
            if self.disconnected_at is None:
                self.disconnected_at = self.clock() - seconds
                self.tc.event(
                    SECTION_BACKUP,
                    f"The copy has received nothing for {seconds:.0f} s and the source does not answer:"
                    f" waiting for it, up to {self.limit:.0f} s of silence, then the copy starts again",
                )
                self.tc.update(replication_state=ReplicationState.DISCONNECT)
            return
        if self.disconnected_at is not None:
            self._reconnected(
                "The source answers again", "; the copy's sender runs there: waiting for its data"
            )
            self.said_busy = True
        if look.sent is not None and look.sent == self.sent:
            why = f"its sender on the source has sent nothing for {seconds - self.sent_since:.0f} s"
        elif look.sent is None and self.copied() > 0:
            # Past the checkpoint a sender without a count may be as stuck as one whose count stands.
            why = "its sender runs on the source, which does not show what it sends"
        else:
            self.sent, self.sent_since = look.sent, seconds
            if not self.said_busy:
                self.tc.event(
                    SECTION_BACKUP,
                    f"The copy has received nothing for {seconds:.0f} s; its sender runs on the source"
                    " (the copy's checkpoint, or a slow disk on either side): waiting",
                )
            self.said_busy = True
            return
        if seconds >= self.limit:
            raise CopyStalled(f"the copy received nothing for {seconds:.0f} s and {why}")
        if not self.said_stuck:
            self.tc.event(
                SECTION_BACKUP,
                f"The copy has received nothing for {seconds:.0f} s and {why} (a connection dropped on"
                " the way, or a frozen sender): waiting up to"
                f" {self.limit:.0f} s of silence, then the copy starts again",
            )
        self.said_stuck = True
