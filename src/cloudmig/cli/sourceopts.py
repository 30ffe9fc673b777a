"""Options that name a source server, shared by `precheck run` and `migrate create`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cloudmig.cli.client import SourceArgs
from cloudmig.cli.output import CliError
from cloudmig.cli.secrets import PasswordEnvOpt, PasswordFileOpt, read_source_password

SourceHostOpt = Annotated[
    str, typer.Option("--source-host", metavar="HOST", help="Source server address (IP or host name).")
]
SourcePortOpt = Annotated[
    int, typer.Option("--source-port", metavar="PORT", min=1, max=65535, help="Source server port.")
]
SourceAccountOpt = Annotated[
    str,
    typer.Option("--source-account", metavar="ROLE", help="Source role with REPLICATION (and pg_monitor)."),
]
CategoryOpt = Annotated[
    str,
    typer.Option(
        "--source-category", metavar="CATEGORY", help="Where the source runs: idcOnVpc, ecsOnVpc or internet."
    ),
]
TaskNameOpt = Annotated[str | None, typer.Option("--task-name", metavar="NAME", help="A name for the task.")]
SslModeOpt = Annotated[
    str | None,
    typer.Option(
        "--ssl-mode",
        metavar="MODE",
        help="TLS to the source: disable, prefer, require, verify-ca or verify-full "
        "(default: the service's, by category).",
    ),
]
SslRootCertOpt = Annotated[
    Path | None,
    typer.Option(
        "--ssl-root-cert", metavar="FILE", help="PEM file of the CA(s) that sign the source's certificate."
    ),
]


def source_args(
    host: str,
    port: int,
    account: str,
    category: str,
    task_name: str | None,
    password_file: Path | None,
    password_env: str | None,
    ssl_mode: str | None = None,
    ssl_root_cert: Path | None = None,
) -> SourceArgs:
    pem = None
    if ssl_root_cert is not None:
        try:
            pem = ssl_root_cert.read_text()
        except OSError as exc:
            raise CliError(f"cannot read {ssl_root_cert}: {exc.strerror}") from None
    return SourceArgs(
        host=host,
        port=port,
        account=account,
        password=read_source_password(password_file, password_env),
        category=category,
        task_name=task_name,
        ssl_mode=ssl_mode,
        ssl_root_cert=pem,
    )


__all__ = [
    "CategoryOpt",
    "PasswordEnvOpt",
    "PasswordFileOpt",
    "SourceAccountOpt",
    "SourceHostOpt",
    "SourcePortOpt",
    "SslModeOpt",
    "SslRootCertOpt",
    "TaskNameOpt",
    "source_args",
]
