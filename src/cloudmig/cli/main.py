"""`cloudmig` command line: serve, keys."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from cloudmig.cli.lock import DataDirLocked, lock_data_dir
from cloudmig.cli.logs import setup_logging
from cloudmig.settings import Settings, load_settings

app = typer.Typer(
    help="Self-hosted PostgreSQL cloud migration that speaks the RDS OpenAPI.", no_args_is_help=True
)
keys_app = typer.Typer(help="Access keys for the API.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Data directory (CLOUDMIG_DATA_DIR).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML settings file (CLOUDMIG_CONFIG).")]

# Exit codes: 1 = the request was refused (bad input, wrong state), 2 = usage, 3 = it failed.
EXIT_REFUSED, EXIT_FAILED = 1, 3


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
    from cloudmig.engine.runtime import Engine
    from cloudmig.services.context import build_context

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
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create an access key. The secret is shown once."""
    from cloudmig.services.context import build_context
    from cloudmig.services.keys import create_key

    ctx = build_context(_settings(data_dir, config), for_server=False)
    k = create_key(ctx, description)
    if as_json:
        typer.echo(json.dumps({"AccessKeyId": k.access_key_id, "AccessKeySecret": k.access_key_secret}))
    else:
        typer.echo(f"AccessKeyId:     {k.access_key_id}\nAccessKeySecret: {k.access_key_secret}")
        typer.echo("The secret is shown only now; store it safely.", err=True)


@keys_app.command("list")
def keys_list(
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List access keys (never their secrets)."""
    from cloudmig.services.context import build_context
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
    if as_json:
        typer.echo(json.dumps(rows))
    else:
        for r in rows:
            typer.echo(f"{r['AccessKeyId']}  {r['Status']:<8}  {r['Created']}  {r['Description']}")


@keys_app.command("revoke")
def keys_revoke(key_id: str, data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """Make a key inactive: requests signed with it are refused."""
    from cloudmig.services.context import build_context
    from cloudmig.services.keys import revoke_key

    ctx = build_context(_settings(data_dir, config), for_server=False)
    if not revoke_key(ctx, key_id):
        typer.echo(f"error: no access key {key_id}", err=True)
        raise typer.Exit(EXIT_REFUSED)
    typer.echo(f"revoked {key_id}")


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())
