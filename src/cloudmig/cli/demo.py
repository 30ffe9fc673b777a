"""`cloudmig demo`: a whole migration on this machine, from a throwaway source to a switched-over
instance, driven through the RDS API exactly as a user would, then cleaned up."""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from psycopg import sql as pgsql

from cloudmig.cli.client import Api, SourceArgs
from cloudmig.cli.client_config import ClientConfig, parse_endpoint
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
from cloudmig.pg.binaries import PgBinariesNotFound, distribution_major
from cloudmig.pg.sql import connect_source
from cloudmig.settings import Settings

if TYPE_CHECKING:  # the harness is imported when the demo runs, not with every CLI command
    from cloudmig.harness.service import ServiceProcess
    from cloudmig.harness.source import SourceCluster

ACCOUNT = "migrator"
TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history")


def say(text: str) -> None:
    typer.echo(f"==> {text}")
    sys.stdout.flush()


def make_source(root: Path, major: int, scale: int, password: str) -> SourceCluster:
    """A throwaway source with pgbench data and a migration account (cloudmig.harness)."""
    from cloudmig.harness.source import SourceCluster

    source = SourceCluster.create(root, major=major)
    source.pgbench_init(scale=scale)
    source.create_migration_account(ACCOUNT, password)
    source.sql(pgsql.SQL("GRANT pg_read_all_data TO {}").format(pgsql.Identifier(ACCOUNT)))
    return source


def service_api(service: ServiceProcess) -> Api:
    """A client of the demo's service with an access key made in its store."""
    from cloudmig.runtime import build_context
    from cloudmig.services.keys import create_key

    settings = Settings(data_dir=service.data_dir, runtime_dir=service.runtime_dir)
    key = create_key(build_context(settings, for_server=False), "cloudmig demo")
    cfg = ClientConfig(parse_endpoint(f"http://{service.endpoint}"), key.access_key_id, key.access_key_secret)
    return Api(cfg)


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


def source_counts(source: SourceCluster) -> dict[str, int]:
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


def migrate(api: Api, source: SourceCluster, instance_id: str, password: str, interval: float) -> None:
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
    source.pgbench(seconds=3, clients=2)
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
    source: SourceCluster | None = None
    service: ServiceProcess | None = None
    api: Api | None = None
    instance_id: str | None = None
    password = secrets.token_urlsafe(18)
    ok = False
    try:
        say(f"starting a throwaway source PostgreSQL {major} (initdb, pgbench scale {scale}) in {base}")
        try:
            source = make_source(base, major, scale, password)
        except PgBinariesNotFound as exc:
            raise Failed(f"PostgreSQL {major} binaries are not installed: {exc}") from None
        say(f"source listening on 127.0.0.1:{source.port}; migration account {ACCOUNT}")

        from cloudmig.harness.service import ServiceProcess

        service = ServiceProcess(base / "service", log_level="warning")
        try:
            service.start()
        except RuntimeError as exc:
            raise Failed(f"the demo service did not start: {exc}") from None
        api = service_api(service)
        say(f"cloudmig service on http://{service.endpoint} (console: /console, metrics: /metrics)")

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
                service.destroy()
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
