"""The `cloudmig` client commands against a running service and real PostgreSQL: in-process with
Typer's runner for errors and configuration, as subprocesses for a whole migration (create, watch
until streaming, switch over)."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from cloudmig.cli.main import app
from tests.support.flows import MIGRATION_PASSWORD
from tests.support.service import Service, free_port

pytestmark = pytest.mark.e2e

CLIENT_VARS = ("CLOUDMIG_ENDPOINT", "ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET")


def client_env(svc: Service, tmp_path: Path, **extra: str | None) -> dict[str, str | None]:
    env: dict[str, str | None] = {
        "CLOUDMIG_ENDPOINT": f"http://{svc.endpoint}",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": svc.key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": svc.key_secret,
        # Never the developer's own ~/.config/cloudmig/client.yaml.
        "CLOUDMIG_CLIENT_CONFIG": str(tmp_path / "absent-client.yaml"),
        "CLOUDMIG_SOURCE_PASSWORD": None,
        "CLOUDMIG_CONFIG": None,
    }
    env.update(extra)
    return env


def one_line_error(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    return lines[0]


# ---- in-process, Typer's runner -----------------------------------------------------------------------


def test_errors_have_one_line_and_distinct_exit_codes(service: Service, tmp_path: Path) -> None:
    runner = CliRunner()
    env = client_env(service, tmp_path)

    # Refused by the service (a 4xx): exit 1.
    r = runner.invoke(app, ["instance", "show", "pgm-aaaaaaaaaaaaaaaa"], env=env)
    assert r.exit_code == 1
    assert "InvalidDBInstanceName.NotFound" in one_line_error(r.stderr)

    r = runner.invoke(app, ["instance", "list"], env={**env, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "wrong"})
    assert r.exit_code == 1
    assert "SignatureDoesNotMatch" in one_line_error(r.stderr)

    # Failed: nothing listens there. Exit 3.
    dead = {**env, "CLOUDMIG_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    r = runner.invoke(app, ["instance", "list"], env=dead)
    assert r.exit_code == 3
    line = one_line_error(r.stderr)
    # It says where the endpoint came from and the likely cause: no service there, or another port.
    assert "cannot reach the service" in line and "from env CLOUDMIG_ENDPOINT" in line
    assert "Is `cloudmig serve` running there?" in line and "CLOUDMIG_PORT" in line

    # A key the service does not know: most likely made with `keys create` on another data dir.
    r = runner.invoke(
        app, ["instance", "list"], env={**env, "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI" + "x" * 20}
    )
    assert r.exit_code == 1
    line = one_line_error(r.stderr)
    assert "InvalidAccessKeyId.NotFound" in line and "CLOUDMIG_DATA_DIR" in line

    # Not configured: exit 2, with what to do.
    r = runner.invoke(app, ["instance", "list"], env={**env, "ALIBABA_CLOUD_ACCESS_KEY_ID": None})
    assert r.exit_code == 2
    assert "keys create --write-config" in one_line_error(r.stderr)

    r = runner.invoke(app, ["instance", "list"], env={**env, "CLOUDMIG_ENDPOINT": "ftp://x"})
    assert r.exit_code == 2 and "invalid endpoint" in one_line_error(r.stderr)

    # A source password is never a flag value; without a file, a variable or a terminal it is refused.
    src = ["migrate", "create", "pgm-aaaaaaaaaaaaaaaa", "--source-host", "127.0.0.1", "--source-account", "a"]
    r = runner.invoke(app, [*src, "--password", "x"], env=env)
    assert r.exit_code == 2 and "No such option" in r.stderr
    r = runner.invoke(app, src, env=env)
    assert r.exit_code == 2 and "no source password" in one_line_error(r.stderr)
    r = runner.invoke(app, [*src, "--password-env", "CLOUDMIG_TEST_UNSET_VAR"], env=env)
    assert r.exit_code == 2 and "CLOUDMIG_TEST_UNSET_VAR" in one_line_error(r.stderr)

    # Destructive commands want --yes when nobody can be asked.
    r = runner.invoke(app, ["migrate", "switch", "pgm-aaaaaaaaaaaaaaaa"], env=env)
    assert r.exit_code == 1 and "--yes" in one_line_error(r.stderr)


def test_keys_create_writes_the_client_config(service: Service, tmp_path: Path) -> None:
    runner = CliRunner()
    cfg = tmp_path / "conf" / "client.yaml"
    server_env = {
        "CLOUDMIG_DATA_DIR": str(service.data_dir),
        "CLOUDMIG_RUNTIME_DIR": str(service.runtime_dir),
        "CLOUDMIG_PORT": str(service.port),
        "CLOUDMIG_CLIENT_CONFIG": str(cfg),
    }
    r = runner.invoke(app, ["keys", "create", "--write-config", "--output", "json"], env=server_env)
    assert r.exit_code == 0, r.output
    key = json.loads(r.stdout)
    # It says which store the key went into: only a service on that store accepts it.
    assert f"created access key {key['AccessKeyId']} in the store of data dir {service.data_dir}" in r.stderr
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    assert key["AccessKeySecret"] in cfg.read_text()

    # The file alone is enough: no variable names the service or the key.
    only_file: dict[str, str | None] = dict.fromkeys(CLIENT_VARS)
    only_file["CLOUDMIG_CLIENT_CONFIG"] = str(cfg)
    r = runner.invoke(app, ["instance", "list", "-o", "json"], env=only_file)
    assert r.exit_code == 0, r.output
    assert isinstance(json.loads(r.stdout), list)
    # --client-config points at a file explicitly.
    r = runner.invoke(
        app,
        ["--client-config", str(cfg), "instance", "list"],
        env={**only_file, "CLOUDMIG_CLIENT_CONFIG": None},
    )
    assert r.exit_code == 0, r.output

    r = runner.invoke(app, ["config", "show", "-o", "json"], env=only_file)
    assert r.exit_code == 0, r.output
    shown = json.loads(r.stdout)
    assert shown["client"]["endpoint"] == f"http://127.0.0.1:{service.port}"
    assert shown["client"]["access_key_id"] == key["AccessKeyId"]
    assert shown["client"]["access_key_secret"] == "********"
    assert key["AccessKeySecret"] not in r.stdout
    assert shown["client"]["origins"]["endpoint"] == f"file {cfg}"
    assert shown["service"]["metrics_enabled"] is True

    r = runner.invoke(app, ["config", "validate"], env=only_file)
    assert r.exit_code == 0 and "client config: ok" in r.stdout

    # Bad files are refused with every problem on one line.
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text("port: not-a-port\nbogus_setting: 1\n")
    r = runner.invoke(app, ["config", "validate", "--config", str(settings_file)], env=only_file)
    assert r.exit_code == 1
    line = one_line_error(r.stderr)
    assert "bogus_setting" in line and "port" in line
    cfg.write_text("endpoint: [unclosed\n")
    r = runner.invoke(app, ["config", "validate"], env=only_file)
    assert r.exit_code == 1 and "not valid YAML" in one_line_error(r.stderr)

    r = runner.invoke(app, ["keys", "list", "-o", "json"], env=server_env)
    assert key["AccessKeyId"] in [k["AccessKeyId"] for k in json.loads(r.stdout)]
    assert key["AccessKeySecret"] not in r.stdout


# ---- subprocesses against the service and real PostgreSQL ----------------------------------------------


class Cli:
    def __init__(self, env: dict[str, str | None]) -> None:
        self.env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
        self.outputs: list[str] = []

    def __call__(
        self, *args: str, code: int = 0, timeout: float = 300, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [sys.executable, "-m", "cloudmig", *args],
            env={**self.env, **extra},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        self.outputs += [r.stdout, r.stderr]
        assert r.returncode == code, f"{args}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)

    def in_terminal(self, *args: str, timeout: float = 60) -> str:
        """Run with stdout on a pseudo-terminal (as a person at a shell would)."""
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "cloudmig", *args],
            env={**self.env, "COLUMNS": "120", "TERM": "xterm-256color"},
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=slave,
        )
        os.close(slave)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        os.close(master)
        assert proc.wait(30) == 0
        out = b"".join(chunks).decode(errors="replace")
        self.outputs.append(out)
        return out


def test_migration_through_the_cli(service: Service, make_source: Any, tmp_path: Path) -> None:
    source = make_source(scale=1)
    cli = Cli(client_env(service, tmp_path))

    instance_id = cli("instance", "create", "--description", "cli-e2e").stdout.strip()
    assert re.fullmatch(r"pgm-[a-z0-9]{16}", instance_id)
    shown = cli.json("instance", "show", instance_id)
    assert shown["DBInstanceStatus"] == "Running" and shown["DBInstanceDescription"] == "cli-e2e"
    assert instance_id in cli("instance", "list").stdout
    # The table shows when it was created (DescribeDBInstanceAttribute calls it CreationTime).
    assert re.search(
        r"Created\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", cli("instance", "show", instance_id).stdout
    )

    src = ["--source-host", "127.0.0.1", "--source-port", str(source.port), "--source-account", "migratetest"]
    # The assessment, with the password from an environment variable the user names.
    r = cli(
        "precheck",
        "run",
        instance_id,
        *src,
        "--password-env",
        "MY_SOURCE_PW",
        MY_SOURCE_PW=MIGRATION_PASSWORD,
    )
    assert "Check rds databases" in r.stdout and "passed" in r.stdout
    report = cli.json("precheck", "show", instance_id)
    assert report["Status"] == "succeeded"
    assert {c["Name"] for c in report["CheckResults"]} >= {"Check rds databases", "Check wal level"}

    # The migration, with the password from a 0600 file.
    pw = tmp_path / "source.pw"
    pw.write_text(MIGRATION_PASSWORD + "\n")
    pw.chmod(0o600)

    # A migration whose assessment fails (nothing listens on that port): the watch ends with the
    # failing checks and the command that shows the whole task, not "see the report in Detail".
    closed = [
        "--source-host",
        "127.0.0.1",
        "--source-port",
        str(free_port()),
        "--source-account",
        "migratetest",
    ]
    r = cli("migrate", "create", instance_id, *closed, "--password-file", str(pw), "--watch", code=3)
    assert "failed in stage precheck" in r.stderr
    assert "[Check source connectivity] Check port connectable:" in r.stderr
    failed_id = cli.json("migrate", "show", instance_id)["TaskId"]
    assert f"cloudmig migrate show {instance_id} --task-id {failed_id}" in r.stderr
    created = cli.json(
        "migrate",
        "create",
        instance_id,
        *src,
        "--password-file",
        str(pw),
        "--task-name",
        "cli-task",
        "--copy-compression",
        "none",
    )
    task_id = created["TaskId"]
    assert created["TaskName"] == "cli-task"

    # Watch until streaming: stdout is a pipe, so plain lines, one per change.
    r = cli("migrate", "watch", instance_id, "--until", "streaming", "--interval", "0.5")
    lines = r.stdout.splitlines()
    assert any(
        re.match(r"\d\d:\d\d:\d\d stage increment  replication streaming  status running", ln) for ln in lines
    )
    assert any("Full backup finished" in ln for ln in lines)
    assert "\x1b[" not in r.stdout  # no terminal control sequences in a pipe

    # A watch that runs out of time says so (exit 3); the task goes on.
    r = cli("migrate", "watch", instance_id, "--timeout", "1", "--interval", "0.5", code=3)
    line = one_line_error(r.stderr)
    assert "timed out after 1 s" in line and "stage increment" in line

    # Progress extension fields, and refreshed at least every 2 s while the task runs.
    item = cli.json("migrate", "show", instance_id)
    assert item["TaskId"] == task_id and item["Status"] == "running"
    bb = item["Progress"]["BaseBackup"]
    assert bb["Phase"] == "done" and bb["BytesDone"] == bb["BytesTotal"] > 1_000_000
    assert bb["CompressionRequested"] == "none"  # --copy-compression reached the task
    assert {"RateBytesPerSecond", "EtaSeconds", "ElapsedSeconds"} <= set(bb)
    rep = item["Progress"]["Replication"]
    assert {"SourceLsn", "ReceivedLsn", "ReplayedLsn", "LagBytes", "ObservedAt"} <= set(rep)
    assert {"LagSeconds", "WalGenerationBytesPerSecond", "ReplayBytesPerSecond", "CatchUpSeconds"} <= set(rep)
    observed = []
    for _ in range(3):
        asked_at = time.time()
        at = cli.json("migrate", "show", instance_id)["Progress"]["Replication"]["ObservedAt"]
        assert at >= asked_at - 2.0, f"observation {asked_at - at:.1f} s old"
        observed.append(at)
        time.sleep(1.2)
    assert len(set(observed)) == 3, observed

    listed = cli.json("migrate", "list", instance_id)
    assert [t["TaskId"] for t in listed] == [task_id, failed_id]
    table = cli("migrate", "list").stdout
    assert instance_id in table and "streaming" in table

    # While writes arrive the switchover is refused, and the way out is named as the CLI's flag.
    stop_writes = threading.Event()

    source.sql("CREATE TABLE cli_writes (at timestamptz)")
    source.sql("GRANT INSERT ON cli_writes TO migratetest")

    def write_until_stopped() -> None:
        # As the application would (and as in test_switchover): a client over TCP.
        with source.connect_tcp("migratetest", MIGRATION_PASSWORD) as conn:
            while not stop_writes.wait(0.01):
                conn.execute("INSERT INTO cli_writes VALUES (now())")

    writer = threading.Thread(target=write_until_stopped, daemon=True)
    writer.start()
    try:
        time.sleep(0.5)
        r = cli("migrate", "switch", instance_id, "--yes", code=1)
    finally:
        stop_writes.set()
        writer.join(10)
    line = one_line_error(r.stderr)
    assert "IncorrectDBInstanceState" in line and "use --force" in line and "ForceSwitch" not in line
    assert cli.json("migrate", "show", instance_id)["MigrateStage"] == "increment"

    # Switch over (the source is idle): the command follows it to success.
    r = cli("migrate", "switch", instance_id, "--yes", "--interval", "0.5", timeout=300)
    assert re.search(r"stage success  replication finish  status succeeded", r.stdout), r.stdout
    # It ends saying how to connect, and how to give a password to a role that came without one.
    assert f"127.0.0.1:{shown['Port']}" in r.stderr and "cloudmig account reset-password" in r.stderr
    done = cli.json("migrate", "show", instance_id)
    assert (done["MigrateStage"], done["ReplicationState"], done["Status"]) == (
        "success",
        "finish",
        "succeeded",
    )
    assert done["Evidence"]["TotalSeconds"] > 0
    # The target is a read-write primary now.
    with psycopg.connect(
        host="127.0.0.1",
        port=int(shown["Port"]),
        user="migratetest",
        password=MIGRATION_PASSWORD,
        dbname="postgres",
    ) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)

    # Asking again is refused (exit 1), with the service's reason on one line.
    r = cli("migrate", "switch", instance_id, "--yes", code=1)
    assert "IncorrectDBInstanceState" in one_line_error(r.stderr)

    # A way in: an account made with the CLI (password from a variable, never a flag) logs in over
    # TCP, and the source's owner, which came without a password, gets one.
    r = cli(
        "account",
        "create",
        instance_id,
        "--name",
        "app_user",
        "--password-env",
        "APP_PW",
        APP_PW="App_Pass_9",
    )
    assert f"-p {shown['Port']} -U app_user" in r.stdout
    cli(
        "account",
        "reset-password",
        instance_id,
        "--name",
        "postgres",
        CLOUDMIG_ACCOUNT_PASSWORD="Owner_Pass_9",
    )
    for user, password in (("app_user", "App_Pass_9"), ("postgres", "Owner_Pass_9")):
        with psycopg.connect(
            host="127.0.0.1", port=int(shown["Port"]), user=user, password=password, dbname="postgres"
        ) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
    r = cli(
        "account",
        "reset-password",
        instance_id,
        "--name",
        "nobody",
        CLOUDMIG_ACCOUNT_PASSWORD="X_Pass_9",
        code=1,
    )
    assert "InvalidAccountName.NotFound" in one_line_error(r.stderr)

    # The live view, on a terminal: stage timeline, full-copy bar, replication block, last events.
    screen = cli.in_terminal("migrate", "watch", instance_id)
    for text in ("✓ success", "full copy", "replication", "last events", "MiB of", "promoted"):
        assert text in screen, screen

    cli("instance", "delete", instance_id, "--yes", "--wait")
    assert instance_id not in cli("instance", "list").stdout

    # No password ever appeared in anything the CLI printed.
    for out in cli.outputs:
        for secret in (MIGRATION_PASSWORD, "App_Pass_9", "Owner_Pass_9"):
            assert secret not in out


@pytest.fixture(autouse=True)
def _no_leftover_env() -> Any:
    saved = {k: os.environ.get(k) for k in CLIENT_VARS}
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    with contextlib.suppress(Exception):
        from cloudmig.cli import client_config

        client_config.override_path = None
