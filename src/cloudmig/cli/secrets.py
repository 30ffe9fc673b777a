"""The source password: from a file, an environment variable, or a hidden prompt; never a flag value."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Annotated

import typer

from cloudmig.cli.output import CliError

ENV_SOURCE_PASSWORD = "CLOUDMIG_SOURCE_PASSWORD"  # noqa: S105  (a variable name)

PasswordFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        metavar="FILE",
        help="Read the source password from this file (its first line); '-' reads standard input.",
    ),
]
PasswordEnvOpt = Annotated[
    str | None,
    typer.Option(
        "--password-env",
        metavar="VARIABLE",
        help=f"Read the source password from this environment variable (default {ENV_SOURCE_PASSWORD}).",
    ),
]


def _first_line(text: str) -> str:
    return text.split("\n", 1)[0].rstrip("\r")


def read_source_password(password_file: Path | None, password_env: str | None) -> str:
    return read_secret("Source password", password_file, password_env, ENV_SOURCE_PASSWORD)


def read_secret(prompt: str, password_file: Path | None, password_env: str | None, default_env: str) -> str:
    """From a file, an environment variable, or a hidden prompt on a terminal; never a flag value."""
    if password_file is not None and password_env is not None:
        raise CliError("give either --password-file or --password-env, not both")
    if password_file is not None:
        if str(password_file) == "-":
            value = _first_line(sys.stdin.read())
        else:
            try:
                mode = password_file.stat().st_mode
                value = _first_line(password_file.read_text())
            except OSError as exc:
                raise CliError(f"cannot read password file {password_file}: {exc.strerror}") from None
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                typer.echo(f"warning: {password_file} is readable by other users; chmod 600 it", err=True)
        if not value:
            raise CliError(f"password file {password_file} is empty")
        return value
    name = password_env or default_env
    from_env = os.environ.get(name)
    if from_env:
        return from_env
    if password_env is not None:
        raise CliError(f"environment variable {password_env} is not set or empty")
    if sys.stdin.isatty():
        entered = str(typer.prompt(prompt, hide_input=True, confirmation_prompt=prompt != "Source password"))
        if entered:
            return entered
    raise CliError(
        f"no {prompt.lower()}: use --password-file FILE, --password-env VARIABLE or "
        f"{default_env}, or run in a terminal to be prompted"
    )
