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


def _writing(s: Session, since: float, read_only_since: float | None) -> bool:
    """Holds a transaction id, or is a client that finished a writing statement in the window and
    could have written: under a fence, a session that started after it is read-only (its INSERTs
    fail), so its statements name nobody; were it to write, the horizon says so all the same."""
    if s.holds_xid:
        return True
    if read_only_since is not None and s.backend_start is not None and s.backend_start >= read_only_since:
        return False
    return s.is_client and s.last_statement_wrote and s.state_change is not None and s.state_change >= since


def _watch_window(
    conn: Conn, seconds: float, stop: Callable[[], bool], read_only_since: float | None
) -> tuple[int, int, list[Session]]:
    """(horizon before, horizon after, sessions seen writing) over one window."""
    since = activity.server_epoch(conn)
    before = activity.completed_xid_horizon(conn)
    seen: dict[int, Session] = {}
    end = time.monotonic() + seconds
    while True:
        for s in activity.sessions(conn):
            if _writing(s, since, read_only_since):
                seen[s.pid] = s
        if time.monotonic() >= end or stop():
            break
        time.sleep(SAMPLE_SECONDS)
    after = activity.completed_xid_horizon(conn)
    if after == before:
        # Nothing ended: a finished write statement seen is from an earlier transaction's end.
        seen = {pid: s for pid, s in seen.items() if s.holds_xid}
    return before, after, list(seen.values())


def prove_quiet(
    conn: Conn,
    *,
    window: float,
    attempts: int,
    stop: Callable[[], bool] = lambda: False,
    read_only_since: float | None = None,
) -> QuietProof:
    """`read_only_since`: the server time (epoch s) from which new sessions are read-only (a fence
    that no role or database setting overrides), or None."""
    started = time.monotonic()
    proof = QuietProof(quiet=False)
    for n in range(1, attempts + 1):
        proof.windows = n
        before, after, seen = _watch_window(conn, window, stop, read_only_since)
        writers = [s for s in seen if not s.is_maintenance]
        if writers:
            proof.writers = writers
            proof.why = "sessions were writing: " + "; ".join(s.describe() for s in writers)
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
    proof.seconds = time.monotonic() - started
    return proof
