"""A full store disk: telling it apart, the in-memory nonce fallback, the space reserve, the API policy.

"Full" is SQLite's own SQLITE_FULL on a real store file: the database may not grow past
`max_page_count` pages, and a trigger makes every nonce insert write a 1 MiB blob first (the e2e tier
fills a real tmpfs instead: tests/e2e/test_full_disk.py).
"""

from __future__ import annotations

import errno
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from cloudmig import errors
from cloudmig.api.actions.registry import Params
from cloudmig.api.fullstore import replay_safe, run_handler
from cloudmig.api.nonces import NonceKeeper
from cloudmig.runtime import AppContext, build_context
from cloudmig.settings import Settings
from cloudmig.store import keys as key_store
from cloudmig.store.db import is_disk_full, open_store, store_location
from cloudmig.store.reserve import RESERVE_FILE, SpaceReserve
from cloudmig.store.tables import nonces

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=15)


class FullSwitch:
    """Makes a real SQLite store full for nonce inserts, and writable again."""

    def __init__(self, db: Engine) -> None:
        self.db = db

        def limit_size(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA max_page_count = 256")  # 1 MiB of 4 KiB pages
            cur.close()

        event.listen(db, "connect", limit_size)
        db.dispose()
        with db.begin() as c:
            c.execute(text("CREATE TABLE filler (x BLOB)"))

    def fill(self) -> None:
        with self.db.begin() as c:
            c.execute(
                text(
                    "CREATE TRIGGER fill BEFORE INSERT ON nonces "
                    "BEGIN INSERT INTO filler VALUES (zeroblob(1048576)); END"
                )
            )

    def free(self) -> None:
        with self.db.begin() as c:
            c.execute(text("DROP TRIGGER fill"))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Engine:
    return open_store(f"sqlite:///{tmp_path / 'store.db'}")


@pytest.fixture
def full(db: Engine) -> FullSwitch:
    return FullSwitch(db)


def _keeper(db: Engine, clock: Clock, **kw: Any) -> NonceKeeper:
    return NonceKeeper(
        db,
        now=clock,
        replay_safe=replay_safe,
        store_full=lambda: errors.StoreFull("/data/cloudmig.db"),
        **kw,
    )


def _stored(db: Engine) -> set[tuple[str, str]]:
    with db.connect() as c:
        return {(r.access_key_id, r.nonce) for r in c.execute(select(nonces))}


def _real_full_error(db: Engine, full: FullSwitch) -> OperationalError:
    full.fill()
    try:
        key_store.record_nonce(db, "k", "probe", T0 + WINDOW, T0)
    except OperationalError as exc:
        return exc
    finally:
        full.free()
    raise AssertionError("the store took the write")


# ---- telling a full disk apart -------------------------------------------------------------------


def test_is_disk_full_knows_the_drivers_and_the_kernel(db: Engine, full: FullSwitch) -> None:
    exc = _real_full_error(db, full)
    assert is_disk_full(exc) and is_disk_full(exc.orig)
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(psycopg.errors.DiskFull("could not extend file"))
    wrapped = RuntimeError("while recording")
    wrapped.__cause__ = exc
    assert is_disk_full(wrapped)
    assert not is_disk_full(sqlite3.OperationalError("database is locked"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    with pytest.raises(IntegrityError) as dup:
        key_store.insert_key(db, "a", "s", "", T0)
        key_store.insert_key(db, "a", "s", "", T0)
    assert not is_disk_full(dup.value)


def test_store_location_names_the_file_or_the_server_without_its_password() -> None:
    assert store_location("sqlite:////var/lib/cloudmig/cloudmig.db") == "/var/lib/cloudmig/cloudmig.db"
    where = store_location("postgresql+psycopg://cm:s3cret@db.example:5433/cloudmig")
    assert where == "the PostgreSQL store db.example:5433/cloudmig"
    assert "s3cret" not in where


def test_store_full_error_is_service_unavailable_and_says_where() -> None:
    err = errors.StoreFull("/var/lib/cloudmig/cloudmig.db")
    assert (err.code, err.status) == ("ServiceUnavailable", 503)
    assert "/var/lib/cloudmig/cloudmig.db is full" in err.message
    assert "DeleteDBInstance" in err.message


# ---- nonces --------------------------------------------------------------------------------------


def test_nonces_go_to_the_store_while_it_can_write(db: Engine) -> None:
    clock = Clock()
    keeper = _keeper(db, clock)
    assert keeper("k", "n1", T0 + WINDOW, "CreateDBInstance")
    assert not keeper("k", "n1", T0 + WINDOW, "DescribeDBInstances")
    assert keeper.in_memory() == 0
    assert _stored(db) == {("k", "n1")}


def test_a_full_store_keeps_read_nonces_in_memory_single_use(db: Engine, full: FullSwitch) -> None:
    clock = Clock()
    keeper = _keeper(db, clock)
    full.fill()
    assert keeper("k", "n1", T0 + WINDOW, "DescribeDBInstances")
    assert keeper.in_memory() == 1
    assert not keeper("k", "n1", T0 + WINDOW, "DescribeDBInstances")
    assert not keeper("k", "n1", T0 + WINDOW, "DeleteDBInstance")
    assert keeper("other", "n1", T0 + WINDOW, "DescribeDBInstanceAttribute")
    assert keeper("k", "n2", T0 + WINDOW, "DeleteDBInstance")
    assert _stored(db) == set()


def test_a_full_store_refuses_writes_whose_replay_would_act(db: Engine, full: FullSwitch) -> None:
    keeper = _keeper(db, Clock())
    full.fill()
    for action in ("CreateDBInstance", "CreateCloudMigrationTask", "ActivateMigrationTargetInstance"):
        with pytest.raises(errors.StoreFull):
            keeper("k", f"n-{action}", T0 + WINDOW, action)
    assert keeper.in_memory() == 0
    full.free()
    # Refused without a trace, like a throttled call: the same request may be sent again.
    assert keeper("k", "n-CreateDBInstance", T0 + WINDOW, "CreateDBInstance")


def test_a_nonce_the_store_already_holds_stays_used_when_it_fills(db: Engine, full: FullSwitch) -> None:
    keeper = _keeper(db, Clock())
    assert keeper("k", "n1", T0 + WINDOW, "DescribeDBInstances")
    full.fill()
    assert not keeper("k", "n1", T0 + WINDOW, "DescribeDBInstances")
    assert keeper.in_memory() == 0


def test_memory_nonces_reach_the_store_once_it_writes_again(db: Engine, full: FullSwitch) -> None:
    clock = Clock()
    keeper = _keeper(db, clock)
    full.fill()
    assert keeper("k", "n1", T0 + WINDOW, "DescribeDBInstances")
    full.free()
    assert not keeper("k", "n1", T0 + WINDOW, "DescribeDBInstances")  # memory answers first
    assert keeper("k", "n2", T0 + WINDOW, "DescribeDBInstances")
    assert keeper.in_memory() == 0
    assert _stored(db) == {("k", "n1"), ("k", "n2")}
    # A new process (empty memory) still refuses the replay: the store has it now.
    assert not _keeper(db, clock)("k", "n1", T0 + WINDOW, "DescribeDBInstances")


def test_memory_forgets_a_nonce_only_after_its_window(db: Engine, full: FullSwitch) -> None:
    clock = Clock()
    keeper = _keeper(db, clock, capacity=1)
    full.fill()
    assert keeper("k", "n1", T0 + WINDOW, "DescribeDBInstances")
    # Full memory: an unexpired nonce is never dropped to make room.
    with pytest.raises(errors.StoreFull):
        keeper("k", "n2", T0 + WINDOW, "DescribeDBInstances")
    clock.now = T0 + WINDOW
    assert not keeper("k", "n1", T0 + WINDOW, "DescribeDBInstances")
    # Past its window the protocol refuses n1's request as expired; its memory slot is reused.
    clock.now = T0 + WINDOW + timedelta(seconds=1)
    assert keeper("k", "n2", clock.now + WINDOW, "DescribeDBInstances")
    assert keeper.in_memory() == 1


def test_concurrent_replays_on_a_full_store_are_accepted_once(db: Engine, full: FullSwitch) -> None:
    keeper = _keeper(db, Clock())
    full.fill()
    results: list[bool] = []
    start = threading.Barrier(8)

    def call() -> None:
        start.wait()
        results.append(keeper("k", "same", T0 + WINDOW, "DescribeDBInstances"))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(results) == [False] * 7 + [True]


# ---- the space reserve ---------------------------------------------------------------------------


@pytest.fixture
def reserve(tmp_path: Path) -> Iterator[SpaceReserve]:
    """A reserve not made again during the test (its restorer waits an hour)."""
    r = SpaceReserve(tmp_path, 1 << 20, check_seconds=3600)
    yield r
    r.close()


def test_reserve_is_made_released_and_made_again(tmp_path: Path) -> None:
    reserve = SpaceReserve(tmp_path, 1 << 20, check_seconds=0.05)
    assert reserve.ensure()
    assert reserve.path.name == RESERVE_FILE
    assert reserve.path.stat().st_size == 1 << 20
    assert reserve.path.stat().st_blocks * 512 >= 1 << 20, "its blocks are allocated"
    assert reserve.release()
    assert not reserve.path.exists()
    deadline = time.monotonic() + 10
    while not reserve.held and time.monotonic() < deadline:
        time.sleep(0.02)
    assert reserve.held
    reserve.close()
    assert reserve.release()
    assert not reserve.release(), "nothing left to release"


def test_reserve_is_not_made_when_it_would_leave_less_than_its_size_free(tmp_path: Path) -> None:
    huge = SpaceReserve(tmp_path, SpaceReserve(tmp_path, 1).free_bytes(), check_seconds=3600)
    try:
        assert not huge.ensure()
        assert not huge.path.exists()
        assert not huge.release()
    finally:
        huge.close()


# ---- the API's policy ----------------------------------------------------------------------------


def test_replay_safe_actions() -> None:
    assert replay_safe("DescribeDBInstances") and replay_safe("DescribeCloudMigrationResult")
    assert replay_safe("DeleteDBInstance")
    assert not replay_safe("CreateDBInstance") and not replay_safe("ActivateMigrationTargetInstance")


@pytest.fixture
def ctx(tmp_path: Path, reserve: SpaceReserve) -> AppContext:
    c = build_context(Settings(data_dir=tmp_path / "data", runtime_dir=tmp_path / "run"), for_server=False)
    c.reserve = reserve
    return c


class FlakyHandler:
    """Fails with a real SQLITE_FULL `failures` times, then answers."""

    def __init__(self, error: Exception, failures: int) -> None:
        self.error, self.failures, self.calls = error, failures, 0

    def __call__(self, ctx: AppContext, p: Params) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return {"ok": True}


def test_a_write_on_a_full_disk_answers_store_full_and_keeps_the_reserve(
    ctx: AppContext, reserve: SpaceReserve, db: Engine, full: FullSwitch
) -> None:
    reserve.ensure()
    handler = FlakyHandler(_real_full_error(db, full), failures=1)
    with pytest.raises(errors.StoreFull) as caught:
        run_handler(ctx, "CreateDBInstance", handler, Params({}))
    assert str(ctx.settings.sqlite_path) in caught.value.message
    assert handler.calls == 1
    assert reserve.held


def test_delete_on_a_full_disk_spends_the_reserve_and_retries_once(
    ctx: AppContext, reserve: SpaceReserve, db: Engine, full: FullSwitch
) -> None:
    reserve.ensure()
    handler = FlakyHandler(_real_full_error(db, full), failures=1)
    assert run_handler(ctx, "DeleteDBInstance", handler, Params({})) == {"ok": True}
    assert handler.calls == 2
    assert not reserve.held


def test_delete_on_a_full_disk_without_a_reserve_answers_store_full(
    ctx: AppContext, reserve: SpaceReserve, db: Engine, full: FullSwitch
) -> None:
    assert not reserve.held  # spent (or never made)
    handler = FlakyHandler(_real_full_error(db, full), failures=1)
    with pytest.raises(errors.StoreFull):
        run_handler(ctx, "DeleteDBInstance", handler, Params({}))
    assert handler.calls == 1


def test_delete_still_full_after_the_reserve_answers_store_full(
    ctx: AppContext, reserve: SpaceReserve, db: Engine, full: FullSwitch
) -> None:
    reserve.ensure()
    handler = FlakyHandler(_real_full_error(db, full), failures=2)
    with pytest.raises(errors.StoreFull):
        run_handler(ctx, "DeleteDBInstance", handler, Params({}))
    assert handler.calls == 2, "one retry, not more"


def test_other_failures_pass_through(ctx: AppContext) -> None:
    handler = FlakyHandler(RuntimeError("boom"), failures=1)
    with pytest.raises(RuntimeError):
        run_handler(ctx, "DeleteDBInstance", handler, Params({}))
    assert handler.calls == 1
