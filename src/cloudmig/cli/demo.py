"""`cloudmig demo`: a whole migration on this machine, from a throwaway source to a switched-over
instance, driven through the RDS API exactly as a user would, then cleaned up."""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from psycopg import sql as pgsql

from cloudmig.cli.client import Api, ClientConfig, SourceArgs, parse_endpoint
from cloudmig.cli.instance import wait_status
from cloudmig.cli.output import (
    EXIT_FAILED,
    CliError,
    Failed,
    OutputFormat,
    Refused,
    handle_errors,
    print_table,
)
from cloudmig.cli.precheck import print_report, report_passed, wait_precheck
from cloudmig.cli.watch import PlainPrinter, watch
from cloudmig.instances.osuser import pg_os_user
from cloudmig.pg import ctl
from cloudmig.pg.binaries import PgBinariesNotFound, distribution_major, find_bin_dir
from cloudmig.pg.conf import atomic_write, conf_quote, make_dir
from cloudmig.pg.runner import OsUser, run
from cloudmig.pg.sql import connect_socket, connect_source
from cloudmig.settings import Settings

ACCOUNT = "migrator"
TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history")


def say(text: str) -> None:
    typer.echo(f"==> {text}")
    sys.stdout.flush()


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_block(size: int = 20) -> tuple[int, int]:
    """A block of ports nothing listens on now, for the demo service's instances."""
    for _ in range(50):
        lo = secrets.randbelow(20000) + 30000
        ok = True
        for p in range(lo, lo + size):
            with contextlib.closing(socket.socket()) as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return lo, lo + size - 1
    raise Failed("no free block of ports for the demo's instances")


@dataclass
class DemoSource:
    """A throwaway self-managed PostgreSQL: initdb, a TCP listener with scram, pgbench data."""

    root: Path
    bin_dir: Path
    port: int
    user: OsUser | None

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def sockets(self) -> Path:
        return self.root / "sock"

    @classmethod
    def create(cls, root: Path, major: int) -> DemoSource:
        service_settings = Settings()
        user = pg_os_user(service_settings)
        src = cls(root, find_bin_dir(major, service_settings.pg_bin_dirs), free_port(), user)
        make_dir(root, user=user, mode=0o711)
        make_dir(src.pgdata, user=user)
        make_dir(src.sockets, user=user)
        ctl.initdb(src.bin_dir, src.pgdata, user=user, superuser="postgres")
        conf = src.pgdata / "postgresql.conf"
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(src.port),
            "unix_socket_directories": conf_quote(str(src.sockets)),
            "shared_buffers": "'16MB'",
            "wal_level": "replica",
            "max_wal_senders": "10",
            "max_replication_slots": "10",
            "password_encryption": "'scram-sha-256'",
        }
        text = conf.read_text() + "\n# cloudmig demo\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
        atomic_write(conf, text, user=user)
        hba = (
            "local all all trust\n"
            "local replication all trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            "host replication all 127.0.0.1/32 scram-sha-256\n"
        )
        atomic_write(src.pgdata / "pg_hba.conf", hba, user=user)
        ctl.start(src.bin_dir, src.pgdata, user=user, logfile=root / "postgres.log")
        return src

    def sql(self, query: Any, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with connect_socket(self.sockets, self.port, "postgres") as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description is not None else []

    def pgbench(self, *args: str, timeout: float = 600) -> None:
        argv: list[str | Path] = [self.bin_dir / "pgbench", *args]
        argv += ["-h", self.sockets, "-p", str(self.port), "-U", "postgres", "postgres"]
        run(argv, user=self.user, timeout=timeout)

    def create_account(self, password: str) -> None:
        stmt = pgsql.SQL("CREATE ROLE {} WITH LOGIN REPLICATION CREATEROLE PASSWORD {}").format(
            pgsql.Identifier(ACCOUNT), pgsql.Literal(password)
        )
        self.sql(stmt)
        self.sql(pgsql.SQL("GRANT pg_monitor, pg_read_all_data TO {}").format(pgsql.Identifier(ACCOUNT)))

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            ctl.stop(self.bin_dir, self.pgdata, user=self.user, mode="immediate")


class DemoService:
    """`cloudmig serve` in a subprocess with its own data dir, port and instance ports."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        lo, hi = free_port_block()
        self.settings = Settings(
            data_dir=root / "data",
            runtime_dir=root / "run",
            port=self.port,
            instance_port_min=lo,
            instance_port_max=hi,
        )
        self.env = {
            **os.environ,
            "CLOUDMIG_DATA_DIR": str(self.settings.data_dir),
            "CLOUDMIG_RUNTIME_DIR": str(self.settings.runtime_dir),
            "CLOUDMIG_INSTANCE_PORT_MIN": str(lo),
            "CLOUDMIG_INSTANCE_PORT_MAX": str(hi),
            "CLOUDMIG_INSTANCE_SHARED_BUFFERS": "16MB",
            "CLOUDMIG_OBSERVE_SECONDS": "1",
            "CLOUDMIG_ENGINE_TICK_SECONDS": "0.5",
            "CLOUDMIG_LOG_LEVEL": "warning",
        }
        self.env.pop("CLOUDMIG_CONFIG", None)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.root / "serve.log"

    def start(self, timeout: float = 60) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cloudmig", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failed(f"the demo service exited early; see {self.log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.3)
        raise Failed(f"the demo service did not start within {timeout:g}s; see {self.log}")

    def api(self) -> Api:
        from cloudmig.runtime import build_context
        from cloudmig.services.keys import create_key

        key = create_key(build_context(self.settings, for_server=False), "cloudmig demo")
        cfg = ClientConfig(
            parse_endpoint(f"http://127.0.0.1:{self.port}"), key.access_key_id, key.access_key_secret
        )
        return Api(cfg)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def switch_over(api: Api, instance_id: str, attempts: int = 10) -> dict[str, Any]:
    """Ask for the switchover; a source that is still settling (checkpoint, autovacuum) may be refused."""
    for i in range(attempts):
        try:
            return api.switchover(instance_id, force=False)
        except Refused as exc:
            if "still arriving" not in str(exc) or i == attempts - 1:
                raise
            say("the source is still writing WAL; asking again in 2 s")
            time.sleep(2)
    raise AssertionError("unreachable")


def source_counts(source: DemoSource) -> dict[str, int]:
    return {t: int(source.sql(_count(t))[0][0]) for t in TABLES}


def target_counts(host: str, port: int, password: str) -> tuple[dict[str, int], bool]:
    with connect_source(host, port, ACCOUNT, password) as conn:
        counts = {}
        for t in TABLES:
            row = conn.execute(_count(t)).fetchone()
            counts[t] = int(row[0]) if row else -1
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    return counts, bool(row and row[0])


def _count(table: str) -> pgsql.Composed:
    return pgsql.SQL("SELECT count(*) FROM {}").format(pgsql.Identifier(table))


def migrate(api: Api, source: DemoSource, instance_id: str, password: str, interval: float) -> None:
    """Assessment, migration, switchover and the row-count check, all through the API."""
    src = SourceArgs("127.0.0.1", source.port, ACCOUNT, password, "ecsOnVpc")
    say("running the assessment")
    pre = api.create_precheck(instance_id, src)
    report = wait_precheck(api, instance_id, int(pre["TaskId"]), 300)
    print_report(report, OutputFormat.TABLE)
    if not report_passed(report):
        raise Failed("the assessment found errors; see the report above")

    created = api.create_migration(instance_id, replace(src, task_name="demo"))
    task_id = int(created["TaskId"])
    fetch = functools.partial(api.migration, instance_id, task_id)
    printer = PlainPrinter(sys.stdout)
    say(f"migration task {task_id} started; watching until replication streams")
    code, item = watch(fetch, instance_id, until="streaming", interval=interval, timeout=600, printer=printer)
    if code or item.get("ReplicationState") != "streaming":
        raise Failed(f"the migration did not reach streaming: {item.get('Reason') or item.get('Status')}")

    say("writing to the source for 3 s while it streams (pgbench)")
    source.pgbench("-n", "-T", "3", "-c", "2", timeout=120)
    say("writes stopped; switching over")
    switch_over(api, instance_id)
    code, item = watch(fetch, instance_id, until="end", interval=interval, timeout=300, printer=printer)
    if code or item.get("Status") != "succeeded":
        raise Failed(f"the switchover did not succeed: {item.get('Reason') or item.get('Status')}")

    attr = api.instance(instance_id)
    on_source = source_counts(source)
    on_target, in_recovery = target_counts(str(attr["ConnectionString"]), int(attr["Port"]), password)
    print_table(
        ["Table", "Source rows", "Target rows", ""],
        [
            [t, on_source[t], on_target[t], "ok" if on_source[t] == on_target[t] else "DIFFERENT"]
            for t in TABLES
        ],
    )
    if in_recovery:
        raise Failed("the target is still in recovery after the switchover")
    if on_source != on_target:
        raise Failed("row counts differ between source and target")


def run_demo(scale: int, major: int, keep: bool, interval: float) -> int:
    started = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="cloudmig-demo-", dir="/tmp"))
    os.chmod(base, 0o711)  # the PostgreSQL OS user must traverse it when we run as root
    source: DemoSource | None = None
    service: DemoService | None = None
    api: Api | None = None
    instance_id: str | None = None
    password = secrets.token_urlsafe(18)
    ok = False
    try:
        say(f"starting a throwaway source PostgreSQL {major} (initdb, pgbench scale {scale}) in {base}")
        try:
            source = DemoSource.create(base / "source", major)
        except PgBinariesNotFound as exc:
            raise Failed(f"PostgreSQL {major} binaries are not installed: {exc}") from None
        source.pgbench("-i", "-q", "-s", str(scale))
        source.create_account(password)
        say(f"source listening on 127.0.0.1:{source.port}; migration account {ACCOUNT}")

        service = DemoService(base / "service")
        service.start()
        api = service.api()
        say(f"cloudmig service on http://127.0.0.1:{service.port} (console: /console, metrics: /metrics)")

        iid = api.create_instance(
            engine_version=str(major), instance_class="pg.n2.medium.2c", storage_gb=20, description="demo"
        )
        instance_id = iid
        say(f"created instance {iid}; waiting for it to run")
        wait_status(api, iid, "Running", 180)
        migrate(api, source, iid, password, interval)
        say(f"row counts match; {iid} is the new primary ({time.monotonic() - started:.0f} s in all)")
        ok = True
        return 0
    finally:
        if keep:
            pid = service.proc.pid if service is not None and service.proc is not None else "-"
            say(f"kept everything in {base} (service pid {pid})")
        else:
            say("cleaning up")
            if api is not None and instance_id is not None:
                delete_instance(api, instance_id)
            if service is not None:
                service.stop()
            if source is not None:
                source.destroy()
            shutil.rmtree(base, ignore_errors=True)
            if ok:
                say("done")


def delete_instance(api: Api, instance_id: str, timeout: float = 90) -> None:
    with contextlib.suppress(CliError):
        api.delete_instance(instance_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and instance_id in {i.get("DBInstanceId") for i in api.instances()}:
            time.sleep(1)


def demo(
    scale: Annotated[int, typer.Option(min=1, help="pgbench scale of the source (about 16 MB each).")] = 1,
    pg_major: Annotated[
        int | None,
        typer.Option("--pg-major", help="PostgreSQL major version to use (default: the distribution's)."),
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Leave the source, service and files running.")
    ] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between refreshes of the view.")] = 1.0,
) -> None:
    """Migrate a throwaway pgbench database into a new instance and switch over, end to end."""
    major = pg_major or distribution_major()
    if major is None:
        raise typer.BadParameter(
            "no PostgreSQL of the distribution found; give --pg-major", param_hint="--pg-major"
        )
    code = handle_errors(run_demo)(scale, major, keep, interval)
    if code:
        raise typer.Exit(EXIT_FAILED)
