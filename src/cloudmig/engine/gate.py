"""Proof that nothing writes on the source any more, from transactions, not from WAL silence.

Over a window, no transaction that had an id may end (the snapshot's xmax stands still) and at its
end no session may hold one. Sessions seen holding an id during the window are named; autovacuum's
ANALYZE also takes an id, so a window where only maintenance (or nobody we caught) moved the
counter is tried again, up to `attempts` times.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from cloudmig.domain.lsn import parse_lsn
from cloudmig.pg import activity
from cloudmig.pg.activity import Session

Conn = psycopg.Connection[tuple[Any, ...]]

SAMPLE_SECONDS = 0.02


@dataclass
class QuietProof:
    quiet: bool
    cut_lsn: int | None = None
    cut_xid: int | None = None
    writers: list[Session] = field(default_factory=list)
    windows: int = 0
    seconds: float = 0.0
    why: str = ""


def _wrote_in_window(s: Session, since: float) -> bool:
    return s.is_client and s.last_statement_wrote and s.state_change is not None and s.state_change >= since


def _born_read_only(s: Session, read_only_since: float | None) -> bool:
    """Started after the fence went up, and not a superuser (whom a role-by-role fence leaves alone)."""
    return (
        read_only_since is not None
        and not s.superuser
        and s.backend_start is not None
        and s.backend_start >= read_only_since
    )


@dataclass
class _Window:
    before: int  # the horizon when the window began
    after: int  # and when it ended
    writers: list[Session]  # held an id, or finished a writing statement while transactions ended
    # Under a fence, sessions born read-only that finished a writing statement while transactions
    # ended: their INSERTs usually fail, unless they made themselves read-write.
    suspects: list[Session]
    # A process other than a client that may take transaction ids ran (autovacuum's ANALYZE), or
    # a client session the fence does not make read-only (one that started before it and was
    # not ended, a superuser's): the transactions that ended may be theirs.
    others: bool


@dataclass(frozen=True)
class Comeback:
    """Sessions the fence ended, that may connect again and write at once (an application that
    makes itself read-write): the first window lasts until as many sessions started since the
    fence went up ran a statement, or `grace` seconds."""

    sessions: int
    since: float  # the server's epoch when the fence went up
    grace: float

    def done(self, now: list[Session]) -> bool:
        back = sum(1 for s in now if s.is_client and s.verb and (s.backend_start or 0) >= self.since)
        return back >= self.sessions


def _watch_window(
    conn: Conn,
    seconds: float,
    stop: Callable[[], bool],
    read_only_since: float | None,
    comeback: Comeback | None = None,
    own: Callable[[Session], bool] = lambda s: False,
) -> _Window:
    since = activity.server_epoch(conn)
    before = activity.completed_xid_horizon(conn)
    seen: dict[int, Session] = {}
    suspects: dict[int, Session] = {}
    started = time.monotonic()
    others = False
    while True:
        now = activity.sessions(conn)
        for s in now:
            others = others or s.is_background_worker
            others = others or (s.is_client and not own(s) and not _born_read_only(s, read_only_since))
            if s.holds_xid:
                seen[s.pid] = s
            elif _wrote_in_window(s, since):
                (suspects if _born_read_only(s, read_only_since) else seen)[s.pid] = s
        elapsed = time.monotonic() - started
        waiting = comeback is not None and elapsed < comeback.grace and not comeback.done(now)
        if (elapsed >= seconds and not waiting) or stop():
            break
        time.sleep(SAMPLE_SECONDS)
    after = activity.completed_xid_horizon(conn)
    if after == before:
        # Nothing ended: a finished write statement seen is from an earlier transaction's end.
        seen = {pid: s for pid, s in seen.items() if s.holds_xid}
        suspects = {}
    return _Window(before, after, list(seen.values()), list(suspects.values()), others)


def prove_quiet(
    conn: Conn,
    *,
    window: float,
    attempts: int,
    stop: Callable[[], bool] = lambda: False,
    read_only_since: float | None = None,
    budget_seconds: float | None = None,
    comeback: Comeback | None = None,
    own: Callable[[Session], bool] = lambda s: False,
) -> QuietProof:
    """Up to `attempts` windows, and no new window after `budget_seconds`. `read_only_since`: the
    server time (epoch s) from which new sessions are read-only (a fence that no role or database
    setting overrides), or None. `comeback`: what the first window waits for besides its length.
    `own`: cloudmig's own sessions (they do not write)."""
    started = time.monotonic()
    proof = QuietProof(quiet=False)
    suspects: dict[int, Session] = {}
    for n in range(1, attempts + 1):
        if n > 1 and budget_seconds is not None and time.monotonic() - started + window > budget_seconds:
            break
        proof.windows = n
        w = _watch_window(conn, window, stop, read_only_since, comeback if n == 1 else None, own)
        before, after, seen = w.before, w.after, w.writers
        suspects.update((s.pid, s) for s in w.suspects)
        writers = [s for s in seen if not s.is_maintenance]
        if writers:
            proof.writers = writers
            proof.why = "sessions were writing: " + "; ".join(s.describe() for s in writers)
            break
        if w.suspects and not w.others:
            # Transactions ended and nothing but those sessions can have ended them: one of them
            # made its transactions read-write.
            proof.writers = w.suspects
            proof.why = (
                "transactions ended while sessions that started after the fence ran writing statements, "
                "and nothing else that could write ran (a session may make its own transactions "
                "read-write): " + "; ".join(s.describe() for s in w.suspects)
            )
            break
        if before == after and not seen:
            cut = parse_lsn(activity.current_wal_insert_lsn_text(conn))
            # A write that slipped in between the last look and the cut: look again.
            if activity.completed_xid_horizon(conn) == after and not activity.sessions(
                conn, only_xid_holders=True
            ):
                proof.quiet, proof.cut_lsn, proof.cut_xid = True, cut, after
                break
        proof.why = (
            f"transactions kept ending on the source in {n} window(s) of {window:g} s "
            f"({after - before} in the last; only maintenance or nobody was caught holding an id)"
        )
        if stop():
            break
    if not proof.quiet and not proof.writers and suspects:
        proof.why += (
            "; sessions that ran writing statements meanwhile although the fence should make them "
            + ("read-only: " + "; ".join(s.describe() for s in suspects.values()))
        )
    proof.seconds = time.monotonic() - started
    return proof
