"""`cloudmig instance create|list|show|delete`: managed instances, over the RDS API."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from cloudmig.cli.client import Api, api_from_env
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
from cloudmig.pg.binaries import distribution_major

instance_app = command_group("Managed PostgreSQL instances (the migration targets).")

InstanceArg = Annotated[str, typer.Argument(metavar="INSTANCE", help="Instance ID (pgm-...).")]


def wait_status(api: Api, instance_id: str, want: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        inst = api.instance(instance_id)
        status = str(inst.get("DBInstanceStatus"))
        if status == want:
            return inst
        if status == "Failed":
            raise Failed(f"instance {instance_id} failed to become {want}")
        if time.monotonic() > deadline:
            raise Failed(f"instance {instance_id} is still {status} after {timeout:g}s")
        time.sleep(1)


def created_at(i: dict[str, Any]) -> Any:
    # DescribeDBInstances names it CreateTime, DescribeDBInstanceAttribute CreationTime.
    return i.get("CreationTime") or i.get("CreateTime")


def _row(i: dict[str, Any]) -> list[Any]:
    return [
        i.get("DBInstanceId"),
        i.get("DBInstanceStatus"),
        i.get("EngineVersion"),
        i.get("DBInstanceClass"),
        f"{i.get('ConnectionString')}:{i.get('Port')}",
        created_at(i),
        i.get("DBInstanceDescription") or "",
    ]


@instance_app.command("create")
@handle_errors
def create(
    instance_class: Annotated[str, typer.Option("--class", help="DBInstanceClass.")] = "pg.n2.medium.2c",
    storage: Annotated[int, typer.Option("--storage", min=1, help="Storage quota in GB.")] = 20,
    engine_version: Annotated[
        str | None,
        typer.Option("--engine-version", help="PostgreSQL major (default: this host's distribution's)."),
    ] = None,
    description: Annotated[str | None, typer.Option(help="A note to recognise it by.")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until it is Running.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 300,
    output: OutputOpt = OutputFormat.TABLE,
) -> None:
    """Create an instance (initdb on the service host)."""
    api = api_from_env()
    if engine_version is None:
        major = distribution_major()
        if major is None:
            raise typer.BadParameter(
                "no PostgreSQL found on this host; give it", param_hint="--engine-version"
            )
        engine_version = str(major)
    instance_id = api.create_instance(
        engine_version=engine_version,
        instance_class=instance_class,
        storage_gb=storage,
        description=description,
    )
    if not wait:
        inst: dict[str, Any] = {"DBInstanceId": instance_id, "DBInstanceStatus": "Creating"}
    else:
        if output is OutputFormat.TABLE:
            typer.echo(f"created {instance_id}, waiting for it to run...", err=True)
        inst = wait_status(api, instance_id, "Running", timeout)
    if output is OutputFormat.JSON:
        print_json(inst)
    else:
        typer.echo(instance_id)


@instance_app.command("list")
@handle_errors
def list_(output: OutputOpt = OutputFormat.TABLE) -> None:
    """List instances."""
    items = api_from_env().instances()
    if output is OutputFormat.JSON:
        print_json(items)
        return
    print_table(
        ["Instance", "Status", "Version", "Class", "Address", "Created", "Description"],
        [_row(i) for i in items],
    )


@instance_app.command("show")
@handle_errors
def show(instance_id: InstanceArg, output: OutputOpt = OutputFormat.TABLE) -> None:
    """Show one instance."""
    inst = api_from_env().instance(instance_id)
    if output is OutputFormat.JSON:
        print_json(inst)
        return
    print_fields(
        [
            ("Instance", inst.get("DBInstanceId")),
            ("Status", inst.get("DBInstanceStatus")),
            ("Engine", f"{inst.get('Engine')} {inst.get('EngineVersion')}"),
            ("Class", inst.get("DBInstanceClass")),
            ("Storage", f"{inst.get('DBInstanceStorage')} GB"),
            ("Max connections", inst.get("MaxConnections")),
            ("Address", f"{inst.get('ConnectionString')}:{inst.get('Port')}"),
            ("Created", created_at(inst)),
            ("Description", inst.get("DBInstanceDescription") or ""),
        ]
    )


@instance_app.command("delete")
@handle_errors
def delete(
    instance_id: InstanceArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until it is gone.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 120,
) -> None:
    """Delete an instance and its data (a running migration on it is cancelled)."""
    if not yes:
        if not sys.stdin.isatty():
            raise Refused("deleting an instance needs --yes when there is no terminal to confirm on")
        typer.confirm(f"Delete {instance_id} and all its data?", abort=True)
    api = api_from_env()
    api.delete_instance(instance_id)
    if wait:
        deadline = time.monotonic() + timeout
        while instance_id in {i.get("DBInstanceId") for i in api.instances()}:
            if time.monotonic() > deadline:
                raise Failed(f"instance {instance_id} still exists after {timeout:g}s")
            time.sleep(1)
    typer.echo(f"deleted {instance_id}" if wait else f"deleting {instance_id}")
