"""A throwaway self-managed "source" PostgreSQL, built on cloudmig's own pg layer: what the demo,
the func and e2e tests and the benchmarks migrate from.

    base = make_base_dir()                      # or the `pg_base_dir` fixture
    src = SourceCluster.create(base)            # initdb + start, 127.0.0.1:<free port>
    src.create_migration_account("migratetest", password="s3cret")
    src.pgbench_init(scale=1)
    ...
    src.destroy()

Everything PostgreSQL runs as the non-root `postgres` OS user when the tests run as root, so every
directory lives under a 0711 base directory in /tmp (pytest's own tmp_path base is 0700 root).

Majors: a cluster is of DEFAULT_MAJOR unless a test asks for another. DEFAULT_MAJOR is the
distribution's own PostgreSQL (15 on Debian 12, 17 on Debian 13; CLOUDMIG_TEST_PG_MAJOR overrides).
Other majors come from tools/install-pg-majors (tests/support/majors.py; tests/conftest.py puts them
into CLOUDMIG_PG_BIN_DIRS for the tests and the services they start).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import sql as pgsql

from cloudmig.instances.osuser import pg_os_user
from cloudmig.pg import compat, ctl
from cloudmig.pg.binaries import PgBinariesNotFound, distribution_major, find_bin_dir
from cloudmig.pg.conf import conf_quote
from cloudmig.pg.files import atomic_write, make_dir
from cloudmig.pg.runner import OsUser, run
from cloudmig.pg.source import SourceEndpoint
from cloudmig.pg.sql import connect_socket, connect_source
from cloudmig.settings import Settings

SUPERUSER = "postgres"
# The migration account's password on a throwaway source (the demo makes a random one).
DEFAULT_PASSWORD = "Migrate_Test_123"  # noqa: S105

DEFAULT_HBA: tuple[str, ...] = (
    "local all all trust",
    "local replication all trust",
    "host all all 127.0.0.1/32 scram-sha-256",
    "host replication all 127.0.0.1/32 scram-sha-256",
)


def bin_dirs_for_tests() -> list[Path]:
    """pg_bin_dirs as the tests' services see them (CLOUDMIG_PG_BIN_DIRS, set by tests/conftest.py)."""
    return list(Settings().pg_bin_dirs)


def _default_major() -> int:
    override = os.environ.get("CLOUDMIG_TEST_PG_MAJOR", "").strip()
    if override:
        return int(override)
    major = distribution_major()
    if major is not None:
        return major
    for candidate in reversed(compat.SUPPORTED_MAJORS):
        try:
            find_bin_dir(candidate, bin_dirs_for_tests())
        except PgBinariesNotFound:
            continue
        return candidate
    return compat.MAX_MAJOR  # nothing installed: the tests say which binaries are missing


DEFAULT_MAJOR: int = _default_major()

_ports_lock = threading.Lock()
_ports_handed_out: set[int] = set()

T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (never the same one twice in this process)."""
    for _ in range(100):
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        with _ports_lock:
            if port not in _ports_handed_out:
                _ports_handed_out.add(port)
                return port
    raise RuntimeError("no free port found")


def os_user_for_tests() -> OsUser | None:
    """The OS user PostgreSQL runs as in tests (None when the tests do not run as root)."""
    return pg_os_user(Settings())


def make_base_dir(prefix: str = "cloudmig-test-", parent: Path | str | None = None) -> Path:
    """A fresh directory under `parent` that the PostgreSQL OS user can traverse (0711; pytest's own
    tmp_path lives under a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent or tempfile.gettempdir()))
    os.chmod(path, 0o711)
    return path


def make_settings(base_dir: Path, **overrides: Any) -> Settings:
    """cloudmig Settings whose data and runtime dirs live in a fresh subdirectory of `base_dir`,
    with tiny instances (shared_buffers 16MB)."""
    root = make_base_dir("c", parent=base_dir)
    values: dict[str, Any] = {
        "data_dir": root / "data",
        "runtime_dir": root / "run",
        "instance_shared_buffers": "16MB",
    }
    values.update(overrides)
    return Settings(**values)


def wait_for(
    predicate: Callable[[], T | None], *, timeout: float = 30, interval: float = 0.2, what: str = ""
) -> T:
    """Poll `predicate` until it returns a truthy value; return it (AssertionError on timeout)."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # e.g. the server still starting
            last_exc = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_exc})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or predicate}{detail}")
        time.sleep(interval)


def _conf_value(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return str(value)
    return conf_quote(str(value))


@dataclass
class SourceCluster:
    root: Path
    bin_dir: Path
    port: int
    user: OsUser | None
    major: int
    host: str = "127.0.0.1"
    superuser: str = SUPERUSER
    settings: dict[str, object] = field(default_factory=dict)

    # ---- layout ---------------------------------------------------------------------------------

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def logfile(self) -> Path:
        return self.root / "postgres.log"

    def endpoint(self, user: str = "migratetest") -> SourceEndpoint:
        return SourceEndpoint(host=self.host, port=self.port, user=user)

    # ---- lifecycle ------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        base_dir: Path,
        *,
        major: int | None = None,
        port: int | None = None,
        settings: Mapping[str, object] | None = None,
        start: bool = True,
    ) -> SourceCluster:
        """initdb a cluster of `major` (DEFAULT_MAJOR by default) in a new directory under
        `base_dir` and start it (unless start=False)."""
        major = major or DEFAULT_MAJOR
        user = os_user_for_tests()
        bin_dir = find_bin_dir(major, bin_dirs_for_tests())
        root = Path(tempfile.mkdtemp(prefix="src-", dir=base_dir))
        make_dir(root, user=user)
        cluster = cls(
            root=root,
            bin_dir=bin_dir,
            port=port or free_port(),
            user=user,
            major=major,
            settings=dict(settings or {}),
        )
        try:
            make_dir(cluster.pgdata, user=user)
            make_dir(cluster.socket_dir, user=user)
            ctl.initdb(bin_dir, cluster.pgdata, user=user, superuser=SUPERUSER)
            cluster._write_conf()
            cluster.set_hba(DEFAULT_HBA, reload=False)
            if start:
                cluster.start()
        except BaseException:
            cluster.destroy()
            raise
        return cluster

    def _write_conf(self) -> None:
        values: dict[str, object] = {
            "listen_addresses": self.host,
            "port": self.port,
            "unix_socket_directories": str(self.socket_dir),
            "shared_buffers": "16MB",
            "wal_level": "replica",
            "max_wal_senders": 10,
            "max_replication_slots": 10,
            "password_encryption": "scram-sha-256",
            "logging_collector": False,
            "log_destination": "stderr",
        }
        values.update(self.settings)
        conf = self.pgdata / "postgresql.conf"
        text = conf.read_text()
        text += "\n# --- tests/support/pgcluster.py ---\n"
        text += "".join(f"{name} = {_conf_value(value)}\n" for name, value in values.items())
        atomic_write(conf, text, user=self.user)

    def start(self) -> None:
        ctl.start(self.bin_dir, self.pgdata, user=self.user, logfile=self.logfile)

    def stop(self, mode: str = "fast") -> None:
        ctl.stop(self.bin_dir, self.pgdata, user=self.user, mode=mode)

    def restart(self) -> None:
        self.stop()
        self.start()

    def reload(self) -> None:
        ctl.reload(self.bin_dir, self.pgdata, user=self.user)

    def is_running(self) -> bool:
        return ctl.is_running(self.bin_dir, self.pgdata, user=self.user)

    def destroy(self) -> None:
        """Stop (immediately) and remove every file. Safe to call twice."""
        try:
            if self.pgdata.is_dir():
                self.stop(mode="immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # ---- configuration --------------------------------------------------------------------------

    def set_hba(self, lines: Iterable[str], *, reload: bool = True) -> None:
        """Replace pg_hba.conf with `lines` (and reload the server unless reload=False)."""
        text = "".join(f"{line}\n" for line in lines)
        atomic_write(self.pgdata / "pg_hba.conf", text, user=self.user)
        if reload and self.is_running():
            self.reload()

    # ---- SQL ------------------------------------------------------------------------------------

    def connect(self, *, dbname: str = "postgres", user: str | None = None) -> psycopg.Connection[Any]:
        """Autocommit connection over the Unix socket (trust), as the superuser by default."""
        return connect_socket(self.socket_dir, self.port, user or self.superuser, dbname=dbname)

    def connect_tcp(self, user: str, password: str, *, dbname: str = "postgres") -> psycopg.Connection[Any]:
        """Autocommit connection over TCP with a password, as the service connects."""
        return connect_source(self.host, self.port, user, password, dbname=dbname)

    def sql(
        self, query: Any, params: Sequence[Any] | Mapping[str, Any] | None = None, dbname: str = "postgres"
    ) -> list[tuple[Any, ...]]:
        """Run one statement as the superuser over the socket; the rows it returns (or [])."""
        with self.connect(dbname=dbname) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description is not None else []

    def scalar(self, query: Any, params: Sequence[Any] | Mapping[str, Any] | None = None) -> Any:
        rows = self.sql(query, params)
        return rows[0][0] if rows else None

    def create_migration_account(
        self,
        name: str = "migratetest",
        password: str = DEFAULT_PASSWORD,
        *,
        replication: bool = True,
        createrole: bool = True,
        monitor: bool = True,
        superuser: bool = False,
    ) -> str:
        """Create (or alter) a LOGIN role with a SCRAM password; returns its name. The password is
        a properly escaped SQL literal: quotes, backslashes, spaces and unicode are fine."""
        options = [
            "LOGIN",
            "REPLICATION" if replication else "NOREPLICATION",
            "CREATEROLE" if createrole else "NOCREATEROLE",
            "SUPERUSER" if superuser else "NOSUPERUSER",
        ]
        exists = bool(self.scalar("SELECT count(*) FROM pg_roles WHERE rolname = %s", (name,)))
        verb = "ALTER" if exists else "CREATE"
        stmt = pgsql.SQL(verb + " ROLE {} WITH " + " ".join(options) + " PASSWORD {}").format(
            pgsql.Identifier(name), pgsql.Literal(password)
        )
        with self.connect() as conn:
            conn.execute(stmt)
            if monitor:
                conn.execute(pgsql.SQL("GRANT pg_monitor TO {}").format(pgsql.Identifier(name)))
        return name

    def _pgbench(self, *args: str, dbname: str, timeout: float) -> None:
        """pgbench over the socket as the superuser."""
        where = ["-h", str(self.socket_dir), "-p", str(self.port), "-U", self.superuser]
        run([self.bin_dir / "pgbench", *args, *where, dbname], user=self.user, timeout=timeout)

    def pgbench_init(self, scale: int = 1, *, dbname: str = "postgres") -> None:
        """pgbench -i -s scale (about 16 MB of data per scale unit)."""
        self._pgbench("-i", "-q", "-s", str(scale), dbname=dbname, timeout=300)

    def pgbench(self, *, seconds: int = 2, clients: int = 1, dbname: str = "postgres") -> None:
        """A short pgbench run (writes) against the cluster."""
        self._pgbench("-n", "-T", str(seconds), "-c", str(clients), dbname=dbname, timeout=seconds + 120)
