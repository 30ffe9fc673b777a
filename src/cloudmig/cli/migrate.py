"""`cloudmig migrate create|list|show|watch|switch`: migration tasks over the RDS API."""

from __future__ import annotations

import re
import sys
from dataclasses import replace
from typing import Annotated, Any

import typer

from cloudmig.cli.client import Api, api_from_env
from cloudmig.cli.instance import InstanceArg
from cloudmig.cli.output import (
    Failed,
    OutputFormat,
    OutputOpt,
    Refused,
    command_group,
    handle_errors,
    print_fields,
    print_json,
    print_table,
)
from cloudmig.cli.sourceopts import (
    CategoryOpt,
    PasswordEnvOpt,
    PasswordFileOpt,
    SourceAccountOpt,
    SourceHostOpt,
    SourcePortOpt,
    SslModeOpt,
    SslRootCertOpt,
    TaskNameOpt,
    source_args,
)
from cloudmig.cli.watch import (
    detail_tail,
    failed_checks,
    failure_report,
    reached,
    stage_of,
    status_of,
    summary_rows,
    watch,
)

migrate_app = command_group("Migration tasks: create, follow, switch over.")

TaskIdOpt = Annotated[
    int | None, typer.Option("--task-id", metavar="ID", help="Default: the instance's newest task.")
]
IntervalOpt = Annotated[
    float, typer.Option("--interval", metavar="SECONDS", min=0.2, help="Seconds between refreshes.")
]
UntilOpt = Annotated[
    str,
    typer.Option(
        "--until",
        metavar="end|streaming",
        help="end: until the task succeeds or fails; streaming: until it streams.",
    ),
]

FORCE_WARNING = (
    "FORCED switchover: the target is promoted at whatever it has replayed. Writes that reached the "
    "source but not the target are LOST, and the source is not checked for quiet."
)


def run_watch(
    api: Api, instance_id: str, task_id: int | None, until: str, interval: float, timeout: float | None = None
) -> tuple[int, dict[str, Any]]:
    if until not in ("end", "streaming"):
        raise Refused(f"--until must be end or streaming, not {until!r}")
    first = api.migration(instance_id, task_id)
    tid = int(first["TaskId"])
    code, item = watch(
        lambda: api.migration(instance_id, tid), instance_id, until=until, interval=interval, timeout=timeout
    )
    if timeout is not None and not reached(item, until):
        goal = "streams" if until == "streaming" else "ends"
        raise Failed(
            f"timed out after {timeout:g} s before task {tid} {goal}: it is in stage {stage_of(item)}, "
            f"replication {item.get('ReplicationState', '-')}, {status_of(item)}. The task goes on; "
            f"`cloudmig migrate watch {instance_id}` follows it again"
        )
    for line in failure_report(item, instance_id):
        typer.echo(line, err=True)
    return code, item


def cli_wording(message: str) -> str:
    """The service's refusals name API parameters; a CLI user sets them with flags."""
    return re.sub(r"\b(?:set |use )?ForceSwitch(?:=1)?\b", "use --force", message)


@migrate_app.command("create")
@handle_errors
def create(
    instance_id: InstanceArg,
    source_host: SourceHostOpt,
    source_account: SourceAccountOpt,
    source_port: SourcePortOpt = 5432,
    source_category: CategoryOpt = "ecsOnVpc",
    task_name: TaskNameOpt = None,
    password_file: PasswordFileOpt = None,
    password_env: PasswordEnvOpt = None,
    ssl_mode: SslModeOpt = None,
    ssl_root_cert: SslRootCertOpt = None,
    copy_compression: Annotated[
        str | None,
        typer.Option(
            "--copy-compression",
            metavar="MODE",
            help="Full copy compression: auto (default: chosen from the link), none, lz4, zstd or zstd:LEVEL.",
        ),
    ] = None,
    follow: Annotated[bool, typer.Option("--watch", help="Then watch it (see `migrate watch`).")] = False,
    until: UntilOpt = "streaming",
    interval: IntervalOpt = 1.0,
    output: OutputOpt = OutputFormat.TABLE,
) -> None:
    """Start migrating a source into an (empty, Running) instance."""
    src = source_args(
        source_host,
        source_port,
        source_account,
        source_category,
        task_name,
        password_file,
        password_env,
        ssl_mode,
        ssl_root_cert,
    )
    if copy_compression:
        src = replace(src, extra={"CopyCompression": copy_compression})
    api = api_from_env()
    created = api.create_migration(instance_id, src)
    if output is OutputFormat.JSON:
        print_json({k: created.get(k) for k in ("DBInstanceName", "TaskId", "TaskName", "RequestId")})
    else:
        typer.echo(
            f"migration task {created.get('TaskId')} ({created.get('TaskName')}) started on {instance_id}"
        )
    if follow:
        code, _ = run_watch(api, instance_id, int(created["TaskId"]), until, interval)
        raise typer.Exit(code)


@migrate_app.command("list")
@handle_errors
def list_(
    instance_id: Annotated[
        str | None, typer.Argument(metavar="[INSTANCE]", help="Only this instance's tasks.")
    ] = None,
    output: OutputOpt = OutputFormat.TABLE,
) -> None:
    """List migration tasks (of one instance, or of all)."""
    api = api_from_env()
    ids = [instance_id] if instance_id else [str(i["DBInstanceId"]) for i in api.instances()]
    items: list[dict[str, Any]] = []
    for iid in ids:
        items.extend(api.migrations(iid))
    if output is OutputFormat.JSON:
        print_json(items)
        return
    print_table(
        ["Instance", "Task", "Name", "Stage", "Replication", "Status", "Source", "Modified"],
        [
            [
                i.get("TargetInstanceName"),
                i.get("TaskId"),
                i.get("TaskName"),
                stage_of(i),
                i.get("ReplicationState"),
                status_of(i),
                f"{i.get('SourceIpAddress')}:{i.get('SourcePort')}",
                i.get("GmtModified"),
            ]
            for i in items
        ],
    )


@migrate_app.command("show")
@handle_errors
def show(instance_id: InstanceArg, task_id: TaskIdOpt = None, output: OutputOpt = OutputFormat.TABLE) -> None:
    """Show a migration task: stage, progress, lag, last events."""
    item = api_from_env().migration(instance_id, task_id)
    if output is OutputFormat.JSON:
        print_json(item)
        return
    print_fields(summary_rows(item))
    checks = failed_checks(item)
    if checks:
        typer.echo("\nFailed checks:")
        for line in checks:
            typer.echo(f"  {line}")
    tail = detail_tail(item)
    if tail:
        typer.echo("\nLast events:")
        for line in tail:
            typer.echo(f"  {line}")


@migrate_app.command("watch")
@handle_errors
def watch_(
    instance_id: InstanceArg,
    task_id: TaskIdOpt = None,
    until: UntilOpt = "end",
    interval: IntervalOpt = 1.0,
    timeout: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", help="Give up after this many seconds (exit 3); the task goes on."),
    ] = None,
) -> None:
    """Follow a task live until it succeeds or fails (plain lines when stdout is not a terminal)."""
    code, _ = run_watch(api_from_env(), instance_id, task_id, until, interval, timeout)
    raise typer.Exit(code)


@migrate_app.command("switch")
@handle_errors
def switch(
    instance_id: InstanceArg,
    force: Annotated[
        bool, typer.Option("--force", help="Switch even if writes still arrive on the source: they are lost.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    follow: Annotated[
        bool, typer.Option("--watch/--no-watch", help="Watch until it succeeds or fails.")
    ] = True,
    interval: IntervalOpt = 1.0,
    timeout: Annotated[
        int | None,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            min=10,
            max=3600,
            help="Bound on fencing the source and the target's catch-up (SwitchoverTimeout; default 60).",
        ),
    ] = None,
    fence: Annotated[
        bool,
        typer.Option(
            "--fence/--no-fence",
            help="Make the source read-only while switching when the account may (default), or never "
            "(then stop the application's writes first).",
        ),
    ] = True,
) -> None:
    """Switch over: fence the source (or prove its writes stopped), wait until the target replayed
    everything, promote it."""
    if force:
        typer.echo(f"warning: {FORCE_WARNING}", err=True)
    if not yes:
        if not sys.stdin.isatty():
            raise Refused("switching over needs --yes when there is no terminal to confirm on")
        question = (
            f"Force {instance_id} to become the primary and accept losing unreplayed writes?"
            if force
            else f"Have the application's writes to the source stopped? Switch {instance_id} over now?"
        )
        typer.confirm(question, abort=True)
    api = api_from_env()
    try:
        resp = api.switchover(instance_id, force=force, timeout=timeout, fence=fence)
    except Refused as exc:
        raise Refused(cli_wording(str(exc))) from None
    typer.echo(f"switchover of {instance_id} requested (task {resp.get('TaskId')})", err=True)
    if follow:
        code, item = run_watch(api, instance_id, int(resp["TaskId"]), "end", interval)
        if status_of(item) == "succeeded":
            for line in how_to_connect(api.instance(instance_id), instance_id):
                typer.echo(line, err=True)
        raise typer.Exit(code)


def how_to_connect(attr: dict[str, Any], instance_id: str) -> list[str]:
    address = f"{attr.get('ConnectionString')}:{attr.get('Port')}"
    return [
        f"The new primary is {instance_id} at {address}: psql -h {attr.get('ConnectionString')} "
        f"-p {attr.get('Port')} -U <role> <database>.",
        "The source's roles and passwords came along with the copy. A role that had no password (the "
        f"Debian `postgres` owner uses peer authentication) gets one with `cloudmig account reset-password "
        f"{instance_id} --name <role>`; `cloudmig account create` makes a new one.",
    ]
