"""`cloudmig` command line: serve, keys and slots on the service host; instance, precheck and migrate talk to a
running service over the RDS API through the official SDK; demo; config."""

from __future__ import annotations

import json
import logging
import shlex
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from cloudmig.cli import client_config
from cloudmig.cli.account import account_app
from cloudmig.cli.config import config_app
from cloudmig.cli.demo import demo
from cloudmig.cli.host import ConfigOpt, DataDirOpt, host_settings
from cloudmig.cli.instance import instance_app
from cloudmig.cli.lock import DataDirLocked, lock_data_dir
from cloudmig.cli.logs import setup_logging
from cloudmig.cli.migrate import migrate_app
from cloudmig.cli.output import (
    EXIT_FAILED,
    EXIT_REFUSED,
    OutputFormat,
    OutputOpt,
    command_group,
    print_json,
    print_table,
)
from cloudmig.cli.precheck import precheck_app
from cloudmig.cli.slots import slots_app
from cloudmig.settings import Settings, default_data_dir

app = command_group(
    "Self-hosted PostgreSQL cloud migration that speaks the RDS OpenAPI.", pretty_exceptions_enable=False
)
keys_app = command_group("Access keys for the API.")
app.add_typer(keys_app, name="keys")
app.add_typer(instance_app, name="instance")
app.add_typer(precheck_app, name="precheck")
app.add_typer(migrate_app, name="migrate")
app.add_typer(account_app, name="account")
app.add_typer(config_app, name="config")
app.add_typer(slots_app, name="slots")
app.command("demo")(demo)


@app.callback()
def root(
    client_config_file: Annotated[
        Path | None,
        typer.Option(
            "--client-config",
            metavar="FILE",
            help="Client config with endpoint and key (CLOUDMIG_CLIENT_CONFIG; default "
            "~/.config/cloudmig/client.yaml).",
        ),
    ] = None,
) -> None:
    """Self-hosted PostgreSQL cloud migration that speaks the RDS OpenAPI."""
    client_config.override_path = client_config_file


def store_description(settings: Settings) -> str:
    """Which store a command reads and writes, without a password."""
    if not settings.store_url:
        return f"the store of data dir {settings.data_dir} ({settings.sqlite_path})"
    from sqlalchemy.engine import make_url

    try:
        url = make_url(settings.store_url).render_as_string(hide_password=True)
    except Exception:
        url = "(unparsable CLOUDMIG_STORE_URL)"
    return f"the store {url} (data dir {settings.data_dir})"


class ReadyServer(uvicorn.Server):
    """uvicorn's server that prints what to do next once it listens (the end of the start-up output)."""

    def __init__(self, config: uvicorn.Config, ready_message: str) -> None:
        super().__init__(config)
        self.ready_message = ready_message

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            typer.echo(self.ready_message, err=True)


def _cli_name() -> str:
    # `make serve` runs .venv/bin/cloudmig, which is not on PATH: repeat the path it was started by.
    argv0 = sys.argv[0] if sys.argv else ""
    return argv0 if Path(argv0).name == "cloudmig" else "cloudmig"


def next_steps(settings: Settings, *, config_file: Path | None = None) -> str:
    """Where the console is and how to get a key for it and the CLI, with the flags that make
    `keys create` use this service's store and endpoint when they are not the defaults."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
    url = f"http://{host}:{settings.port}"
    cmd = [_cli_name(), "keys", "create", "--write-config"]
    if config_file is not None:
        cmd += ["--config", shlex.quote(str(config_file))]
    if settings.data_dir != default_data_dir():
        cmd += ["--data-dir", shlex.quote(str(settings.data_dir))]
    if url != client_config.DEFAULT_ENDPOINT:
        cmd += ["--endpoint", url]
    steps = [f"an access key for the CLI and the console:  {' '.join(cmd)}"]
    if settings.console_enabled:
        steps.append(f"the web console (sign in with that key):   {url}/console")
    steps.append("the docs: README.md (first migration, SDKs) and docs/operations.md (operating)")
    lines = [f"cloudmig is ready at {url} (data dir {settings.data_dir}). Next steps:"]
    lines += [f"  {n}. {step}" for n, step in enumerate(steps, 1)]
    return "\n".join(lines)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (CLOUDMIG_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (CLOUDMIG_PORT).")] = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Run the API and the migration engine."""
    from cloudmig.engine.loop import Engine
    from cloudmig.runtime import build_context

    settings = host_settings(data_dir, config, host=host, port=port)
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
        lock = lock_data_dir(settings.data_dir)
        setup_logging(settings.log_level, settings.log_dir)
        ctx = build_context(settings)
    except (DataDirLocked, RuntimeError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    from cloudmig.server import build_asgi

    engine = Engine(ctx)
    engine.start()
    log = logging.getLogger("cloudmig")
    log.info(
        "cloudmig listening on http://%s:%d, data dir %s", settings.host, settings.port, settings.data_dir
    )
    server = ReadyServer(
        uvicorn.Config(
            build_asgi(ctx),
            host=settings.host,
            port=settings.port,
            access_log=False,  # ours leaves out query strings, which carry SourcePassword
            log_config=None,
            log_level=settings.log_level,
        ),
        ready_message=next_steps(settings, config_file=config),
    )
    try:
        server.run()
    finally:
        engine.stop()
        lock.close()
    if not server.started:
        raise typer.Exit(EXIT_FAILED)


@keys_app.command("create")
def keys_create(
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    description: Annotated[str, typer.Option(help="A note to recognise the key by.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (same as --output json).")] = False,
    output: OutputOpt = OutputFormat.TABLE,
    write_config: Annotated[
        bool,
        typer.Option(
            "--write-config",
            help="Also write the endpoint and this key to the client config (mode 0600) for the "
            "client commands.",
        ),
    ] = False,
    endpoint: Annotated[
        str | None, typer.Option(help="Endpoint to write with --write-config (default: from settings).")
    ] = None,
) -> None:
    """Create an access key. The secret is shown once."""
    from cloudmig.runtime import build_context
    from cloudmig.services.keys import create_key

    settings = host_settings(data_dir, config)
    ctx = build_context(settings, for_server=False)
    k = create_key(ctx, description)
    # Keys live in one store: a service running with another data dir or store does not know this one.
    typer.echo(
        f"created access key {k.access_key_id} in {store_description(settings)}; only a service "
        "using the same store accepts it",
        err=True,
    )
    if write_config:
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
        url = endpoint or f"http://{host}:{settings.port}"
        path = client_config.client_config_path()
        client_config.write_client_config(path, url, k.access_key_id, k.access_key_secret)
        typer.echo(f"wrote {path} (endpoint {url})", err=True)
    if as_json or output is OutputFormat.JSON:
        typer.echo(json.dumps({"AccessKeyId": k.access_key_id, "AccessKeySecret": k.access_key_secret}))
    else:
        typer.echo(f"AccessKeyId:     {k.access_key_id}\nAccessKeySecret: {k.access_key_secret}")
        typer.echo("The secret is shown only now; store it safely.", err=True)


@keys_app.command("list")
def keys_list(
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (same as --output json).")] = False,
    output: OutputOpt = OutputFormat.TABLE,
) -> None:
    """List access keys (never their secrets)."""
    from cloudmig.runtime import build_context
    from cloudmig.services.keys import list_keys

    ctx = build_context(host_settings(data_dir, config), for_server=False)
    rows = [
        {
            "AccessKeyId": k.id,
            "Status": k.status.value,
            "Description": k.description,
            "Created": k.created_at.isoformat(),
        }
        for k in list_keys(ctx)
    ]
    if as_json or output is OutputFormat.JSON:
        print_json(rows)
    else:
        print_table(
            ["AccessKeyId", "Status", "Created", "Description"],
            [[r["AccessKeyId"], r["Status"], r["Created"], r["Description"]] for r in rows],
        )


@keys_app.command("revoke")
def keys_revoke(key_id: str, data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """Make a key inactive: requests signed with it are refused."""
    from cloudmig.runtime import build_context
    from cloudmig.services.keys import revoke_key

    ctx = build_context(host_settings(data_dir, config), for_server=False)
    if not revoke_key(ctx, key_id):
        typer.echo(f"error: no access key {key_id}", err=True)
        raise typer.Exit(EXIT_REFUSED)
    typer.echo(f"revoked {key_id}")


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())
