"""`cloudmig precheck run|show`: the assessment of a source against an instance, over the RDS API."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from cloudmig.cli.client import Api, api_from_env
from cloudmig.cli.instance import InstanceArg
from cloudmig.cli.output import (
    EXIT_FAILED,
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

precheck_app = command_group("Assess a source before migrating it.")


def report_passed(item: dict[str, Any]) -> bool:
    results = item.get("CheckResults") or []
    if results:
        return all(r.get("Level") != "error" for r in results)
    return "*Migrate check success*" in str(item.get("Detail") or "")


def print_report(item: dict[str, Any], output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        print_json(item)
        return
    status = item.get("Status") or "-"
    verdict = "passed" if report_passed(item) else "did not pass"
    print_fields(
        [
            ("Task", f"{item.get('TaskId')} {item.get('TaskName', '')}"),
            ("Instance", item.get("TargetInstanceName")),
            ("Source", f"{item.get('SourceAccount')}@{item.get('SourceIpAddress')}:{item.get('SourcePort')}"),
            ("Status", status),
            ("Verdict", verdict if status != "running" else "(running)"),
        ]
    )
    results = item.get("CheckResults") or []
    if results:
        print_table(
            ["Section", "Check", "Level", "Message"],
            [[r.get("Section"), r.get("Name"), r.get("Level"), r.get("Message", "")] for r in results],
        )
    elif item.get("Detail"):
        typer.echo(str(item["Detail"]))


def wait_precheck(api: Api, instance_id: str, task_id: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        items = api.prechecks(instance_id, task_id)
        if items and (items[0].get("Status") or "running") != "running":
            return dict(items[0])
        if time.monotonic() > deadline:
            raise Failed(f"precheck task {task_id} did not finish within {timeout:g}s")
        time.sleep(1)


@precheck_app.command("run")
@handle_errors
def run(
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
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the report.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the report.")] = 300,
    output: OutputOpt = OutputFormat.TABLE,
) -> None:
    """Run the assessment; exits 3 when the report has an error."""
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
    api = api_from_env()
    created = api.create_precheck(instance_id, src)
    task_id = int(created["TaskId"])
    if not wait:
        if output is OutputFormat.JSON:
            print_json(created)
        else:
            typer.echo(f"precheck task {task_id} created on {instance_id}")
        return
    item = wait_precheck(api, instance_id, task_id, timeout)
    print_report(item, output)
    if item.get("Status") != "succeeded" or not report_passed(item):
        raise typer.Exit(EXIT_FAILED)


@precheck_app.command("show")
@handle_errors
def show(
    instance_id: InstanceArg,
    task_id: Annotated[int | None, typer.Option("--task-id", help="Default: the newest.")] = None,
    output: OutputOpt = OutputFormat.TABLE,
) -> None:
    """Show a precheck report."""
    items = api_from_env().prechecks(instance_id, task_id)
    if not items:
        raise Refused(f"no precheck task on instance {instance_id}")
    print_report(dict(items[0]), output)
