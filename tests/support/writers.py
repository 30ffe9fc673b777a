"""Application writers for switchover tests and benchmarks.

Each `Writer` is a thread that inserts numbered rows into `ledger` at its own steady rate, one row a
transaction in autocommit (so a statement that returns is a durable, acknowledged commit), and keeps
every acknowledged row with the moment it was acknowledged. It never stops by itself: on an error it
reconnects to where it writes, the source, until the test moves every writer to the new primary
(`Route.move_to`), as an application does when told the switch is over; it never writes to the
target before that.

    route = Route(source=Endpoint.tcp("127.0.0.1", src.port, "app", APP_PASSWORD))
    with WriterPool([Writer(i, rate, route) for i, rate in enumerate((1, 10, 50, 200))]) as pool:
        ...  # ActivateMigrationTargetInstance, wait for success
        route.move_to(Endpoint.tcp(host, port, "app", APP_PASSWORD))
        pool.wait_target_acks()
    pool.unavailability()  # last acknowledged write on the source -> first one on the target
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql as pgsql

TABLE = "ledger"
APP_ROLE = "app"
APP_PASSWORD = "App_Writer_Pw_1"
LEDGER_DDL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (writer int NOT NULL, n bigint NOT NULL, side text NOT NULL,"
    " at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (writer, n))"
)


def prepare_source(source: Any, *, role: str = APP_ROLE, password: str = APP_PASSWORD) -> None:
    """The ledger table and an ordinary application role (LOGIN, no special privileges) that writes
    it. `source` is a tests.support.pgcluster.SourceCluster."""
    source.sql(LEDGER_DDL)
    exists = source.scalar("SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,))
    verb = "ALTER" if exists else "CREATE"
    source.sql(
        pgsql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(pgsql.Identifier(role), pgsql.Literal(password))
    )
    source.sql(
        pgsql.SQL("GRANT INSERT, SELECT ON {} TO {}").format(pgsql.Identifier(TABLE), pgsql.Identifier(role))
    )


@dataclass(frozen=True)
class Endpoint:
    """Where a writer connects: TCP with a password, or a Unix socket directory (trust)."""

    host: str
    port: int
    user: str
    password: str | None = None
    dbname: str = "postgres"
    # Startup options, e.g. "-c default_transaction_read_only=off": a session that makes its own
    # transactions read-write, which no configuration reload can change.
    options: str | None = None
    side: str = "source"

    @classmethod
    def tcp(cls, host: str, port: int, user: str, password: str, **kw: Any) -> Endpoint:
        return cls(host, port, user, password, **kw)

    def connect(self, timeout: int = 2) -> psycopg.Connection[Any]:
        kw: dict[str, Any] = {}
        if self.password is not None:
            kw["password"] = self.password
        if self.options:
            kw["options"] = self.options
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            dbname=self.dbname,
            autocommit=True,
            connect_timeout=timeout,
            application_name="test-writer",
            **kw,
        )


class Route:
    """Where every writer sends its writes: the source until `move_to` names the new primary."""

    def __init__(self, source: Endpoint) -> None:
        self.source = source
        self.target: Endpoint | None = None
        self.moved_at: float | None = None

    def move_to(self, target: Endpoint) -> None:
        self.moved_at = time.monotonic()
        self.target = Endpoint(
            target.host, target.port, target.user, target.password, target.dbname, target.options, "target"
        )

    def current(self) -> Endpoint:
        return self.target or self.source


@dataclass
class Ack:
    n: int
    at: float  # time.monotonic() when the commit returned
    side: str


class Writer(threading.Thread):
    """One application connection writing `rate` rows a second, whatever happens. `endpoint` is
    its own way into the source (e.g. a superuser session); by default the route's."""

    def __init__(self, wid: int, rate: float, route: Route, endpoint: Endpoint | None = None) -> None:
        super().__init__(daemon=True, name=f"writer-{wid}")
        self.wid, self.rate, self.route, self.endpoint = wid, rate, route, endpoint
        self.acked: list[Ack] = []
        self.errors: Counter[str] = Counter()
        self.first_read_only: float | None = None
        self.last_error = ""
        self.halt = threading.Event()
        self.lock = threading.Lock()

    def _where(self) -> Endpoint:
        if self.route.target is not None:
            return self.route.target
        return self.endpoint or self.route.source

    def run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        at: Endpoint | None = None
        interval = 1.0 / self.rate
        due = time.monotonic()
        n = 0
        while not self.halt.is_set():
            where = self._where()
            if conn is None or at is not where:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn, at = None, where
                try:
                    conn = where.connect()
                except psycopg.Error as exc:
                    self._error("connect", exc)
                    self.halt.wait(min(interval, 0.02))
                    continue
            n += 1
            try:
                conn.execute(
                    pgsql.SQL("INSERT INTO {} (writer, n, side) VALUES (%s, %s, %s)").format(
                        pgsql.Identifier(TABLE)
                    ),
                    (self.wid, n, where.side),
                )
                with self.lock:
                    self.acked.append(Ack(n, time.monotonic(), where.side))
            except psycopg.errors.ReadOnlySqlTransaction as exc:
                if self.first_read_only is None and where.side == "source":
                    self.first_read_only = time.monotonic()
                self._error(f"read_only_{where.side}", exc)
            except psycopg.Error as exc:
                self._error(f"{type(exc).__name__}_{where.side}", exc)
                with contextlib.suppress(Exception):
                    conn.close()
                conn = None
            due += interval
            delay = due - time.monotonic()
            if delay > 0:
                self.halt.wait(delay)
            else:
                due = time.monotonic()  # behind: no burst to catch up
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _error(self, kind: str, exc: BaseException) -> None:
        self.errors[kind] += 1
        self.last_error = " ".join(str(exc).split())[:200]

    def acks(self, side: str | None = None) -> list[Ack]:
        with self.lock:
            return [a for a in self.acked if side is None or a.side == side]

    def stop(self) -> None:
        self.halt.set()
        self.join(30)


class WriterPool:
    """Several writers started and stopped together, with the numbers a switchover test reports."""

    def __init__(self, writers: Iterable[Writer]) -> None:
        self.writers = list(writers)

    def __enter__(self) -> WriterPool:
        for w in self.writers:
            w.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __iter__(self) -> Iterator[Writer]:
        return iter(self.writers)

    def stop(self) -> None:
        for w in self.writers:
            w.halt.set()
        for w in self.writers:
            w.join(30)

    def wait_acks(self, count: int, timeout: float = 30, side: str = "source") -> None:
        """Until every writer had `count` commits acknowledged on `side`."""
        deadline = time.monotonic() + timeout
        while any(len(w.acks(side)) < count for w in self.writers):
            if time.monotonic() > deadline:
                state = {w.wid: (len(w.acks(side)), dict(w.errors), w.last_error) for w in self.writers}
                raise AssertionError(f"writers did not reach {count} acks on the {side}: {state}")
            time.sleep(0.02)

    def rows(self, side: str | None = None) -> set[tuple[int, int]]:
        return {(w.wid, a.n) for w in self.writers for a in w.acks(side)}

    def last_ack(self, side: str) -> float | None:
        times = [a.at for w in self.writers for a in w.acks(side)]
        return max(times) if times else None

    def first_ack(self, side: str) -> float | None:
        times = [a.at for w in self.writers for a in w.acks(side)]
        return min(times) if times else None

    def unavailability(self) -> float | None:
        """Last acknowledged write on the source to the first acknowledged write on the target."""
        last, first = self.last_ack("source"), self.first_ack("target")
        return None if last is None or first is None else first - last

    def errors(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for w in self.writers:
            total.update(w.errors)
        return total


def ledger_rows(conn: psycopg.Connection[Any]) -> set[tuple[int, int]]:
    return {(int(r[0]), int(r[1])) for r in conn.execute(f"SELECT writer, n FROM {TABLE}").fetchall()}
