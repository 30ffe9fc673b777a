"""What the commands run on the service host share: the flags that name its data directory and
settings file, and loading the settings they give."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cloudmig.cli.output import EXIT_REFUSED
from cloudmig.settings import Settings, load_settings

DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", metavar="DIR", help="Data directory (CLOUDMIG_DATA_DIR).")
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", metavar="FILE", help="YAML settings file (CLOUDMIG_CONFIG).")
]


def host_settings(data_dir: Path | None, config: Path | None, **flags: object) -> Settings:
    try:
        return load_settings(config, data_dir=data_dir, **flags)
    except Exception as exc:
        typer.echo(f"error: invalid settings: {exc}", err=True)
        raise typer.Exit(EXIT_REFUSED) from None
