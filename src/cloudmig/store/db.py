"""Engine creation and schema migration (Alembic, run at start); telling a full store disk apart."""

from __future__ import annotations

import errno
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# PostgreSQL's SQLSTATE disk_full (class 53, insufficient resources).
PG_DISK_FULL = "53100"
# A full store disk is logged at most this often (every write fails while it lasts).
DISK_FULL_LOG_SECONDS = 60.0


def is_disk_full(exc: BaseException) -> bool:
    """True when `exc`, the driver error it wraps or its cause says the store's disk is full:
    SQLITE_FULL, PostgreSQL's disk_full, or ENOSPC/EDQUOT."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, sqlite3.Error) and getattr(e, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL:
            return True
        if getattr(e, "sqlstate", None) == PG_DISK_FULL:
            return True
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(e, DBAPIError):
            todo.append(e.orig)
        todo.append(e.__cause__)
    return False


def store_location(url: str) -> str:
    """Where the store keeps its data, for messages: the SQLite file, or the PostgreSQL server and
    database (never the password)."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        return str(u.database or "the SQLite store")
    port = f":{u.port}" if u.port else ""
    return f"the PostgreSQL store {u.host or 'localhost'}{port}/{u.database or ''}"


def _log_disk_full(engine: Engine, where: str) -> None:
    """One loud line a minute while the store's disk is full (the engine and the API keep trying)."""
    last = [-DISK_FULL_LOG_SECONDS]
    lock = threading.Lock()

    def on_error(ctx: ExceptionContext) -> None:
        if not is_disk_full(ctx.original_exception):
            return
        with lock:
            if time.monotonic() - last[0] < DISK_FULL_LOG_SECONDS:
                return
            last[0] = time.monotonic()
        log.error(
            "STORE DISK FULL: %s cannot be written; API writes answer ServiceUnavailable and the "
            "engine's progress is not recorded until space is freed on that disk",
            where,
        )

    event.listen(engine, "handle_error", on_error)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the API read while the engine writes; busy_timeout rides out short write contention.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    _log_disk_full(engine, store_location(url))
    return engine


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision; safe to run at every start."""
    command.upgrade(alembic_config(engine), "head")


def open_store(url: str) -> Engine:
    engine = make_engine(url)
    upgrade(engine)
    return engine
