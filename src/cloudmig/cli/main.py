"""`cloudmig` command line: serve and keys on the service host; instance, precheck and migrate talk to a
running service over the RDS API through the official SDK; demo; config."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from cloudmig.cli import client as client_config
from cloudmig.cli.config import config_app
from cloudmig.cli.demo import demo
from cloudmig.cli.instance import instance_app
from cloudmig.cli.lock import DataDirLocked, lock_data_dir
from cloudmig.cli.logs import setup_logging
from cloudmig.cli.migrate import migrate_app
from cloudmig.cli.output import EXIT_FAILED, EXIT_REFUSED, OutputFormat, print_json, print_table
from cloudmig.cli.precheck import precheck_app
from cloudmig.settings import Settings, load_settings

app = typer.Typer(
    help="Self-hosted PostgreSQL cloud migration that speaks the RDS OpenAPI.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Access keys for the API.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(instance_app, name="instance")
app.add_typer(precheck_app, name="precheck")
app.add_typer(migrate_app, name="migrate")
app.add_typer(config_app, name="config")
app.command("demo")(demo)

DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Data directory (CLOUDMIG_DATA_DIR).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML settings file (CLOUDMIG_CONFIG).")]
OutputOpt = Annotated[
    OutputFormat, typer.Option("--output", "-o", help="table (for people) or json (for programs).")
]


@app.callback()
def root(
    client_config_file: Annotated[
        Path | None,
        typer.Option(
            "--client-config",
            help="Client config with endpoint and key (CLOUDMIG_CLIENT_CONFIG; default "
            "~/.config/cloudmig/client.yaml).",
        ),
    ] = None,
) -> None:
    """Self-hosted PostgreSQL cloud migration that speaks the RDS OpenAPI."""
    client_config.override_path = client_config_file


def _settings(data_dir: Path | None, config: Path | None, **flags: object) -> Settings:
    try:
        return load_settings(config, data_dir=data_dir, **flags)
    except Exception as exc:
        typer.echo(f"error: invalid settings: {exc}", err=True)
        raise typer.Exit(EXIT_REFUSED) from None


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

    settings = _settings(data_dir, config, host=host, port=port)
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
    try:
        uvicorn.run(
            build_asgi(ctx),
            host=settings.host,
            port=settings.port,
            access_log=False,  # ours leaves out query strings, which carry SourcePassword
            log_config=None,
            log_level=settings.log_level,
        )
    finally:
        engine.stop()
        lock.close()


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

    settings = _settings(data_dir, config)
    ctx = build_context(settings, for_server=False)
    k = create_key(ctx, description)
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

    ctx = build_context(_settings(data_dir, config), for_server=False)
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

    ctx = build_context(_settings(data_dir, config), for_server=False)
    if not revoke_key(ctx, key_id):
        typer.echo(f"error: no access key {key_id}", err=True)
        raise typer.Exit(EXIT_REFUSED)
    typer.echo(f"revoked {key_id}")


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())
