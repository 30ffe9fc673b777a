"""CLI helpers without a service: endpoints, error messages, watch end conditions, plain lines."""

from __future__ import annotations

import io

import pytest

from cloudmig.cli.client import _clean_message
from cloudmig.cli.client_config import parse_endpoint
from cloudmig.cli.output import CliError
from cloudmig.cli.watch import PlainPrinter, exit_code_for, reached


def test_endpoints() -> None:
    assert parse_endpoint("http://127.0.0.1:9800").host_port == "127.0.0.1:9800"
    e = parse_endpoint("127.0.0.1:9800")
    assert (e.protocol, e.url) == ("http", "http://127.0.0.1:9800")
    assert parse_endpoint("https://rds.example.org").protocol == "https"
    for bad in ("ftp://x", "http://", "http://h:99999", "http://h/path", "http://u:p@h"):
        with pytest.raises(CliError):
            parse_endpoint(bad)


def test_sdk_messages_lose_their_noise() -> None:
    raw = (
        "code: 404, The database instance does not exist. request id: 0A-1B, "
        "Response: {'RequestId': '0A-1B', 'Code': 'InvalidDBInstanceName.NotFound'}"
    )
    assert _clean_message(raw) == "The database instance does not exist."


def item(
    stage: str, state: str = "unstarted", status: str = "running", detail: str = ""
) -> dict[str, object]:
    return {"MigrateStage": stage, "ReplicationState": state, "Status": status, "Detail": detail}


def test_watch_ends_when_the_task_ends_or_streams() -> None:
    assert not reached(item("basebackup"), "end")
    assert not reached(item("increment", "catchup"), "streaming")
    assert reached(item("increment", "streaming"), "streaming")
    assert not reached(item("increment", "streaming"), "end")
    assert reached(item("success", "finish", "succeeded"), "end")
    assert reached(item("basebackup", status="failed"), "streaming")
    assert exit_code_for(item("success", "finish", "succeeded")) == 0
    assert exit_code_for(item("basebackup", status="failed")) == 3
    # Without the extension fields, Detail tells a failure.
    legacy = {"MigrateStage": "basebackup", "Detail": "[Task failed]\n2024-01-01 00:00:00 --- boom\n"}
    assert reached(legacy, "end") and exit_code_for(legacy) == 3


def test_plain_lines_print_changes_once() -> None:
    out = io.StringIO()
    p = PlainPrinter(out, every=3600)
    copying = item("basebackup", detail="[Backup]\n2024-01-01 00:00:00 --- Start full backup\n")
    copying["Progress"] = {
        "BaseBackup": {
            "BytesDone": 50 << 20,
            "BytesTotal": 100 << 20,
            "RateBytesPerSecond": 1 << 20,
            "EtaSeconds": 50,
        }
    }
    p.update(copying)
    p.update(copying)
    text = out.getvalue()
    assert text.count("stage basebackup") == 1 and text.count("Start full backup") == 1
    assert "copy 50.0 MiB of 100.0 MiB (50%)" in text and "ETA 50s" in text
    p.update(item("increment", "streaming"))
    assert "stage increment  replication streaming" in out.getvalue()
