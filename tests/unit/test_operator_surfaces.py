"""What the CLI and the console show an operator, without a service: help text, wording, finished
tasks, failure reports, the start-up next steps, a browser at `/`, task names and byte units."""

from __future__ import annotations

import asyncio
import io
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from cloudmig.api.app import create_app, is_browser_visit
from cloudmig.cli.instance import created_at
from cloudmig.cli.main import app, next_steps
from cloudmig.cli.migrate import cli_wording
from cloudmig.cli.output import EXIT_OK
from cloudmig.cli.watch import failure_report, summary_rows, watch
from cloudmig.console.views import DASH, replication_rows
from cloudmig.domain.enums import TaskStatus
from cloudmig.domain.ids import new_task_name
from cloudmig.domain.units import human_bytes
from cloudmig.runtime import build_context
from cloudmig.settings import Settings

# ---- CLI help -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [["migrate", "create"], ["migrate", "switch"], ["precheck", "run"], ["keys", "create"]]
)
def test_help_shows_flags_without_a_value_and_whole_defaults(command: list[str]) -> None:
    r = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    assert "<bool>" not in r.stdout and "…" not in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) <= 80
    if command in (["migrate", "create"], ["precheck", "run"]):
        assert "CLOUDMIG_SOURCE_PASSWORD" in r.stdout
        assert re.search(r"^\s+--watch\s{2,}Then watch it", r.stdout, re.M) or command[0] == "precheck"


# ---- wording and fields -------------------------------------------------------------------------------


def test_a_refused_switchover_names_the_flag_not_the_api_parameter() -> None:
    service = (
        "IncorrectDBInstanceState: Writes are still arriving on the source: its WAL position moved from "
        "0/3000000 to 0/3000100 in 1.5 s. Stop the application's writes and call again, or set "
        "ForceSwitch=1 to switch now and lose them."
    )
    assert cli_wording(service).endswith("or use --force to switch now and lose them.")
    assert "ForceSwitch" not in cli_wording("The source cannot be reached; use ForceSwitch=1 to switch.")


def test_instance_creation_time_under_either_name() -> None:
    # DescribeDBInstanceAttribute says CreationTime, DescribeDBInstances CreateTime.
    assert created_at({"CreationTime": "2026-01-02T03:04:05Z"}) == "2026-01-02T03:04:05Z"
    assert created_at({"CreateTime": "2026-01-02T03:04:05Z"}) == "2026-01-02T03:04:05Z"


# ---- finished and failed tasks ------------------------------------------------------------------------

STALE_REPLICATION = {
    "SourceLsn": "0/5000000",
    "ReceivedLsn": "0/6000000",
    "ReplayedLsn": "0/6000000",
    "LagBytes": 0,
    "WalGenerationBytesPerSecond": 123456,
    "ReplayBytesPerSecond": 654321,
    "CatchUpSeconds": 0.0,
}
EVIDENCE = {"CutLsn": "0/5000100", "ReplayLsnAtPromote": "0/5000100", "BytesNotReplayed": 0}


def migration_item(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "TaskId": 7,
        "TaskName": "t",
        "MigrateStage": "success" if status == "succeeded" else "increment",
        "ReplicationState": "finish" if status == "succeeded" else "streaming",
        "Status": status,
        "Progress": {"Replication": STALE_REPLICATION},
        **extra,
    }


def test_a_finished_task_shows_where_it_switched_not_old_rates() -> None:
    rows = dict(summary_rows(migration_item("succeeded", Evidence=EVIDENCE)))
    assert "Lag" not in rows
    assert "0/5000100" in rows["Switchover"] and "not replayed: 0 B" in rows["Switchover"]

    console = {r.label: r.value for r in replication_rows(TaskStatus.SUCCEEDED, STALE_REPLICATION, EVIDENCE)}
    assert console == {
        "Cut LSN": "0/5000100",
        "Replayed at promotion": "0/5000100",
        "Source at promotion": DASH,
        "Not replayed": "0 B",
    }
    running = {r.label for r in replication_rows(TaskStatus.RUNNING, STALE_REPLICATION, {})}
    assert {"Lag", "WAL generated", "Replayed", "Catch-up in"} <= running
    failed = {r.label for r in replication_rows(TaskStatus.FAILED, STALE_REPLICATION, {})}
    assert failed == {"Last source LSN", "Last replayed LSN"}


def test_a_failed_precheck_lists_its_failing_checks_and_the_command_to_see_more() -> None:
    item = migration_item(
        "failed",
        MigrateStage="precheck",
        Reason="precheck failed with 1 error(s); see the report in Detail",
        CheckResults=[
            {"Section": "Check rds empty", "Name": "Check rds databases", "Level": "success", "Message": ""},
            {
                "Section": "Check source connectivity",
                "Name": "Check port connectable",
                "Level": "error",
                "Message": "connection refused",
            },
        ],
    )
    lines = failure_report(item, "pgm-aaaaaaaaaaaaaaaa")
    assert lines[0].startswith("task 7 failed in stage precheck")
    assert "  [Check source connectivity] Check port connectable: connection refused" in lines
    assert not any("Check rds databases" in ln for ln in lines)
    assert lines[-1].endswith("cloudmig migrate show pgm-aaaaaaaaaaaaaaaa --task-id 7")
    assert failure_report(migration_item("running"), "pgm-aaaaaaaaaaaaaaaa") == []


def test_watch_refreshes_once_more_after_reaching_streaming() -> None:
    # The sample that first says streaming still carries the lag of the observation before it.
    samples = iter(
        [
            migration_item("running", ReplicationState="catchup"),
            {**migration_item("running"), "Progress": {"Replication": {"LagBytes": 9_000_000}}},
            {**migration_item("running"), "Progress": {"Replication": {"LagBytes": 0}}},
        ]
    )
    out = io.StringIO()
    code, last = watch(lambda: next(samples), "pgm-x", until="streaming", interval=0.01, out=out, live=False)
    assert code == EXIT_OK
    assert last["Progress"]["Replication"]["LagBytes"] == 0


# ---- serve's next steps -------------------------------------------------------------------------------


def test_serve_ends_with_the_next_steps(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "data", port=9911)
    text = next_steps(s)
    assert "http://127.0.0.1:9911/console" in text
    assert (
        f"keys create --write-config --data-dir {tmp_path / 'data'} --endpoint http://127.0.0.1:9911" in text
    )
    assert "docs/operations.md" in text
    assert "/console" not in next_steps(Settings(data_dir=tmp_path / "data", console_enabled=False))


# ---- a browser at / -----------------------------------------------------------------------------------


def test_browser_visit_is_told_from_an_api_call() -> None:
    html = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    assert is_browser_visit("GET", [], html)
    assert not is_browser_visit("GET", [("Action", "DescribeDBInstances")], html)
    assert not is_browser_visit("GET", [], {**html, "x-acs-action": "DescribeDBInstances"})
    assert not is_browser_visit("POST", [], html)
    assert not is_browser_visit("GET", [], {"accept": "application/json"})


def _get_root(tmp_path: Path, headers: dict[str, str], **settings: Any) -> httpx.Response:
    ctx = build_context(
        Settings(data_dir=tmp_path / "data", runtime_dir=tmp_path / "run", **settings), for_server=False
    )

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(ctx))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await c.get("/", headers=headers)

    return asyncio.run(go())


def test_a_browser_at_the_root_goes_to_the_console(tmp_path: Path) -> None:
    r = _get_root(tmp_path, {"accept": "text/html"})
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    # An API client still gets the RDS error, and so does a browser when there is no console.
    assert _get_root(tmp_path, {"accept": "application/json"}).json()["Code"] == "MissingParameter"
    r = _get_root(tmp_path, {"accept": "text/html"}, console_enabled=False)
    assert r.status_code == 400 and r.json()["Code"] == "MissingParameter"


# ---- names and units ----------------------------------------------------------------------------------


def test_one_task_naming_scheme_and_binary_units() -> None:
    name = new_task_name()
    assert str(uuid.UUID(name)) == name and new_task_name() != name
    assert human_bytes(1536 * 1024) == "1.5 MiB"
    assert human_bytes(None) == "-"


# ---- the README ---------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_names_only_files_of_the_repository() -> None:
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)\)", text)
    paths = re.findall(r"`((?:src|docs|tests|tools|bench)/[^`\s]+)`", text)
    assert links and paths
    missing = [p for p in links + paths if not (ROOT / p).exists()]
    assert not missing, missing
    # Its first screen tells a newcomer how to start the service and run the tests.
    first_screen = "\n".join(text.splitlines()[:15])
    assert "make serve" in first_screen and "make test" in first_screen
