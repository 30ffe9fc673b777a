"""`cloudmig config show|validate`: the service's settings and the client's connection."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError

from cloudmig.cli.client_config import client_config_path, load_client_config, read_client_file
from cloudmig.cli.output import (
    CliError,
    OutputFormat,
    OutputOpt,
    Refused,
    command_group,
    handle_errors,
    print_fields,
    print_json,
)
from cloudmig.settings import Settings, load_settings

config_app = command_group("Show and check settings.")

ConfigFileOpt = Annotated[
    Path | None, typer.Option("--config", help="The service's YAML settings file (CLOUDMIG_CONFIG).")
]
MASK = "********"


def _service_file(config: Path | None) -> Path | None:
    if config is not None:
        return config
    env = os.environ.get("CLOUDMIG_CONFIG")
    return Path(env) if env else None


def service_problems(path: Path | None) -> list[str]:
    """What is wrong with the service settings (file keys, values, environment); [] when fine."""
    problems: list[str] = []
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            return [f"{path}: {exc.strerror}"]
        except yaml.YAMLError as exc:
            return [f"{path}: not valid YAML: {' '.join(str(exc).split())}"]
        if not isinstance(loaded, dict):
            return [f"{path}: expected a mapping of settings"]
        unknown = sorted(set(map(str, loaded)) - set(Settings.model_fields))
        if unknown:
            problems.append(f"{path}: unknown setting(s) {', '.join(unknown)}")
    try:
        load_settings(path)
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            problems.append(f"{where}: {err['msg']}")
    except (OSError, ValueError) as exc:
        problems.append(" ".join(str(exc).split()))
    return problems


def service_view(settings: Settings) -> dict[str, Any]:
    data = settings.model_dump(mode="json")
    if data.get("secret_key"):
        data["secret_key"] = MASK
    data["effective_store_url"] = _mask_url(settings.effective_store_url)
    data["store_url"] = _mask_url(settings.store_url)
    return data


def _mask_url(url: str) -> str:
    # postgresql://user:password@host/db → postgresql://user:********@host/db
    head, sep, tail = url.partition("://")
    if not sep or "@" not in tail:
        return url
    cred, _, rest = tail.rpartition("@")
    if ":" in cred:
        cred = cred.split(":", 1)[0] + ":" + MASK
    return f"{head}://{cred}@{rest}"


@config_app.command("show")
@handle_errors
def show(config: ConfigFileOpt = None, output: OutputOpt = OutputFormat.TABLE) -> None:
    """Print the effective settings (secrets masked) and the client's endpoint and key."""
    path = _service_file(config)
    try:
        service = service_view(load_settings(path))
    except (ValidationError, OSError, ValueError) as exc:
        raise Refused(f"invalid service settings: {' '.join(str(exc).split())}") from None
    try:
        cfg = load_client_config(require_key=False)
        client: dict[str, Any] = {
            "config_file": str(client_config_path()),
            "endpoint": cfg.endpoint.url,
            "access_key_id": cfg.access_key_id or None,
            "access_key_secret": MASK if cfg.access_key_secret else None,
            "origins": cfg.origins,
        }
    except CliError as exc:
        client = {"config_file": str(client_config_path()), "error": str(exc)}
    if output is OutputFormat.JSON:
        print_json({"service": service, "client": client})
        return
    print_fields([(k, v) for k, v in service.items()], title="service settings")
    typer.echo()
    origins = client.get("origins") or {}
    print_fields(
        [
            (k, f"{v}  ({origins[k]})" if k in origins and v is not None else v)
            for k, v in client.items()
            if k != "origins"
        ],
        title="client",
    )


@config_app.command("validate")
@handle_errors
def validate(config: ConfigFileOpt = None) -> None:
    """Check the service settings file and the client config; exit 1 with the problems if any."""
    path = _service_file(config)
    problems = service_problems(path)
    client_path = client_config_path()
    try:
        read_client_file(client_path)
        load_client_config(require_key=False)
    except CliError as exc:
        problems.append(str(exc))
    if problems:
        raise Refused("; ".join(problems))
    typer.echo(f"service settings: ok ({path or 'environment and defaults'})")
    typer.echo(f"client config: ok ({client_path if client_path.exists() else 'environment and defaults'})")
