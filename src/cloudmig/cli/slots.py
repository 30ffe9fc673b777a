"""`cloudmig slots list|give-up`: the slot drops still pending, on the service host's store.

A drop is retried until its slot is gone; `give-up` is for a source that never comes back."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cloudmig.cli.host import ConfigOpt, DataDirOpt, host_settings
from cloudmig.cli.output import (
    EXIT_REFUSED,
    EXIT_USAGE,
    OutputFormat,
    OutputOpt,
    command_group,
    die,
    print_json,
    print_table,
)
from cloudmig.store.records import SlotDropRecord

slots_app = command_group("Replication slots cloudmig still has to drop on sources.")


def _row(rec: SlotDropRecord) -> dict[str, object]:
    return {
        "Id": rec.id,
        "Slot": rec.slot_name,
        "Source": f"{rec.source_ip}:{rec.source_port}",
        "TaskId": rec.task_id,
        "Reason": rec.reason,
        "Attempts": rec.attempts,
        "LastError": rec.last_error,
        "Since": rec.created_at.isoformat(),
        "NextAttempt": rec.next_attempt_at.isoformat(),
    }


@slots_app.command("list")
def slots_list(
    data_dir: DataDirOpt = None, config: ConfigOpt = None, output: OutputOpt = OutputFormat.TABLE
) -> None:
    """List the slot drops still pending (each is retried until its slot is gone)."""
    from cloudmig.runtime import build_context
    from cloudmig.services.slot_drops import list_pending

    rows = [_row(r) for r in list_pending(build_context(host_settings(data_dir, config), for_server=False))]
    if output is OutputFormat.JSON:
        print_json(rows)
        return
    columns = ["Id", "Slot", "Source", "TaskId", "Attempts", "Since", "LastError"]
    print_table(columns, [[r[c] for c in columns] for r in rows])


@slots_app.command("give-up")
def slots_give_up(
    drop: Annotated[str, typer.Argument(metavar="ID|SLOT", help="The drop's id or its slot's name.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Stop retrying a drop whose source is gone for good. The slot, if its source still has it, keeps
    WAL there until it is dropped by hand (the statement is printed and added to the task's Detail)."""
    from cloudmig.runtime import build_context
    from cloudmig.services.slot_drops import AmbiguousDrop, find, give_up, manual_drop_sql

    ctx = build_context(host_settings(data_dir, config), for_server=False)
    try:
        rec = find(ctx, drop)
    except AmbiguousDrop as exc:
        die(str(exc), EXIT_USAGE)
    if rec is None:
        die(f"no pending slot drop {drop} (cloudmig slots list shows them)", EXIT_REFUSED)
    where = f"{rec.source_ip}:{rec.source_port}"
    if not yes:
        if not sys.stdin.isatty():
            die("giving up a slot drop needs --yes when not asked on a terminal", EXIT_USAGE)
        typer.confirm(f"Stop trying to drop slot {rec.slot_name} on {where}?", abort=True)
    give_up(ctx, rec)
    typer.echo(
        f"gave up dropping slot {rec.slot_name} on {where}; if the source still has it, drop it there: "
        f"{manual_drop_sql(rec.slot_name)}"
    )
